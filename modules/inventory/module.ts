/**
 * The inventory module: implements {@link inventory} over its own schema ({@link StockRepository},
 * `migrations/`), checks SKUs with the catalog, and moves reservations along as orders are placed
 * and cancelled.
 */
import { defineModule } from 'keel';
import { catalog } from '../catalog/contract.js';
import { orders } from '../orders/contract.js';
import { MAX_ON_HAND, OutOfStock, ShelfFull, inventory, type StockLevel } from './contract.js';
import { DEFAULT_INVENTORY_SETTINGS, INVENTORY_SETTINGS, StockRepository, type InventorySettings } from './stock-repository.js';

/**
 * The inventory module, seeded by its migrations with stock for the catalog's seeded products.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule, inventoryModule, paymentsModule, ordersModule], principal: Principal, database: await createPGliteDatabase() });
 * await kernel.start();
 * await kernel.client(inventory).restock({ sku: 'KB-001', quantity: 10 }, { principal: { sub: 'ada', roles: ['admin'] } }); // admins only
 * ```
 */
export const inventoryModule = defineModule({
  contract: inventory,
  dependsOn: [catalog],
  subscribesTo: [orders],
  data: { migrations: new URL('./migrations/', import.meta.url) },
  providers: (bind) => {
    bind(INVENTORY_SETTINGS).toConstantValue(DEFAULT_INVENTORY_SETTINGS);
  },
  create: ({ db, get, emit, logger }) => {
    const { lowStockThreshold } = get<InventorySettings>(INVENTORY_SETTINGS);
    const store = new StockRepository(db);
    const products = get(catalog);

    /**
     * Throws UnknownProduct unless the catalog has `sku`. Products are never removed, so a SKU once
     * stocked is known. Called before any transaction: on PGlite a module may not call another
     * while it holds one.
     */
    const assertInCatalog = async (sku: string): Promise<void> => {
      if (!(await store.tracks(sku))) await products.getProduct({ sku });
    };

    const announceLow = async (level: StockLevel): Promise<void> => {
      logger.info({ sku: level.sku, available: level.available }, 'stock low');
      await emit('stockLow', { sku: level.sku, available: level.available, threshold: lowStockThreshold });
    };

    return {
      handlers: {
        restock: async ({ sku, quantity }) => {
          await assertInCatalog(sku);
          const { level, full } = await store.restock(sku, quantity, MAX_ON_HAND);
          if (full) throw new ShelfFull({ sku, onHand: level.onHand, requested: quantity, limit: MAX_ON_HAND });
          logger.info({ sku, quantity, onHand: level.onHand }, 'restocked');
          return level;
        },
        getStock: async ({ sku }) => {
          await assertInCatalog(sku);
          return store.level(sku);
        },
        reserve: ({ orderId, lines }) =>
          db.transaction(async () => {
            const result = await store.reserve(orderId, lines, lowStockThreshold);
            if (!result.ok) throw new OutOfStock(result.shortage); // rolls the transaction back: nothing reserved
            for (const level of result.newlyLow) await announceLow(level); // to the outbox, with the reservation
            return result.reservation;
          }),
        release: ({ orderId }) => db.transaction(() => store.release(orderId)),
      },
      // Durable events: the kernel runs each handler in one transaction with the event's id in the
      // inbox, so a redelivered event changes nothing; the state machine also makes a repeated or
      // late event (orderPlaced after orderCancelled) change nothing.
      events: {
        orders: {
          orderPlaced: async ({ orderId }) => {
            const reservation = await store.commit(orderId);
            if (reservation === undefined) logger.warn({ orderId }, 'order placed without a reservation here; stock unchanged');
          },
          orderCancelled: async ({ orderId }) => {
            const reservation = await store.cancel(orderId);
            if (reservation === undefined) logger.warn({ orderId }, 'order cancelled without a reservation here; stock unchanged');
          },
        },
      },
    };
  },
});
