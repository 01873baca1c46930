/**
 * Whether a hosted module's database answers: one `select 1` every `databaseCheckMs`, off the
 * path of calls, through the module's connection's {@link SchemaConnection.ping} (which neither
 * queues behind the module's own statements nor keeps a connection that stopped answering), or a
 * plain `select 1` on an engine without it. Read by `kernel.status().databases`, and from there by
 * the gateway's `/readyz` body and `/metrics` (`keel_database_up`, `keel_database_down_total`).
 */
import type { DatabaseEngine, SchemaConnection } from './database.js';
import type { Logger } from './logger.js';

/** `up`: the last check answered; `down`: it failed, or did not answer within `databaseCheckMs`. */
export type DatabaseState = 'up' | 'down';

/**
 * One hosted module's database, as {@link Kernel.status} reports it. Neither its URL nor its
 * address: `/readyz` shows it to whoever can reach the port.
 *
 * @example
 * ```ts
 * for (const database of kernel.status().databases) {
 *   if (database.state === 'down') console.warn(`${database.module}'s ${database.engine} is down since ${database.since}`);
 * }
 * ```
 */
export interface DatabaseStatus {
  /** The module that owns the database. */
  readonly module: string;
  /** The engine's name: `postgres` or `pglite`. */
  readonly engine: string;
  readonly state: DatabaseState;
  /** When it entered that state (ISO 8601): the module's start, or the check that changed it. */
  readonly since: string;
  /** Times it went from `up` to `down` since the module started. */
  readonly downs: number;
}

/** Checks one module's database every `everyMs`, one check at a time; embedded engines are not checked. */
export class DatabaseHealth {
  #state: DatabaseState = 'up';
  #since = new Date();
  #downs = 0;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  /** The check's `select 1` while it is out: undefined once it answered (why not, when it failed). */
  #statement: Promise<string | undefined> | undefined;

  constructor(
    readonly module: string,
    readonly engine: DatabaseEngine,
    readonly connection: Pick<SchemaConnection, 'query' | 'ping'>,
    readonly logger: Logger,
    readonly everyMs: number,
  ) {}

  /**
   * Starts the checks. An engine that runs one transaction at a time (PGlite) lives in the
   * process: there is no network to lose, and a check would only queue behind a long
   * transaction and report it as an outage; it stays `up`.
   */
  start(): void {
    if (!this.engine.oneTransactionAtATime) this.#schedule();
  }

  /** Ends the checks; a check still out is not waited for. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  status(): DatabaseStatus {
    return { module: this.module, engine: this.engine.name, state: this.#state, since: this.#since.toISOString(), downs: this.#downs };
  }

  /** The next check `everyMs` after the last one settled: never two at once, however slow the database. */
  #schedule(): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#check(), this.everyMs);
    this.#timer.unref();
  }

  async #check(): Promise<void> {
    // A statement of an earlier check still out (a connection still being opened for it) is
    // waited for again rather than joined by another: at most one check's statement a module at a time.
    this.#statement ??= this.#ask().then(
      () => undefined,
      (error: unknown) => reasonOf(error),
    );
    const statement = this.#statement;
    void statement.finally(() => {
      if (this.#statement === statement) this.#statement = undefined;
    });
    const failure = await answered(statement, this.everyMs);
    if (this.#stopped) return;
    this.#record(failure);
    this.#schedule();
  }

  /** The check's statement: the connection's own ping, else a `select 1` like any statement. */
  #ask(): Promise<unknown> {
    return this.connection.ping === undefined ? this.connection.query('select 1') : this.connection.ping(this.everyMs);
  }

  #record(failure: string | undefined): void {
    const state: DatabaseState = failure === undefined ? 'up' : 'down';
    if (state === this.#state) return;
    const downFor = Date.now() - this.#since.getTime();
    this.#state = state;
    this.#since = new Date();
    // The module's own logger binds `module`.
    const fields = { engine: this.engine.name, database: this.engine.location };
    if (state === 'down') {
      this.#downs += 1;
      this.logger.error(
        { ...fields, reason: failure },
        `the module's database does not answer (${failure}): its calls and durable events fail or wait until it does. ` +
          'Check that the server runs and that this process can reach it; keel checks again every ' +
          `${this.everyMs} ms (databaseCheckMs)`,
      );
    } else {
      this.logger.info({ ...fields, downMs: downFor }, "the module's database answers again");
    }
  }
}

/** What `statement` settled with (undefined: it answered), or why it did not within `ms`. */
async function answered(statement: Promise<string | undefined>, ms: number): Promise<string | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve(`no answer to select 1 within ${ms} ms`), ms);
    timer.unref();
  });
  try {
    return await Promise.race([statement, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A failed check's reason: the error's message, else its code. */
function reasonOf(error: unknown): string {
  if (error instanceof Error && error.message !== '') return error.message;
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return String(code ?? error);
}
