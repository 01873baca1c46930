/**
 * The notifications module: implements {@link notifications} by writing a simulated e-mail
 * for each order placed, order cancelled and refund issued, in its `notifications` table (its
 * own schema, `migrations/`).
 *
 * Every event it handles is durable, so the kernel runs each handler in one transaction with
 * the event's id in the module's inbox: a redelivered event sends nothing twice. The table's
 * unique (topic, order id) also keeps two different events about one order and topic (an
 * orderPlaced published twice) to one e-mail.
 */
import { randomUUID } from 'node:crypto';
import { defineModule } from 'keel';
import { orders } from '../orders/contract.js';
import { payments } from '../payments/contract.js';
import { notifications, type Notification, type NotificationTopic } from './contract.js';

/** What a message is made of before it is sent. */
interface Message {
  readonly customerId: string;
  readonly topic: NotificationTopic;
  readonly orderId: string;
  readonly subject: string;
  readonly body: string;
}

type NotificationRow = {
  notification_id: string;
  customer_id: string;
  topic: NotificationTopic;
  order_id: string;
  subject: string;
  body: string;
  sent_at: Date | string;
};

/**
 * The notifications module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, principal: Principal, database: await createPGliteDatabase() });
 * await kernel.start();
 * await kernel.client(notifications).listNotifications({ customerId: 'c-42' }, { principal: { sub: 'c-42', roles: ['customer'] } });
 * ```
 */
export const notificationsModule = defineModule({
  contract: notifications,
  subscribesTo: [orders, payments],
  data: { migrations: new URL('./migrations/', import.meta.url) },
  create: ({ db, logger }) => {
    /** Records `message` unless one with the same order and topic was sent. A real shop hands it to its e-mail provider here. */
    const send = async (message: Message): Promise<void> => {
      const { rowCount } = await db.query(
        'insert into notifications (notification_id, customer_id, channel, topic, order_id, subject, body, sent_at) ' +
          "values ($1, $2, 'email', $3, $4, $5, $6, $7) on conflict (topic, order_id) do nothing",
        [randomUUID(), message.customerId, message.topic, message.orderId, message.subject, message.body, new Date().toISOString()],
      );
      if (rowCount === 1) logger.info({ customerId: message.customerId, topic: message.topic, orderId: message.orderId }, 'e-mail sent');
    };
    const units = (lines: readonly { quantity: number }[]): number => lines.reduce((sum, line) => sum + line.quantity, 0);

    return {
      handlers: {
        listNotifications: async ({ customerId }) => {
          const { rows } = await db.query<NotificationRow>(
            'select notification_id, customer_id, topic, order_id, subject, body, sent_at from notifications where customer_id = $1 order by seq',
            [customerId],
          );
          return {
            notifications: rows.map(
              (row): Notification => ({
                notificationId: row.notification_id,
                customerId: row.customer_id,
                channel: 'email',
                topic: row.topic,
                orderId: row.order_id,
                subject: row.subject,
                body: row.body,
                sentAt: new Date(row.sent_at).toISOString(),
              }),
            ),
          };
        },
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

/** Formats cents as US dollars: `formatCents(123456)` is `'$1,234.56'`. */
function formatCents(cents: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}
