/**
 * keel/cli — the `keel` command as a library: typed topology files for `keel up`, the
 * command runner (for tests and for adding commands), the CLI's errors, and the databases
 * `keel start` opens from the environment (`planDatabases`, `openDatabases`), for an entry file
 * of its own that should find a module's data where `keel start` and `keel db` do.
 *
 * @example
 * ```ts
 * // topologies/split.ts
 * import { defineTopology } from 'keel/cli';
 *
 * export default defineTopology({
 *   processes: {
 *     storefront: { modules: ['catalog', 'orders'] },
 *     warehouse: { modules: ['inventory'], replicas: 2 },
 *   },
 * });
 * ```
 *
 * @module
 */

export {
  contextOf,
  defineCommand,
  renderHelp,
  runCli,
  type CliContext,
  type KeelCommandDef,
  type KeelCommandMeta,
  type OutputStream,
  type RunCliOptions,
  type SelfCommand,
  type SupervisorChannel,
  type SupervisorMessage,
} from './command.js';
export { CLIError, CliErrorCode, ExitCode, isCliError, type CLIErrorOptions } from './errors.js';
export { main } from './main.js';
export {
  ProcessGroupSchema,
  TopologySchema,
  defineTopology,
  loadTopology,
  parseTopology,
  type ProcessGroup,
  type TopologyFile,
  type TopologyInput,
} from './topology.js';
export { findProject, importProjectFile, loadManifest, type Project } from './project.js';
export { HttpOperations, startHost, type Host, type HostOptions, type HostedDatabase } from './host.js';
export {
  DatabaseEnv,
  moduleDatabaseVariable,
  openDatabases,
  planDatabases,
  type DatabaseSettings,
  type DatabaseSource,
  type OpenDatabase,
  type OpenDatabases,
  type PlannedDatabase,
} from 'keel/databases';
