/**
 * The orders module: implements {@link orders} by calling the catalog, the inventory and
 * payments through their contracts, and keeps orders in an in-memory {@link OrderStore}.
 */
import { randomUUID } from 'node:crypto';
import { currentContext, defineModule, runWithContext, type Client, type Logger } from 'keel';
import { catalog } from '../catalog/contract.js';
import { OutOfStock, inventory } from '../inventory/contract.js';
import { payments } from '../payments/contract.js';
import { OrderNotCancellable, OrderNotFound, orders, type Order, type OrderLine } from './contract.js';
import { OrderStore } from './order-store.js';

/**
 * The orders module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule, inventoryModule, paymentsModule, ordersModule] });
 * await kernel.start();
 * const order = await kernel.client(orders).placeOrder({
 *   customerId: 'c-42',
 *   lines: [{ sku: 'KB-001', quantity: 1 }],
 *   card: { token: 'tok_visa' },
 * });
 * ```
 */
export const ordersModule = defineModule({
  contract: orders,
  dependsOn: [catalog, inventory, payments],
  providers: (bind) => {
    bind(OrderStore).toSelf().inSingletonScope();
  },
  create: ({ get, emit, logger }) => {
    const store = get(OrderStore);
    const products = get(catalog);
    const stock = get(inventory);
    const cards = get(payments);

    return {
      handlers: {
        placeOrder: async ({ customerId, lines, card }) => {
          const wanted = mergeLines(lines);
          // Unknown products fail here, before anything is reserved or charged.
          const priced: OrderLine[] = await Promise.all(
            wanted.map(async ({ sku, quantity }) => {
              const product = await products.getProduct({ sku });
              return { sku, name: product.name, quantity, unitPriceCents: product.priceCents, lineTotalCents: product.priceCents * quantity };
            }),
          );
          const totalCents = priced.reduce((sum, line) => sum + line.lineTotalCents, 0);
          const orderId = randomUUID();

          try {
            await stock.reserve({ orderId, lines: wanted });
          } catch (error) {
            // Out of stock reserved nothing; any other failure (a timeout) may have reserved, so release.
            if (!(error instanceof OutOfStock)) await releaseQuietly(stock, orderId, logger);
            throw error;
          }

          let paymentId: string;
          try {
            ({ paymentId } = await cards.charge({ orderId, customerId, amountCents: totalCents, card }));
          } catch (error) {
            // Declined: nothing was captured. Any other failure (a timeout) leaves the charge's outcome unknown;
            // payments.listPayments then shows whether this orderId was captured, for a reconciliation to refund.
            await releaseQuietly(stock, orderId, logger);
            throw error;
          }

          const order: Order = {
            orderId,
            customerId,
            status: 'placed',
            lines: priced,
            totalCents,
            paymentId,
            placedAt: new Date().toISOString(),
            cancelledAt: null,
          };
          // Saved before publishing: were publishing to fail, the caller sees the error and the order
          // still exists. A production shop would write the event to an outbox in the same transaction.
          store.save(order);
          logger.info({ orderId, customerId, totalCents }, 'order placed');
          await emit('orderPlaced', {
            orderId,
            customerId,
            lines: priced.map(({ sku, quantity, unitPriceCents }) => ({ sku, quantity, unitPriceCents })),
            totalCents,
            paymentId,
            placedAt: order.placedAt,
          });
          return order;
        },

        getOrder: ({ orderId }) => {
          const order = store.get(orderId);
          if (order === undefined) throw new OrderNotFound({ orderId });
          return order;
        },

        listOrders: ({ customerId }) => ({ orders: store.forCustomer(customerId) }),

        cancelOrder: async ({ orderId }) => {
          const order = store.get(orderId);
          if (order === undefined) throw new OrderNotFound({ orderId });
          if (order.status !== 'placed') throw new OrderNotCancellable({ orderId, status: order.status });
          // Claimed before the refund so that a concurrent cancel of the same order sees it cancelled.
          const cancelled: Order = { ...order, status: 'cancelled', cancelledAt: new Date().toISOString() };
          store.save(cancelled);
          try {
            await cards.refund({ paymentId: order.paymentId });
          } catch (error) {
            store.save(order);
            throw error;
          }
          logger.info({ orderId, refundedCents: order.totalCents }, 'order cancelled');
          await emit('orderCancelled', {
            orderId,
            customerId: order.customerId,
            lines: order.lines.map(({ sku, quantity, unitPriceCents }) => ({ sku, quantity, unitPriceCents })),
            refundedCents: order.totalCents,
            cancelledAt: cancelled.cancelledAt as string,
          });
          return cancelled;
        },
      },
    };
  },
});

/** One line per SKU, quantities summed, in first-seen order. */
function mergeLines(lines: readonly { sku: string; quantity: number }[]): { sku: string; quantity: number }[] {
  const bySku = new Map<string, number>();
  for (const line of lines) bySku.set(line.sku, (bySku.get(line.sku) ?? 0) + line.quantity);
  return [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
}

/** Time a compensating call gets, even when the call that needs it has run out of time. */
const COMPENSATION_TIMEOUT_MS = 5_000;

/** Releases a reservation without hiding the error that made it necessary. */
async function releaseQuietly(stock: Client<typeof inventory>, orderId: string, logger: Logger): Promise<void> {
  const release = () => stock.release({ orderId });
  const context = currentContext();
  try {
    // A timed-out reserve or charge leaves no time in the caller's deadline; the release gets its own.
    await (context === undefined
      ? release()
      : runWithContext({ ...context, deadline: Date.now() + COMPENSATION_TIMEOUT_MS }, release));
  } catch (error) {
    logger.warn({ err: error, orderId }, 'could not release the reservation; the inventory keeps it until released');
  }
}
