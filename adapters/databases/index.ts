/**
 * `keel/databases`: the databases of one process, from the environment. Which engine each
 * hosted module that owns data uses is decided once before anything opens; then those engines
 * are opened, and closed together. `keel start`, `keel up`, `keel db` and an application's own
 * entry point (the shop's `npm start`) share these rules, so that they agree on where a
 * module's data is:
 *
 * - `DATABASE_URL_<MODULE>` (the module's name in upper snake case, `DATABASE_URL_ORDERS`): the
 *   module's own PostgreSQL;
 * - else `DATABASE_URL`: PostgreSQL, every module in its own schema;
 * - else the embedded PGlite, in `KEEL_DATA_DIR` (`memory`: in memory), by default in
 *   `<project>/.keel/data/<process>`: `KEEL_PROCESS_NAME` (the process group's name, which
 *   `keel up` and `keel deploy` set), else `app`.
 *
 * `KEEL_DATABASE_POOL_SIZE` sets the connections each module keeps to its PostgreSQL (1 to 100,
 * default 5).
 *
 * A light entry: it loads neither the CLI nor a database driver. The adapters are imported only
 * when a module needs them: a process hosting no module that owns data loads neither PGlite
 * nor pg.
 *
 * @example
 * ```ts
 * import { openDatabases, planDatabases } from 'keel/databases';
 *
 * const databases = await openDatabases(planDatabases(hosted, { env: process.env, root: process.cwd() }), process.cwd());
 * const kernel = createKernel({ modules, database: databases.engineOf });
 * // ... after kernel.stop():
 * await databases.close();
 * ```
 */
import { existsSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { KeelError, KeelErrorCode, isKeelError, type AnyModule, type DatabaseEngine, type Logger } from 'keel';
import { schemaOf } from 'keel/transport';
import { LOCK_FILE, holdFolder } from './folder-lock.js';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The variables that choose a module's database, and their fixed values.
 *
 * @example
 * ```ts
 * env[DatabaseEnv.URL]; // 'postgres://keel@db.internal:5432/shop', or undefined for the embedded database
 * ```
 */
export const DatabaseEnv = {
  /** PostgreSQL for every module that owns data (each in its own schema). */
  URL: 'DATABASE_URL',
  /** The folder of the embedded database when no URL is set; `memory` keeps it in memory. */
  DATA_DIR: 'KEEL_DATA_DIR',
  /** The `KEEL_DATA_DIR` value that keeps the embedded database in memory. */
  IN_MEMORY: 'memory',
  /** Under the project, the folder holding one embedded database per process. */
  DEFAULT_DATA_DIR: '.keel/data',
  /** The process name of a process no topology names (`keel start` alone, `keel db`), as `keel up` names its one process. */
  DEFAULT_PROCESS: 'app',
  /** The connections each module that owns data keeps to its PostgreSQL: 1 to 100 (default 5, `createPostgresDatabase`'s `poolSize`). */
  POOL_SIZE: 'KEEL_DATABASE_POOL_SIZE',
} as const;

/**
 * The variable naming one module's own database: `DATABASE_URL_` and the module's schema name
 * in upper case.
 *
 * @example
 * ```ts
 * moduleDatabaseVariable('order-history'); // 'DATABASE_URL_ORDER_HISTORY'
 * ```
 */
export function moduleDatabaseVariable(module: string): string {
  return `${DatabaseEnv.URL}_${schemaOf(module).toUpperCase()}`;
}

/** Where one module's data lives, as the environment says, before anything opens. */
export type DatabaseSource =
  /** `poolSize` undefined: the adapter's default. */
  | { readonly engine: 'postgres'; readonly url: string; readonly variable: string; readonly poolSize?: number | undefined }
  /** `dataDir` undefined: in memory. */
  | { readonly engine: 'pglite'; readonly dataDir: string | undefined };

/**
 * One hosted module that owns data, with its schema, its migrations and its database.
 *
 * @example
 * ```ts
 * const [orders] = planDatabases(modules, { env: process.env, root: project.root });
 * orders?.source.engine; // 'pglite'
 * ```
 */
export interface PlannedDatabase {
  readonly module: string;
  readonly schema: string;
  /** The module's migrations folder (`data.migrations` of its defineModule). */
  readonly migrations: URL | string;
  readonly source: DatabaseSource;
}

/**
 * What decides the databases: the environment, and the project folder (the default folder of
 * the embedded database is under it, and a relative `KEEL_DATA_DIR` is relative to it).
 *
 * @example
 * ```ts
 * const settings: DatabaseSettings = { env: cli.env, root: project.root };
 * ```
 */
export interface DatabaseSettings {
  readonly env: Env;
  readonly root: string;
}

const valueOf = (env: Env, name: string): string | undefined => env[name]?.trim() || undefined;

/** The URL of `variable`, refused (naming the variable, never showing the value: it may hold a password) unless it is a PostgreSQL URL. */
function postgresUrl(variable: string, value: string): string {
  const scheme = /^([a-zA-Z][\w+.-]*):/.exec(value)?.[1];
  let wrong: string | undefined;
  if (!/^postgres(ql)?:\/\//.test(value)) wrong = scheme === undefined ? 'it is not a URL' : `it is a "${scheme}:" URL`;
  else if (!URL.canParse(value)) wrong = 'it does not parse as a URL (an @, / or # in the user or password must be percent-encoded)';
  if (wrong === undefined) return value;
  throw new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    `${variable} is not a PostgreSQL URL: ${wrong}. It takes postgres://user:password@host:5432/database (or postgresql://). ` +
      `Unset it to keep the data in the embedded database (PGlite, in ${DatabaseEnv.DEFAULT_DATA_DIR}/ or ${DatabaseEnv.DATA_DIR}).`,
  );
}

/**
 * True when `value` is what `KEEL_DATABASE_POOL_SIZE` takes: a whole number of connections from 1
 * to 100, written in digits.
 *
 * @example
 * ```ts
 * isDatabasePoolSize('20'); // true
 * isDatabasePoolSize('0');  // false
 * ```
 */
export function isDatabasePoolSize(value: string): boolean {
  return /^\d{1,3}$/.test(value) && Number(value) >= 1 && Number(value) <= 100;
}

/**
 * `KEEL_DATABASE_POOL_SIZE`, when set: a whole number of connections from 1 to 100, else
 * `INVALID_CONFIG` naming it. Read where a module's PostgreSQL is, as the URLs are: a process
 * whose modules keep no data there leaves it alone.
 */
function poolSizeOf(env: Env): number | undefined {
  const value = valueOf(env, DatabaseEnv.POOL_SIZE);
  if (value === undefined) return undefined;
  if (isDatabasePoolSize(value)) return Number(value);
  throw new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    `${DatabaseEnv.POOL_SIZE} "${value}" is not a whole number of connections from 1 to 100. ` +
      'It sets how many connections each module that owns data keeps to its PostgreSQL; unset, 5.',
  );
}

/** The process's folder name under the default folder: its name, with anything a folder name should not hold replaced. */
function processFolder(env: Env): string {
  const name = (valueOf(env, 'KEEL_PROCESS_NAME') ?? '').replace(/[^\w.-]+/g, '-').replace(/^\.+/, '');
  return name || DatabaseEnv.DEFAULT_PROCESS;
}

/** The database of every module without a URL of its own. */
function sharedSource({ env, root }: DatabaseSettings): DatabaseSource {
  const url = valueOf(env, DatabaseEnv.URL);
  if (url !== undefined) return { engine: 'postgres', url: postgresUrl(DatabaseEnv.URL, url), variable: DatabaseEnv.URL, poolSize: poolSizeOf(env) };
  const dataDir = valueOf(env, DatabaseEnv.DATA_DIR);
  if (dataDir === DatabaseEnv.IN_MEMORY) return { engine: 'pglite', dataDir: undefined };
  return { engine: 'pglite', dataDir: resolve(root, dataDir ?? join(DatabaseEnv.DEFAULT_DATA_DIR, processFolder(env))) };
}

/**
 * The database of each of `modules` that owns data (declares `data`), in their order; the
 * others are left out. Reads the environment once and refuses a URL that is not PostgreSQL's,
 * or a pool size that is not 1 to 100 (`INVALID_CONFIG`, naming the variable). Opens nothing.
 *
 * @example
 * ```ts
 * planDatabases(modules, { env: { DATABASE_URL_ORDERS: 'postgres://keel@db:5432/orders' }, root: '/srv/shop' });
 * // [{ module: 'orders', schema: 'orders', source: { engine: 'postgres', ... } }, { module: 'inventory', source: { engine: 'pglite', dataDir: '/srv/shop/.keel/data/app' } }]
 * ```
 */
export function planDatabases(modules: readonly AnyModule[], settings: DatabaseSettings): PlannedDatabase[] {
  let shared: DatabaseSource | undefined;
  const planned: PlannedDatabase[] = [];
  for (const module of modules) {
    if (module.data === undefined) continue;
    const variable = moduleDatabaseVariable(module.name);
    const own = valueOf(settings.env, variable);
    const source: DatabaseSource =
      own === undefined
        ? (shared ??= sharedSource(settings))
        : { engine: 'postgres', url: postgresUrl(variable, own), variable, poolSize: poolSizeOf(settings.env) };
    planned.push({ module: module.name, schema: schemaOf(module.name), migrations: module.data.migrations, source });
  }
  return planned;
}

/** A folder as keel prints it: relative to the project when inside it. */
export function shownFolder(folder: string, root: string): string {
  const inside = relative(root, folder);
  return inside !== '' && !inside.startsWith('..') && !isAbsolute(inside) ? inside : folder;
}

/**
 * One module's database, opened.
 *
 * @example
 * ```ts
 * for (const { module, engine, location } of databases.modules) console.log(`${module}: ${engine.name} ${location}`);
 * ```
 */
export interface OpenDatabase {
  readonly module: string;
  readonly schema: string;
  readonly migrations: URL | string;
  readonly engine: DatabaseEngine;
  /** Where its data lives, safe to print (no password): `in .keel/data/app`, `in memory`, `at 127.0.0.1:5432/shop (DATABASE_URL_ORDERS)`. */
  readonly location: string;
}

/**
 * The engines of one process, from {@link openDatabases}.
 *
 * @example
 * ```ts
 * const databases = await openDatabases(planDatabases(modules, settings), settings.root);
 * const kernel = createKernel({ modules, database: databases.engineOf });
 * // ... after kernel.stop():
 * await databases.close();
 * ```
 */
export interface OpenDatabases {
  /** Every planned module, in plan order. */
  readonly modules: readonly OpenDatabase[];
  /** A module's engine: what createKernel's `database` takes in its function form. */
  readonly engineOf: (module: string) => DatabaseEngine;
  /** Closes every engine and releases the embedded database's folder. Idempotent. */
  close(): Promise<void>;
}

/**
 * Takes the folder of an embedded database for this process, as {@link openDatabases} does
 * before PGlite opens it: `keel.lock` in it holds this process's pid, and a lock whose process
 * has ended is taken over (by one process only, however many find it). Throws `UNAVAILABLE`
 * naming the process that holds it. Returns the release. For a tool that opens the folder itself.
 *
 * @example
 * ```ts
 * const release = holdDatabaseFolder('.keel/data/app');
 * try {
 *   // open PGlite on the folder, use it, close it
 * } finally {
 *   release();
 * }
 * ```
 */
export function holdDatabaseFolder(folder: string, root: string = process.cwd()): () => void {
  const absolute = resolve(root, folder);
  const shown = shownFolder(absolute, root);
  return holdFolder(absolute, (holder) => {
    const where = holder === 'this process' ? 'this process already' : holder === 'unknown' ? 'another process' : `process ${holder}`;
    const who = holder === 'unknown' ? 'no keel process uses it' : `process ${holder} is not keel`;
    const note = holder === 'this process' ? '' : ` If ${who}, delete ${join(shown, LOCK_FILE)}.`;
    return new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `The embedded database in ${shown} is open in ${where}, and PGlite serves one process at a time. ` +
        `Stop that one first (a keel start, keel up or npm start), or give this one another folder with ${DatabaseEnv.DATA_DIR}.${note}`,
    );
  });
}

/** Opens the embedded database: in memory, or in its folder, held for this process. */
async function openPGlite(dataDir: string | undefined, root: string): Promise<{ engine: DatabaseEngine; release: () => void }> {
  const { createPGliteDatabase } = await import('keel/pglite');
  if (dataDir === undefined) return { engine: await createPGliteDatabase(), release: () => {} };
  const shown = shownFolder(dataDir, root);
  const cannotOpen = (error: unknown) =>
    new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `The embedded database (PGlite) cannot open ${shown}${existsSync(join(dataDir, 'PG_VERSION')) ? '' : ' (a new one)'}: ${(error as Error).message}. ` +
        `Set ${DatabaseEnv.DATA_DIR} to a folder this process may write (${DatabaseEnv.IN_MEMORY} keeps the data in memory), or ${DatabaseEnv.URL} to a PostgreSQL.`,
      { cause: error },
    );
  let release: () => void;
  try {
    release = holdDatabaseFolder(dataDir, root);
  } catch (error) {
    throw isKeelError(error) ? error : cannotOpen(error);
  }
  try {
    return { engine: await createPGliteDatabase({ dataDir }), release };
  } catch (error) {
    release();
    throw cannotOpen(error);
  }
}

/** Options of {@link openDatabases}. */
export interface OpenDatabasesOptions {
  /**
   * Told, at info, when the embedded database starts to open: PGlite takes seconds to start, and
   * longer to create a new folder, so a start that seems to hang says why.
   */
  readonly logger?: Logger | undefined;
}

/**
 * Opens one engine per distinct database of `plan`: one PGlite for the modules on the embedded
 * database, one PostgreSQL engine per URL (PostgreSQL connects when a module first uses it).
 * Imports `keel/pglite` and `keel/postgres` only when the plan uses them. If one fails to open,
 * those already open are closed.
 *
 * @example
 * ```ts
 * const databases = await openDatabases(planDatabases(hosted, { env, root }), root);
 * ```
 */
export async function openDatabases(plan: readonly PlannedDatabase[], root: string, options: OpenDatabasesOptions = {}): Promise<OpenDatabases> {
  const opened = new Map<string, { engine: DatabaseEngine; release: () => void; location: string }>();
  const closeAll = async () => {
    const engines = [...opened.values()];
    opened.clear();
    await Promise.all(
      engines.map(async ({ engine, release }) => {
        try {
          await engine.close();
        } finally {
          release();
        }
      }),
    );
  };
  const modules: OpenDatabase[] = [];
  try {
    for (const { module, schema, migrations, source } of plan) {
      const key = source.engine === 'postgres' ? `postgres ${source.url}` : 'pglite';
      let entry = opened.get(key);
      if (entry === undefined) {
        if (source.engine === 'postgres') {
          const { createPostgresDatabase } = await import('keel/postgres');
          const engine = createPostgresDatabase({ url: source.url, poolSize: source.poolSize });
          entry = { engine, release: () => {}, location: `at ${engine.location} (${source.variable})` };
        } else {
          const location = source.dataDir === undefined ? 'in memory' : `in ${shownFolder(source.dataDir, root)}`;
          const on = plan.filter((planned) => planned.source.engine === 'pglite').map((planned) => planned.module);
          const creating = source.dataDir !== undefined && !existsSync(join(source.dataDir, 'PG_VERSION'));
          options.logger?.info(
            { modules: on, engine: 'pglite', location },
            `${creating ? 'creating' : 'opening'} the embedded database (PGlite) ${location} for ${on.join(', ')}` +
              (creating ? ': a first start takes longer' : ''),
          );
          const { engine, release } = await openPGlite(source.dataDir, root);
          entry = { engine, release, location };
        }
        opened.set(key, entry);
      }
      modules.push({ module, schema, migrations, engine: entry.engine, location: entry.location });
    }
  } catch (error) {
    await closeAll();
    throw error;
  }
  const byModule = new Map(modules.map((entry) => [entry.module, entry.engine]));
  let closing: Promise<void> | undefined;
  return {
    modules,
    engineOf: (module) => byModule.get(module) as DatabaseEngine,
    close: () => (closing ??= closeAll()),
  };
}
