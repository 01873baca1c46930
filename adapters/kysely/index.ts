/**
 * keel/kysely — a typed query builder over a module's `db`, for those who want one: Kysely,
 * compiling to PostgreSQL, running every query through `db` (so it joins `db.transaction`, and
 * `emit` in the same transaction still goes through the outbox). keel forces no ORM: `db.query`
 * with SQL is the default, and this entry needs `npm install kysely`.
 *
 * @example
 * ```ts
 * import { kyselyOf } from 'keel/kysely';
 *
 * interface Tables { orders: { id: string; customer_id: string; status: string; total_cents: number } }
 *
 * create: ({ db, emit }) => {
 *   const sql = kyselyOf<Tables>(db);
 *   return {
 *     handlers: {
 *       cancelOrder: ({ orderId }) =>
 *         db.transaction(async () => {
 *           const cancelled = await sql.updateTable('orders').set({ status: 'cancelled' }).where('id', '=', orderId).where('status', '=', 'placed').executeTakeFirst();
 *           if (cancelled.numUpdatedRows === 0n) throw new OrderNotCancellable({ orderId });
 *           await emit('orderCancelled', { orderId });
 *           return { orderId, status: 'cancelled' as const };
 *         }),
 *     },
 *   };
 * },
 * ```
 *
 * @module
 */
export { kyselyOf } from './kysely.js';
