/**
 * What `keel db migrate` and `keel db status` share: the modules that own data (every one, or
 * the one named), their databases opened from the environment as `keel start` opens them, and
 * each module's schema connection with its migrations, visited one module at a time.
 */
import { migrate, migrationStatus, readMigrations, type Migration, type MigrationState, type SchemaConnection } from 'keel/transport';
import type { CliContext } from './command.js';
import { openDatabases, planDatabases } from 'keel/databases';
import { CLIError, CliErrorCode } from './errors.js';
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
 * Opens the databases of the project's modules that own data (or of `only`), as `keel start`
 * would with the same environment, and runs `visit` on each module in manifest order, one at
 * a time (PGlite runs one transaction at a time). Closes every connection and engine after.
 * An empty result: no module owns data. `only` must name a module of the manifest
 * (`E_UNKNOWN_MODULE`) that owns data (`E_USAGE`).
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
): Promise<{ place: ModuleDatabasePlace; result: T }[]> {
  const project = findProject(cli.cwd);
  const modules = await loadManifest(project);
  const selected = only === undefined ? modules : modules.filter((module) => module.name === only);
  if (only !== undefined && selected.length === 0) {
    throw new CLIError(
      CliErrorCode.E_UNKNOWN_MODULE,
      `No module named "${only}" in the manifest (it has: ${modules.map((module) => module.name).join(', ')}).`,
    );
  }
  if (only !== undefined && selected[0]?.data === undefined) {
    throw new CLIError(CliErrorCode.E_USAGE, `Module "${only}" owns no data: its defineModule() declares no data: { migrations }.`, {
      hint: `Modules that own data: ${modules.filter((module) => module.data !== undefined).map((module) => module.name).join(', ') || 'none'}.`,
    });
  }
  const plan = planDatabases(selected, { env: cli.env, root: project.root });
  if (plan.length === 0) return [];
  const databases = await openDatabases(plan, project.root);
  const results: { place: ModuleDatabasePlace; result: T }[] = [];
  try {
    for (const { module, schema, migrations, engine, location } of databases.modules) {
      const place = { module, schema, engine: engine.name, location };
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
export const NO_DATA_MODULE = "no module owns data (a module owns data when its defineModule() declares data: { migrations })";
