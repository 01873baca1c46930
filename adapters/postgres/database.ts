/**
 * The PostgreSQL engine: a `pg` pool per module schema, whose connections start with the
 * module's search_path, so that unqualified names resolve in the module's own schema.
 */
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { z } from 'zod';
import type { DatabaseEngine, QueryResult, Row, SchemaConnection, SqlRunner } from 'keel/transport';
import { KeelError, KeelErrorCode } from 'keel';
import { parseOptions, quoteIdentifier, roleOf, schemaSetup, within } from 'keel/transport';

/**
 * How long a schema's close waits for statements still running (its module's drain is over by
 * then) before it ends their connections: a statement waiting for a lock another session holds,
 * or for a server that stopped answering, would otherwise hold the stop for as long as it waits.
 */
const CLOSE_GRACE_MS = 2_000;

/**
 * Options of {@link createPostgresDatabase}.
 *
 * @example
 * ```ts
 * const database = createPostgresDatabase({ url: 'postgres://keel@db.internal:5432/shop', poolSize: 10 });
 * ```
 */
export interface PostgresDatabaseOptions {
  /** A `postgres://` connection URL. */
  readonly url: string;
  /** Connections per module (default 5). */
  readonly poolSize?: number;
  /** How long to wait for a connection, in ms (default 10 000). */
  readonly connectTimeoutMs?: number;
}

const Schema = z
  .object({
    url: z
      .string({ error: 'must be a postgres:// URL' })
      .refine((value) => /^postgres(ql)?:\/\//.test(value), 'must be a postgres:// URL, such as postgres://user@127.0.0.1:5432/shop'),
    poolSize: z.number({ error: 'must be a whole number of connections, 1 to 100' }).int().min(1).max(100).optional(),
    connectTimeoutMs: z.number({ error: 'must be a number of milliseconds, 1 to 600000' }).int().min(1).max(600_000).optional(),
  })
  .strict();

/** The URL without its password, safe to log: `127.0.0.1:5432/shop`. */
function locationOf(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.host}${parsed.pathname}`;
  } catch {
    return 'postgres';
  }
}

/**
 * The error of a server that answered and refused the connection for a reason no retry changes:
 * the user or its password (SQLSTATE class 28), or a database that does not exist (3D000). It is
 * `INVALID_CONFIG`, not `UNAVAILABLE`: the server is there, and `keel start` exits 1 with it,
 * telling keel up not to restart it into the same refusal. Undefined for any other failure.
 */
function connectionRefused(location: string, purpose: string, error: unknown): KeelError | undefined {
  const code = (error as { code?: unknown }).code;
  const reason = (error as Error).message;
  if (typeof code === 'string' && code.startsWith('28')) {
    return new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `PostgreSQL at ${location} answered and refused the connection to ${purpose}: ${reason}. ` +
        "Check the user and the password in DATABASE_URL, and that the server's pg_hba.conf lets that user connect from here; a restart will not change this.",
      { cause: error },
    );
  }
  if (code === '3D000') {
    return new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `PostgreSQL at ${location} answered and refused the connection to ${purpose}: ${reason}. ` +
        'Create that database (createdb, or CREATE DATABASE), or name one that exists in DATABASE_URL.',
      { cause: error },
    );
  }
  return undefined;
}

/**
 * A PostgreSQL database for the modules that own data: each gets its own schema and pool.
 * Connects lazily: a wrong URL fails when the first module starts, naming the database.
 *
 * @example
 * ```ts
 * const database = createPostgresDatabase({ url: process.env.DATABASE_URL! });
 * ```
 */
export function createPostgresDatabase(options: PostgresDatabaseOptions): DatabaseEngine {
  const given = parseOptions('createPostgresDatabase', Schema, options, ['url']) as PostgresDatabaseOptions;
  return new PostgresEngine(given.url, given.poolSize ?? 5, given.connectTimeoutMs ?? 10_000);
}

class PostgresEngine implements DatabaseEngine {
  readonly name = 'postgres';
  readonly oneTransactionAtATime = false;
  readonly firstStatement = true;
  readonly location: string;
  get connections(): number {
    return this.poolSize;
  }
  readonly #pools = new Set<pg.Pool>();

  constructor(
    readonly url: string,
    readonly poolSize: number,
    readonly connectTimeoutMs: number,
  ) {
    this.location = locationOf(url);
  }

  async connect(schema: string): Promise<SchemaConnection> {
    await this.#setUp(schema);
    // Every connection starts in the module's schema, as the module's role.
    const settings = withServerOptions(this.url, `-c search_path=${quoteIdentifier(schema)} -c role=${roleOf(schema)}`);
    const pool = new pg.Pool({ max: this.poolSize, connectionTimeoutMillis: this.connectTimeoutMs, ...settings });
    // An idle connection the server dropped must not crash the process; the pool replaces it.
    pool.on('error', () => undefined);
    this.#pools.add(pool);
    return new PostgresSchema(pool, this.poolSize, settings, () => this.#pools.delete(pool));
  }

  async inspect(schema: string): Promise<SchemaConnection> {
    // The connecting user's own rights, in the module's schema (which may not exist), and the server refuses any write.
    const settings = withServerOptions(this.url, `-c search_path=${quoteIdentifier(schema)} -c default_transaction_read_only=on`);
    const pool = new pg.Pool({ max: 1, connectionTimeoutMillis: this.connectTimeoutMs, ...settings });
    pool.on('error', () => undefined);
    try {
      const client = await pool.connect();
      try {
        // Checked, not assumed: a setting of the server or the role could still win over the connection's.
        const { rows } = await client.query<{ transaction_read_only: string }>('show transaction_read_only');
        if (rows[0]?.transaction_read_only !== 'on') {
          throw new KeelError(
            KeelErrorCode.INTERNAL,
            `A connection to read schema "${schema}" at ${this.location} is not read only (transaction_read_only is ` +
              `${String(rows[0]?.transaction_read_only)}); nothing was read. Check the server's and the role's settings.`,
          );
        }
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      if (error instanceof KeelError) throw error;
      throw (
        connectionRefused(this.location, `read schema "${schema}"`, error) ??
        new KeelError(
          KeelErrorCode.UNAVAILABLE,
          `PostgreSQL at ${this.location} cannot be reached to read schema "${schema}": ${(error as Error).message}. ` +
            'Check DATABASE_URL, that the server runs, and that the user may connect to the database.',
          { cause: error },
        )
      );
    }
    this.#pools.add(pool);
    return new PostgresSchema(pool, 1, settings, () => this.#pools.delete(pool));
  }

  /** Creates the module's role and schema, as the connecting user, on a connection of its own. */
  async #setUp(schema: string, attempt = 1): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.connectTimeoutMs });
    client.on('error', () => undefined);
    try {
      try {
        await client.connect();
      } catch (error) {
        throw (
          connectionRefused(this.location, `set up schema "${schema}"`, error) ??
          new KeelError(
            KeelErrorCode.UNAVAILABLE,
            `PostgreSQL at ${this.location} cannot be reached to set up schema "${schema}": ${(error as Error).message}. ` +
              'Check DATABASE_URL, that the server runs and takes connections from here, and that the user may connect to the database.',
            { cause: error },
          )
        );
      }
      await client.query(schemaSetup(schema));
    } catch (error) {
      if (error instanceof KeelError) throw error;
      // Two instances creating the role or schema at once: the loser sees a unique violation; both exist.
      const code = (error as { code?: string }).code;
      if ((code === '23505' || code === '42710') && attempt < 3) return this.#setUp(schema, attempt + 1);
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `PostgreSQL at ${this.location} refused schema "${schema}" or its role ${roleOf(schema)}: ${(error as Error).message}. ` +
          'Check DATABASE_URL, that the server runs, and that the user may create schemas and roles (CREATEROLE), ' +
          'or create the role and the schema owned by it beforehand.',
        { cause: error },
      );
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    const pools = [...this.#pools];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.end().catch(() => undefined)));
  }
}

/**
 * The pool's connection settings: the URL read as pg reads it (`pg-connection-string`, pg's own
 * parser: unix-socket hosts, the last of repeated parameters), with keel's server options
 * (`-c name=value ...`) added after any the URL carries (`?options=...`, common on managed
 * hosts). Given as a connection string, the URL's `options` would replace keel's, and with them
 * the module's role or the reader's read-only mode. Later `-c` settings win on the server.
 */
function withServerOptions(url: string, options: string): pg.PoolConfig {
  const config = parseIntoClientConfig(url);
  return { ...config, options: config.options === undefined || config.options === '' ? options : `${config.options} ${options}` };
}

function resultOf<R extends Row>(result: pg.QueryResult): QueryResult<R> {
  return { rows: result.rows as R[], rowCount: result.rowCount ?? result.rows.length };
}

/** The result of a simple query's last statement: pg answers an array when the query held several. */
function lastResult(answer: pg.QueryResult | pg.QueryResult[]): QueryResult {
  return resultOf(Array.isArray(answer) ? (answer[answer.length - 1] as pg.QueryResult) : answer);
}

function runnerOf(client: pg.Pool | pg.PoolClient): SqlRunner {
  return {
    query: async <R extends Row = Row>(text: string, params?: readonly unknown[]) =>
      resultOf<R>(await client.query(text, params === undefined ? undefined : [...params])),
    exec: async (script: string) => {
      await client.query(script);
    },
  };
}

class PostgresSchema implements SchemaConnection {
  readonly #runner: SqlRunner;

  constructor(
    readonly pool: pg.Pool,
    /** The pool's `max`. */
    readonly size: number,
    /** The pool's connection settings, for a check's connection of its own. */
    readonly settings: pg.ClientConfig,
    readonly forget: () => void,
  ) {
    this.#runner = runnerOf(pool);
  }

  /**
   * A `select 1` with a client-side timeout (pg's `query_timeout`): on a connection of the pool
   * when one is free or the pool may open one, else, every connection being busy with the
   * module's statements, on a connection of its own, opened for this check and closed after it
   * (a busy pool is not an outage, and a check queued behind it would say it is). A `select 1`
   * that gets no answer in `timeoutMs` fails, and its connection is closed, never reused: the pool
   * discards a connection released with an error, and pg's `end` destroys the socket of one whose
   * statement is still out, which a connection to a server that stopped answering would
   * otherwise keep until TCP gives up.
   */
  async ping(timeoutMs: number): Promise<void> {
    const select: pg.QueryConfig & { query_timeout: number } = { text: 'select 1', query_timeout: timeoutMs };
    if (this.pool.idleCount > 0 || this.pool.totalCount < this.size) {
      await this.pool.query(select);
      return;
    }
    const client = new pg.Client({ ...this.settings, connectionTimeoutMillis: timeoutMs });
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(select);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#runner.query<R>(text, params);
  }

  exec(script: string): Promise<void> {
    return this.#runner.exec(script);
  }

  async transaction<T>(work: (tx: SqlRunner, first?: QueryResult) => Promise<T>, first?: string): Promise<T> {
    const client = await this.pool.connect();
    let broken: unknown;
    // A connection lost between statements (the server restarted, an operator ended the session)
    // is reported on the client, which would crash the process with no listener: the next statement fails instead.
    const onLost = (error: unknown): void => {
      broken = error;
    };
    client.on('error', onLost);
    try {
      // With `first`, one simple query of two statements: one round trip, and pg answers a result for each.
      const opened = first === undefined ? (await client.query('begin'), undefined) : lastResult(await client.query(`begin; ${first}`));
      const result = await work(runnerOf(client), opened);
      // A statement that failed inside the transaction (its error caught by the work) aborted it:
      // PostgreSQL then answers commit with ROLLBACK, and nothing of it was kept. Say so, as PGlite does.
      const committed = await client.query('commit');
      if (committed.command === 'ROLLBACK') {
        throw new KeelError(
          KeelErrorCode.INTERNAL,
          'The transaction was rolled back instead of committed: a statement in it failed and its error was caught. ' +
            'Let the error end db.transaction(), or check before the statement (a select, or insert ... on conflict) instead of catching its failure.',
        );
      }
      return result;
    } catch (error) {
      try {
        await client.query('rollback');
      } catch (rollbackError) {
        broken = rollbackError; // the connection is unusable: drop it from the pool
      }
      throw error;
    } finally {
      client.off('error', onLost);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async close(): Promise<void> {
    this.forget();
    const ended = this.pool.end();
    if (await within(ended, CLOSE_GRACE_MS)) return ended;
    // pg's Pool ends only its idle clients and waits for the others, which nothing else can end:
    // Client.end() destroys the socket of a client whose query is still running (the server then
    // rolls its transaction back), and the pool forgets the client once its query fails. The
    // clients are the pool's own list (pg-pool's `_clients`: no public API lists them).
    for (const client of (this.pool as unknown as { _clients?: pg.Client[] })._clients ?? []) void client.end().catch(() => undefined);
    await ended;
  }
}
