/**
 * The CLI's part of the databases of a process: refusing a topology whose processes would share
 * an embedded database folder. The rules themselves (which engine each module uses, opening
 * and closing them) are the light entry `keel/databases` (adapters/databases/index.ts), shared with
 * applications' own entry points.
 */
import type { AnyModule } from 'keel';
import { DatabaseEnv, moduleDatabaseVariable, planDatabases, shownFolder, type DatabaseSettings } from 'keel/databases';
import { CLIError, CliErrorCode } from './errors.js';


type Env = Readonly<Record<string, string | undefined>>;

/**
 * Refuses, before any process starts, a topology whose processes would not keep a module's data
 * in one place:
 * - two processes on one embedded database folder: PGlite serves one process, and two on one
 *   folder corrupt it. That is two process groups given one `KEEL_DATA_DIR`, or a group of
 *   several replicas on a folder;
 * - a module that owns data running in more than one process (several groups host it, or one
 *   group of several replicas) on an embedded database, on disk or in memory: each process would
 *   keep a copy of its own, and a call would find what another copy wrote missing. Its
 *   processes must share a PostgreSQL (`DATABASE_URL`, or `DATABASE_URL_<MODULE>`).
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
  const planned = groups.map((group) => {
    const env = { ...settings.env, ...group.env, KEEL_PROCESS_NAME: group.name };
    return { group, databases: planDatabases(group.modules, { env, root: settings.root }) };
  });
  /** The embedded folders each group opens. */
  const foldersOf = (databases: (typeof planned)[number]['databases']): Set<string> =>
    new Set(databases.flatMap(({ source }) => (source.engine === 'pglite' && source.dataDir !== undefined ? [source.dataDir] : [])));
  for (const { group, databases } of planned) {
    const [folder] = foldersOf(databases);
    if (group.replicas > 1 && folder !== undefined) {
      throw new CLIError(
        CliErrorCode.E_TOPOLOGY,
        `Process "${group.name}" runs ${group.replicas} replicas of modules that own data, and they would share the embedded database in ${shownFolder(folder, settings.root)}: ` +
          'PGlite serves one process.',
        { hint: `Set ${DatabaseEnv.URL} to a PostgreSQL they share, or run one replica.` },
      );
    }
  }
  // Before two groups on one folder: for a module both host, a folder each (that check's advice)
  // would still split its data, and a shared PostgreSQL is the advice that holds.
  /** Per module that owns data: the groups hosting it, and where each keeps its data when embedded. */
  const hosts = new Map<string, { group: string; replicas: number; embedded?: string }[]>();
  for (const { group, databases } of planned) {
    for (const { module, source } of databases) {
      const embedded = source.engine !== 'pglite' ? undefined : source.dataDir === undefined ? 'memory' : shownFolder(source.dataDir, settings.root);
      hosts.set(module, [...(hosts.get(module) ?? []), { group: group.name, replicas: group.replicas, ...(embedded === undefined ? {} : { embedded }) }]);
    }
  }
  for (const [module, where] of hosts) {
    const instances = where.reduce((sum, host) => sum + host.replicas, 0);
    const embedded = where.filter((host) => host.embedded !== undefined);
    if (instances < 2 || embedded.length === 0) continue;
    const processes = where.length === 1 ? `the ${instances} replicas of process "${where[0]?.group}"` : `processes ${where.map((host) => `"${host.group}"`).join(' and ')}`;
    const places = [...new Set(embedded.map((host) => (host.embedded === 'memory' ? 'in memory' : `in ${host.embedded}`)))].join(', ');
    throw new CLIError(
      CliErrorCode.E_TOPOLOGY,
      `Module "${module}" owns data and runs in ${processes}, with an embedded database (${places}): each process would keep a copy of its own, ` +
        'and a call would find what another copy wrote missing.',
      { hint: `Set ${DatabaseEnv.URL} (or ${moduleDatabaseVariable(module)}) to a PostgreSQL they share, or host "${module}" in one process of one replica.` },
    );
  }
  const owners = new Map<string, string>();
  for (const { group, databases } of planned) {
    for (const folder of foldersOf(databases)) {
      const other = owners.get(folder);
      if (other !== undefined) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `Processes "${other}" and "${group.name}" host modules that own data, and both would open the embedded database in ${shownFolder(folder, settings.root)}: PGlite serves one process.`,
          {
            hint:
              `Unset ${DatabaseEnv.DATA_DIR} (each process then gets ${DatabaseEnv.DEFAULT_DATA_DIR}/<process>), or give them folders of their own in their env. ` +
              `Or set ${DatabaseEnv.URL} to a PostgreSQL, or ${DatabaseEnv.DATA_DIR}=${DatabaseEnv.IN_MEMORY} to keep each process's data in memory.`,
          },
        );
      }
      owners.set(folder, group.name);
    }
  }
}
