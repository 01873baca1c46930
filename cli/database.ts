/**
 * The CLI's part of the databases of a process: refusing a topology whose processes would share
 * an embedded database folder. The rules themselves (which engine each module uses, opening
 * and closing them) are the light entry `keel/databases` (adapters/databases/index.ts), shared with
 * applications' own entry points.
 */
import type { AnyModule } from 'keel';
import { DatabaseEnv, planDatabases, shownFolder, type DatabaseSettings } from 'keel/databases';
import { CLIError, CliErrorCode } from './errors.js';


type Env = Readonly<Record<string, string | undefined>>;

/**
 * Refuses, before any process starts, a topology whose processes would open one embedded
 * database folder: PGlite serves one process, and two on one folder corrupt it. That is two
 * process groups given one `KEEL_DATA_DIR`, or a group of several replicas on a folder (each
 * replica would also hold data of its own). In memory, or on PostgreSQL, anything goes.
 *
 * @example
 * ```ts
 * assertOwnDataFolders(
 *   [{ name: 'storefront', modules: [ordersModule], replicas: 2, env: {} }],
 *   { env: process.env, root: project.root },
 * ); // throws E_TOPOLOGY: replicas of "storefront" would share .keel/data/storefront
 * ```
 */
export function assertOwnDataFolders(
  groups: readonly { readonly name: string; readonly modules: readonly AnyModule[]; readonly replicas: number; readonly env: Env }[],
  settings: DatabaseSettings,
): void {
  const owners = new Map<string, string>();
  for (const group of groups) {
    const env = { ...settings.env, ...group.env, KEEL_PROCESS_NAME: group.name };
    const folders = new Set<string>();
    for (const { source } of planDatabases(group.modules, { env, root: settings.root })) {
      if (source.engine === 'pglite' && source.dataDir !== undefined) folders.add(source.dataDir);
    }
    for (const folder of folders) {
      const shown = shownFolder(folder, settings.root);
      const advice = `Set ${DatabaseEnv.URL} to a PostgreSQL, or ${DatabaseEnv.DATA_DIR}=${DatabaseEnv.IN_MEMORY} to keep each process's data in memory.`;
      if (group.replicas > 1) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `Process "${group.name}" runs ${group.replicas} replicas of modules that own data, and they would share the embedded database in ${shown}: ` +
            'PGlite serves one process.',
          { hint: `${advice} Or run one replica.` },
        );
      }
      const other = owners.get(folder);
      if (other !== undefined) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `Processes "${other}" and "${group.name}" host modules that own data, and both would open the embedded database in ${shown}: PGlite serves one process.`,
          { hint: `Unset ${DatabaseEnv.DATA_DIR} (each process then gets ${DatabaseEnv.DEFAULT_DATA_DIR}/<process>), or give them folders of their own in their env. ${advice}` },
        );
      }
      owners.set(folder, group.name);
    }
  }
}
