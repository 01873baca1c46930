/**
 * One event of an {@link Inbox} in its savepoint, inside a transaction it may share with others:
 * its opening (the savepoint and its inbox record), the run of its handler, bounded by its time
 * and given up on at its module's stop, and, when its handler caught a failed statement, the
 * undoing of its work. The events given to an inbox are {@link Pending} records.
 */
import type { AsyncResource } from 'node:async_hooks';
import type { SqlRunner } from './database.js';
import { abortCallSignal } from './call-signal.js';
import type { KeelError } from './errors.js';
import { IN_FAILED_TRANSACTION, UNIQUE_VIOLATION, givenBackAtStop, outranItsTime, sqlState, swallowedFailure } from './inbox-failures.js';
import type { Inbox } from './inbox.js';
import type { HandlerTimeout, InboxOptions } from './inbox-options.js';
import type { ModuleDatabase, TransactionFrame } from './module-data.js';

/** What became of an event given to the {@link Inbox}. */
export type InboxOutcome = 'handled' | 'duplicate';

/** An event waiting for, or inside, a transaction. */
export interface Pending {
  readonly id: string;
  /** It runs in a transaction of its own. */
  readonly alone: boolean;
  /** The savepoint and the inbox record, as one script without parameters. */
  readonly opening: string;
  readonly savepoint: string;
  /** `source.event`, for errors. */
  readonly label: string;
  /** How long its handler may run (see {@link InboxOptions.handlerMs}), and whether that is the handler's own `timeoutMs`. */
  readonly timeout: HandlerTimeout;
  /** {@link Inbox.giveBack} leaves it be: it runs, or is waited for, as if no stop had come. */
  readonly keptAtStop: boolean;
  readonly handler: () => unknown;
  /** The async context the event was given in (its correlation id, trace, call context), for its handler. */
  readonly context: AsyncResource;
  readonly resolve: (outcome: InboxOutcome) => void;
  readonly reject: (error: unknown) => void;
  /** Set when its transaction failed it: a copy of it given meanwhile fails the same way. */
  failure?: unknown;
}

/** Rejects `event` with `error`, kept as its `failure` for a copy of it settled after the commit. */
export function fail(event: Pending, error: unknown): void {
  event.failure = error;
  event.reject(error);
}

/** What the steps of an event in its savepoint use of their {@link Inbox}. */
export interface InboxScope {
  readonly db: ModuleDatabase;
  /** The handlers running now, each with what gives it up (see {@link Inbox.giveBack}). */
  readonly handlers: Map<Pending, (error: KeelError) => void>;
  /** Whether {@link Inbox.giveBack} was called: events not kept at a stop are given back, not run. */
  readonly givingBack: () => boolean;
  /** Rejects an event with an error, counting a give-back. */
  readonly fail: (event: Pending, error: unknown) => void;
}

/** What {@link runEvent}'s race is handed when a handler is given up on (its time ran out, or its module stopped). */
const ABANDONED: unique symbol = Symbol('abandoned');

/**
 * Runs an opened event's handler in its savepoint; false when it failed (its work then undone,
 * the event rejected), or was given up on: its time ran out, or its module's stop gave it back
 * ({@link Inbox.giveBack}). Then its work is undone, the event rejected, and its frame marked so
 * that what it does with the database after fails rather than joining the events after it. A
 * statement it sent before runs first: the rollback waits for it on the connection (a statement
 * that never ends holds the transaction, as before).
 */
export async function runEvent(scope: InboxScope, tx: SqlRunner, event: Pending, afterCommit: (() => void)[]): Promise<boolean> {
  if (scope.givingBack() && !event.keptAtStop) {
    // Opened while the stop gave back the others: it does not run.
    await tx.exec(`rollback to savepoint ${event.savepoint}`);
    scope.fail(event, givenBackAtStop(scope.db.module, event, false));
    return false;
  }
  const frame: TransactionFrame = { tx, afterCommit, ended: false, event: event.label };
  let timer: ReturnType<typeof setTimeout> | undefined;
  let outcome: unknown;
  try {
    const work = event.context.runInAsyncScope(() => scope.db.joinedIn(frame, event.handler));
    const abandoned = new Promise<typeof ABANDONED>((resolve) => {
      const giveUp = (error: KeelError): void => {
        if (frame.abandoned !== undefined) return;
        // At once, in this turn: a statement the handler sends from now on is refused, not
        // queued behind the rollback, where it would join the next event's work.
        frame.abandoned = error;
        frame.ended = true;
        // Its signal too, which its own end would otherwise release unaborted (the deadline's
        // timer, from its delivery, may come a moment after this one).
        event.context.runInAsyncScope(abortCallSignal, null, error);
        resolve(ABANDONED);
      };
      scope.handlers.set(event, giveUp);
      timer = setTimeout(() => giveUp(outranItsTime(scope.db.module, event)), event.timeout.ms);
    });
    outcome = await Promise.race([work, abandoned]);
  } catch (error) {
    await tx.exec(`rollback to savepoint ${event.savepoint}`);
    scope.fail(event, error);
    return false;
  } finally {
    clearTimeout(timer);
    scope.handlers.delete(event);
  }
  if (outcome !== ABANDONED) return true;
  await tx.exec(`rollback to savepoint ${event.savepoint}`);
  scope.fail(event, frame.abandoned);
  return false;
}

/**
 * Opens `event` in the transaction: its savepoint and inbox record. False when the inbox held its
 * id (the event resolved as a duplicate). When the transaction was aborted, the handler of
 * `unchecked` caught a failed statement: its work is undone and it is failed, then the event opened.
 */
export async function openEvent(scope: InboxScope, tx: SqlRunner, event: Pending, unchecked: Pending | undefined, handled: Pending[]): Promise<boolean> {
  try {
    await tx.exec(event.opening);
    return true;
  } catch (error) {
    const state = sqlState(error);
    if (state === IN_FAILED_TRANSACTION && unchecked !== undefined) {
      await undoEvent(scope, tx, unchecked, handled);
      return openEvent(scope, tx, event, undefined, handled);
    }
    // Its own failure (a duplicate, or an id the inbox's index cannot hold) ends this event alone, if its savepoint stands.
    try {
      await tx.exec(`rollback to savepoint ${event.savepoint}`);
    } catch {
      throw error;
    }
    if (state === UNIQUE_VIOLATION) event.resolve('duplicate');
    else scope.fail(event, error);
    return false;
  }
}

/** Before a commit: whether the last event's handler left the transaction sound; if not, its work is undone and it is failed. */
export async function checkEvent(scope: InboxScope, tx: SqlRunner, unchecked: Pending, handled: Pending[]): Promise<void> {
  try {
    await tx.exec(`release savepoint ${unchecked.savepoint}`);
  } catch (error) {
    if (sqlState(error) !== IN_FAILED_TRANSACTION) throw error;
    await undoEvent(scope, tx, unchecked, handled);
  }
}

/** Undoes a handled event whose handler caught a failed statement, and fails it. */
async function undoEvent(scope: InboxScope, tx: SqlRunner, event: Pending, handled: Pending[]): Promise<void> {
  await tx.exec(`rollback to savepoint ${event.savepoint}`);
  handled.splice(handled.indexOf(event), 1);
  scope.fail(event, swallowedFailure(scope.db.module));
}
