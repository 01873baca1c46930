/**
 * The orders module's SQL, in its own schema (migrations/001_orders.sql has the states an order
 * goes through). Private to the orders module. Each change of state is one conditional update
 * (`where status = <the state it leaves>`): of two parties moving one order on (the saga and
 * recovery, two retries), exactly one wins, and the other reads what the order became.
 */
import type { Database } from 'keel';
import type { Order, OrderLine } from './contract.js';

/** Every state of an order, the saga's own included. */
export type OrderState = 'pending' | 'placed' | 'compensating' | 'failed' | 'cancelling' | 'cancelled';

/** Why an order failed. */
export interface OrderFailure {
  readonly code: string;
  readonly message: string;
}

/** An order as the orders module keeps it. */
export interface OrderRecord {
  readonly orderId: string;
  readonly customerId: string;
  readonly status: OrderState;
  readonly lines: readonly OrderLine[];
  readonly totalCents: number;
  readonly paymentId: string | null;
  readonly failure: OrderFailure | null;
  readonly placedAt: string | null;
  readonly cancelledAt: string | null;
}

/** An order recovery may have to finish, and in how long its driving call's deadline (with a grace) passes. */
export interface UnfinishedOrder extends OrderRecord {
  /** Milliseconds until recovery may touch it; 0 or less: now. */
  readonly dueInMs: number;
}

type OrderRow = {
  order_id: string;
  customer_id: string;
  status: OrderState;
  lines: OrderLine[] | string;
  total_cents: number;
  payment_id: string | null;
  failure: OrderFailure | string | null;
  placed_at: Date | string | null;
  cancelled_at: Date | string | null;
};

const COLUMNS = 'order_id, customer_id, status, lines, total_cents, payment_id, failure, placed_at, cancelled_at';

const json = <T>(value: T | string): T => (typeof value === 'string' ? (JSON.parse(value) as T) : value);
const iso = (value: Date | string | null): string | null => (value === null ? null : new Date(value).toISOString());

function toRecord(row: OrderRow): OrderRecord {
  return {
    orderId: row.order_id,
    customerId: row.customer_id,
    status: row.status,
    lines: json(row.lines),
    totalCents: row.total_cents,
    paymentId: row.payment_id,
    failure: row.failure === null ? null : json(row.failure),
    placedAt: iso(row.placed_at),
    cancelledAt: iso(row.cancelled_at),
  };
}

/**
 * The order as callers see it, or undefined while it is the saga's own (pending, compensating,
 * failed). A cancellation in progress is shown as cancelled, as it was claimed before the refund.
 */
export function toOrder(record: OrderRecord): Order | undefined {
  if (record.status !== 'placed' && record.status !== 'cancelling' && record.status !== 'cancelled') return undefined;
  return {
    orderId: record.orderId,
    customerId: record.customerId,
    status: record.status === 'placed' ? 'placed' : 'cancelled',
    lines: [...record.lines],
    totalCents: record.totalCents,
    paymentId: record.paymentId as string,
    placedAt: record.placedAt as string,
    cancelledAt: record.cancelledAt,
  };
}

/** Seconds from now until `deadline` (epoch ms), for `now() + make_interval(secs => ...)`: the database's clock decides. */
const secondsUntil = (deadline: number): number => Math.max(0, (deadline - Date.now()) / 1000);

/** Orders by id and by customer, and the unfinished ones. */
export class OrderRepository {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async get(orderId: string): Promise<OrderRecord | undefined> {
    const { rows } = await this.#db.query<OrderRow>(`select ${COLUMNS} from orders where order_id = $1`, [orderId]);
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }

  /** A customer's orders as callers see them (placed, cancelled), oldest first. */
  async forCustomer(customerId: string): Promise<OrderRecord[]> {
    const { rows } = await this.#db.query<OrderRow>(
      `select ${COLUMNS} from orders where customer_id = $1 and status in ('placed', 'cancelling', 'cancelled') order by seq`,
      [customerId],
    );
    return rows.map(toRecord);
  }

  /** Records a new order as pending, driven by a call that gives up at `deadline`; returns the order with this id as stored. */
  async insertPending(order: Pick<OrderRecord, 'orderId' | 'customerId' | 'lines' | 'totalCents'>, deadline: number): Promise<OrderRecord> {
    await this.#db.query(
      "insert into orders (order_id, customer_id, status, lines, total_cents, deadline_at) values ($1, $2, 'pending', $3, $4, now() + make_interval(secs => $5)) " +
        'on conflict (order_id) do nothing',
      [order.orderId, order.customerId, JSON.stringify(order.lines), order.totalCents, secondsUntil(deadline)],
    );
    return (await this.get(order.orderId)) as OrderRecord;
  }

  /** A pending order is now driven by a call that gives up at `deadline` (a retry resuming it); false if it is no longer pending. */
  async takeOver(orderId: string, deadline: number): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      "update orders set deadline_at = now() + make_interval(secs => $2), updated_at = now() where order_id = $1 and status = 'pending'",
      [orderId, secondsUntil(deadline)],
    );
    return rowCount === 1;
  }

  /** pending → placed, paid by `paymentId`. */
  markPlaced(orderId: string, paymentId: string): Promise<OrderRecord | undefined> {
    return this.#move(orderId, 'pending', 'placed', 'payment_id = $4, placed_at = now()', [paymentId]);
  }

  /** pending → compensating, recording why. */
  async claimForCompensation(orderId: string, failure: OrderFailure): Promise<boolean> {
    return (await this.#move(orderId, 'pending', 'compensating', 'failure = $4', [JSON.stringify(failure)])) !== undefined;
  }

  /** compensating → failed, once what the order held is released. */
  async markFailed(orderId: string): Promise<void> {
    await this.#move(orderId, 'compensating', 'failed');
  }

  /** placed → cancelling, driven by a call that gives up at `deadline`. */
  claimForCancel(orderId: string, deadline: number): Promise<OrderRecord | undefined> {
    return this.#move(orderId, 'placed', 'cancelling', 'cancelled_at = now(), deadline_at = now() + make_interval(secs => $4)', [
      secondsUntil(deadline),
    ]);
  }

  /** cancelling → placed: the refund failed, the order stands. */
  async restorePlaced(orderId: string): Promise<void> {
    await this.#move(orderId, 'cancelling', 'placed', 'cancelled_at = null');
  }

  /** cancelling → cancelled, once the payment is refunded. */
  markCancelled(orderId: string): Promise<OrderRecord | undefined> {
    return this.#move(orderId, 'cancelling', 'cancelled');
  }

  /**
   * Orders left half-way (pending, compensating, cancelling), oldest change first, each with the
   * time until its driving call's deadline plus `graceMs` has passed (by the database's clock).
   */
  async unfinished(graceMs: number): Promise<UnfinishedOrder[]> {
    const { rows } = await this.#db.query<OrderRow & { due_in_ms: number | string }>(
      `select ${COLUMNS}, extract(epoch from (deadline_at - now())) * 1000 + $1 as due_in_ms from orders ` +
        "where status in ('pending', 'compensating', 'cancelling') order by updated_at",
      [graceMs],
    );
    return rows.map((row) => ({ ...toRecord(row), dueInMs: Number(row.due_in_ms) }));
  }

  async #move(orderId: string, from: OrderState, to: OrderState, set = '', params: readonly unknown[] = []): Promise<OrderRecord | undefined> {
    const { rows } = await this.#db.query<OrderRow>(
      `update orders set status = $3, updated_at = now()${set === '' ? '' : `, ${set}`} where order_id = $1 and status = $2 returning ${COLUMNS}`,
      [orderId, from, to, ...params],
    );
    return rows[0] === undefined ? undefined : toRecord(rows[0]);
  }
}
