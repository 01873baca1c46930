/**
 * The notifications module's data: messages sent, by customer, in memory. Private to the
 * notifications module. A real shop would hand each message to an e-mail provider here.
 */
import { randomUUID } from 'node:crypto';
import { injectable } from 'inversify';
import type { Notification, NotificationTopic } from './contract.js';

/** What a message is made of before it is sent. */
export interface Message {
  readonly customerId: string;
  readonly topic: NotificationTopic;
  readonly orderId: string;
  readonly subject: string;
  readonly body: string;
}

/** Messages sent, by customer, at most one per order and topic. */
@injectable()
export class Outbox {
  readonly #byCustomer = new Map<string, Notification[]>();
  readonly #sent = new Set<string>();

  /** Sends `message` unless one with the same order and topic was sent; returns it, or undefined. */
  send(message: Message): Notification | undefined {
    const key = `${message.topic}\u0000${message.orderId}`;
    if (this.#sent.has(key)) return undefined;
    this.#sent.add(key);
    const notification: Notification = {
      notificationId: randomUUID(),
      channel: 'email',
      sentAt: new Date().toISOString(),
      ...message,
    };
    const list = this.#byCustomer.get(message.customerId) ?? [];
    list.push(notification);
    this.#byCustomer.set(message.customerId, list);
    return notification;
  }

  /** A customer's notifications, oldest first. */
  forCustomer(customerId: string): Notification[] {
    return this.#byCustomer.get(customerId) ?? [];
  }
}

/**
 * Formats cents as US dollars.
 *
 * @example
 * ```ts
 * formatCents(123456); // '$1,234.56'
 * ```
 */
export function formatCents(cents: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}
