/**
 * The inventory module: implements {@link inventory} over an in-memory {@link StockStore}, checks
 * SKUs with the catalog, and moves reservations along as orders are placed and cancelled.
 */
import { defineModule } from 'keel';
import { catalog } from '../catalog/contract.js';
import { orders } from '../orders/contract.js';
import { OutOfStock, inventory, type StockLevel } from './contract.js';
import { DEFAULT_INVENTORY_SETTINGS, INVENTORY_SETTINGS, StockStore } from './stock-store.js';

/**
 * The inventory module, seeded with stock for the catalog's seeded products.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule, inventoryModule, paymentsModule, ordersModule] });
 * await kernel.start();
 * await kernel.client(inventory).restock({ sku: 'KB-001', quantity: 10 });
 * ```
 */
export const inventoryModule = defineModule({
  contract: inventory,
  dependsOn: [catalog],
  subscribesTo: [orders],
  providers: (bind) => {
    bind(INVENTORY_SETTINGS).toConstantValue(DEFAULT_INVENTORY_SETTINGS);
    bind(StockStore).toSelf().inSingletonScope();
  },
  create: ({ get, emit, logger }) => {
    const store = get(StockStore);
    const products = get(catalog);

    /** Throws UnknownProduct unless the catalog has `sku`. Products are never removed, so a SKU once stocked is known. */
    const assertInCatalog = async (sku: string): Promise<void> => {
      if (!store.tracks(sku)) await products.getProduct({ sku });
    };

    const announceLow = async (level: StockLevel): Promise<void> => {
      logger.info({ sku: level.sku, available: level.available }, 'stock low');
      await emit('stockLow', { sku: level.sku, available: level.available, threshold: store.lowStockThreshold });
    };

    return {
      handlers: {
        restock: async ({ sku, quantity }) => {
          await assertInCatalog(sku);
          const level = store.restock(sku, quantity);
          logger.info({ sku, quantity, onHand: level.onHand }, 'restocked');
          return level;
        },
        getStock: async ({ sku }) => {
          await assertInCatalog(sku);
          return store.level(sku);
        },
        reserve: async ({ orderId, lines }) => {
          const result = store.reserve(orderId, lines);
          if (!result.ok) throw new OutOfStock(result.shortage);
          for (const level of result.newlyLow) await announceLow(level);
          return result.reservation;
        },
        release: ({ orderId }) => store.release(orderId),
      },
      events: {
        orders: {
          orderPlaced: ({ orderId }) => {
            const reservation = store.commit(orderId);
            if (reservation === undefined) logger.warn({ orderId }, 'order placed without a reservation here; stock unchanged');
          },
          orderCancelled: ({ orderId }) => {
            const reservation = store.cancel(orderId);
            if (reservation === undefined) logger.warn({ orderId }, 'order cancelled without a reservation here; stock unchanged');
          },
        },
      },
    };
  },
});
