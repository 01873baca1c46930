/**
 * Recovery of the orders a crash left half-way, run in the background once the orders module
 * started. Private to the orders module.
 *
 * It looks at the orders that were unfinished when it started (pending, compensating,
 * cancelling), waits until the call that drove each one has given up (its deadline, plus a
 * grace), and has the saga complete or undo it. The modules it calls may run in processes that
 * start later, so a pass that could not finish an order is tried again with a growing delay;
 * it stops once nothing is left. Orders that this process's own calls leave unfinished later
 * are for the next start, of this instance or another.
 */
import type { Logger } from 'keel';
import type { OrderRepository } from './order-repository.js';
import type { OrderSaga, RecoveryOutcome } from './order-saga.js';

/** How recovery paces itself. */
export interface OrderRecoveryOptions {
  /** How long after an order's deadline recovery waits before touching it, in ms (default 1 000). */
  readonly graceMs: number;
  /** First delay before a pass that failed is tried again, doubled up to `maxRetryMs` (default 500 ms). */
  readonly firstRetryMs: number;
  readonly maxRetryMs: number;
}

/** Default {@link OrderRecoveryOptions}. */
export const DEFAULT_ORDER_RECOVERY_OPTIONS: OrderRecoveryOptions = { graceMs: 1_000, firstRetryMs: 500, maxRetryMs: 30_000 };

/** Recovery's background loop. */
export class OrderRecovery {
  readonly #store: OrderRepository;
  readonly #saga: OrderSaga;
  readonly #logger: Logger;
  readonly #options: OrderRecoveryOptions;
  #since: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<void> | undefined;
  #retryMs: number;
  #stopped = false;

  constructor(store: OrderRepository, saga: OrderSaga, logger: Logger, options: OrderRecoveryOptions = DEFAULT_ORDER_RECOVERY_OPTIONS) {
    this.#store = store;
    this.#saga = saga;
    this.#logger = logger;
    this.#options = options;
    this.#retryMs = options.firstRetryMs;
  }

  /** Notes the database's time (the orders unfinished until then are recovery's), and starts the first pass. */
  async start(): Promise<void> {
    this.#stopped = false;
    this.#since = await this.#store.now();
    this.#schedule(0);
  }

  /** Stops looking; waits for the pass under way, which stops after the order it is at. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#pass;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#pass = this.#run();
    }, delayMs);
    this.#timer.unref();
  }

  async #run(): Promise<void> {
    let next: number | undefined;
    try {
      next = await this.#once();
    } catch (error) {
      next = this.#backOff();
      this.#logger.warn({ err: error, retryInMs: next }, 'order recovery could not read the unfinished orders; it will try again');
    }
    if (next !== undefined && !this.#stopped) this.#schedule(next);
  }

  /** One pass; returns when to look again, or undefined when nothing is left. */
  async #once(): Promise<number | undefined> {
    const unfinished = await this.#store.unfinished(this.#since as string, this.#options.graceMs);
    const done: Record<RecoveryOutcome, number> = { completed: 0, compensated: 0, cancelled: 0, skipped: 0 };
    let waiting = 0;
    let failed = 0;
    let nextDueMs = Number.POSITIVE_INFINITY;
    for (const order of unfinished) {
      if (this.#stopped) return undefined;
      if (order.dueInMs > 0) {
        waiting += 1;
        nextDueMs = Math.min(nextDueMs, order.dueInMs);
        continue;
      }
      try {
        const outcome = await this.#saga.recover(order);
        done[outcome] += 1;
        if (outcome !== 'skipped') this.#logger.info({ orderId: order.orderId, was: order.status, outcome }, `order recovery: order ${outcome}`);
      } catch (error) {
        failed += 1;
        this.#logger.warn({ err: error, orderId: order.orderId, status: order.status }, 'order recovery could not finish an order; it will try again');
      }
    }
    if (unfinished.length === 0) {
      this.#logger.debug({}, 'order recovery: no unfinished order');
      return undefined;
    }
    const next = failed > 0 ? Math.min(this.#backOff(), nextDueMs) : waiting > 0 ? Math.min(nextDueMs, this.#options.maxRetryMs) : undefined;
    if (failed === 0) this.#retryMs = this.#options.firstRetryMs;
    this.#logger.info(
      { ...done, waiting, failed, ...(next === undefined ? {} : { nextPassInMs: Math.round(next) }) },
      next === undefined ? 'order recovery finished' : 'order recovery pass done; more to do',
    );
    return next;
  }

  #backOff(): number {
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, this.#options.maxRetryMs);
    return delay;
  }
}
