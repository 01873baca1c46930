/**
 * A Kysely dialect whose one "connection" is a module's `db`: PostgreSQL's compiler, adapter
 * and introspector, and a driver that sends each compiled query to `db.query`. Transactions are
 * `db.transaction`'s, carried in the call chain; Kysely's own are refused with what to use.
 */
import {
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type QueryResult,
} from 'kysely';
import { KeelError, KeelErrorCode, type Database } from 'keel';

class ModuleConnection implements DatabaseConnection {
  constructor(readonly db: Database) {}

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.db.query(compiledQuery.sql, compiledQuery.parameters);
    const kind = compiledQuery.query.kind;
    const changes = kind === 'InsertQueryNode' || kind === 'UpdateQueryNode' || kind === 'DeleteQueryNode' || kind === 'MergeQueryNode';
    return {
      rows: result.rows as R[],
      ...(changes ? { numAffectedRows: BigInt(result.rowCount) } : {}),
    };
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new KeelError(KeelErrorCode.INVALID_STATE, "keel/kysely does not stream; select in pages with limit and offset (or keyset) instead.");
  }
}

function refuseTransaction(): never {
  throw new KeelError(
    KeelErrorCode.INVALID_STATE,
    "Kysely's own transactions are not used with keel: wrap the work in db.transaction(async () => { ... }), " +
      'which every query of this Kysely instance joins, and which writes emitted events to the outbox.',
  );
}

class ModuleDriver implements Driver {
  readonly #connection: ModuleConnection;

  constructor(db: Database) {
    this.#connection = new ModuleConnection(db);
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return this.#connection;
  }

  async beginTransaction(): Promise<void> {
    refuseTransaction();
  }

  async commitTransaction(): Promise<void> {
    refuseTransaction();
  }

  async rollbackTransaction(): Promise<void> {
    refuseTransaction();
  }

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {}
}

class ModuleDialect implements Dialect {
  constructor(readonly db: Database) {}

  createDriver(): Driver {
    return new ModuleDriver(this.db);
  }

  createQueryCompiler(): PostgresQueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): PostgresAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(kysely: Kysely<unknown>): PostgresIntrospector {
    return new PostgresIntrospector(kysely);
  }
}

/**
 * A Kysely instance over a module's `db`: typed queries in the module's own schema, joining
 * `db.transaction` when run inside one.
 *
 * @example
 * ```ts
 * const sql = kyselyOf<{ stock: { sku: string; on_hand: number } }>(db);
 * const level = await sql.selectFrom('stock').select(['sku', 'on_hand']).where('sku', '=', sku).executeTakeFirst();
 * ```
 */
export function kyselyOf<Tables>(db: Database): Kysely<Tables> {
  if (typeof db !== 'object' || db === null || typeof db.query !== 'function') {
    throw new KeelError(KeelErrorCode.INVALID_INPUT, "kyselyOf takes a module's db (create: ({ db }) => ... kyselyOf<Tables>(db)).");
  }
  return new Kysely<Tables>({ dialect: new ModuleDialect(db) });
}
