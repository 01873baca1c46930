/**
 * The payments module's SQL, in its own schema (migrations/): payments, at most one per order,
 * and the orders whose charge was cancelled before one was captured. Private to the payments
 * module. Every method runs in the caller's `db.transaction` when there is one.
 */
import type { Database } from 'keel';
import type { Payment } from './contract.js';

type PaymentRow = {
  payment_id: string;
  order_id: string;
  customer_id: string;
  amount_cents: number;
  status: Payment['status'];
  captured_at: Date | string;
  refunded_at: Date | string | null;
};

const COLUMNS = 'payment_id, order_id, customer_id, amount_cents, status, captured_at, refunded_at';

function toPayment(row: PaymentRow): Payment {
  return {
    paymentId: row.payment_id,
    orderId: row.order_id,
    customerId: row.customer_id,
    amountCents: row.amount_cents,
    status: row.status,
    capturedAt: new Date(row.captured_at).toISOString(),
    refundedAt: row.refunded_at === null ? null : new Date(row.refunded_at).toISOString(),
  };
}

/** Payments by id, by order and by customer. */
export class PaymentRepository {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * Holds, until the surrounding transaction ends, every other charge and cancellation of
   * `orderId`: of a charge and a cancellation racing, one sees what the other did.
   */
  async lockOrder(orderId: string): Promise<void> {
    await this.#db.query('select pg_advisory_xact_lock(hashtextextended($1, 0))', [`payments.order:${orderId}`]);
  }

  /** The payment, locked until the transaction ends when `forUpdate`. */
  async get(paymentId: string, forUpdate = false): Promise<Payment | undefined> {
    const { rows } = await this.#db.query<PaymentRow>(
      `select ${COLUMNS} from payments where payment_id = $1${forUpdate ? ' for update' : ''}`,
      [paymentId],
    );
    return rows[0] === undefined ? undefined : toPayment(rows[0]);
  }

  /** The order's payment, locked until the transaction ends when `forUpdate`. */
  async forOrder(orderId: string, forUpdate = false): Promise<Payment | undefined> {
    const { rows } = await this.#db.query<PaymentRow>(
      `select ${COLUMNS} from payments where order_id = $1${forUpdate ? ' for update' : ''}`,
      [orderId],
    );
    return rows[0] === undefined ? undefined : toPayment(rows[0]);
  }

  /** A customer's payments, oldest first. */
  async forCustomer(customerId: string): Promise<Payment[]> {
    const { rows } = await this.#db.query<PaymentRow>(`select ${COLUMNS} from payments where customer_id = $1 order by seq`, [customerId]);
    return rows.map(toPayment);
  }

  async insert(payment: Payment): Promise<void> {
    await this.#db.query(`insert into payments (${COLUMNS}) values ($1, $2, $3, $4, $5, $6, $7)`, [
      payment.paymentId,
      payment.orderId,
      payment.customerId,
      payment.amountCents,
      payment.status,
      payment.capturedAt,
      payment.refundedAt,
    ]);
  }

  async markRefunded(paymentId: string, refundedAt: string): Promise<void> {
    await this.#db.query("update payments set status = 'refunded', refunded_at = $2 where payment_id = $1", [paymentId, refundedAt]);
  }

  async isChargeCancelled(orderId: string): Promise<boolean> {
    const { rowCount } = await this.#db.query('select 1 from cancelled_charges where order_id = $1', [orderId]);
    return rowCount > 0;
  }

  async recordChargeCancelled(orderId: string): Promise<void> {
    await this.#db.query('insert into cancelled_charges (order_id) values ($1) on conflict (order_id) do nothing', [orderId]);
  }
}
