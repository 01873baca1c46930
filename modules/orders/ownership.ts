/**
 * Who may read an order of the shop: its customer (the principal's subject is its customerId)
 * and an admin. orders' handlers check it where the rule needs the order's row (getOrder,
 * cancelOrder), and placeOrder for a signed-in caller (who places orders as itself).
 */
import type { Principal } from 'keel';

/**
 * Whether `principal` may read an order of `customerId`.
 *
 * @example
 * ```ts
 * if (!mayRead(context.principal, record.customerId)) throw new OrderNotFound({ orderId });
 * ```
 */
export function mayRead(principal: Principal | undefined, customerId: string): boolean {
  return principal !== undefined && (principal.sub === customerId || principal.roles.includes('admin'));
}
