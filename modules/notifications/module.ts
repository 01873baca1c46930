/**
 * The notifications module: implements {@link notifications} by writing a simulated e-mail
 * for each order placed, order cancelled and refund issued.
 */
import { defineModule } from 'keel';
import { orders } from '../orders/contract.js';
import { payments } from '../payments/contract.js';
import { notifications } from './contract.js';
import { Outbox, formatCents, type Message } from './outbox.js';

/**
 * The notifications module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * await kernel.client(notifications).listNotifications({ customerId: 'c-42' });
 * ```
 */
export const notificationsModule = defineModule({
  contract: notifications,
  subscribesTo: [orders, payments],
  providers: (bind) => {
    bind(Outbox).toSelf().inSingletonScope();
  },
  create: ({ get, logger }) => {
    const outbox = get(Outbox);
    const send = (message: Message): void => {
      const sent = outbox.send(message);
      if (sent !== undefined) logger.info({ customerId: sent.customerId, topic: sent.topic, orderId: sent.orderId }, 'e-mail sent');
    };
    const units = (lines: readonly { quantity: number }[]): number => lines.reduce((sum, line) => sum + line.quantity, 0);

    return {
      handlers: {
        listNotifications: ({ customerId }) => ({ notifications: outbox.forCustomer(customerId) }),
      },
      events: {
        orders: {
          orderPlaced: ({ orderId, customerId, lines, totalCents }) =>
            send({
              customerId,
              topic: 'order-placed',
              orderId,
              subject: `Order ${orderId} confirmed`,
              body: `Thank you for your order of ${units(lines)} item(s). We charged ${formatCents(totalCents)} to your card.`,
            }),
          orderCancelled: ({ orderId, customerId, refundedCents }) =>
            send({
              customerId,
              topic: 'order-cancelled',
              orderId,
              subject: `Order ${orderId} cancelled`,
              body: `Your order was cancelled. ${formatCents(refundedCents)} will be refunded to your card.`,
            }),
        },
        payments: {
          paymentRefunded: ({ orderId, customerId, amountCents }) =>
            send({
              customerId,
              topic: 'refund-issued',
              orderId,
              subject: `Refund for order ${orderId}`,
              body: `We refunded ${formatCents(amountCents)} to your card. It may take a few days to appear.`,
            }),
        },
      },
    };
  },
});
