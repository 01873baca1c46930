import { randomUUID } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import { notifications } from '../modules/notifications/contract.js';
import { notificationsModule } from '../modules/notifications/module.js';
import { orders } from '../modules/orders/contract.js';
import { payments } from '../modules/payments/contract.js';
import { EVENTUALLY, describeInTopologies } from './support/shop-module-harness.js';
import { asCustomer } from './support/shop-auth.js';
import { eventSource } from './support/shop-suite.js';

describeInTopologies('notifications - customer e-mails', (boot) => {
  // Orders and payments are replaced by modules that only publish their events.
  const fakeOrders = eventSource(orders);
  const fakePayments = eventSource(payments);
  const app = boot({ modules: [notificationsModule, fakeOrders.module, fakePayments.module] });
  const sentTo = async (customerId: string) =>
    (await app.client(notifications).listNotifications({ customerId }, asCustomer(customerId))).notifications;

  const now = () => new Date().toISOString();
  const orderPlaced = (customerId: string, orderId: string) => ({
    orderId,
    customerId,
    lines: [
      { sku: 'KB-001', quantity: 2, unitPriceCents: 8900 },
      { sku: 'MS-001', quantity: 1, unitPriceCents: 3450 },
    ],
    totalCents: 21_250,
    paymentId: `pay_${orderId}`,
    placedAt: now(),
  });

  it('notifications - orderPlaced sends an order confirmation with the amount charged', async () => {
    const customerId = `customer-${randomUUID()}`;
    const orderId = randomUUID();
    await fakeOrders.emit('orderPlaced', orderPlaced(customerId, orderId));

    await vi.waitFor(async () =>
      expect(await sentTo(customerId)).toEqual([
        {
          notificationId: expect.any(String),
          customerId,
          channel: 'email',
          topic: 'order-placed',
          orderId,
          subject: `Order ${orderId} confirmed`,
          body: 'Thank you for your order of 3 item(s). We charged $212.50 to your card.',
          sentAt: expect.any(String),
        },
      ]),
      EVENTUALLY,
    );
  });

  it('notifications - an event delivered twice sends one e-mail', async () => {
    const customerId = `customer-${randomUUID()}`;
    const orderId = randomUUID();
    const event = orderPlaced(customerId, orderId);
    await fakeOrders.emit('orderPlaced', event);
    await fakeOrders.emit('orderPlaced', event);
    await vi.waitFor(async () => expect((await sentTo(customerId)).map((n) => n.topic)).toContain('order-placed'), EVENTUALLY);
    // Events arrive in the order they were published (over NATS their handlers may run side by side): once this
    // later e-mail is in, both deliveries were handled, or are being.
    await fakeOrders.emit('orderCancelled', { orderId, customerId, lines: event.lines, refundedCents: 21_250, cancelledAt: now() });

    await vi.waitFor(async () =>
      expect((await sentTo(customerId)).map((n) => n.topic)).toEqual(['order-placed', 'order-cancelled']),
      EVENTUALLY,
    );
  });

  it('notifications - cancellations and refunds each send an e-mail, oldest first', async () => {
    const customerId = `customer-${randomUUID()}`;
    const orderId = randomUUID();
    await fakeOrders.emit('orderPlaced', orderPlaced(customerId, orderId));
    await vi.waitFor(async () => expect(await sentTo(customerId)).toHaveLength(1), EVENTUALLY);
    await fakeOrders.emit('orderCancelled', { orderId, customerId, lines: [], refundedCents: 21_250, cancelledAt: now() });
    await vi.waitFor(async () => expect(await sentTo(customerId)).toHaveLength(2), EVENTUALLY);
    await fakePayments.emit('paymentRefunded', {
      paymentId: `pay_${orderId}`,
      orderId,
      customerId,
      amountCents: 21_250,
      refundedAt: now(),
    });

    await vi.waitFor(async () =>
      expect((await sentTo(customerId)).map(({ topic, subject, body }) => ({ topic, subject, body }))).toEqual([
        expect.objectContaining({ topic: 'order-placed' }),
        {
          topic: 'order-cancelled',
          subject: `Order ${orderId} cancelled`,
          body: 'Your order was cancelled. $212.50 will be refunded to your card.',
        },
        {
          topic: 'refund-issued',
          subject: `Refund for order ${orderId}`,
          body: 'We refunded $212.50 to your card. It may take a few days to appear.',
        },
      ]),
      EVENTUALLY,
    );
  });

  it("notifications - a customer sees only their own e-mails", async () => {
    const customerId = `customer-${randomUUID()}`;
    await fakeOrders.emit('orderPlaced', orderPlaced(customerId, randomUUID()));
    await vi.waitFor(async () => expect(await sentTo(customerId)).toHaveLength(1), EVENTUALLY);
    expect(await sentTo(`customer-${randomUUID()}`)).toEqual([]);
  });
});
