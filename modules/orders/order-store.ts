/**
 * The orders module's data: orders by id, with an index by customer, in memory. Private to
 * the orders module. Orders are replaced, never mutated, so a value read stays as it was.
 */
import { injectable } from 'inversify';
import type { Order } from './contract.js';

/** Orders by id. */
@injectable()
export class OrderStore {
  readonly #byId = new Map<string, Order>();
  readonly #byCustomer = new Map<string, string[]>();

  /** Stores a new order, or replaces the order with the same id. */
  save(order: Order): void {
    if (!this.#byId.has(order.orderId)) {
      const ids = this.#byCustomer.get(order.customerId) ?? [];
      ids.push(order.orderId);
      this.#byCustomer.set(order.customerId, ids);
    }
    this.#byId.set(order.orderId, order);
  }

  get(orderId: string): Order | undefined {
    return this.#byId.get(orderId);
  }

  /** A customer's orders, oldest first. */
  forCustomer(customerId: string): Order[] {
    return (this.#byCustomer.get(customerId) ?? []).map((orderId) => this.#byId.get(orderId) as Order);
  }
}
