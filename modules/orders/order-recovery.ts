/**
 * Recovery of the orders left half-way, in the background while the orders module runs: at
 * start, then every minute. Private to the orders module.
 *
 * A pass looks at the unfinished orders (pending, compensating, cancelling), leaves each alone
 * until the call that drove it has given up (its deadline, plus a grace), and has the saga
 * complete or undo it. That covers the orders of a process that died (this one before a
 * restart, or another instance) and those a saga of this process could not undo at the time
 * (the inventory was down). The modules it calls may run in processes that start later, so a
 * pass that could not finish an order is tried again sooner, with a growing delay.
 */
import type { Logger } from 'keel';
import type { OrderRepository } from './order-repository.js';
import type { OrderSaga, RecoveryOutcome } from './order-saga.js';

/** How recovery paces itself. */
export interface OrderRecoveryOptions {
  /** How long after an order's deadline recovery waits before touching it, in ms (default 1 000). */
  readonly graceMs: number;
  /** Time between two passes when the last one finished everything it could, in ms (default 60 000). */
  readonly intervalMs: number;
  /** First delay before a pass that could not finish an order runs again, doubled up to `intervalMs` (default 500 ms). */
  readonly firstRetryMs: number;
}

/** Default {@link OrderRecoveryOptions}. */
export const DEFAULT_ORDER_RECOVERY_OPTIONS: OrderRecoveryOptions = { graceMs: 1_000, intervalMs: 60_000, firstRetryMs: 500 };

/** Recovery's background loop. */
export class OrderRecovery {
  readonly #store: OrderRepository;
  readonly #saga: OrderSaga;
  readonly #logger: Logger;
  readonly #options: OrderRecoveryOptions;
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

  /** Starts the first pass, without waiting for it. */
  start(): void {
    this.#stopped = false;
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
    let next: number;
    try {
      next = await this.#once();
    } catch (error) {
      next = this.#backOff();
      this.#logger.warn({ err: error, retryInMs: next }, 'order recovery could not read the unfinished orders; it will try again');
    }
    if (!this.#stopped) this.#schedule(next);
  }

  /** One pass; returns when to run the next. */
  async #once(): Promise<number> {
    const unfinished = await this.#store.unfinished(this.#options.graceMs);
    const done: Record<RecoveryOutcome, number> = { completed: 0, compensated: 0, cancelled: 0, skipped: 0 };
    let waiting = 0;
    let failed = 0;
    let nextDueMs = this.#options.intervalMs;
    for (const order of unfinished) {
      if (this.#stopped) break;
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
    const next = failed > 0 ? Math.min(this.#backOff(), nextDueMs) : nextDueMs;
    if (failed === 0) this.#retryMs = this.#options.firstRetryMs;
    const acted = done.completed + done.compensated + done.cancelled + failed;
    const summary = { ...done, waiting, failed, nextPassInMs: Math.round(next) };
    if (acted > 0) this.#logger.info(summary, 'order recovery pass');
    else this.#logger.debug(summary, 'order recovery pass');
    return next;
  }

  #backOff(): number {
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, this.#options.intervalMs);
    return delay;
  }
}
