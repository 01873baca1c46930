/**
 * The payments module's data: captured payments by id and by order, in memory. Private to the
 * payments module.
 */
import { injectable } from 'inversify';
import type { Payment } from './contract.js';

/** Payments by id, with indexes by order and by customer. */
@injectable()
export class PaymentStore {
  readonly #byId = new Map<string, Payment>();
  readonly #byOrder = new Map<string, string>();
  readonly #byCustomer = new Map<string, string[]>();

  save(payment: Payment): void {
    if (!this.#byId.has(payment.paymentId)) {
      this.#byOrder.set(payment.orderId, payment.paymentId);
      const ids = this.#byCustomer.get(payment.customerId) ?? [];
      ids.push(payment.paymentId);
      this.#byCustomer.set(payment.customerId, ids);
    }
    this.#byId.set(payment.paymentId, payment);
  }

  get(paymentId: string): Payment | undefined {
    return this.#byId.get(paymentId);
  }

  forOrder(orderId: string): Payment | undefined {
    const paymentId = this.#byOrder.get(orderId);
    return paymentId === undefined ? undefined : this.#byId.get(paymentId);
  }

  /** A customer's payments, oldest first. */
  forCustomer(customerId: string): Payment[] {
    return (this.#byCustomer.get(customerId) ?? []).map((paymentId) => this.#byId.get(paymentId) as Payment);
  }
}
