/**
 * An {@link Inbox}'s options (how it groups events into transactions, how long a handler may run)
 * and which deliveries run in a transaction of their own.
 */
import { DEFAULT_KERNEL_OPTIONS } from './kernel-options.js';
import type { Inbox } from './inbox.js';

/** How an {@link Inbox} groups events into transactions. */
export interface InboxOptions {
  /** How many of the module's inbox transactions run at once (each holds one of its connections). */
  readonly transactions: number;
  /**
   * How many events one transaction takes at most (the kernel's `inboxBatch`, default 32): each
   * savepoint that writes takes one of the 64 subtransaction ids PostgreSQL keeps per transaction
   * without spilling to disk, and the handlers' own savepoints take others.
   */
  readonly events: number;
  /**
   * A transaction takes no further event once it has run this long (the kernel's
   * `inboxBatchMs`, default 20 ms), so that the events it handled are not held back long by the
   * ones behind them.
   */
  readonly ms: number;
  /**
   * How long a handler may run in its transaction, unless `handle` is given its own (the handler's
   * `timeoutMs`, else the kernel's `eventTimeoutMs`, default 30 000 ms). One still running then is
   * given up on: its work is rolled back, its event failed with `TIMEOUT` (so it is delivered
   * again), and the transaction goes on with the events after it, which would otherwise wait for
   * a handler that may never end.
   */
  readonly handlerMs: number;
}

export const DEFAULT_INBOX_OPTIONS: Omit<InboxOptions, 'transactions'> = {
  events: DEFAULT_KERNEL_OPTIONS.inboxBatch,
  ms: DEFAULT_KERNEL_OPTIONS.inboxBatchMs,
  handlerMs: DEFAULT_KERNEL_OPTIONS.eventTimeoutMs,
};

/**
 * Whether a delivery runs in an inbox transaction of its own: a redelivery, and a last attempt, so
 * that another event's failure (a commit that fails, a lost connection) cannot fail it twice nor
 * dead-letter it; and every event of a handler that asked for it (`ownTransaction`).
 */
export function runsAlone(attempt: number, maxAttempts: number, ownTransaction: boolean): boolean {
  return ownTransaction || attempt > 1 || attempt >= maxAttempts;
}

/** How long a handler may run in its transaction, and whether that is its own `timeoutMs` (else the kernel's `eventTimeoutMs`), for the error. */
export interface HandlerTimeout {
  readonly ms: number;
  readonly own: boolean;
}
