/**
 * The notifications module's public door: the messages sent to customers. It listens to
 * order and payment events and records one simulated e-mail per order placed, order cancelled
 * and refund issued. Other modules import this file, and only this file, from
 * `../notifications/contract.js`.
 *
 * @example
 * ```ts
 * import { notifications } from '../notifications/contract.js';
 *
 * const outbox = kernel.client(notifications);
 * const { notifications: sent } = await outbox.listNotifications({ customerId: 'c-42' }, { principal: { sub: 'c-42', roles: ['customer'] } });
 * for (const message of sent) console.log(message.subject);
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { defineContract, operation, text } from 'keel/contract';
import { customersOwn } from '../payments/contract.js';

/**
 * What a notification is about.
 *
 * @example
 * ```ts
 * const placed = sent.filter((message) => message.topic === NotificationTopic.enum['order-placed']);
 * ```
 */
export const NotificationTopic = z.enum(['order-placed', 'order-cancelled', 'refund-issued']);
/** A {@link NotificationTopic} value. */
export type NotificationTopic = z.output<typeof NotificationTopic>;

/**
 * A message sent to a customer (simulated: recorded, not delivered).
 *
 * @example
 * ```ts
 * console.log(`${notification.sentAt} ${notification.subject}`);
 * ```
 */
export const Notification = z.object({
  notificationId: z.string(),
  customerId: z.string(),
  channel: z.literal('email'),
  topic: NotificationTopic,
  orderId: z.string(),
  subject: z.string(),
  body: z.string(),
  sentAt: z.iso.datetime(),
});
/** A {@link Notification} as callers receive it. */
export type Notification = z.output<typeof Notification>;

/**
 * The notifications contract.
 *
 * @example
 * ```ts
 * const { notifications: sent } = await kernel.client(notifications).listNotifications({ customerId: 'c-42' }, { principal: { sub: 'c-42', roles: ['customer'] } });
 * ```
 */
export const notifications = defineContract({
  name: 'notifications',
  // 2.0.0: listNotifications is the customer's own (auth), which refuses its anonymous callers.
  // 3.0.0: listNotifications' customerId is text(), refusing what a database cannot store (a NUL, a lone
  // surrogate), which failed as INTERNAL; keel contracts diff calls the narrower input breaking.
  version: '3.0.0',
  description:
    'Customer notifications (simulated e-mails) sent when an order is placed or cancelled and when a refund is ' +
    'issued. Each is sent once per order and topic, however often the event is delivered.',
  operations: {
    listNotifications: operation({
      description:
        'Lists the notifications sent to a customer, oldest first. The customer\'s own: the caller\'s principal must be ' +
        'that customer (its subject is the customerId) or have the admin role.',
      input: z.object({ customerId: text().min(1).max(100) }),
      output: z.object({ notifications: z.array(Notification) }),
      idempotent: true,
      auth: (principal, { customerId }) => customersOwn(principal, customerId),
    }),
  },
});
