/**
 * placeOrder and cancelOrder as sagas, and what recovery does with an order a crash left
 * half-way. Private to the orders module. docs/data.md, "The saga of placeOrder", draws it.
 *
 * placeOrder: (1) record the order as pending, committed, before anything else happens, so that
 * recovery can find it whatever happens next; (2) reserve the stock and (3) charge the card, both
 * keyed by the order id, outside any transaction (they are calls to other modules); (4) mark the
 * order placed and emit orderPlaced in one transaction, through the outbox. A step that fails
 * undoes the earlier ones (release the stock, cancel the charge) and marks the order failed.
 * Every change of an order's state is conditional on the state it leaves, so the saga, a retry
 * resuming it and recovery never both win.
 */
import { createHash, randomUUID } from 'node:crypto';
import { KeelError, KeelErrorCode, currentContext, runWithContext, type CallContext, type Client, type Database, type Emit, type HandlerInput, type Logger } from 'keel';
import { Cents, type catalog } from '../catalog/contract.js';
import { OutOfStock, type inventory } from '../inventory/contract.js';
import { AmountCents, ChargeCancelled, PaymentDeclined, customersOwn, type payments } from '../payments/contract.js';
import { OrderFailed, OrderForAnotherCustomer, OrderNotCancellable, OrderNotFound, OrderNotPlaced, orders, type Order, type OrderLine } from './contract.js';
import { toOrder, type OrderFailure, type OrderRecord, type OrderRepository } from './order-repository.js';

/** What recovery did with one order. */
export type RecoveryOutcome = 'completed' | 'compensated' | 'cancelled' | 'skipped';

/** Which steps may have done something downstream, and so are undone when the saga fails. */
interface Undo {
  readonly release: boolean;
  readonly cancelCharge: boolean;
}

const UNDO_NOTHING: Undo = { release: false, cancelCharge: false };
const UNDO_EVERYTHING: Undo = { release: true, cancelCharge: true };

/**
 * The most an order can total: what its `totalCents` (and a line's `lineTotalCents`) can hold and
 * what payments.charge takes. A line total never exceeds the order's, so one bound covers both.
 */
const MAX_TOTAL_CENTS = Math.min(Cents.maxValue ?? Number.MAX_SAFE_INTEGER, AmountCents.maxValue ?? Number.MAX_SAFE_INTEGER);

/** Time an undoing call gets, even when the call that needs it has run out of time. */
const COMPENSATION_TIMEOUT_MS = 5_000;

/** The namespace of order ids derived from idempotency keys (a UUID of its own, as UUID v5 wants). */
const ORDER_ID_NAMESPACE = Buffer.from('6d1f0c7e8a2b4c5d9e3f10a2b3c4d5e6', 'hex');

/**
 * The order id of a placeOrder called with an idempotency key: a name-based UUID (version 5,
 * RFC 9562) of the customer and the key, so that a retry after a crash finds the order the
 * first attempt recorded instead of creating a second one.
 *
 * @example
 * ```ts
 * orderIdFor('c-42', 'checkout-7f3a') === orderIdFor('c-42', 'checkout-7f3a'); // true
 * ```
 */
export function orderIdFor(customerId: string, idempotencyKey: string): string {
  const hash = createHash('sha1').update(ORDER_ID_NAMESPACE).update(`${customerId}\n${idempotencyKey}`).digest();
  hash[6] = ((hash[6] as number) & 0x0f) | 0x50;
  hash[8] = ((hash[8] as number) & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Whether placeOrder declares `error`: its message is then part of the contract, fit for any caller. */
function declared(error: unknown): error is Error {
  return orders.operations.placeOrder.errors.some((declaredError) => error instanceof declaredError);
}

/** The reason OrderFailed gives for a failure placeOrder does not declare: its code, never its text. */
function neutralReason(code: string): string {
  return `the order failed with ${code}; the orders module logged the details with the order id`;
}

/**
 * The codes of an undeclared failure that its caller sees as they are: those that say the outcome
 * is unknown. Any other (another module's input refused, a bug) reaches the caller as INTERNAL
 * (docs/http.md, "Errors"), so a retry is told INTERNAL too, never a code that blames its input.
 */
// The kernel's rule (kernel/envelope.ts, KEPT_FROM_NESTED_CALLS), which a module may not import: keep the two alike.
const SEEN_AS_IS: ReadonlySet<string> = new Set(['TIMEOUT', 'CANCELLED', 'INTERRUPTED']);

/**
 * What the order failed with, to keep and to repeat to a retry (OrderFailed): a declared error's
 * code and message; for any other failure (an internal one, another module's input refused, a
 * timeout) the code its caller saw and a neutral reason, since its text may name internal
 * operations and schemas.
 */
function failureOf(error: unknown): OrderFailure {
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : 'INTERNAL';
  if (declared(error)) return { code, message: error.message };
  const seen = SEEN_AS_IS.has(code) ? code : 'INTERNAL';
  return { code: seen, message: neutralReason(seen) };
}

/** One line per SKU, quantities summed, in first-seen order. */
function mergeLines(lines: readonly { sku: string; quantity: number }[]): { sku: string; quantity: number }[] {
  const bySku = new Map<string, number>();
  for (const line of lines) bySku.set(line.sku, (bySku.get(line.sku) ?? 0) + line.quantity);
  return [...bySku].map(([sku, quantity]) => ({ sku, quantity }));
}

/** Runs `work` with a deadline of its own: undoing must not fail because the call that needs it ran out of time. */
function withOwnDeadline<T>(work: () => Promise<T>): Promise<T> {
  const context = currentContext();
  return context === undefined ? work() : runWithContext({ ...context, deadline: Date.now() + COMPENSATION_TIMEOUT_MS }, work);
}

/** The orders module's sagas. */
export class OrderSaga {
  // Clients as fields typed Client<typeof contract>, called as this.stock.reserve(…): keel graph draws each call.
  constructor(
    readonly db: Database,
    readonly store: OrderRepository,
    readonly products: Client<typeof catalog>,
    readonly stock: Client<typeof inventory>,
    readonly cards: Client<typeof payments>,
    readonly emit: Emit<typeof orders>,
    readonly logger: Logger,
  ) {}

  /** placeOrder: resumes the order of `context.idempotencyKey` when a first attempt recorded it. */
  async place({ customerId, lines, card }: HandlerInput<typeof orders.operations.placeOrder>, context: CallContext): Promise<Order> {
    // A signed-in customer places orders as itself (an admin for anyone): so an idempotency key, whose order id is
    // derived from the customer, is never a way into another customer's order, whether that order exists or not.
    if (context.principal !== undefined && !customersOwn(context.principal, customerId)) {
      throw new OrderForAnotherCustomer({ customerId, caller: context.principal.sub });
    }
    const wanted = mergeLines(lines);
    const key = context.idempotencyKey;
    const orderId = key === undefined ? randomUUID() : orderIdFor(customerId, key);
    const existing = key === undefined ? undefined : await this.store.get(orderId);
    let order: OrderRecord;
    if (existing === undefined) {
      // Unknown products fail here, before anything is recorded, reserved or charged.
      const priced = await this.#price(wanted);
      const totalCents = priced.reduce((sum, line) => sum + line.lineTotalCents, 0);
      // A total no charge can take is declined as a one-unit order over the charge limit is, before anything is
      // recorded, reserved or charged (it would fail payments.charge's input, or the Order's output, as INTERNAL).
      if (totalCents > MAX_TOTAL_CENTS) throw new PaymentDeclined({ orderId, reason: 'amount_over_limit' });
      order = await this.store.insertPending({ orderId, customerId, lines: priced, totalCents }, context.deadline); // (1), committed
    } else {
      order = existing;
    }
    if (key !== undefined) assertSameRequest(order, wanted, key);
    if (existing !== undefined && order.status === 'pending') {
      // A first attempt with this key recorded the order and stopped (a crash, a timeout): this call takes it over.
      this.logger.info({ orderId, customerId }, 'resuming the order a first attempt with this idempotency key left pending');
      if (!(await this.store.takeOver(orderId, context.deadline))) order = (await this.store.get(orderId)) as OrderRecord;
    }
    if (order.status !== 'pending') return this.#settled(order);

    // What to undo if a step fails: a reserve that timed out may have reserved, a charge that timed out may have captured.
    // A resumed order's first attempt may have done both (a crash after its charge): a step failing now proves nothing of that.
    const resumed = existing !== undefined;
    let undo: Undo = resumed ? UNDO_EVERYTHING : { release: true, cancelCharge: false };
    let step = 'inventory.reserve';
    let paymentId: string;
    try {
      // The order id is the idempotency key downstream. reserve and charge are idempotent per order id, as their
      // contracts say, so a resumed saga and recovery reach the same reservation and the same payment; the key
      // tells the kernel so too, and would keep a non-idempotent step to one run per order.
      await this.stock.reserve({ orderId, lines: wanted }, { idempotencyKey: orderId });
      undo = UNDO_EVERYTHING;
      step = 'payments.charge';
      ({ paymentId } = await this.cards.charge(
        { orderId, customerId, amountCents: order.totalCents, card },
        { idempotencyKey: orderId },
      ));
    } catch (error) {
      // A step that certainly did not run (its module not running, stopping, at its limit) is said as such: the
      // order is undone, and placing it again may succeed. Any other failure reaches the caller as it is.
      const failure = notRun(error) ? new OrderNotPlaced({ orderId, step, code: error.code }, { cause: error }) : error;
      return this.#fail(order, failure, undoFor(error, undo, resumed));
    }
    // A failure from here on (the database) leaves the order pending with its payment captured: recovery places it.
    return this.#complete(order, paymentId);
  }

  /**
   * cancelOrder: claims the order (placed → cancelling) before the refund, so that a concurrent
   * cancel sees it cancelled; a refund that fails leaves it claimed, for recovery to refund.
   */
  async cancel(orderId: string, context: CallContext): Promise<Order> {
    const claimed = await this.store.claimForCancel(orderId, context.deadline);
    if (claimed === undefined) {
      const current = await this.store.get(orderId);
      const visible = current === undefined ? undefined : toOrder(current);
      if (visible === undefined) throw new OrderNotFound({ orderId });
      throw new OrderNotCancellable({ orderId, status: visible.status });
    }
    try {
      await this.cards.refund({ paymentId: claimed.paymentId as string });
    } catch (error) {
      // The refund's outcome may be unknown (a timeout): the order stays cancelling, and recovery refunds it
      // (refunding twice refunds once) after this call's deadline.
      this.logger.warn({ err: error, orderId }, 'the refund of a cancelled order failed; recovery will refund it');
      throw error;
    }
    return this.#finishCancel(orderId);
  }

  /**
   * Finishes an order a crash left half-way, once the call that drove it has given up: a pending
   * order whose card was charged and stock reserved is placed; any other pending order, and a
   * compensating one, is undone; a cancelling one is refunded and cancelled. Throws when a call
   * fails (the module it calls is not reachable yet): recovery tries again later.
   */
  async recover(order: OrderRecord): Promise<RecoveryOutcome> {
    const { orderId } = order;
    switch (order.status) {
      case 'pending': {
        const { payment } = await this.cards.getPaymentForOrder({ orderId });
        if (payment?.status === 'captured' && payment.amountCents === order.totalCents) {
          // Charged, so reserved before: reserve returns that reservation (or, if it was never made, makes it now).
          const wanted = order.lines.map(({ sku, quantity }) => ({ sku, quantity }));
          const reservation = await this.stock.reserve({ orderId, lines: wanted }, { idempotencyKey: orderId }).catch((error: unknown) => {
            if (error instanceof OutOfStock) return undefined;
            throw error;
          });
          if (reservation?.status === 'reserved') return (await this.#placeIfPending(order, payment.paymentId)) ? 'completed' : 'skipped';
        }
        const claimed = await this.store.claimForCompensation(orderId, {
          code: 'UNFINISHED',
          message: 'placeOrder did not finish before its deadline (the process stopped, or a call did not answer); recovery undid it',
        });
        if (!claimed) return 'skipped';
        await this.#undo(orderId, UNDO_EVERYTHING);
        return 'compensated';
      }
      case 'compensating':
        await this.#undo(orderId, UNDO_EVERYTHING);
        return 'compensated';
      case 'cancelling':
        await this.cards.refund({ paymentId: order.paymentId as string });
        await this.#finishCancel(orderId);
        return 'cancelled';
      default:
        return 'skipped';
    }
  }

  async #price(wanted: readonly { sku: string; quantity: number }[]): Promise<OrderLine[]> {
    return Promise.all(
      wanted.map(async ({ sku, quantity }) => {
        const product = await this.products.getProduct({ sku });
        return { sku, name: product.name, quantity, unitPriceCents: product.priceCents, lineTotalCents: product.priceCents * quantity };
      }),
    );
  }

  /** (4) pending → placed with orderPlaced, in one transaction; else what the order became meanwhile. */
  async #complete(order: OrderRecord, paymentId: string): Promise<Order> {
    const placed = await this.#placeIfPending(order, paymentId);
    return placed ?? this.#settled((await this.store.get(order.orderId)) as OrderRecord);
  }

  async #placeIfPending(order: OrderRecord, paymentId: string): Promise<Order | undefined> {
    const placed = await this.db.transaction(async () => {
      const record = await this.store.markPlaced(order.orderId, paymentId);
      if (record === undefined) return undefined;
      // Written to the outbox in this transaction: published if and only if the order is placed.
      await this.emit('orderPlaced', {
        orderId: record.orderId,
        customerId: record.customerId,
        lines: record.lines.map(({ sku, quantity, unitPriceCents }) => ({ sku, quantity, unitPriceCents })),
        totalCents: record.totalCents,
        paymentId,
        placedAt: record.placedAt as string,
      });
      return toOrder(record);
    });
    if (placed !== undefined) this.logger.info({ orderId: placed.orderId, customerId: placed.customerId, totalCents: placed.totalCents }, 'order placed');
    return placed;
  }

  /** A step failed: claim the order for compensation, undo what `undo` says, mark it failed, and throw the step's error. */
  async #fail(order: OrderRecord, error: unknown, undo: Undo): Promise<Order> {
    const failure = failureOf(error);
    if (!(await this.store.claimForCompensation(order.orderId, failure))) {
      // Recovery (after this call's deadline) or a retry moved the order on meanwhile: answer with what it became.
      return this.#settled((await this.store.get(order.orderId)) as OrderRecord);
    }
    // An undeclared failure's text is kept out of the order (failureOf): the log is where it is read.
    const detail = error instanceof OrderNotPlaced ? { step: error.data.step, stepCode: error.data.code } : declared(error) ? {} : { err: error };
    this.logger.info({ orderId: order.orderId, code: failure.code, ...detail }, 'order failed; undoing its reservation and charge');
    try {
      await withOwnDeadline(() => this.#undo(order.orderId, undo));
    } catch (undoError) {
      this.logger.warn({ err: undoError, orderId: order.orderId }, 'could not undo a failed order; it stays compensating, and recovery will undo it');
    }
    throw error;
  }

  /** Releases the stock and cancels the charge as `undo` says, then compensating → failed. */
  async #undo(orderId: string, undo: Undo): Promise<void> {
    if (undo.release) await this.stock.release({ orderId }); // an unknown order id is recorded as released: a late reserve holds nothing
    if (undo.cancelCharge) await this.cards.cancelCharge({ orderId }); // refunded if captured; else a late charge captures nothing
    await this.store.markFailed(orderId);
  }

  /** cancelling → cancelled with orderCancelled, in one transaction; else the order as it is. */
  async #finishCancel(orderId: string): Promise<Order> {
    const cancelled = await this.db.transaction(async () => {
      const record = await this.store.markCancelled(orderId);
      if (record === undefined) return undefined;
      await this.emit('orderCancelled', {
        orderId,
        customerId: record.customerId,
        lines: record.lines.map(({ sku, quantity, unitPriceCents }) => ({ sku, quantity, unitPriceCents })),
        refundedCents: record.totalCents,
        cancelledAt: record.cancelledAt as string,
      });
      return toOrder(record);
    });
    if (cancelled !== undefined) {
      this.logger.info({ orderId, refundedCents: cancelled.totalCents }, 'order cancelled');
      return cancelled;
    }
    return this.#settled((await this.store.get(orderId)) as OrderRecord);
  }

  /** The order as callers see it, or, for one that failed, OrderFailed. */
  async #settled(record: OrderRecord): Promise<Order> {
    const order = toOrder(record);
    if (order !== undefined) return order;
    throw new OrderFailed({
      orderId: record.orderId,
      code: record.failure?.code ?? 'UNFINISHED',
      reason: record.failure?.message ?? `the order is ${record.status}`,
    });
  }
}

/** A step's failure that says it certainly did not run (`NO_RESPONDERS`, `UNAVAILABLE`, `RESOURCE_EXHAUSTED`: a retryable KeelError). */
function notRun(error: unknown): error is KeelError {
  return error instanceof KeelError && error.retryable;
}

/**
 * What a failed step tells for sure: OutOfStock reserved nothing; a declined or cancelled charge captured nothing; a
 * step that did not run charged nothing, unless the order is `resumed` (its first attempt may have charged).
 */
function undoFor(error: unknown, undo: Undo, resumed: boolean): Undo {
  if (error instanceof OutOfStock) return UNDO_NOTHING;
  // A step that did not run charged nothing: only what came before it (the reservation) is undone.
  if (notRun(error)) return resumed ? undo : { release: true, cancelCharge: false };
  if (error instanceof PaymentDeclined || error instanceof ChargeCancelled) return { release: true, cancelCharge: false };
  return undo;
}

/**
 * Refuses a request whose idempotency key names an order of other lines: the kernel refuses the
 * same key with another input while it keeps the key (24 hours); the order, kept longer, still says so.
 */
function assertSameRequest(order: OrderRecord, wanted: readonly { sku: string; quantity: number }[], key: string): void {
  const same =
    order.lines.length === wanted.length &&
    order.lines.every((line, index) => line.sku === wanted[index]?.sku && line.quantity === wanted[index]?.quantity);
  if (!same) {
    throw new KeelError(
      KeelErrorCode.IDEMPOTENCY_KEY_REUSED,
      `orders.placeOrder: idempotency key ${JSON.stringify(key)} was used before for another order. Nothing ran; use a new key ` +
        '(a random one, crypto.randomUUID()) for each new order.',
    );
  }
}
