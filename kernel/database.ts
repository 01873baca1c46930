/**
 * Module-owned data: the database a module declares it owns (`data` in defineModule), and the
 * port a database adapter implements (PGlite embedded, PostgreSQL). Each module gets its own
 * schema: unqualified table names resolve there, and its migrations, outbox, inbox and
 * idempotency records live there.
 */

/** One row of a query result: column name to value. */
export type Row = Record<string, unknown>;

/**
 * What a query returns.
 *
 * @example
 * ```ts
 * const { rows, rowCount } = await db.query<{ sku: string; on_hand: number }>('select sku, on_hand from stock where sku = $1', [sku]);
 * ```
 */
export interface QueryResult<R extends Row = Row> {
  readonly rows: R[];
  /** Rows returned, or changed by an insert, update or delete. */
  readonly rowCount: number;
}

/**
 * Runs SQL: one parameterised statement (`query`, `$1`, `$2`... placeholders), or a script of
 * several statements without parameters (`exec`, as migrations are). A statement that fails
 * rejects with an error whose `code` is PostgreSQL's SQLSTATE, as node-postgres and PGlite give
 * it: an engine must keep it (the kernel's inbox reads `23505` and `25P02`).
 *
 * @example
 * ```ts
 * await sql.exec('create table stock (sku text primary key, on_hand int not null)');
 * await sql.query('insert into stock (sku, on_hand) values ($1, $2)', ['KB-001', 5]);
 * ```
 */
export interface SqlRunner {
  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  exec(script: string): Promise<void>;
}

/**
 * A module's database: its own schema, with transactions. A query made inside `transaction`
 * (anywhere in the call chain of `work`, by this module) joins that transaction; so does
 * `emit`, whose event is written to the module's outbox and published if and only if the
 * transaction commits.
 *
 * @example
 * ```ts
 * create: ({ db, emit }) => ({
 *   handlers: {
 *     cancelOrder: ({ orderId }) =>
 *       db.transaction(async () => {
 *         const { rowCount } = await db.query("update orders set status = 'cancelled' where id = $1 and status = 'placed'", [orderId]);
 *         if (rowCount === 0) throw new OrderNotCancellable({ orderId });
 *         await emit('orderCancelled', { orderId }); // published once the update commits, never if it rolls back
 *         return { orderId, status: 'cancelled' as const };
 *       }),
 *   },
 * }),
 * ```
 */
export interface Database extends SqlRunner {
  /** The module's schema (its name, in snake case). */
  readonly schema: string;
  /**
   * Runs `work` in one transaction: committed when it resolves, rolled back when it throws.
   * A nested call runs in a savepoint of the outer transaction: when it throws, its own work is
   * undone, and the outer transaction goes on if the error is caught.
   */
  transaction<T>(work: () => Promise<T>): Promise<T>;
}

/**
 * What a module declares in defineModule's `data`: that it owns data, and where its migrations
 * are: a folder of `.sql` files applied in name order (`001_orders.sql`, `002_...`), each once,
 * at start, under a lock, all pending ones in one transaction.
 *
 * @example
 * ```ts
 * defineModule({ contract: orders, data: { migrations: new URL('./migrations/', import.meta.url) }, create: ({ db }) => ... });
 * ```
 */
export interface ModuleData {
  /** The folder of the module's `.sql` migrations (a `file:` URL or a path). */
  readonly migrations: URL | string;
}

/**
 * One module's connection to its schema, as a {@link DatabaseEngine} gives it: unqualified
 * names resolve in the schema.
 *
 * @example
 * ```ts
 * const connection = await engine.connect('orders');
 * await connection.transaction(async (tx) => tx.query('insert into orders (id) values ($1)', [id]));
 * ```
 */
export interface SchemaConnection extends SqlRunner {
  /**
   * Runs `work` on one connection in one transaction: commit when it resolves, rollback when it throws.
   *
   * `first`, when given, is a script without parameters to run first in the transaction, sent
   * with its `begin` in one round trip where the engine can; `work` gets the result of its last
   * statement. The kernel passes it only to an engine that says it runs it
   * ({@link DatabaseEngine.firstStatement}). Such an engine runs it after its own set-up of the
   * transaction (a schema, a role), rejects the transaction when it fails (with the error's
   * SQLSTATE as `code`, as for any statement), and hands `work` its last statement's result. The
   * kernel opens a durable event's inbox transaction this way: the record of the event, one round
   * trip less per event.
   *
   * @example
   * ```ts
   * const record = "insert into seen (id) values ('e-1') on conflict do nothing";
   * await connection.transaction(async (tx, recorded) => {
   *   recorded ??= await tx.query(record); // an engine without firstStatement: run it here
   *   if (recorded.rowCount === 0) return; // the record was there already
   *   await tx.query('update orders set status = $1 where id = $2', ['paid', id]);
   * }, engine.firstStatement ? record : undefined);
   * ```
   */
  transaction<T>(work: (tx: SqlRunner, first?: QueryResult) => Promise<T>, first?: string): Promise<T>;
  /**
   * Whether the database answers, for the kernel's health check (`databaseCheckMs`): resolves
   * once it answered a `select 1`, rejects when it failed or did not answer within `timeoutMs`.
   * Two things a plain `query('select 1')` does not do:
   *
   * - It does not queue behind the module's own work. When every connection is busy with the
   *   module's statements, a `select 1` waiting for one would read a busy pool as an outage; an
   *   engine with a pool checks on a connection of its own instead, opened for that check only.
   * - A `select 1` without an answer in `timeoutMs` is given up client side, and its connection
   *   is closed, not reused: a connection to a server that stopped answering without refusing (a
   *   network that drops packets) would otherwise stay taken until TCP gives up.
   *
   * Optional for engines written before it: the kernel then runs `query('select 1')`, which
   * waits for a connection like any statement and is never cancelled.
   *
   * @example
   * ```ts
   * await connection.ping?.(5_000); // rejects with why, when the database does not answer
   * ```
   */
  ping?(timeoutMs: number): Promise<void>;
  /** Releases the connection's resources. */
  close(): Promise<void>;
}

/**
 * The port a database adapter implements. `createPGliteDatabase()` (`keel/pglite`) and
 * `createPostgresDatabase()` (`keel/postgres`) are the two keel ships.
 *
 * @example
 * ```ts
 * const database = await createPostgresDatabase({ url: process.env.DATABASE_URL });
 * const kernel = createKernel({ modules, database });
 * await kernel.start(); // each data module: schema created, migrations applied
 * await kernel.stop();
 * await database.close(); // the kernel does not close it
 * ```
 */
export interface DatabaseEngine {
  /** `pglite` or `postgres`, for logs and status. */
  readonly name: string;
  /** Where the data lives, safe to log (no password): `in memory`, `.keel/data`, `127.0.0.1:5432/shop`. */
  readonly location: string;
  /**
   * True when the engine runs one transaction at a time (PGlite): a module holding a
   * transaction while another module of the same process queries would wait forever, so the
   * kernel refuses that query with a message instead.
   */
  readonly oneTransactionAtATime: boolean;
  /**
   * How many connections each {@link DatabaseEngine.connect} may hold at once (its pool's size;
   * 1 for PGlite). The kernel runs one fewer of a module's inbox transactions at once (at least
   * one), so that its calls keep a connection. Optional for engines written before it: 1 is
   * assumed for one that runs one transaction at a time, else 5.
   */
  readonly connections?: number;
  /**
   * True when its connections' {@link SchemaConnection.transaction} runs a `first` script and
   * hands `work` its result. Optional for engines written before it: the kernel then sends no
   * `first`, and runs the script as the transaction's first statement itself.
   */
  readonly firstStatement?: boolean;
  /** Creates `schema` if needed; returns a connection whose unqualified names resolve in it. */
  connect(schema: string): Promise<SchemaConnection>;
  /**
   * Returns a connection to read `schema` that creates and changes nothing: no schema, no role,
   * no folder, and its transactions are read only. Unqualified names resolve in the schema,
   * which may not exist (they then resolve nowhere). It runs as the connecting user, not as the
   * module's role, so that an operator with read-only rights may use it. `keel db status` uses
   * it; an engine without it cannot serve `keel db status`, which says so. Optional for engines
   * written before it.
   *
   * @example
   * ```ts
   * const reader = await engine.inspect?.('orders');
   * const { rows } = await reader!.query("select exists (select 1 from pg_namespace where nspname = $1) as present", ['orders']);
   * await reader!.close();
   * ```
   */
  inspect?(schema: string): Promise<SchemaConnection>;
  /** Closes every connection. Idempotent. */
  close(): Promise<void>;
}

/**
 * The schema of a module: its name in snake case (`orderHistory` → `order_history`).
 *
 * @example
 * ```ts
 * schemaOf('orders'); // 'orders'
 * ```
 */
export function schemaOf(module: string): string {
  return module.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/-/g, '_').toLowerCase();
}

/**
 * The role a module's connections run as: its schema's owner, with no rights on other modules'
 * schemas, so that naming another module's table (`inventory.stock`) is refused by the
 * database itself, not only by convention.
 *
 * @example
 * ```ts
 * roleOf('orders'); // 'keel_orders'
 * ```
 */
export function roleOf(schema: string): string {
  return `keel_${schema}`;
}

/**
 * The SQL that makes a module's schema and its role, idempotently: the role (no login), the
 * current user's membership in it (to `set role`), the schema owned by it.
 */
export function schemaSetup(schema: string): string {
  const role = roleOf(schema);
  const literal = quoteLiteral(role);
  return `do $keel$ begin
  if not exists (select 1 from pg_roles where rolname = ${literal}) then
    create role ${quoteIdentifier(role)} nologin;
  end if;
  if not pg_has_role(current_user, ${literal}, 'member') then
    execute 'grant ${quoteIdentifier(role).replace(/'/g, "''")} to ' || quote_ident(current_user);
  end if;
end $keel$;
create schema if not exists ${quoteIdentifier(schema)} authorization ${quoteIdentifier(role)};`;
}

/**
 * `value` as a quoted SQL string literal for a UTF-8 connection (node-postgres and PGlite connect
 * in UTF-8), escaped as libpq's `PQescapeLiteral` does there: quotes doubled, and when it holds a
 * backslash, doubled backslashes in an `E'...'` literal, so that it reads the same whatever
 * `standard_conforming_strings` is. For a statement that must travel without parameters (a
 * `first` script of {@link SchemaConnection.transaction}). `value` must hold no NUL character,
 * which PostgreSQL's text cannot hold either.
 */
export function quoteLiteral(value: string): string {
  const quoted = `'${value.replace(/'/g, "''")}'`;
  return value.includes('\\') ? `E${quoted.replace(/\\/g, '\\\\')}` : quoted;
}

/** `name` as a quoted SQL identifier. */
export function quoteIdentifier(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
