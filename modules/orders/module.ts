/**
 * The orders module: implements {@link orders} by calling the catalog, the inventory and
 * payments through their contracts, keeping orders in its own schema ({@link OrderRepository},
 * `migrations/`). placeOrder and cancelOrder are sagas ({@link OrderSaga}); recovery
 * ({@link OrderRecovery}) finishes in the background, from start on, what a crash left half-way.
 */
import { defineModule } from 'keel';
import { catalog } from '../catalog/contract.js';
import { inventory } from '../inventory/contract.js';
import { customersOwn, payments } from '../payments/contract.js';
import { OrderNotFound, orders } from './contract.js';
import { DEFAULT_ORDER_RECOVERY_OPTIONS, OrderRecovery, type OrderRecoveryOptions } from './order-recovery.js';
import { OrderRepository, toOrder } from './order-repository.js';
import { OrderSaga } from './order-saga.js';

/** Token of the {@link OrderRecoveryOptions}. */
export const ORDER_RECOVERY_OPTIONS = Symbol.for('orders.recovery');

/**
 * The orders module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule, inventoryModule, paymentsModule, ordersModule], database: await createPGliteDatabase() });
 * await kernel.start();
 * const order = await kernel.client(orders).placeOrder(
 *   { customerId: 'c-42', lines: [{ sku: 'KB-001', quantity: 1 }], card: { token: 'tok_visa' } },
 *   { idempotencyKey: checkoutKey }, // random per checkout (crypto.randomUUID()): a retry with it charges once and returns this order
 * );
 * ```
 */
export const ordersModule = defineModule({
  contract: orders,
  dependsOn: [catalog, inventory, payments],
  data: { migrations: new URL('./migrations/', import.meta.url) },
  providers: (bind) => {
    bind(ORDER_RECOVERY_OPTIONS).toConstantValue(DEFAULT_ORDER_RECOVERY_OPTIONS);
  },
  create: ({ db, get, emit, logger }) => {
    const store = new OrderRepository(db);
    const saga = new OrderSaga(db, store, get(catalog), get(inventory), get(payments), emit, logger);
    const recovery = new OrderRecovery(store, saga, logger, get<OrderRecoveryOptions>(ORDER_RECOVERY_OPTIONS));

    return {
      handlers: {
        placeOrder: (input, context) => saga.place(input, context),

        getOrder: async ({ orderId }, { principal }) => {
          const record = await store.get(orderId);
          const order = record === undefined ? undefined : toOrder(record);
          // Another customer's order is not found: its existence is not the caller's to learn.
          if (order === undefined || !customersOwn(principal, order.customerId)) throw new OrderNotFound({ orderId });
          return order;
        },

        listOrders: async ({ customerId }) => ({
          orders: (await store.forCustomer(customerId)).flatMap((record) => toOrder(record) ?? []),
        }),

        cancelOrder: async ({ orderId }, context) => {
          const record = await store.get(orderId);
          if (record === undefined || !customersOwn(context.principal, record.customerId)) throw new OrderNotFound({ orderId });
          return saga.cancel(orderId, context);
        },
      },
      // In the background: the modules recovery calls may run in processes that start later.
      start: () => recovery.start(),
      stop: () => recovery.stop(),
    };
  },
});
