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
 * What one event does in its savepoint (its opening, its handler's run, the undoing of its work)
 * is in inbox-savepoint.ts.
 */
import { AsyncResource } from 'node:async_hooks';
import { quoteIdentifier, quoteLiteral } from './database.js';
import type { KeelError } from './errors.js';
import { isGivenBack, unreachableDatabaseError } from './transport-failures.js';
import { UNIQUE_VIOLATION, databaseUnreachable, givenBackAtStop, nulInId, resultMissing, sqlState } from './inbox-failures.js';
import type { HandlerTimeout, InboxOptions } from './inbox-options.js';
import { checkEvent, fail, openEvent, runEvent, type InboxOutcome, type InboxScope, type Pending } from './inbox-savepoint.js';
import { outsideTransactions, type ModuleDatabase } from './module-data.js';

export { DEFAULT_INBOX_OPTIONS, runsAlone, type HandlerTimeout, type InboxOptions } from './inbox-options.js';
export type { InboxOutcome } from './inbox-savepoint.js';

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
  /** What the steps of an event in its savepoint (inbox-savepoint.ts) use of this inbox. */
  readonly #scope: InboxScope;

  constructor(
    readonly db: ModuleDatabase,
    readonly options: InboxOptions,
  ) {
    this.#table = `${quoteIdentifier(db.schema)}.keel_inbox`;
    this.#scope = { db, handlers: this.#handlers, givingBack: () => this.#givingBack, fail: (event, error) => this.#fail(event, error) };
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
        let isOpen = withFirst || (await openEvent(this.#scope, tx, first, undefined, handled));
        for (let events = 1; ; events += 1) {
          if (isOpen) {
            const event = current as Pending;
            unchecked = (await runEvent(this.#scope, tx, event, afterCommit)) ? event : undefined;
            if (unchecked !== undefined) handled.push(event);
          }
          const more = !first.alone && events < this.options.events && performance.now() - began < this.options.ms;
          current = more ? this.#take(opened, copies) : undefined;
          if (current === undefined) break;
          // Opening the next event also tells whether `unchecked` left the transaction sound.
          isOpen = await openEvent(this.#scope, tx, current, unchecked, handled);
          unchecked = undefined;
        }
        // Asked before the commit even for a lone event: its failure then says what happened, where the commit's would not.
        if (unchecked !== undefined) await checkEvent(this.#scope, tx, unchecked, handled);
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
}
