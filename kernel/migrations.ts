/**
 * Migrations of a module's schema: keel's own tables (outbox, inbox, idempotency) first, then
 * the module's `.sql` files in name order (numbers by value: `9_` before `10_`). Each is applied once and recorded with its checksum
 * in the schema's `keel_migrations`; all pending ones run in one transaction under an advisory
 * lock, so that two instances starting together apply them once, and a failing one leaves the
 * schema as it was.
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { quoteIdentifier, type SchemaConnection, type SqlRunner } from './database.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { byName, isApplied, isSystem, lastApplied, refuseFolderGone, refuseOutOfOrder, refuseRenamed, type Applied } from './migration-checks.js';

/** One migration: its name (the file name), its SQL and the checksum recorded when applied. */
export interface Migration {
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

/** Where one migration of a schema stands. */
export interface MigrationState {
  readonly name: string;
  readonly state: 'applied' | 'pending' | 'changed' | 'missing';
  /** When it was applied (ISO 8601), for `applied`, `changed` and `missing`. */
  readonly appliedAt?: string;
  /** For `missing`: the pending file with its content, when one has it (the file renamed, which keel start refuses). */
  readonly renamedAs?: string;
  /** For `pending`: the last applied migration it sorts before (merged below it, which keel start refuses). */
  readonly sortsBefore?: string;
}

/** What {@link migrate} tells its caller while it works. */
export interface MigrateOptions {
  /**
   * Called once, with a sentence naming the database session that holds it, when another session
   * holds the schema's migration lock (another instance applying migrations): keel then waits for it.
   */
  readonly onLockWait?: (message: string) => void;
  /**
   * Aborted when the start that migrates is stopped (`kernel.stop()` during `kernel.start()`): a
   * wait for the migration lock is given up at once (the transaction is rolled back, nothing was
   * applied), and {@link migrate} rejects with the signal's reason. Migrations being applied once
   * the lock is taken are not interrupted by it.
   */
  readonly signal?: AbortSignal;
}

/** How often a migration that waits for the schema's lock asks for it again (a wait its signal can give up). */
const LOCK_RETRY_MS = 200;

/** keel's own tables in every data module's schema, applied before the module's migrations. */
const SYSTEM_MIGRATIONS: readonly Migration[] = [
  migration(
    'keel/001_outbox_inbox_idempotency',
    `
create table keel_outbox (
  seq bigserial primary key,
  id text not null unique,
  event text not null,
  payload jsonb not null,
  correlation_id text not null,
  traceparent text,
  published_at timestamptz not null default now(),
  attempts integer not null default 0,
  claimed_until timestamptz,
  last_error text,
  sent_at timestamptz
);
create index keel_outbox_unsent on keel_outbox (seq) where sent_at is null;
create table keel_inbox (
  event_id text primary key,
  source text not null,
  event text not null,
  handled_at timestamptz not null default now()
);
create table keel_idempotency (
  key text not null,
  operation text not null,
  input_hash text not null,
  state text not null,
  outcome jsonb,
  started_at timestamptz not null default now(),
  expires_at timestamptz not null,
  completed_at timestamptz,
  primary key (operation, key)
);
`,
  ),
  migration(
    'keel/002_outbox_failed',
    `
-- An event the transport refuses for good (larger than the server takes) is set aside here,
-- so that the events after it still go out; last_error says why.
alter table keel_outbox add column failed_at timestamptz;
drop index keel_outbox_unsent;
create index keel_outbox_unsent on keel_outbox (seq) where sent_at is null and failed_at is null;
`,
  ),
  // The principal of the context an event was emitted in travels with it (event metadata).
  migration('keel/003_outbox_principal', 'alter table keel_outbox add column principal jsonb;\n'),
];

function migration(name: string, sql: string): Migration {
  return { name, sql, checksum: createHash('sha256').update(sql).digest('hex') };
}

/**
 * The `.sql` files of `folder`, in name order (numbers by value), after keel's own migrations. A
 * missing folder is a module with no migrations of its own yet; {@link migrate} refuses it for a
 * schema that has some applied.
 *
 * @example
 * ```ts
 * readMigrations(new URL('./migrations/', import.meta.url)).map((m) => m.name); // ['keel/001_...', '001_orders.sql']
 * ```
 */
export function readMigrations(module: string, folder: URL | string): Migration[] {
  const path = folder instanceof URL ? fileURLToPath(folder) : folder;
  let names: string[];
  try {
    if (!statSync(path).isDirectory()) throw new Error('not a folder');
    names = readdirSync(path).filter((name) => name.toLowerCase().endsWith('.sql'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [...SYSTEM_MIGRATIONS];
    throw new KeelError(
      KeelErrorCode.INVALID_MODULE,
      `Module "${module}": its migrations folder ${path} cannot be read (${(error as Error).message}). ` +
        "data.migrations must name a folder of .sql files, such as new URL('./migrations/', import.meta.url).",
    );
  }
  const misnamed = names.find((name) => !name.endsWith('.sql'));
  if (misnamed !== undefined) {
    throw new KeelError(
      KeelErrorCode.INVALID_MODULE,
      `Module "${module}": its migration ${misnamed} in ${path} ends in ${misnamed.slice(-4)}, and keel reads only files ending in .sql (lower case). ` +
        `Rename it to ${misnamed.slice(0, -4)}.sql, so that it is applied rather than skipped.`,
    );
  }
  names.sort(byName);
  return [...SYSTEM_MIGRATIONS, ...names.map((name) => migration(name, readFile(module, path, name)))];
}

/** One migration's SQL: a folder named `.sql`, or a file the process may not read, is said as such. */
function readFile(module: string, folder: string, name: string): string {
  try {
    return readFileSync(`${folder}/${name}`, 'utf8');
  } catch (error) {
    throw new KeelError(
      KeelErrorCode.INVALID_MODULE,
      `Module "${module}": its migration ${name} in ${folder} cannot be read (${(error as Error).message}). ` +
        'Each .sql entry of the migrations folder must be a file the process may read: rename or move what is not a migration.',
      { cause: error },
    );
  }
}

const LEDGER = `create table if not exists keel_migrations (
  name text primary key,
  checksum text not null,
  applied_at timestamptz not null default now()
)`;

/** A 64-bit advisory lock key for a schema's migrations, the same in every process. */
function lockKey(schema: string): bigint {
  return BigInt.asIntN(64, BigInt(`0x${createHash('sha256').update(`keel.migrate.${schema}`).digest('hex').slice(0, 16)}`));
}

/**
 * Takes the schema's migration lock in `tx`, and returns the transaction's id. When another
 * session holds the lock, `onLockWait` hears which one (pg_locks shows a 64-bit advisory key as
 * its high and low 32 bits, per database: a session migrating a schema of that name in another
 * database of the server holds a lock of its own, and is not the one) before keel waits for it.
 */
async function lock(tx: SqlRunner, module: string, schema: string, { onLockWait, signal }: MigrateOptions): Promise<string> {
  const key = lockKey(schema);
  signal?.throwIfAborted();
  const { rows } = await tx.query<{ got: boolean; id: string }>('select pg_try_advisory_xact_lock($1::bigint) as got, txid_current()::text as id', [key.toString()]);
  const { got, id } = rows[0] as { got: boolean; id: string };
  if (got) return id;
  if (onLockWait !== undefined) {
    const unsigned = BigInt.asUintN(64, key);
    const holders = await tx.query<{ pid: number; application: string | null; client: string | null; seconds: number | null }>(
      `select a.pid, nullif(a.application_name, '') as application, host(a.client_addr) as client,
              floor(extract(epoch from now() - a.xact_start))::int as seconds
         from pg_locks l join pg_stat_activity a on a.pid = l.pid
        where l.locktype = 'advisory' and l.granted and l.classid::bigint = $1 and l.objid::bigint = $2 and l.objsubid = 1
          and l.database = (select oid from pg_database where datname = current_database())`,
      [(unsigned >> 32n).toString(), (unsigned & 0xffffffffn).toString()],
    );
    const holder = holders.rows[0];
    const who =
      holder === undefined
        ? 'another database session'
        : `database session ${holder.pid}${holder.application === null ? '' : ` (${holder.application})`}${holder.client === null ? '' : ` from ${holder.client}`}` +
          `${holder.seconds === null ? '' : `, in its transaction for ${holder.seconds} s`}`;
    onLockWait(
      `Module "${module}": waiting for the migration lock of schema "${schema}", held by ${who}: another instance is applying migrations, ` +
        `and this one applies what is left when it is done. If that session is stuck, end it${holder === undefined ? '' : ` (select pg_terminate_backend(${holder.pid}))`}, and this one goes on.`,
    );
  }
  if (signal === undefined) {
    await tx.query('select pg_advisory_xact_lock($1::bigint)', [key.toString()]);
    return id;
  }
  // Asked again rather than waited for in one statement: a statement waiting for a lock cannot be
  // given up from here (only by ending its connection), and a stop during the start must not wait for it.
  for (;;) {
    // Node's timer rejects with an AbortError: the start is given up with the stop's own reason.
    await sleep(LOCK_RETRY_MS, undefined, { signal }).catch(() => signal.throwIfAborted());
    const again = await tx.query<{ got: boolean }>('select pg_try_advisory_xact_lock($1::bigint) as got', [key.toString()]);
    if (again.rows[0]?.got === true) return id;
  }
}

async function appliedMigrations(tx: SqlRunner): Promise<Map<string, Applied>> {
  const { rows } = await tx.query<Applied & Record<string, unknown>>('select name, checksum, applied_at from keel_migrations order by name');
  return new Map(rows.map((row) => [row.name, row]));
}

/**
 * Applies the pending migrations of `schema` in one transaction, under the schema's advisory
 * lock; returns the names applied. Refuses, before applying anything, a migration whose file
 * changed since it was applied, one renamed, a pending one that sorts before the last applied
 * one, one that opens a transaction of its own, and a list with none of the schema's applied
 * migrations (a build that left the folder out). One that ends keel's transaction anyway (a
 * COMMIT further in the file) is noticed, and nothing runs after it.
 */
export async function migrate(
  connection: SchemaConnection,
  module: string,
  schema: string,
  migrations: readonly Migration[],
  options: MigrateOptions = {},
): Promise<string[]> {
  return connection.transaction(async (tx) => {
    // The transaction's id, assigned here: a migration that committed or rolled it back leaves another (or none).
    const id = await lock(tx, module, schema, options);
    await tx.exec(LEDGER);
    const applied = await appliedMigrations(tx);
    for (const candidate of migrations) {
      const { name } = candidate;
      const done = applied.get(name);
      if (done !== undefined && !isApplied(done, candidate)) {
        throw new KeelError(
          KeelErrorCode.INVALID_MODULE,
          `Module "${module}": migration ${name} changed after it was applied to schema "${schema}". ` +
            'An applied migration is history: restore the file, and put the change in a new migration.',
        );
      }
    }
    const pending = migrations.filter((candidate) => !applied.has(candidate.name));
    refuseFolderGone(module, schema, applied, migrations);
    refuseRenamed(module, schema, applied, migrations, pending);
    refuseOutOfOrder(module, schema, applied, pending);
    const opening = pending.find((candidate) => OPENS_TRANSACTION.test(candidate.sql));
    if (opening !== undefined) {
      throw new KeelError(
        KeelErrorCode.INVALID_MODULE,
        `Module "${module}": migration ${opening.name} opens a transaction of its own (it starts with BEGIN or START TRANSACTION); nothing was applied to schema "${schema}". ` +
          `keel applies the pending migrations in one transaction, under the lock that makes instances starting together apply them once: remove BEGIN and COMMIT from ${opening.name}.`,
      );
    }
    for (const { name, sql, checksum } of pending) {
      // A savepoint of keel's transaction: a COMMIT in the file ends it, and a failure after a BEGIN of the file's own
      // (`COMMIT; BEGIN; ...`) aborts a transaction that has none, which tells the two apart.
      await tx.exec(`savepoint ${SAVEPOINT}`);
      try {
        await tx.exec(sql);
      } catch (error) {
        if (!(await stillIn(tx, id, true))) throw ended(module, schema, name, await recordedOf(tx, schema, pending), error);
        throw new KeelError(
          KeelErrorCode.INVALID_MODULE,
          `Module "${module}": migration ${name} failed in schema "${schema}"${lineOf(sql, error)}: ${(error as Error).message}. ` +
            `Nothing of this run was applied: fix ${name}, and start again (or run keel db migrate).${hintFor(error)}`,
          { cause: error },
        );
      }
      if (!(await stillIn(tx, id))) throw ended(module, schema, name, await recordedOf(tx, schema, pending));
      await tx.exec(`release savepoint ${SAVEPOINT}`);
      await tx.query('insert into keel_migrations (name, checksum) values ($1, $2)', [name, checksum]);
    }
    return pending.map((candidate) => candidate.name);
  });
}

/** A migration that starts (after comments) with BEGIN or START TRANSACTION: one of its own, which its COMMIT would end with keel's. */
const OPENS_TRANSACTION = /^(?:\s|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*(?:begin|start\s+transaction)\b/i;

/** The savepoint keel sets in its transaction before each migration. */
const SAVEPOINT = 'keel_migration';

/**
 * Whether `tx` is still the transaction `id`. After a migration `failed`, its savepoint is rolled
 * back to first: that fails where keel's transaction ended (a COMMIT in the file, then a failure,
 * perhaps in a transaction the file began, which is rolled back here so that what stayed can be read).
 */
async function stillIn(tx: SqlRunner, id: string, failed = false): Promise<boolean> {
  if (failed) {
    try {
      await tx.exec(`rollback to savepoint ${SAVEPOINT}`);
    } catch {
      await tx.exec('rollback').catch(() => undefined);
      return false;
    }
  }
  try {
    const { rows } = await tx.query<{ id: string | null }>('select txid_current_if_assigned()::text as id');
    return rows[0]?.id === id;
  } catch {
    return true;
  }
}

/**
 * Which of `pending` keel_migrations records once a migration ended keel's transaction: those
 * before it if that was a COMMIT, none if a ROLLBACK. Read by the schema's name: on PGlite the
 * transaction's search_path ended with it.
 */
async function recordedOf(tx: SqlRunner, schema: string, pending: readonly Migration[]): Promise<string[]> {
  try {
    const names = pending.map((candidate) => candidate.name);
    const { rows } = await tx.query<{ name: string }>(`select name from ${quoteIdentifier(schema)}.keel_migrations where name = any($1::text[])`, [names]);
    return names.filter((name) => rows.some((row) => row.name === name));
  } catch {
    return []; // the ledger itself was rolled back
  }
}

/** A migration that committed or rolled back keel's transaction: what it committed or ran after stays, unrecorded, and the lock is gone. */
function ended(module: string, schema: string, name: string, recorded: readonly string[], cause?: unknown): KeelError {
  return new KeelError(
    KeelErrorCode.INVALID_MODULE,
    `Module "${module}": migration ${name} ended the transaction keel applies migrations in (a COMMIT, ROLLBACK or END in the file), in schema "${schema}"` +
      `${cause === undefined ? '' : `, then failed: ${(cause as Error).message}`}. Nothing ran after it and ${name} is not recorded as applied, ` +
      `but what it committed, and what it ran after that, is kept (on the embedded database, outside the module's schema and role); ` +
      `of this run, keel_migrations records ${recorded.length === 0 ? 'none' : recorded.join(', ')}. ` +
      `Remove the transaction statements from ${name}, undo by hand what it did, and start again.`,
    cause === undefined ? undefined : { cause },
  );
}

/** ` (line 2)`: where in the file the database placed the error, when it did. */
function lineOf(sql: string, error: unknown): string {
  const position = Number((error as { position?: string }).position);
  return Number.isInteger(position) && position > 0 ? ` (line ${sql.slice(0, position - 1).split('\n').length})` : '';
}

/** What to do about a statement that cannot run in a transaction (25001: CREATE INDEX CONCURRENTLY, VACUUM, ...). */
function hintFor(error: unknown): string {
  if ((error as { code?: string }).code !== '25001') return '';
  return (
    ' keel applies every migration in a transaction: create the index without CONCURRENTLY (writes to the table wait while it builds), ' +
    'or build it concurrently by hand before deploying and make the migration create index if not exists (docs/data.md, Migrations).'
  );
}

/** Where each migration of `schema` stands, without changing anything. */
export async function migrationStatus(connection: SchemaConnection, migrations: readonly Migration[]): Promise<MigrationState[]> {
  return connection.transaction(async (tx) => {
    const { rows } = await tx.query<{ ledger: string | null }>("select to_regclass('keel_migrations')::text as ledger");
    const applied = rows[0]?.ledger == null ? new Map<string, Applied>() : await appliedMigrations(tx);
    const last = lastApplied(applied);
    const states: MigrationState[] = migrations.map((candidate) => {
      const { name } = candidate;
      const done = applied.get(name);
      if (done === undefined) {
        return last !== undefined && !isSystem(name) && byName(name, last.name) < 0 ? { name, state: 'pending', sortsBefore: last.name } : { name, state: 'pending' };
      }
      const appliedAt = new Date(done.applied_at).toISOString();
      return { name, state: isApplied(done, candidate) ? 'applied' : 'changed', appliedAt };
    });
    const known = new Set(migrations.map((candidate) => candidate.name));
    for (const [name, done] of applied) {
      if (known.has(name)) continue;
      const renamed = migrations.find((candidate) => !applied.has(candidate.name) && candidate.sql.trim() !== '' && isApplied(done, candidate));
      const appliedAt = new Date(done.applied_at).toISOString();
      states.push(renamed === undefined ? { name, state: 'missing', appliedAt } : { name, state: 'missing', appliedAt, renamedAs: renamed.name });
    }
    return states;
  });
}
