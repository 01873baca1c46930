/**
 * What `keel db migrate` and `keel db status` share: the modules that own data (every one, those
 * of `KEEL_MODULES` when it is set, or the one named), their databases opened from the
 * environment as `keel start` opens them, and each module's schema connection with its
 * migrations, visited one module at a time. `keel db status` only reads
 * ({@link inspectEachModuleDatabase}): it creates no schema, no role, and no embedded database
 * folder.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { KeelError, KeelErrorCode } from 'keel';
import { migrate, migrationStatus, readMigrations, type Migration, type MigrationState, type SchemaConnection } from 'keel/transport';
import type { CliContext } from './command.js';
import { openDatabases, planDatabases, shownFolder, type PlannedDatabase } from 'keel/databases';
import { CLIError, CliErrorCode } from './errors.js';
import { NO_MODULES, hostedList } from './names.js';
import { findProject, loadManifest } from './project.js';

export { migrate, migrationStatus, type MigrationState };

/**
 * One module's database, as `keel db` prints it.
 *
 * @example
 * ```ts
 * const place: ModuleDatabasePlace = { module: 'ledger', schema: 'ledger', engine: 'pglite', location: 'in .keel/data/app' };
 * ```
 */
export interface ModuleDatabasePlace {
  readonly module: string;
  readonly schema: string;
  /** `pglite` or `postgres`. */
  readonly engine: string;
  /** Safe to print: `in .keel/data/app`, `in memory`, `at 127.0.0.1:5432/shop (DATABASE_URL)`. */
  readonly location: string;
}

/** What {@link eachModuleDatabase} hands each module's visit. */
export interface ModuleDatabaseVisit {
  readonly place: ModuleDatabasePlace;
  readonly connection: SchemaConnection;
  /** keel's own migrations, then the module's `.sql` files, in the order they apply. */
  readonly migrations: readonly Migration[];
}

/**
 * Opens the databases of the project's modules that own data (those of `KEEL_MODULES` when it
 * is set, or `only`), as `keel start` would with the same environment, and runs `visit` on each
 * module in manifest order, one at a time (PGlite runs one transaction at a time). Closes every
 * connection and engine after. An empty result: no such module owns data. `only` must name a
 * module of the manifest (`E_UNKNOWN_MODULE`) that owns data (`E_USAGE`), and one of
 * `KEEL_MODULES` where its database is the embedded one (`E_USAGE`). `onModule` hears of each
 * module before its migrations are read and its schema connected (what failed, when one does).
 *
 * @example
 * ```ts
 * await eachModuleDatabase(cli, undefined, async ({ place, connection, migrations }) =>
 *   migrate(connection, place.module, place.schema, migrations));
 * ```
 */
export async function eachModuleDatabase<T>(
  cli: CliContext,
  only: string | undefined,
  visit: (visit: ModuleDatabaseVisit) => Promise<T>,
  onModule?: (place: ModuleDatabasePlace) => void,
): Promise<{ place: ModuleDatabasePlace; result: T }[]> {
  const { plan, root } = await planOf(cli, only);
  if (plan.length === 0) return [];
  const databases = await openDatabases(plan, root);
  const results: { place: ModuleDatabasePlace; result: T }[] = [];
  try {
    for (const { module, schema, migrations, engine, location } of databases.modules) {
      const place = { module, schema, engine: engine.name, location };
      onModule?.(place);
      const files = readMigrations(module, migrations);
      const connection = await engine.connect(schema);
      try {
        results.push({ place, result: await visit({ place, connection, migrations: files }) });
      } finally {
        await connection.close();
      }
    }
  } finally {
    await databases.close();
  }
  return results;
}

/** The modules that own data (those of `KEEL_MODULES`, or `only`), planned from the environment; opens nothing. */
async function planOf(cli: CliContext, only: string | undefined): Promise<{ plan: PlannedDatabase[]; root: string }> {
  const project = findProject(cli.cwd);
  const modules = await loadManifest(project);
  const names = modules.map((module) => module.name);
  const hosted = hostedModules(cli.env, names);
  const settings = { env: cli.env, root: project.root };
  if (only === undefined) {
    return { plan: planDatabases(hosted === undefined ? modules : modules.filter((module) => hosted.includes(module.name)), settings), root: project.root };
  }
  const module = modules.find((candidate) => candidate.name === only);
  if (module === undefined) {
    throw new CLIError(CliErrorCode.E_UNKNOWN_MODULE, `No module named "${only}" in the manifest (it has: ${names.join(', ')}).`);
  }
  if (module.data === undefined) {
    throw new CLIError(CliErrorCode.E_USAGE, `Module "${only}" owns no data: its defineModule() declares no data: { migrations }.`, {
      hint: `Modules that own data: ${modules.filter((candidate) => candidate.data !== undefined).map((candidate) => candidate.name).join(', ') || 'none'}.`,
    });
  }
  const plan = planDatabases([module], settings);
  // Another process's module: in a shared PostgreSQL its schema is where it is, but the embedded database here is this process's.
  if (hosted !== undefined && !hosted.includes(only) && plan.some((entry) => entry.source.engine === 'pglite')) {
    const hostedText = hosted.length === 0 ? 'none: it hosts no module' : `"${cli.env['KEEL_MODULES']?.trim()}"`;
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `Module "${only}" is not hosted by this process (KEEL_MODULES is ${hostedText}), and the embedded database this environment names holds the data of its own modules only.`,
      { hint: `Run keel db with the environment of the process that hosts ${only} (its KEEL_PROCESS_NAME and KEEL_MODULES), or name one of this process's modules.` },
    );
  }
  return { plan, root: project.root };
}

/**
 * The modules `KEEL_MODULES` says this environment's process hosts (`keel deploy` sets it per
 * process, with `KEEL_PROCESS_NAME`, which names the embedded database's folder): `keel db` works
 * on their data, as `keel start` opens theirs only. Undefined when it is unset (every module);
 * `none` is none; an empty list is refused, as `keel start` refuses it.
 */
function hostedModules(env: CliContext['env'], names: readonly string[]): string[] | undefined {
  const text = env['KEEL_MODULES'];
  const hosted = hostedList(text?.trim() ? text : undefined, 'KEEL_MODULES');
  if (hosted === undefined) return undefined;
  const unknown = hosted.find((name) => !names.includes(name));
  if (unknown !== undefined) {
    throw new CLIError(CliErrorCode.E_UNKNOWN_MODULE, `KEEL_MODULES names "${unknown}", which is no module of the manifest (it has: ${names.join(', ')}).`);
  }
  return hosted;
}

/** What {@link inspectEachModuleDatabase} hands each module's visit. */
export interface ModuleDatabaseInspection {
  readonly place: ModuleDatabasePlace;
  /**
   * A read-only connection to the module's schema (`DatabaseEngine.inspect`), or undefined when
   * the schema does not exist yet (nor, for the embedded database, its folder).
   */
  readonly connection: SchemaConnection | undefined;
  /** keel's own migrations, then the module's `.sql` files, in the order they apply. */
  readonly migrations: readonly Migration[];
}

/** True when `dataDir` holds an embedded database (PGlite writes PG_VERSION when it makes one). */
const holdsDatabase = (dataDir: string): boolean => existsSync(join(dataDir, 'PG_VERSION'));

/**
 * As {@link eachModuleDatabase}, for a command that only reads: changes nothing in the
 * databases. An embedded database whose folder holds none yet is not opened (nor its folder
 * made); a schema is read as the connecting user, in read-only transactions, and never created.
 * A module whose schema does not exist is visited with no connection. A schema the user may
 * not use is `FORBIDDEN`, naming the rights `keel db status` needs.
 *
 * @example
 * ```ts
 * await inspectEachModuleDatabase(cli, undefined, async ({ connection, migrations }) =>
 *   connection === undefined ? 'no schema yet' : migrationStatus(connection, migrations));
 * ```
 */
export async function inspectEachModuleDatabase<T>(
  cli: CliContext,
  only: string | undefined,
  visit: (visit: ModuleDatabaseInspection) => Promise<T>,
): Promise<{ place: ModuleDatabasePlace; result: T }[]> {
  const { plan, root } = await planOf(cli, only);
  if (plan.length === 0) return [];
  // An embedded database not made yet is not opened: PGlite would make it, folder and all. Its folder, by module:
  const unmade = new Map<string, string>();
  for (const { module, source } of plan) {
    if (source.engine === 'pglite' && source.dataDir !== undefined && !holdsDatabase(source.dataDir)) unmade.set(module, source.dataDir);
  }
  const databases = await openDatabases(plan.filter((entry) => !unmade.has(entry.module)), root);
  const opened = new Map(databases.modules.map((entry) => [entry.module, entry]));
  const results: { place: ModuleDatabasePlace; result: T }[] = [];
  try {
    for (const entry of plan) {
      const files = readMigrations(entry.module, entry.migrations);
      const open = opened.get(entry.module);
      if (open === undefined) {
        const place = { module: entry.module, schema: entry.schema, engine: 'pglite', location: `in ${shownFolder(unmade.get(entry.module) as string, root)}` };
        results.push({ place, result: await visit({ place, connection: undefined, migrations: files }) });
        continue;
      }
      const { engine, schema, location } = open;
      const place = { module: entry.module, schema, engine: engine.name, location };
      if (engine.inspect === undefined) {
        throw new KeelError(
          KeelErrorCode.INVALID_CONFIG,
          `The ${engine.name} database engine cannot be read without changing it (it has no inspect()), so keel db status cannot show module "${entry.module}". ` +
            "Implement DatabaseEngine.inspect(schema) in the engine (read-only transactions, no schema or role created), or use keel/postgres or keel/pglite.",
        );
      }
      const connection = await engine.inspect(schema);
      try {
        const { present, user } = await schemaPresence(connection, schema);
        if (present === 'forbidden') throw forbidden(user, schema, engine.location);
        try {
          results.push({ place, result: await visit({ place, connection: present ? connection : undefined, migrations: files }) });
        } catch (error) {
          // 42501: insufficient_privilege (USAGE on the schema, but not SELECT on its keel_migrations).
          throw (error as { code?: string }).code === '42501' ? forbidden(user, schema, engine.location, error) : error;
        }
      } finally {
        await connection.close();
      }
    }
  } finally {
    await databases.close();
  }
  return results;
}

/** Whether `schema` exists, and whether the connecting user (named) may use it. */
async function schemaPresence(connection: SchemaConnection, schema: string): Promise<{ present: boolean | 'forbidden'; user: string }> {
  const { rows } = await connection.query<{ usable: boolean | null; user: string }>(
    "select (select has_schema_privilege(oid, 'USAGE') from pg_namespace where nspname = $1) as usable, current_user as user",
    [schema],
  );
  const row = rows[0] as { usable: boolean | null; user: string };
  return { present: row.usable === null ? false : row.usable || 'forbidden', user: row.user };
}

/** `FORBIDDEN`: the user may not read the schema's migrations, with the rights to grant. */
function forbidden(user: string, schema: string, location: string, cause?: unknown): KeelError {
  return new KeelError(
    KeelErrorCode.FORBIDDEN,
    `The database user ${user} may not read the migrations of schema "${schema}" at ${location}. keel db status needs USAGE on the schema and ` +
      `SELECT on its keel_migrations table: grant usage on schema ${schema} to ${user}; grant select on ${schema}.keel_migrations to ${user} ` +
      `(or, from PostgreSQL 14, grant pg_read_all_data to ${user}).`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * A module's heading in `keel db`'s text output.
 *
 * @example
 * ```ts
 * placeLine({ module: 'ledger', schema: 'ledger', engine: 'pglite', location: 'in .keel/data/app' });
 * // 'ledger: schema ledger, pglite in .keel/data/app'
 * ```
 */
export function placeLine(place: ModuleDatabasePlace): string {
  return `${place.module}: schema ${place.schema}, ${place.engine} ${place.location}`;
}

/** What `keel db` prints when no module owns data. */
export function noDataModule(env: CliContext['env']): string {
  const hosted = env['KEEL_MODULES']?.trim();
  if (hosted === NO_MODULES) return `KEEL_MODULES is ${NO_MODULES}: this process hosts no module, so it has no data`;
  const which = hosted ? `no module of KEEL_MODULES (${hosted})` : 'no module';
  return `${which} owns data (a module owns data when its defineModule() declares data: { migrations })`;
}
