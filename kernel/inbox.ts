/**
 * A module's inbox: each durable event it handles runs in a transaction with the record of the
 * event's id in `keel_inbox`, so that a redelivery of an event already handled has no second
 * effect, and a handler that fails leaves no record, so that the retry runs it.
 *
 * Events that wait together share a transaction: a commit (a round trip and a WAL flush) is most
 * of what a short handler's transaction costs. Each event runs in a savepoint of its own, opened
 * with its inbox record in one round trip, so that one handler's failure undoes its own work
 * only. An event is acknowledged once its transaction committed; a failed handler's event is
 * given back at once (docs/design-notes.md, "Durable events handled in shared transactions").
 */
import { AsyncResource } from 'node:async_hooks';
import { quoteIdentifier, quoteLiteral, type SqlRunner } from './database.js';
import { abortCallSignal } from './call-signal.js';
import type { KeelError } from './errors.js';
import { isGivenBack, unreachableDatabaseError } from './transport-failures.js';
import {
  IN_FAILED_TRANSACTION,
  UNIQUE_VIOLATION,
  databaseUnreachable,
  givenBackAtStop,
  nulInId,
  outranItsTime,
  resultMissing,
  sqlState,
  swallowedFailure,
} from './inbox-failures.js';
import type { HandlerTimeout, InboxOptions } from './inbox-options.js';
import { outsideTransactions, type ModuleDatabase, type TransactionFrame } from './module-data.js';

export { DEFAULT_INBOX_OPTIONS, runsAlone, type HandlerTimeout, type InboxOptions } from './inbox-options.js';

/** What became of an event given to the {@link Inbox}. */
export type InboxOutcome = 'handled' | 'duplicate';

/** An event waiting for, or inside, a transaction. */
interface Pending {
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

/** Whether a transaction still counts for {@link Inbox.idle}. */
interface Live {
  counted: boolean;
}

/** Thrown in a transaction whose first event was given back while it waited for its connection: it runs nothing. */
const NOTHING_TO_RUN: unique symbol = Symbol('nothing to run');

/** A second delivery of an event opened in the same transaction: it is settled after the commit, as its original is. */
interface Copy {
  readonly copy: Pending;
  readonly of: Pending;
}

function fail(event: Pending, error: unknown): void {
  event.failure = error;
  event.reject(error);
}

/** What {@link Inbox}'s race is handed when a handler is given up on (its time ran out, or its module stopped). */
const ABANDONED: unique symbol = Symbol('abandoned');

export class Inbox {
  readonly #queue: Pending[] = [];
  /** Named with its schema: a handler's `set local search_path` before it must not move the next event's record. */
  readonly #table: string;
  #running = 0;
  #savepoints = 0;
  /** Set by {@link giveBack}: events not kept at a stop are given back, not run. */
  #givingBack = false;
  /** The handlers running now, each with what gives it up (see {@link giveBack}). */
  readonly #handlers = new Map<Pending, (error: KeelError) => void>();
  /** The first events of transactions waiting for their connection, each with its transaction's {@link Live}. */
  readonly #connecting = new Map<Pending, Live>();
  /** Transactions {@link idle} waits for: begun, and not given back while waiting for their connection. */
  #live = 0;
  /** Waiting for {@link idle}. */
  #idle: (() => void)[] = [];
  /** How many events were rejected with a give-back (see {@link givenBack}). */
  #givenBack = 0;
  /** Events kept at a stop that have not settled, wherever they are (waiting, being opened, running). */
  #kept = 0;

  constructor(
    readonly db: ModuleDatabase,
    readonly options: InboxOptions,
  ) {
    this.#table = `${quoteIdentifier(db.schema)}.keel_inbox`;
  }

  /**
   * Runs `handler` for event `id` of `source`.`event` in an inbox transaction, in the async
   * context of this call; `alone`, in a transaction of its own (the kernel asks it for a
   * redelivery, a last attempt, and a handler with `ownTransaction`). Resolves
   * once the transaction committed (`handled`), or when the inbox held the id already
   * (`duplicate`: the handler did not run). Rejects with the handler's error once its work is
   * undone, or with the transaction's when it could not commit; with `TIMEOUT` once its work is
   * undone when it still ran `timeout.ms` after it started; with an error `isGivenBack` accepts
   * when {@link giveBack} gave it back (unless `keptAtStop`).
   */
  handle(
    id: string,
    source: string,
    event: string,
    alone: boolean,
    handler: () => unknown,
    timeout: HandlerTimeout = { ms: this.options.handlerMs, own: false },
    keptAtStop = false,
  ): Promise<InboxOutcome> {
    if (id.includes('\0')) {
      // PostgreSQL stores no NUL in text, and a script ends at one: no record of it can be made.
      return Promise.reject(nulInId(source, event, this.db.module));
    }
    const outcome = new Promise<InboxOutcome>((resolve, reject) => {
      const savepoint = `keel_inbox_${(this.#savepoints = (this.#savepoints + 1) % 1_000_000)}`;
      this.#queue.push({
        id,
        alone,
        opening: `savepoint ${savepoint}; insert into ${this.#table} (event_id, source, event) values (${quoteLiteral(id)}, ${quoteLiteral(source)}, ${quoteLiteral(event)})`,
        savepoint,
        label: `${source}.${event}`,
        timeout,
        keptAtStop,
        handler,
        // Not AsyncLocalStorage.snapshot(): it binds a function, and a bound function costs a deprecation wrapper each (Node 20 to 24).
        context: new AsyncResource('keel.InboxEvent'),
        resolve,
        reject,
      });
      if (this.#givingBack && !keptAtStop) this.#giveBackWaiting();
      else if (this.#running < this.options.transactions) void this.#work();
    });
    if (keptAtStop) {
      this.#kept += 1;
      const settled = (): void => {
        this.#kept -= 1;
      };
      outcome.then(settled, settled);
    }
    return outcome;
  }

  /**
   * At a module's stop, once its drain ran out of time: gives back every event not `keptAtStop`,
   * now and from now on. A handler still running is given up on as when its time runs out (its
   * work rolled back to its savepoint, its signal aborted, its later use of the database
   * refused), and the events sharing its transaction commit; an event waiting for a transaction,
   * or whose transaction waits for its connection, does not run. Each is rejected with an error
   * `isGivenBack` accepts, for its transport to deliver it again later: the waiting ones at once,
   * oldest first, the running ones once their work is rolled back ({@link givenBack} counts them).
   * Returns how many events it keeps (not settled yet, wherever they are): {@link idle} waits for them.
   */
  giveBack(): number {
    this.#givingBack = true;
    for (const [event, live] of [...this.#connecting]) {
      if (event.keptAtStop) continue;
      // Its transaction ends without running anything once it has its connection; idle() does not wait for that.
      this.#connecting.delete(event);
      this.#fail(event, givenBackAtStop(this.db.module, event, false));
      this.#unlive(live);
    }
    for (const [event, giveUp] of [...this.#handlers]) {
      if (!event.keptAtStop) giveUp(givenBackAtStop(this.db.module, event, true));
    }
    this.#giveBackWaiting();
    // Idle now (it held only transactions waiting for their connections, and events behind them): those waiting for idle() go on.
    if (this.#isIdle()) for (const resolve of this.#idle.splice(0)) resolve();
    return this.#kept;
  }

  /** How many events were given back (rejected with an error `isGivenBack` accepts) so far. */
  get givenBack(): number {
    return this.#givenBack;
  }

  /** Rejects `event` with `error`, counting a give-back. */
  #fail(event: Pending, error: unknown): void {
    if (isGivenBack(error)) this.#givenBack += 1;
    fail(event, error);
  }

  /** Gives back the waiting events that are not kept at a stop, oldest first. */
  #giveBackWaiting(): void {
    for (const event of this.#queue.splice(0)) {
      if (event.keptAtStop) this.#queue.push(event);
      else this.#fail(event, givenBackAtStop(this.db.module, event, false));
    }
  }

  /**
   * Resolves once no event waits and no transaction of the inbox runs (at once if so), but for a
   * transaction given back while it waited for its connection: it will run nothing.
   */
  idle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** A transaction's end, or its give-back while it waited for its connection: once. */
  #unlive(live: Live): void {
    if (!live.counted) return;
    live.counted = false;
    this.#live -= 1;
    if (this.#isIdle()) for (const resolve of this.#idle.splice(0)) resolve();
  }

  #isIdle(): boolean {
    // An event that waits is taken by a transaction of the loop that ran the one just ended.
    return this.#live === 0 && this.#queue.length === 0;
  }

  /** One of the inbox's transactions at a time, while events wait. */
  async #work(): Promise<void> {
    this.#running += 1;
    try {
      for (let first = this.#queue.shift(); first !== undefined; first = this.#queue.shift()) await this.#transaction(first);
    } finally {
      this.#running -= 1;
    }
  }

  /** One transaction, counted for {@link idle} from when it asks for its connection. */
  async #transaction(first: Pending): Promise<void> {
    const live: Live = { counted: true };
    this.#live += 1;
    this.#connecting.set(first, live);
    try {
      await this.#inTransaction(first);
    } finally {
      this.#connecting.delete(first);
      this.#unlive(live);
    }
  }

  /** One transaction, opened by `first`'s record; it takes the events that wait, one after another. */
  async #inTransaction(first: Pending): Promise<void> {
    /** Handled in this transaction, to be resolved once it commits. */
    const handled: Pending[] = [];
    /** The events opened in this transaction, by id. */
    const opened = new Map<string, Pending>([[first.id, first]]);
    const copies: Copy[] = [];
    const afterCommit: (() => void)[] = [];
    /** The event being opened or run: failed with the transaction if it fails. */
    let current: Pending | undefined = first;
    let started = false;
    // An engine written before `first` existed is not given it: the event is opened in the transaction.
    const withFirst = this.db.engine.firstStatement === true;
    try {
      await this.db.connection.transaction(async (tx, firstResult) => {
        started = true;
        // Given back while this transaction waited for its connection: it runs nothing.
        if (!this.#connecting.delete(first)) throw NOTHING_TO_RUN;
        if (withFirst && firstResult === undefined) throw resultMissing(this.db.engine.name);
        const began = performance.now();
        /** The last event handled whose work is not yet known to be sound (its handler may have caught a failed statement). */
        let unchecked: Pending | undefined;
        let isOpen = withFirst || (await this.#open(tx, first, undefined, handled));
        for (let events = 1; ; events += 1) {
          if (isOpen) {
            const event = current as Pending;
            unchecked = (await this.#run(tx, event, afterCommit)) ? event : undefined;
            if (unchecked !== undefined) handled.push(event);
          }
          const more = !first.alone && events < this.options.events && performance.now() - began < this.options.ms;
          current = more ? this.#take(opened, copies) : undefined;
          if (current === undefined) break;
          // Opening the next event also tells whether `unchecked` left the transaction sound.
          isOpen = await this.#open(tx, current, unchecked, handled);
          unchecked = undefined;
        }
        // Asked before the commit even for a lone event: its failure then says what happened, where the commit's would not.
        if (unchecked !== undefined) await this.#check(tx, unchecked, handled);
      }, withFirst ? first.opening : undefined);
    } catch (error) {
      if (error === NOTHING_TO_RUN) return;
      if (!started && sqlState(error) === UNIQUE_VIOLATION) {
        first.resolve('duplicate');
        return;
      }
      // Nothing of this transaction was kept: every event it handled, and the one it was opening or running, is retried.
      // When the database could not be reached, the failure says so: the transport does not count it as an attempt.
      const failure = databaseUnreachable(error) ? unreachableDatabaseError(this.db.module, error) : error;
      for (const event of handled) this.#fail(event, failure);
      if (current !== undefined) this.#fail(current, failure);
      for (const { copy } of copies) copy.reject(failure);
      return;
    }
    for (const event of handled) event.resolve('handled');
    // A copy's original is recorded now (handled here, or before), unless it failed.
    for (const { copy, of } of copies) {
      if (of.failure === undefined) copy.resolve('duplicate');
      else this.#fail(copy, of.failure);
    }
    // Outside every transaction frame, as after any transaction (module-data.ts).
    for (const hook of afterCommit) {
      try {
        outsideTransactions(hook);
      } catch {
        // A hook's failure is its own (the relay's kick logs its own): the events are committed, and the queue goes on.
      }
    }
  }

  /**
   * The next waiting event this transaction may open. A redelivery waits for a transaction of its
   * own. A copy of an event opened here (the same id, delivered again meanwhile) is not opened:
   * its record would meet the original's, not yet committed, so it waits for the commit.
   */
  #take(opened: Map<string, Pending>, copies: Copy[]): Pending | undefined {
    for (let next = this.#queue[0]; next !== undefined && !next.alone; next = this.#queue[0]) {
      this.#queue.shift();
      const original = opened.get(next.id);
      if (original === undefined) {
        opened.set(next.id, next);
        return next;
      }
      copies.push({ copy: next, of: original });
    }
    return undefined;
  }

  /**
   * Runs an opened event's handler in its savepoint; false when it failed (its work then undone,
   * the event rejected), or was given up on: its time ran out, or its module's stop gave it back
   * ({@link giveBack}). Then its work is undone, the event rejected, and its frame marked so that
   * what it does with the database after fails rather than joining the events after it. A
   * statement it sent before runs first: the rollback waits for it on the connection (a statement
   * that never ends holds the transaction, as before).
   */
  async #run(tx: SqlRunner, event: Pending, afterCommit: (() => void)[]): Promise<boolean> {
    if (this.#givingBack && !event.keptAtStop) {
      // Opened while the stop gave back the others: it does not run.
      await tx.exec(`rollback to savepoint ${event.savepoint}`);
      this.#fail(event, givenBackAtStop(this.db.module, event, false));
      return false;
    }
    const frame: TransactionFrame = { tx, afterCommit, ended: false, event: event.label };
    let timer: ReturnType<typeof setTimeout> | undefined;
    let outcome: unknown;
    try {
      const work = event.context.runInAsyncScope(() => this.db.joinedIn(frame, event.handler));
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
        this.#handlers.set(event, giveUp);
        timer = setTimeout(() => giveUp(outranItsTime(this.db.module, event)), event.timeout.ms);
      });
      outcome = await Promise.race([work, abandoned]);
    } catch (error) {
      await tx.exec(`rollback to savepoint ${event.savepoint}`);
      this.#fail(event, error);
      return false;
    } finally {
      clearTimeout(timer);
      this.#handlers.delete(event);
    }
    if (outcome !== ABANDONED) return true;
    await tx.exec(`rollback to savepoint ${event.savepoint}`);
    this.#fail(event, frame.abandoned);
    return false;
  }

  /**
   * Opens `event` in the transaction: its savepoint and inbox record. False when the inbox held its
   * id (the event resolved as a duplicate). When the transaction was aborted, the handler of
   * `unchecked` caught a failed statement: its work is undone and it is failed, then the event opened.
   */
  async #open(tx: SqlRunner, event: Pending, unchecked: Pending | undefined, handled: Pending[]): Promise<boolean> {
    try {
      await tx.exec(event.opening);
      return true;
    } catch (error) {
      const state = sqlState(error);
      if (state === IN_FAILED_TRANSACTION && unchecked !== undefined) {
        await this.#undo(tx, unchecked, handled);
        return this.#open(tx, event, undefined, handled);
      }
      // Its own failure (a duplicate, or an id the inbox's index cannot hold) ends this event alone, if its savepoint stands.
      try {
        await tx.exec(`rollback to savepoint ${event.savepoint}`);
      } catch {
        throw error;
      }
      if (state === UNIQUE_VIOLATION) event.resolve('duplicate');
      else this.#fail(event, error);
      return false;
    }
  }

  /** Before a commit: whether the last event's handler left the transaction sound; if not, its work is undone and it is failed. */
  async #check(tx: SqlRunner, unchecked: Pending, handled: Pending[]): Promise<void> {
    try {
      await tx.exec(`release savepoint ${unchecked.savepoint}`);
    } catch (error) {
      if (sqlState(error) !== IN_FAILED_TRANSACTION) throw error;
      await this.#undo(tx, unchecked, handled);
    }
  }

  /** Undoes a handled event whose handler caught a failed statement, and fails it. */
  async #undo(tx: SqlRunner, event: Pending, handled: Pending[]): Promise<void> {
    await tx.exec(`rollback to savepoint ${event.savepoint}`);
    handled.splice(handled.indexOf(event), 1);
    this.#fail(event, swallowedFailure(this.db.module));
  }
}
