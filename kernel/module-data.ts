/**
 * A module's {@link Database}: its schema connection, with transactions carried in
 * AsyncLocalStorage, so that a query or an `emit` anywhere in the call chain of
 * `db.transaction(work)` joins that transaction.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Database, DatabaseEngine, QueryResult, Row, SchemaConnection, SqlRunner } from './database.js';
import { KeelError, KeelErrorCode } from './errors.js';

/** One open transaction of one module, as its call chain sees it. */
export interface TransactionFrame {
  readonly tx: SqlRunner;
  /** Run once the transaction committed (never on rollback). */
  readonly afterCommit: (() => void)[];
  /** Set once the transaction ended: work that outlives it must not use it. */
  ended: boolean;
  /**
   * Set when the kernel gave up on the work running in this frame (the inbox, at the end of a
   * durable event handler's time) and rolled its work back: every later use of the database
   * from that work fails with this error rather than running outside the transaction, where it
   * would be kept with no inbox record.
   */
  abandoned?: KeelError;
  /** The durable event (`orders.orderPlaced`) whose handler runs in this frame, when it is the kernel's inbox transaction: for messages. */
  readonly event?: string;
}

/**
 * The transactions open in this call chain, one per module database at most. Its value crosses
 * an in-process call into the callee's handler (served.ts, `handlerEntry`), so that the callee's
 * query can see that its caller holds the embedded database ({@link ModuleDatabase}'s refusal).
 */
const transactions = new AsyncLocalStorage<ReadonlyMap<ModuleDatabase, TransactionFrame>>();

/** {@link transactions}, for the served side to carry into handlers. */
export const openTransactions: AsyncLocalStorage<unknown> = transactions;

export class ModuleDatabase implements Database {
  #savepoints = 0;

  constructor(
    readonly module: string,
    readonly schema: string,
    readonly engine: DatabaseEngine,
    readonly connection: SchemaConnection,
  ) {}

  /**
   * The transaction this call chain holds on this database, if any. Throws the frame's
   * `abandoned` error in work the kernel gave up on (see {@link TransactionFrame}).
   */
  current(): TransactionFrame | undefined {
    const frame = transactions.getStore()?.get(this);
    if (frame === undefined) return undefined;
    if (frame.abandoned !== undefined) throw frame.abandoned;
    return frame.ended ? undefined : frame;
  }

  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#send((runner) => runner.query<R>(text, params));
  }

  exec(script: string): Promise<void> {
    return this.#send((runner) => runner.exec(script));
  }

  /** Sends a statement in this call chain's transaction, else on the connection; refused in abandoned work, or where {@link #refusal} says. */
  #send<T>(statement: (runner: SqlRunner) => Promise<T>): Promise<T> {
    let frame: TransactionFrame | undefined;
    try {
      frame = this.current();
    } catch (abandoned) {
      return Promise.reject(abandoned);
    }
    if (frame !== undefined) return statement(frame.tx);
    const refused = this.#refusal();
    return refused === undefined ? statement(this.connection) : Promise.reject(refused);
  }

  async transaction<T>(work: () => Promise<T>): Promise<T> {
    if (typeof work !== 'function') {
      throw new KeelError(KeelErrorCode.INVALID_INPUT, `db.transaction of module "${this.module}" takes a function: db.transaction(async () => { ... }).`);
    }
    const outer = this.current();
    if (outer !== undefined) return this.#nested(outer, work);
    const refused = this.#refusal();
    if (refused !== undefined) throw refused;
    const afterCommit: (() => void)[] = [];
    const result = await this.connection.transaction((tx) => this.joined(tx, afterCommit, work));
    // Outside every transaction frame: what a hook starts (the relay, a local delivery) must not
    // join a transaction its caller still holds.
    for (const hook of afterCommit) transactions.exit(hook);
    return result;
  }

  /**
   * Runs `work` in the call chain of transaction `tx` on this database (one of `transaction`'s, or
   * one the kernel's inbox opened: kernel/inbox.ts), with its hooks in `afterCommit`. Its frame
   * ends when `work` settles: what `work` leaves running then uses the database outside that
   * transaction.
   */
  joined<T>(tx: SqlRunner, afterCommit: (() => void)[], work: () => T): Promise<Awaited<T>> {
    return this.joinedIn({ tx, afterCommit, ended: false }, work);
  }

  /** {@link joined} in a frame the caller made, so that it can mark the frame `abandoned` (kernel/inbox.ts). */
  async joinedIn<T>(frame: TransactionFrame, work: () => T): Promise<Awaited<T>> {
    const open = new Map(transactions.getStore() ?? []);
    open.set(this, frame);
    try {
      return await transactions.run(open, work);
    } finally {
      frame.ended = true;
    }
  }

  /** A transaction inside one of this module's: a savepoint, so that its own failure undoes only its own work. */
  async #nested<T>(outer: TransactionFrame, work: () => Promise<T>): Promise<T> {
    const savepoint = `keel_nested_${++this.#savepoints}`;
    await outer.tx.exec(`savepoint ${savepoint}`);
    try {
      const result = await work();
      if (outer.ended) throw outer.abandoned ?? this.#outlived();
      await outer.tx.exec(`release savepoint ${savepoint}`);
      return result;
    } catch (error) {
      // An outer transaction that ended took the savepoint with it, and its connection serves other
      // work now (the next durable event of a shared inbox transaction): nothing is sent on it.
      if (!outer.ended) await outer.tx.exec(`rollback to savepoint ${savepoint}`);
      throw error;
    }
  }

  #outlived(): KeelError {
    return new KeelError(
      KeelErrorCode.INVALID_STATE,
      `A db.transaction() of module "${this.module}" ended after the transaction it was nested in, so its work was not kept on its own: ` +
        'await it before the work around it returns.',
    );
  }

  /**
   * On an engine that runs one transaction at a time (PGlite), a query of this module made in
   * the call chain of another module's open transaction would wait for that transaction, which
   * waits for this call: refuse it with what to do instead.
   */
  #refusal(): KeelError | undefined {
    if (!this.engine.oneTransactionAtATime) return undefined;
    const open = transactions.getStore();
    if (open === undefined) return undefined;
    for (const [owner, frame] of open) {
      if (owner !== this && !frame.ended && owner.engine === this.engine) {
        const held =
          frame.event === undefined
            ? 'holds a transaction'
            : `handles durable event ${frame.event} in the transaction keel runs it in (its inbox: docs/data.md),`;
        const instead =
          frame.event === undefined
            ? `Call "${this.module}" outside ${owner.module}'s db.transaction()`
            : `Carry what the handler needs in the event's payload, or handle the event in a module that owns no data (it has no inbox: a redelivery runs its handler again)`;
        return new KeelError(
          KeelErrorCode.INVALID_STATE,
          `Module "${this.module}" used its database while module "${owner.module}", which called it (directly or through other modules), ${held} on the ` +
            `same ${this.engine.name} database (${this.engine.location}). ${this.engine.name} runs one transaction at a time, so ` +
            `this would wait forever. ${instead}, or use PostgreSQL (DATABASE_URL), where this works.`,
        );
      }
    }
    return undefined;
  }
}

/**
 * Runs `work` outside every open transaction of this call chain: an event handler runs in the
 * context its event was published from, and must not join (and be rolled back with) a
 * transaction that was open there.
 */
export function outsideTransactions<T>(work: () => T): T {
  return transactions.getStore() === undefined ? work() : transactions.exit(work);
}

/** The `db` of a module that declares no data: every use says how to declare it. */
export function missingDatabase(module: string): Database {
  const refuse = (): never => {
    throw new KeelError(
      KeelErrorCode.INVALID_MODULE,
      `Module "${module}" has no database: declare that it owns data with ` +
        "data: { migrations: new URL('./migrations/', import.meta.url) } in its defineModule().",
    );
  };
  return {
    schema: module,
    query: () => Promise.reject(catchSync(refuse)),
    exec: () => Promise.reject(catchSync(refuse)),
    transaction: () => Promise.reject(catchSync(refuse)),
  };
}

function catchSync(fail: () => never): unknown {
  try {
    return fail();
  } catch (error) {
    return error;
  }
}
