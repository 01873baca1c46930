/**
 * `keel start`: runs one process of the application, hosting the named modules (all by
 * default) and reaching the others over NATS, until Ctrl-C or SIGTERM drains it. Its lines are
 * records of its logger; in JSON format, a failure once the format is known is an error record.
 */
import { once } from 'node:events';
import { relative } from 'node:path';
import { KeelErrorCode, isKeelError, type Kernel } from 'keel';
import { LogFormat, createLogger, logFormatOf } from 'keel/transport';
import { contextOf, defineCommand, type CliContext, type SupervisorMessage } from '../command.js';
import { createCommandLog, type CommandLog } from '../command-log.js';
import { NATS_CREDENTIALS_REFUSED } from '../give-up.js';
import { CLIError, CliErrorCode, isCliError } from '../errors.js';
import { httpPortOf, httpPortSetting } from '../http-port.js';
import { HTTP_OPERATIONS_CHOICES, HttpOperations, isHttpOperations, startHost, type HostedDatabase } from '../host.js';
import { assertNoneHasNats, hostedList } from '../names.js';
import { loadAppConfig, loggingEnv } from '../app-config.js';
import { findProject, loadManifest } from '../project.js';
import { assertGatewayReachesItsOperations, unreachableWarning, type Reach } from '../reachability.js';
import { releaseStartupMemory, startupMemoryMessage, type StartupMemoryRelease } from '../startup-memory.js';


type Env = Readonly<Record<string, string | undefined>>;

/** The first of `names` whose value is set and not blank, with its value. */
function firstSet(env: Env, names: readonly string[]): { readonly name: string; readonly value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/** How the start line describes the gateway's operations, when not every one is exposed. */
function exposedText(operations: HttpOperations | undefined, kernel: Kernel): string {
  if (operations === HttpOperations.NONE || (operations === HttpOperations.HOSTED && kernel.hosted.length === 0)) {
    return ' (no operation: /healthz, /readyz and /metrics only)';
  }
  if (operations === HttpOperations.HOSTED && kernel.hosted.length < kernel.modules.length) {
    return ` (operations of ${kernel.hosted.join(', ')} only)`;
  }
  return '';
}

/** One record per database place: the modules whose data it keeps, its engine and where (never a password). */
function databaseRecords(databases: readonly HostedDatabase[]): { modules: string[]; engine: string; location: string }[] {
  const byPlace = new Map<string, { modules: string[]; engine: string; location: string }>();
  for (const { module, engine, location } of databases) {
    const place = `${engine} ${location}`;
    const entry = byPlace.get(place) ?? { modules: [], engine, location };
    entry.modules.push(module);
    byPlace.set(place, entry);
  }
  return [...byPlace.values()];
}

/** What the gateway exposes: `--operations`, else `KEEL_HTTP_OPERATIONS`, else every operation. */
function httpOperationsOf(flag: string | undefined, env: Env): HttpOperations | undefined {
  const source = flag === undefined ? firstSet(env, ['KEEL_HTTP_OPERATIONS']) : { name: '--operations', value: flag.trim() };
  if (source === undefined) return undefined;
  if (!isHttpOperations(source.value)) {
    throw new CLIError(CliErrorCode.E_USAGE, `${source.name} "${source.value}" is not one of ${HTTP_OPERATIONS_CHOICES}.`);
  }
  return source.value;
}

/**
 * The NATS options, when a server is given, checked as the adapter will read them: `--nats`
 * (named as such, `E_USAGE`) or `KEEL_NATS_URL`, with the other `KEEL_NATS_*` variables.
 * keel/nats is loaded only then.
 */
async function checkNatsOptions(env: Env, flag: string | undefined): Promise<void> {
  if (flag !== undefined && flag.trim() === '') {
    throw new CLIError(CliErrorCode.E_USAGE, '--nats is empty: give the URL of a NATS server, or leave the option out.');
  }
  if (!(flag ?? env['KEEL_NATS_URL'])) return;
  const { NATS_ENV, natsOptionsFromEnv } = await import('keel/nats');
  try {
    natsOptionsFromEnv(flag === undefined ? env : { ...env, [NATS_ENV.URL]: flag });
  } catch (error) {
    if (flag === undefined || !isKeelError(error, KeelErrorCode.INVALID_CONFIG) || !error.message.startsWith(`${NATS_ENV.URL} `)) throw error;
    throw new CLIError(CliErrorCode.E_USAGE, `--nats${error.message.slice(NATS_ENV.URL.length)}`, {
      hint: 'Give the URL of a running server: nats://host:4222 or tls://host:4222, several separated by commas.',
    });
  }
}

const RELEASE_STARTUP_MEMORY = 'KEEL_RELEASE_STARTUP_MEMORY';

/**
 * Whether the process hands back its start-up memory once ready (cli/startup-memory.ts):
 * `KEEL_RELEASE_STARTUP_MEMORY`, `on` (the default) or `off`, for a process that would rather not
 * pause right after ready.
 */
function releasesStartupMemory(env: Env): boolean {
  const source = firstSet(env, [RELEASE_STARTUP_MEMORY]);
  if (source === undefined || source.value === 'on') return true;
  if (source.value === 'off') return false;
  throw new CLIError(CliErrorCode.E_USAGE, `${RELEASE_STARTUP_MEMORY} "${source.value}" is not on or off.`, {
    hint: `Leave it unset (on), or set ${RELEASE_STARTUP_MEMORY}=off to keep the start-up memory and skip the collection after ready.`,
  });
}

export default defineCommand({
  meta: {
    name: 'start',
    description: 'Run the application, or the modules named, in this process',
    examples: [
      'keel start',
      'keel start --modules catalog,orders --nats nats://127.0.0.1:4222',
      'keel start --http 8080',
      'keel start --build',
      'keel start --modules none --nats nats://127.0.0.1:4222 --http 8080 --host 0.0.0.0',
      'keel start --modules orders --nats nats://127.0.0.1:4222 --http 3004 --operations none',
    ],
  },
  args: {
    modules: {
      type: 'string',
      description: 'Modules to host here, comma-separated, or none (default: $KEEL_MODULES, else all)',
      valueHint: 'a,b',
    },
    nats: { type: 'string', description: 'NATS server URL for the other modules (default: $KEEL_NATS_URL)', valueHint: 'url' },
    http: {
      type: 'string',
      description:
        'Serve the HTTP gateway on this port; 0 picks a free one, off serves none (default: $KEEL_HTTP_PORT, then $PORT, else 3000 when hosting every module, else none)',
      valueHint: 'port',
    },
    host: {
      type: 'string',
      description: 'Address the HTTP gateway listens on (default: $KEEL_HTTP_HOST, else 127.0.0.1)',
      valueHint: 'address',
    },
    build: {
      type: 'boolean',
      description: 'Run the build from `keel build` even where the TypeScript sources are (without them, the build runs anyway)',
    },
    operations: {
      type: 'string',
      description:
        'Operations the HTTP gateway exposes: all, hosted (those of the modules hosted here) or none (only /healthz, /readyz, /metrics; default: $KEEL_HTTP_OPERATIONS, else all)',
      valueHint: 'which',
    },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    // Its failure, once its format is known, in that format: in JSON, an error record on stderr.
    const own = createCommandLog(cli, 'keel start', { processName: 'environment' });
    await own.run(async () => {
      try {
        await start(cli, own, args);
      } catch (error) {
        // keel up and keel dev name it when they give up, and do not restart what would fail again.
        cli.supervisor?.send(failedMessage(error));
        throw error;
      }
    });
  },
});

/**
 * Failures of `keel start`'s own that starting again with the same options and environment
 * meets again: a bad option or variable, a configuration file it refuses (keel up checked the
 * file before it started anything, so the process's own environment fails it; under keel dev,
 * the next save starts it again anyway). Not a module's file (`E_MANIFEST`): one half-saved loads
 * on the next try.
 */
const LASTING_CLI_FAILURES: ReadonlySet<string> = new Set<string>([CliErrorCode.E_USAGE, CliErrorCode.E_CONFIG]);

/** The one listen error that may pass: a host name that could not be resolved now. */
const PASSING_LISTEN_ERRNO = 'EAI_AGAIN';


/** Node's error behind an `E_HTTP_LISTEN`: its code, and the port it could not take. */
function listenCause(error: CLIError): { readonly errno?: string; readonly port?: number } {
  const cause = error.cause as { code?: unknown; port?: unknown } | undefined;
  return {
    ...(typeof cause?.code === 'string' ? { errno: cause.code } : {}),
    ...(typeof cause?.port === 'number' ? { port: cause.port } : {}),
  };
}

/**
 * Whether starting again unchanged would fail the same way, by the error's code (never its
 * text): {@link LASTING_CLI_FAILURES}; a port or address the gateway cannot take (another process
 * holds it; not one whose host name could not be resolved now); an `INVALID_CONFIG` (options and
 * variables keel refuses), but not a stream's replicas, which a NATS cluster not all up yet
 * refuses too; NATS refusing the credentials. A crash, or NATS unreachable, may pass.
 */
function isLasting(error: unknown): boolean {
  if (isCliError(error)) {
    if (error.code === CliErrorCode.E_HTTP_LISTEN) return listenCause(error).errno !== PASSING_LISTEN_ERRNO;
    return LASTING_CLI_FAILURES.has(error.code);
  }
  if (isKeelError(error, KeelErrorCode.INVALID_CONFIG)) return error.details?.['replicas'] === undefined;
  if (isKeelError(error, KeelErrorCode.UNAVAILABLE)) return error.details?.['nats'] === NATS_CREDENTIALS_REFUSED;
  return false;
}

/** What a supervising `keel up` is told of the failure this process is about to exit with. */
function failedMessage(error: unknown): SupervisorMessage {
  const code = isCliError(error) || isKeelError(error) ? error.code : 'INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  const hint = isCliError(error) ? error.hint : undefined;
  const details = isKeelError(error) ? error.details : isCliError(error, CliErrorCode.E_HTTP_LISTEN) ? listenCause(error) : undefined;
  return {
    type: 'failed',
    code,
    message: message.length > 1_000 ? `${message.slice(0, 999)}…` : message,
    retry: !isLasting(error),
    ...(hint === undefined ? {} : { hint }),
    ...(details === undefined ? {} : { details }),
  };
}

/**
 * A port another process holds, with a hint naming it and where this port came from (`--http`,
 * `KEEL_HTTP_PORT`, `PORT`, or none: the default): what to free, or what to set. Any other error as it is.
 */
function withPortAdvice(error: unknown, source: string | undefined): unknown {
  if (!isCliError(error, CliErrorCode.E_HTTP_LISTEN)) return error;
  const { errno, port } = listenCause(error);
  if (errno !== 'EADDRINUSE' || port === undefined) return error;
  const another = source === '--http' ? 'pass another --http' : `set ${source ?? 'PORT'} to another`;
  return new CLIError(CliErrorCode.E_HTTP_LISTEN, error.message, {
    cause: error.cause,
    hint: `Free port ${port} (stop the process that listens there), or ${another} (0 picks a free one).`,
  });
}

/** The flags of `keel start`. */
interface StartArgs {
  readonly modules?: string | undefined;
  readonly nats?: string | undefined;
  readonly http?: string | undefined;
  readonly host?: string | undefined;
  readonly build?: boolean | undefined;
  readonly operations?: string | undefined;
}

/** The run itself, until the signal; `own` is told the format once it is known. */
async function start(cli: CliContext, own: CommandLog, args: StartArgs): Promise<void> {
  const project = findProject(cli.cwd, { fromBuild: args.build === true });
  const modules = await loadManifest(project);
  const host =
    args.modules === undefined ? hostedList(firstSet(cli.env, ['KEEL_MODULES'])?.value, 'KEEL_MODULES') : hostedList(args.modules, '--modules');
  assertNoneHasNats(host, Boolean(args.nats ?? cli.env['KEEL_NATS_URL']));
  const httpPort = httpPortOf(args.http, cli.env, host === undefined);
  const httpHost = args.host?.trim() || firstSet(cli.env, ['KEEL_HTTP_HOST'])?.value;
  const httpOperations = httpOperationsOf(args.operations, cli.env);
  const releaseMemory = releasesStartupMemory(cli.env);
  const gatewayOption =
    args.host !== undefined ? '--host is the address' : args.operations !== undefined ? '--operations picks the operations' : undefined;
  if (gatewayOption !== undefined && httpPort === undefined) {
    throw new CLIError(CliErrorCode.E_USAGE, `${gatewayOption} of the HTTP gateway, and no gateway was asked for.`, {
      hint: 'Give it a port with --http <port> (or KEEL_HTTP_PORT, or PORT).',
    });
  }
  const reach: Reach = {
    modules,
    host,
    nats: Boolean(args.nats ?? cli.env['KEEL_NATS_URL']),
    httpPort,
    operations: httpOperations === undefined ? undefined : { value: httpOperations, source: args.operations === undefined ? 'KEEL_HTTP_OPERATIONS' : '--operations' },
  };
  assertGatewayReachesItsOperations(reach);
  const { path: configPath, config } = await loadAppConfig(project, { checkGateway: httpPort !== undefined });
  // The process's own lines are records of the logger its kernel, transport and gateway write
  // to: one format per process (docs/observability.md, "Logs"), the environment's, else the configuration's.
  const logEnv = loggingEnv(cli.env, config);
  const format = logFormatOf(logEnv, cli.stdout);
  own.use(format, logEnv);
  const logger = createLogger({ env: logEnv, destination: cli.stdout, format });
  if (project.build) {
    const build = `${relative(cli.cwd, project.build.outDir) || '.'}/`;
    logger.info({ build, builtAt: project.build.info.builtAt }, `running the build in ${build} (built ${project.build.info.builtAt})`);
  }
  if (configPath !== undefined) {
    const config = relative(cli.cwd, configPath) || configPath;
    logger.info({ config }, `configuration from ${config}`);
  }
  // Before anything opens: a bad URL is otherwise said once the database has opened beside it.
  await checkNatsOptions(cli.env, args.nats);
  if (cli.signal.aborted) return;
  // From here a signal stops the start rather than ends the process at once (cli/executable.ts
  // exits at once only while nothing listens): the kernel's stop() runs during its start(), the
  // modules already started drain, and their database sessions close (cli/host.ts, HostOptions.signal).
  const stopWhileStarting = (): void => logger.info({}, 'stopping before ready: the modules started drain, the others never start');
  cli.signal.addEventListener('abort', stopWhileStarting, { once: true });
  const running = await startHost({
    modules,
    host,
    env: cli.env,
    root: project.root,
    natsUrl: args.nats,
    httpPort,
    httpHost,
    httpOperations,
    gateway: config.gateway,
    principal: config.principal,
    resilience: config.resilience,
    data: config.data,
    logger,
    signal: cli.signal,
  })
    .catch((error: unknown) => {
      // The start's INVALID_STATE answers the signal's stop: a stop, no failure of the start.
      if (cli.signal.aborted && isKeelError(error, KeelErrorCode.INVALID_STATE)) return undefined;
      throw withPortAdvice(error, httpPortSetting(args.http, cli.env)?.source);
    })
    .finally(() => cli.signal.removeEventListener('abort', stopWhileStarting));
  if (running === undefined) {
    logger.info({}, 'stopped');
    return;
  }
  const status = running.kernel.status();
  const hosted = status.modules.map((module) => module.name);
  logger.info({ modules: hosted }, `hosting ${hosted.length > 0 ? hosted.join(', ') : 'no module (a client of the others)'}`);
  for (const place of databaseRecords(running.databases)) {
    logger.info(place, `data of ${place.modules.join(', ')}: ${place.engine} ${place.location}`);
  }
  if (status.remote.length > 0) {
    const transport = running.transport?.name ?? 'the transport';
    logger.info({ remote: status.remote, transport }, `reaching ${status.remote.join(', ')} over ${transport}`);
  }
  const unreachable = unreachableWarning(reach);
  if (unreachable !== undefined) logger.warn({ modules: hosted }, unreachable);
  if (running.httpUrl) {
    const operations = httpOperations ?? HttpOperations.ALL;
    logger.info({ url: running.httpUrl, operations }, `HTTP gateway on ${running.httpUrl}${exposedText(httpOperations, running.kernel)}`);
  }
  logger.info(
    { modules: hosted, ...(running.httpUrl ? { url: running.httpUrl } : {}) },
    format === LogFormat.PRETTY ? 'ready (Ctrl-C to stop)' : 'ready',
  );
  cli.supervisor?.send({ type: 'ready', modules: running.kernel.hosted, httpUrl: running.httpUrl });
  // Once the ready record is out: what start-up allocated goes back to the system (cli/startup-memory.ts).
  if (cli.ownsProcess) {
    setImmediate(() => {
      if (cli.signal.aborted) return;
      const release: StartupMemoryRelease = releaseMemory ? releaseStartupMemory() : { released: false, reason: `${RELEASE_STARTUP_MEMORY} is off` };
      logger.debug(release, startupMemoryMessage(release));
    });
  }
  // Nothing may hold the event loop open (in process, the kernel has no sockets): hold it until the signal.
  const keepAlive = setInterval(() => {}, 2 ** 30);
  if (!cli.signal.aborted) await once(cli.signal, 'abort');
  clearInterval(keepAlive);
  cli.supervisor?.send({ type: 'stopping' });
  logger.info({}, 'stopping: finishing work in flight');
  await running.stop();
  logger.info({}, 'stopped');
}
