/**
 * What `keel up` and `keel dev` share: reading the project, its configuration and topology,
 * starting the nats-server the topology needs when none is given, and the `keel start` command
 * line and environment of each process the supervisor runs.
 */
import { writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { KeelErrorCode, isKeelError, type AnyModule } from 'keel';
import { NATS_ENV, natsOptionsFromEnv } from 'keel/nats';
import { logFormatOf, type LogFormat } from 'keel/transport';
import { loadAppConfig, loggingEnv } from './app-config.js';
import type { CliContext } from './command.js';
import { assertOwnDataFolders } from './database.js';
import { CLIError, CliErrorCode } from './errors.js';
import { NATS_CLIENT_USER, isGateway, natsAuthorization, natsEnvFile, natsUserEnvironment, natsUsers, type NatsUser } from './deploy/index.js';
import { stopGraceSecondsOf } from './deploy/grace.js';
import { servesHttp } from './http-port.js';
import { NO_MODULES, assertNoneHasNats } from './names.js';
import { launchNatsServer, type LaunchedNatsServer } from './nats-server.js';
import { findProject, loadManifest, type Project } from './project.js';
import type { ProcessSpec } from './supervisor.js';
import { httpPortClash, loadTopology, localPrefix, needsNats, replicaHttpPort, singleProcessTopology, type TopologyFile } from './topology.js';

/** A process of a local run: what the supervisor starts, and the modules it hosts. */
export interface LocalProcess extends ProcessSpec {
  /** Its process group in the topology (`storefront` for `storefront#2`). */
  readonly group: string;
  readonly modules: readonly string[];
  /** True when it is started without `--modules`, so it hosts every module of the manifest as it is then. */
  readonly hostsEveryModule: boolean;
  /**
   * True when it may serve HTTP with every module's operations, those hosted elsewhere too
   * (`KEEL_HTTP_OPERATIONS` all, or unset): its routes and schemas come from every contract.
   */
  readonly servesAllOperations: boolean;
}

/** Options of {@link prepareLocalRun}. */
export interface LocalRunOptions {
  readonly cli: CliContext;
  /** The command, as its own lines and files name it: `keel up` or `keel dev`. */
  readonly command: string;
  /** Where its own lines go (`keel up: ...`). */
  readonly log: (line: string) => void;
  /**
   * Told the processes' log format, and the environment they log by (its `KEEL_LOG_LEVEL`), once
   * the configuration is read and before any line goes to {@link log}: `keel up` and `keel dev`
   * write their own lines, and their failure, in that format.
   */
  readonly onLogFormat?: ((format: LogFormat, env: Readonly<Record<string, string | undefined>>) => void) | undefined;
  /** The topology file as given on the command line; undefined: one process. */
  readonly topology?: string | undefined;
  /** `--nats`, if given. */
  readonly nats?: string | undefined;
  /**
   * One process only (`keel dev` without a topology), started as `keel start` would be from this
   * shell: with `--modules` only when named, its `--http` (else the shell's PORT), as here.
   */
  readonly single?: { readonly modules?: readonly string[] | undefined; readonly http?: string | undefined } | undefined;
  /** The processes' log format when neither KEEL_LOG_FORMAT nor the configuration names one (default: pretty on a terminal, else json). */
  readonly defaultLogFormat?: LogFormat | undefined;
  /**
   * True (the default, `keel up`): the nats-server started here has one user per process group,
   * allowed the subjects its modules' contracts list at launch. False (`keel dev`): an open server
   * (no users, on 127.0.0.1 only), so that an operation, event or dependency added while it runs
   * is allowed once the processes restart.
   */
  readonly lockDown?: boolean | undefined;
}

/** What {@link prepareLocalRun} prepared; the nats-server, when it started one, runs until {@link LocalRun.stopNats}. */
export interface LocalRun {
  readonly project: Project;
  readonly modules: readonly AnyModule[];
  readonly topology: TopologyFile;
  readonly processes: readonly LocalProcess[];
  /** The format every process logs in (their `KEEL_LOG_FORMAT`). */
  readonly logFormat: LogFormat;
  readonly natsUrl: string | undefined;
  /**
   * Settles, with a sentence saying so, when the nats-server this run started exits before
   * {@link LocalRun.stopNats}: every process lost NATS, and nothing brings that server back.
   * Never settles when the run started none.
   */
  readonly natsLost: Promise<string>;
  /** Stops the nats-server this run started, if any. Idempotent. */
  stopNats(): Promise<void>;
}

/**
 * Reads and checks the project, its configuration and its topology, starts a locked-down
 * nats-server when the topology needs NATS and no URL is given, and describes every process.
 *
 * @example
 * ```ts
 * const run = await prepareLocalRun({ cli, command: 'keel up', log, topology: 'topologies/split.ts' });
 * const supervisor = createSupervisor({ processes: run.processes, output: cli.stdout, log });
 * ```
 */
export async function prepareLocalRun(options: LocalRunOptions): Promise<LocalRun> {
  const { cli, log } = options;
  const project = findProject(cli.cwd);
  const modules = await loadManifest(project);
  // Checked here once, rather than by every process failing in turn; each process reads it again as it starts.
  const { path: configPath, config } = await loadAppConfig(project);
  // Every process logs in the format this command would use itself (its children write to pipes,
  // which alone would make them JSON): KEEL_LOG_FORMAT, else the configuration's, else pretty
  // lines in a terminal and JSON lines elsewhere.
  const logEnv = loggingEnv(cli.env, config);
  const logFormat =
    !logEnv['KEEL_LOG_FORMAT']?.trim() && options.defaultLogFormat !== undefined ? options.defaultLogFormat : logFormatOf(logEnv, cli.stdout);
  options.onLogFormat?.(logFormat, logEnv);
  const names = modules.map((module) => module.name as string);
  const unknown = options.single?.modules?.filter((name) => !names.includes(name)) ?? [];
  if (unknown.length > 0) {
    throw new CLIError(CliErrorCode.E_UNKNOWN_MODULE, `--modules names ${unknown.join(', ')}, which the manifest does not have (it has ${names.join(', ')}).`);
  }
  const file = options.topology === undefined ? undefined : resolve(cli.cwd, options.topology);
  const loaded = file === undefined ? singleProcessTopology(options.single?.modules ?? names) : await loadTopology(project, file, names);
  // A topology's processes all serve under one prefix, the one their NATS permissions are written
  // for: its own, else the one they would inherit from this shell, made explicit. Only where they
  // use NATS: a topology of one process without a URL runs none.
  const givenNatsUrl = options.nats ?? loaded.nats.url ?? (cli.env['KEEL_NATS_URL'] || undefined);
  if (givenNatsUrl !== undefined) {
    const source =
      options.nats !== undefined
        ? { label: '--nats', code: CliErrorCode.E_USAGE }
        : loaded.nats.url !== undefined
          ? { label: `${relative(cli.cwd, file ?? '') || 'the topology'}'s nats.url`, code: CliErrorCode.E_TOPOLOGY }
          : { label: NATS_ENV.URL, code: CliErrorCode.E_USAGE };
    checkNatsUrl(givenNatsUrl, source.label, source.code, options.command);
  }
  // As keel start would refuse it, at once: a process hosting none has nothing to reach without a server, and keel dev starts none for one process.
  if (file === undefined) assertNoneHasNats(options.single?.modules, givenNatsUrl !== undefined);
  const usesNats = givenNatsUrl !== undefined || needsNats(loaded);
  const topology = file !== undefined && usesNats ? { ...loaded, nats: { ...loaded.nats, prefix: localPrefix(loaded, cli.env) } } : loaded;
  /** What the run is called in its first line: the topology's name or file; none for one process without a file. */
  const label = topology.name ?? (file === undefined ? undefined : relative(project.root, file));
  // Refused here, once, rather than by a process failing to listen, restarted in turn (Kubernetes, where each group has its Service, takes it).
  const clash = httpPortClash(topology);
  if (clash !== undefined) {
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `${relative(cli.cwd, file ?? '') || 'the topology'}: ${clash}, on this one host.`, {
      hint: 'Give each group HTTP ports of its own: a group with replicas takes one port per replica from its http on (or http: 0, any free port).',
    });
  }
  // Refused here, once, rather than by every process crashing in turn: a bad database URL, or two processes on one embedded database folder.
  assertOwnDataFolders(
    Object.entries(topology.processes).map(([name, spec]) => ({
      name,
      modules: modules.filter((module) => spec.modules.includes(module.name)),
      replicas: spec.replicas,
      env: spec.env,
    })),
    { env: cli.env, root: project.root },
  );

  let natsUrl = givenNatsUrl;
  let natsServer: LaunchedNatsServer | undefined;
  // The server started here is locked down (keel up): one user per process group, allowed what its
  // modules need. keel dev's is open, on loopback only: its permissions would be those of the
  // contracts at launch, and refuse what the next save adds.
  let users: NatsUser[] = [];
  if (natsUrl === undefined && needsNats(topology)) {
    const lockDown = options.lockDown ?? true;
    users = lockDown ? natsUsers(topology, modules) : [];
    natsServer = await launchNatsServer({ binary: cli.env['KEEL_NATS_SERVER_BIN'] || undefined, extraConfig: lockDown ? natsAuthorization(users) : undefined });
    natsUrl = natsServer.url;
    log(`started nats-server on ${natsUrl} (pid ${natsServer.pid})`);
    const left = natsServer.removedLeftovers;
    if (left.length > 0) log(`removed ${left.length === 1 ? 'the folder' : `${left.length} folders`} a killed run left behind: ${left.join(', ')}`);
    if (!lockDown) log('NATS is open (no users, 127.0.0.1 only), for development: keel up locks it down');
  }
  if (natsServer !== undefined && users.length > 0) {
    const client = users.find((user) => user.user === NATS_CLIENT_USER) as NatsUser;
    const clientEnv = join(natsServer.directory, `${NATS_CLIENT_USER}.env`);
    // With the server's URL and the prefix, so that `set -a; . _client.env` is all keel status or a script needs.
    const extra = { [NATS_ENV.URL]: natsServer.url, ...(topology.nats.prefix === undefined ? {} : { [NATS_ENV.PREFIX]: topology.nats.prefix }) };
    writeFileSync(clientEnv, natsEnvFile(client, `Written by ${options.command}; removed when it stops.`, extra), { mode: 0o600 });
    log(`NATS is locked down: each process has its own user; a client of every operation (keel status, scripts) finds its credentials in ${clientEnv}`);
  }
  const credentialsOf = (group: string): Record<string, string> => {
    const user = users.find((candidate) => candidate.user === group);
    return user === undefined ? {} : natsUserEnvironment(user);
  };

  // A process serves HTTP where the topology says (`http`, or a port in its `env`), never because
  // this shell has PORT or KEEL_HTTP_PORT set: every process would then claim the same port.
  // One process alone is started as `keel start` would be, and keeps them.
  const { PORT: _port, KEEL_HTTP_PORT: _httpPort, ...inherited } = cli.env;
  const single = file === undefined ? options.single : undefined;
  const processes: LocalProcess[] = [];
  for (const [group, spec] of Object.entries(topology.processes)) {
    for (let replica = 1; replica <= spec.replicas; replica++) {
      const name = spec.replicas > 1 ? `${group}#${replica}` : group;
      // Replicas on one host: one port each, from the group's on (as compose publishes them).
      const http = single === undefined ? (spec.http === undefined ? undefined : String(replicaHttpPort(spec.http, replica))) : single.http;
      const env = {
        ...(single === undefined ? inherited : cli.env),
        // What its HTTP gateway exposes, as keel deploy sets it and as its NATS permissions
        // assume: every operation for a group with `http`, none for the others (their env may say otherwise).
        ...(single === undefined ? { KEEL_HTTP_OPERATIONS: isGateway(spec) ? 'all' : 'none' } : {}),
        ...spec.env,
        KEEL_LOG_FORMAT: logFormat,
        KEEL_PROCESS_NAME: name,
        ...(topology.nats.prefix === undefined ? {} : { KEEL_NATS_PREFIX: topology.nats.prefix }),
        ...credentialsOf(group),
      };
      // One process alone serves HTTP as keel start decides it (cli/http-port.ts), from its --http
      // and this environment: on 3000 unless told otherwise when it hosts every module (neither --modules nor KEEL_MODULES).
      const servesHttpHere =
        single === undefined ? http !== undefined : servesHttp(single.http, env, single.modules === undefined && !cli.env['KEEL_MODULES']?.trim());
      processes.push({
        name,
        group,
        modules: spec.modules,
        hostsEveryModule: single !== undefined && single.modules === undefined,
        servesAllOperations: (env['KEEL_HTTP_OPERATIONS']?.trim() || 'all') === 'all',
        command: cli.self.command,
        args: [
          ...cli.self.args,
          'start',
          ...(single !== undefined && single.modules === undefined ? [] : ['--modules', spec.modules.length === 0 ? NO_MODULES : spec.modules.join(',')]),
          ...(natsUrl === undefined ? [] : ['--nats', natsUrl]),
          ...(http === undefined ? [] : ['--http', http]),
        ],
        cwd: project.root,
        env,
        // As long as keel deploy gives its group: a gateway's requests first, the longest deadline
        // an operation declares or the configuration's maxTimeoutMs allows.
        drainTimeoutMs:
          stopGraceSecondsOf({ ...spec, http: servesHttpHere ? 0 : undefined }, modules, config) * 1000,
      });
    }
  }
  if (configPath !== undefined) log(`configuration from ${relative(cli.cwd, configPath) || configPath}`);
  // The prefix is named where it was settled: the topology's, or the shell's made explicit.
  const prefix = file !== undefined && topology.nats.prefix !== undefined ? `, subject prefix ${topology.nats.prefix}` : '';
  const over = natsUrl ? ` over ${natsUrl}${prefix}` : '';
  log(label === undefined ? `one process, no topology file${over}` : `${label}: ${processes.length} process${processes.length === 1 ? '' : 'es'}${over}`);
  for (const [group, spec] of Object.entries(topology.processes)) {
    log(`  ${group}${spec.replicas > 1 ? ` ×${spec.replicas}` : ''}: ${spec.modules.length === 0 ? 'no module (a client of the others)' : spec.modules.join(', ')}`);
  }
  const started = natsServer;
  const natsLost =
    started === undefined
      ? new Promise<string>(() => {})
      : started.lost.then((how) => `the nats-server ${options.command} started on ${started.url} (pid ${started.pid}) stopped while it ran (${how}): every process lost NATS`);
  return { project, modules, topology, processes, logFormat, natsUrl, natsLost, stopNats: async () => natsServer?.stop() };
}

/**
 * Refuses, before any process starts, a NATS URL every process would refuse at its start (each
 * would then exit, be restarted, and exit again): the adapter's own check, naming where the URL
 * came from. A URL that parses but leads nowhere is the processes' to find out, and to retry.
 */
function checkNatsUrl(url: string, source: string, code: CliErrorCode, command: string): void {
  try {
    natsOptionsFromEnv({ [NATS_ENV.URL]: url });
  } catch (error) {
    if (!isKeelError(error, KeelErrorCode.INVALID_CONFIG)) throw error;
    throw new CLIError(code, error.message.replace(NATS_ENV.URL, source), {
      hint: `Give the URL of a running server, nats://host:4222 or tls://host:4222 (several separated by commas), or none: ${command} then starts its own where the topology needs one.`,
    });
  }
}
