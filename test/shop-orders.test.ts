import { randomUUID } from 'node:crypto';
import { KeelError, KeelErrorCode, defineModule } from 'keel';
import { expect, it, vi } from 'vitest';
import { catalog } from '../modules/catalog/contract.js';
import { catalogModule } from '../modules/catalog/module.js';
import { inventory } from '../modules/inventory/contract.js';
import { inventoryModule } from '../modules/inventory/module.js';
import { OrderNotCancellable, OrderNotFound, OrderNotPlaced, orders } from '../modules/orders/contract.js';
import { ordersModule } from '../modules/orders/module.js';
import { PaymentDeclined, TestCard, payments } from '../modules/payments/contract.js';
import { paymentsModule } from '../modules/payments/module.js';
import { AS_ADMIN, asCustomer } from './support/shop-auth.js';
import { EVENTUALLY, describeInTopologies } from './support/shop-module-harness.js';
import { eventRecorder } from './support/shop-suite.js';

describeInTopologies('orders - placing and cancelling', (boot) => {
  const events = eventRecorder(orders);
  // Every module orders calls, but not notifications: nothing here needs it.
  const app = boot({ modules: [catalogModule, inventoryModule, paymentsModule, ordersModule, events.module] });
  const shop = () => app.client(orders);
  const VISA = { token: TestCard.VISA };

  const newProduct = async (priceCents: number, onHand: number): Promise<string> => {
    const sku = `SKU-${randomUUID()}`;
    await app.client(catalog).addProduct({ sku, name: `Product ${sku}`, priceCents }, AS_ADMIN);
    await app.client(inventory).restock({ sku, quantity: onHand }, AS_ADMIN);
    return sku;
  };
  const newCustomer = () => `customer-${randomUUID()}`;
  const placedFor = (customerId: string) => events.of('orderPlaced').filter((event) => event.customerId === customerId);

  it('orders - placeOrder merges lines of the same SKU and snapshots names and prices', async () => {
    const sku = await newProduct(1250, 10);
    const order = await shop().placeOrder({
      customerId: newCustomer(),
      lines: [
        { sku, quantity: 1 },
        { sku, quantity: 2 },
      ],
      card: VISA,
    });
    expect(order.lines).toEqual([{ sku, name: `Product ${sku}`, quantity: 3, unitPriceCents: 1250, lineTotalCents: 3750 }]);
    expect(order.totalCents).toBe(3750);
    expect(Number.isNaN(Date.parse(order.placedAt))).toBe(false);
  });

  it('orders - placeOrder publishes orderPlaced with the priced lines and the payment', async () => {
    const a = await newProduct(500, 10);
    const b = await newProduct(199, 10);
    const customerId = newCustomer();
    const order = await shop().placeOrder({
      customerId,
      lines: [
        { sku: a, quantity: 2 },
        { sku: b, quantity: 1 },
      ],
      card: VISA,
    });

    await vi.waitFor(() =>
      expect(placedFor(customerId)).toEqual([
        {
          orderId: order.orderId,
          customerId,
          lines: [
            { sku: a, quantity: 2, unitPriceCents: 500 },
            { sku: b, quantity: 1, unitPriceCents: 199 },
          ],
          totalCents: 1199,
          paymentId: order.paymentId,
          placedAt: order.placedAt,
        },
      ]),
      EVENTUALLY,
    );
  });

  it('orders - a failed order publishes nothing, and its error names no order a caller could look up', async () => {
    const sku = await newProduct(800, 10);
    const customerId = newCustomer();
    const declined = await shop()
      .placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: { token: TestCard.DECLINED } })
      .catch((error: unknown) => error);
    expect(declined).toBeInstanceOf(PaymentDeclined);
    // The failed order is not one getOrder finds: the message says what happened and what to do, not its id.
    const { orderId } = (declined as InstanceType<typeof PaymentDeclined>).data;
    expect((declined as Error).message).toBe('The card was declined (card_declined); nothing was charged. Ask the customer for another card.');
    await expect(shop().getOrder({ orderId }, asCustomer(customerId))).rejects.toBeInstanceOf(OrderNotFound);
    const order = await shop().placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });

    // Events arrive in the order they were published: once the good order's event is in, the failed one would be too.
    await vi.waitFor(() => expect(placedFor(customerId).map((event) => event.orderId)).toEqual([order.orderId]), EVENTUALLY);
  });

  it("orders - listOrders returns one customer's orders, oldest first", async () => {
    const sku = await newProduct(300, 10);
    const customerId = newCustomer();
    const first = await shop().placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
    const second = await shop().placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA });
    await shop().placeOrder({ customerId: newCustomer(), lines: [{ sku, quantity: 1 }], card: VISA });

    expect(await shop().listOrders({ customerId }, asCustomer(customerId))).toEqual({ orders: [first, second] });
    const newcomer = newCustomer();
    expect(await shop().listOrders({ customerId: newcomer }, asCustomer(newcomer))).toEqual({ orders: [] });
  });

  it('orders - cancelOrder publishes orderCancelled with the refunded amount', async () => {
    const sku = await newProduct(2000, 10);
    const customerId = newCustomer();
    const order = await shop().placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA });
    const cancelled = await shop().cancelOrder({ orderId: order.orderId }, asCustomer(customerId));

    await vi.waitFor(() =>
      expect(events.of('orderCancelled').filter((event) => event.orderId === order.orderId)).toEqual([
        {
          orderId: order.orderId,
          customerId,
          lines: [{ sku, quantity: 2, unitPriceCents: 2000 }],
          refundedCents: 4000,
          cancelledAt: cancelled.cancelledAt,
        },
      ]),
      EVENTUALLY,
    );
  });

  it('orders - of two concurrent cancels, one succeeds and the payment is refunded once', async () => {
    const sku = await newProduct(1000, 10);
    const customerId = newCustomer();
    const order = await shop().placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });

    const results = await Promise.allSettled([
      shop().cancelOrder({ orderId: order.orderId }, asCustomer(customerId)),
      shop().cancelOrder({ orderId: order.orderId }, AS_ADMIN),
    ]);

    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    const rejected = results.find((result) => result.status === 'rejected') as PromiseRejectedResult;
    expect(rejected.reason).toBeInstanceOf(OrderNotCancellable);
    expect(await app.client(payments).listPayments({ customerId }, asCustomer(customerId))).toEqual({
      payments: [expect.objectContaining({ paymentId: order.paymentId, status: 'refunded' })],
    });
    await vi.waitFor(
      async () => expect(await app.client(inventory).getStock({ sku })).toMatchObject({ onHand: 10, reserved: 0 }),
      EVENTUALLY,
    );
  });
});

/** payments stopping: every operation answers UNAVAILABLE (nothing ran), as an instance that is shutting down does. */
const paymentsStopping = defineModule({
  contract: payments,
  create: () => {
    const stopping = (): never => {
      throw new KeelError(KeelErrorCode.UNAVAILABLE, 'payments is shutting down; nothing ran.');
    };
    return {
      handlers: { charge: stopping, cancelCharge: stopping, refund: stopping, getPayment: stopping, getPaymentForOrder: stopping, listPayments: stopping },
    };
  },
});

describeInTopologies('orders - a step that cannot run', (boot) => {
  const app = boot({ modules: [catalogModule, inventoryModule, paymentsStopping, ordersModule] });

  it('orders - a charge that could not run (payments UNAVAILABLE) is ORDER_NOT_PLACED naming the step: the reservation is released, the order failed, and a retry with its key gets the same answer', async () => {
    const sku = `SKU-${randomUUID()}`;
    await app.client(catalog).addProduct({ sku, name: `Product ${sku}`, priceCents: 500 }, AS_ADMIN);
    await app.client(inventory).restock({ sku, quantity: 5 }, AS_ADMIN);
    const customerId = `customer-${randomUUID()}`;
    const request = { customerId, lines: [{ sku, quantity: 2 }], card: { token: TestCard.VISA } };
    const refused = await app.client(orders).placeOrder(request, { idempotencyKey: `not-placed-${customerId}` }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(OrderNotPlaced);
    expect((refused as InstanceType<typeof OrderNotPlaced>).data).toMatchObject({ step: 'payments.charge', code: 'UNAVAILABLE' });
    expect((refused as Error).message).toContain('so the order was undone and nothing is charged for it. Place it again in a moment, with a new idempotency key.');
    // Undone at once (nothing charged, so no cancelCharge to a payments that cannot answer): every unit is available again.
    expect(await app.client(inventory).getStock({ sku })).toMatchObject({ available: 5 });
    // A retry with the same key gets the first outcome, which is why the message asks for a new key.
    const again = await app.client(orders).placeOrder(request, { idempotencyKey: `not-placed-${customerId}` }).catch((error: unknown) => error);
    expect(again).toBeInstanceOf(OrderNotPlaced);
    expect((again as InstanceType<typeof OrderNotPlaced>).data.orderId).toBe((refused as InstanceType<typeof OrderNotPlaced>).data.orderId);
  });
});
