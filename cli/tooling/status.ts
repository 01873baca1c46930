/**
 * `keel status`: finds the running modules through the NATS service API — `$SRV.PING` to
 * discover instances, `$SRV.INFO` for what they serve, `$SRV.STATS` for their counters — and
 * sums them per module. Any NATS tool sees the same data (`nats micro ls`); keel only reads it.
 *
 * Counters: keel modules put their own per-endpoint counters in the endpoint's `data` (also in
 * the standard fields since keel answers the service API itself; older keel versions served
 * through the `nats` client's service framework, whose standard fields miss asynchronous answers:
 * docs/wire-protocol.md, "Statistics"). They are preferred where present; other services report
 * the standard fields.
 */
import {
  askServices,
  isEndpointStatsData,
  natsAuthOptions,
  type ServiceEndpointStats,
  type ServiceIdentity,
  type ServiceVerb,
} from 'keel/nats';
import { connect, errors, type NatsConnection } from '@nats-io/transport-node';

/** How long to wait for more answers after the latest one (the NATS service client's default). */
const STATUS_STALL_MS = 300;

/** Metadata keys the keel NATS adapter puts on every module's service. */
export const KEEL_SERVICE_METADATA = {
  PREFIX: 'keel.prefix',
  PROTOCOL: 'keel.protocol',
} as const;

/** One running instance of a module. */
export interface InstanceStatus {
  readonly id: string;
  readonly version: string;
  /** ISO time the instance started, when it answered `$SRV.STATS`. */
  readonly started: string | undefined;
  readonly uptimeMs: number | undefined;
  readonly requests: number;
  readonly errors: number;
  /** Total processing time in milliseconds. */
  readonly processingMs: number;
  /** Operations (endpoints) it serves, from `$SRV.INFO`. */
  readonly operations: readonly string[];
  /** The keel subject prefix it serves under, for keel modules. */
  readonly prefix: string | undefined;
  readonly lastError: string | undefined;
  /**
   * Where requests, errors and processing time come from: `keel` — the keel adapter's own
   * counters (each endpoint's `data`), measured over whole calls; `nats` — the standard fields
   * of `$SRV.STATS` (services keel did not register, or keel versions without its counters).
   */
  readonly counters: 'keel' | 'nats';
  /** Its process's circuit breakers that are not closed, by dependency: its calls to those modules fail fast. */
  readonly circuits: Readonly<Record<string, 'open' | 'half-open'>>;
  /** True while the module's own database does not answer this instance's checks (`databaseCheckMs`). */
  readonly databaseDown: boolean;
}

interface EndpointCounts {
  readonly requests: number;
  readonly errors: number;
  readonly processingNs: number;
  readonly lastError: string | undefined;
  /** True when the counts are keel's own (the endpoint's `data`). */
  readonly keel: boolean;
}

/** An endpoint's counters: keel's own when its `data` carries them, the standard fields otherwise. */
function countersOf(endpoint: ServiceEndpointStats): EndpointCounts {
  const data = endpoint.data;
  if (isEndpointStatsData(data)) {
    return { requests: data.num_requests, errors: data.num_errors, processingNs: data.processing_time, lastError: data.last_error, keel: true };
  }
  return {
    requests: endpoint.num_requests ?? 0,
    errors: endpoint.num_errors ?? 0,
    processingNs: endpoint.processing_time ?? 0,
    lastError: endpoint.last_error,
    keel: false,
  };
}

/** One module (NATS service name) and its instances. */
export interface ModuleStatus {
  readonly name: string;
  /** True for services the keel NATS adapter registered. */
  readonly keel: boolean;
  /** Expected by the topology given (or true when no topology was given). */
  readonly expected: boolean;
  readonly instances: readonly InstanceStatus[];
  /** How many instances the topology's replicas make (`expectedInstances`), when given. */
  readonly instancesExpected: number | undefined;
  /** Distinct versions across instances: more than one during a rolling upgrade. */
  readonly versions: readonly string[];
  /** Uptime of the longest-running instance. */
  readonly uptimeMs: number | undefined;
  readonly requests: number;
  readonly errors: number;
  /** Average processing time per request over every instance, in milliseconds. */
  readonly averageMs: number | undefined;
  /** Dependencies some instance's process has a circuit breaker open (or half-open) to. */
  readonly circuits: Readonly<Record<string, 'open' | 'half-open'>>;
  /** How many of its instances report its database down (they fail or hold its calls and durable events). */
  readonly databaseDown: number;
}

/** What {@link readStatus} returns. */
export interface StatusReport {
  /** False when a module the topology expects has no instance. */
  readonly ok: boolean;
  readonly servers: string;
  readonly modules: readonly ModuleStatus[];
  /** Expected modules without a running instance. */
  readonly missing: readonly string[];
}

/** Options of {@link readStatus}. */
export interface StatusOptions {
  /** Modules that should be running (for example every module of a topology). */
  readonly expected?: readonly string[];
  /**
   * How many instances of a module should answer (a topology's replicas of the processes hosting
   * it). Until that many have, the question waits up to `maxWaitMs` instead of ending 300 ms after
   * the latest answer, so that a replica slow to answer is not missed; a module short of its count
   * is noted in the report (`instancesExpected`), not counted as missing unless none answers: its
   * modules are expected as if named in `expected` too. Default: none.
   */
  readonly expectedInstances?: Readonly<Record<string, number>>;
  /** Only keel modules serving under this subject prefix. Default: keel modules under any prefix. */
  readonly prefix?: string;
  /** Include NATS services that keel did not register. Default false. */
  readonly all?: boolean;
  /** Longest wait for answers, in milliseconds (default 1 000); answers usually end it sooner. */
  readonly maxWaitMs?: number;
  /** Clock, for uptimes. */
  readonly now?: () => number;
}

/** Defaults of {@link StatusOptions}. */
export const DEFAULT_STATUS_OPTIONS = {
  expected: [],
  all: false,
  maxWaitMs: 1_000,
  now: () => Date.now(),
} as const satisfies StatusOptions;

/** How `keel status` connects. */
export interface StatusConnectOptions {
  readonly servers: string | readonly string[];
  readonly token?: string;
  readonly user?: string;
  readonly password?: string;
  readonly credentialsFile?: string;
  readonly tls?: { readonly caFile?: string; readonly certFile?: string; readonly keyFile?: string };
  /** Reply subject prefix (`KEEL_NATS_INBOX_PREFIX`): a locked-down server lets a user read only its own. */
  readonly inboxPrefix?: string;
  /** Milliseconds to wait for the connection (default 3 000). */
  readonly timeoutMs?: number;
}

/**
 * Connects once, without reconnecting: a status read either reaches NATS or fails fast.
 *
 * @example
 * ```ts
 * const connection = await connectForStatus({ servers: 'nats://127.0.0.1:4222' });
 * ```
 */
export async function connectForStatus(options: StatusConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: typeof options.servers === 'string' ? options.servers.split(',').map((server) => server.trim()) : [...options.servers],
    name: 'keel status',
    timeout: options.timeoutMs ?? 3_000,
    reconnect: false,
    maxReconnectAttempts: 0,
    noAsyncTraces: true,
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    ...natsAuthOptions(options),
  });
}

/** Why asking `$SRV.{verb}` failed, for people: the client's error and what to check. */
function askFailed(verb: ServiceVerb, error: unknown): Error {
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const text = cause instanceof Error ? `${cause.message} (${cause.name})` : String(cause);
  const advice =
    cause instanceof errors.PermissionViolationError || cause instanceof errors.AuthorizationError
      ? "this NATS user may not ask the service API: use the client user's credentials (keel deploy writes them) or allow it to publish to $SRV.> and subscribe to its inbox."
      : cause instanceof errors.ClosedConnectionError || cause instanceof errors.DrainingConnectionError
        ? 'the NATS connection closed; check the server and run keel status again.'
        : 'check the NATS server and the connection.';
  return new Error(`Could not ask the NATS service API ($SRV.${verb}): ${text}; ${advice}`, { cause: error });
}

/** True once every module of `expectedInstances` has as many keel instances among the answers (under the prefix, if one is given). */
function everyInstanceAnswered(answers: readonly Partial<ServiceIdentity>[], settings: Pick<StatusOptions, 'expectedInstances' | 'prefix'>): boolean {
  const counts = new Map<string, Set<string>>();
  for (const answer of answers) {
    const metadata = answer.metadata ?? {};
    if (typeof answer.name !== 'string' || typeof answer.id !== 'string' || metadata[KEEL_SERVICE_METADATA.PROTOCOL] === undefined) continue;
    if (settings.prefix !== undefined && metadata[KEEL_SERVICE_METADATA.PREFIX] !== settings.prefix) continue;
    const ids = counts.get(answer.name) ?? new Set<string>();
    ids.add(answer.id);
    counts.set(answer.name, ids);
  }
  return Object.entries(settings.expectedInstances ?? {}).every(([name, count]) => (counts.get(name)?.size ?? 0) >= count);
}

/**
 * Discovers the modules running on a NATS system and sums their statistics per module.
 *
 * @example
 * ```ts
 * const connection = await connectForStatus({ servers: 'nats://127.0.0.1:4222' });
 * const report = await readStatus(connection, { expected: ['catalog', 'orders'] });
 * await connection.close();
 * if (!report.ok) console.error(`not running: ${report.missing.join(', ')}`);
 * ```
 */
export async function readStatus(connection: NatsConnection, options: StatusOptions = {}): Promise<StatusReport> {
  const settings = { ...DEFAULT_STATUS_OPTIONS, ...options };
  const counted = Object.keys(settings.expectedInstances ?? {}).length > 0;
  const question = {
    maxWaitMs: settings.maxWaitMs,
    stallMs: STATUS_STALL_MS,
    rejectOnError: true,
    // The answers are JSON from anyone who serves `$SRV`: read as partial.
    ...(counted ? { complete: (answers: readonly Partial<ServiceIdentity>[]) => everyInstanceAnswered(answers, settings) } : {}),
  };
  // No responders is an empty system; any other failure is not "nothing running".
  const ask = <V extends ServiceVerb>(verb: V) => askServices(connection, verb, undefined, question).catch((error: unknown) => Promise.reject(askFailed(verb, error)));
  const [pings, infos, stats] = await Promise.all([ask('PING'), ask('INFO'), ask('STATS')]);
  const infoById = new Map(infos.map((info) => [info.id, info]));
  const statsById = new Map(stats.map((stat) => [stat.id, stat]));
  const identities = new Map<string, ServiceIdentity>();
  for (const identity of [...pings, ...infos, ...stats]) if (!identities.has(identity.id)) identities.set(identity.id, identity);

  const now = settings.now();
  const byName = new Map<string, { keel: boolean; instances: InstanceStatus[] }>();
  for (const identity of identities.values()) {
    const info = infoById.get(identity.id);
    const stat = statsById.get(identity.id);
    const metadata = identity.metadata ?? info?.metadata ?? stat?.metadata ?? {};
    const keel = metadata[KEEL_SERVICE_METADATA.PROTOCOL] !== undefined;
    const prefix = metadata[KEEL_SERVICE_METADATA.PREFIX];
    if (!keel && !settings.all) continue;
    if (keel && settings.prefix !== undefined && prefix !== settings.prefix) continue;
    const endpoints = (stat?.endpoints ?? []).map(countersOf);
    const started = stat?.started;
    const startedAt = started === undefined ? Number.NaN : Date.parse(started);
    const lastError = endpoints.map((endpoint) => endpoint.lastError).find((text) => text !== undefined && text !== '');
    const keelData = (stat?.endpoints ?? []).map((endpoint) => endpoint.data).find(isEndpointStatsData);
    const instance: InstanceStatus = {
      id: identity.id,
      version: identity.version,
      started,
      uptimeMs: Number.isNaN(startedAt) ? undefined : Math.max(0, now - startedAt),
      requests: endpoints.reduce((sum, endpoint) => sum + endpoint.requests, 0),
      errors: endpoints.reduce((sum, endpoint) => sum + endpoint.errors, 0),
      processingMs: endpoints.reduce((sum, endpoint) => sum + endpoint.processingNs, 0) / 1e6,
      operations: (info?.endpoints ?? []).map((endpoint) => endpoint.name).sort(),
      prefix,
      lastError,
      counters: keel && endpoints.every((endpoint) => endpoint.keel) ? 'keel' : 'nats',
      circuits: keelData?.circuits ?? {},
      databaseDown: keelData?.database === 'down',
    };
    const entry = byName.get(identity.name) ?? { keel, instances: [] };
    entry.instances.push(instance);
    byName.set(identity.name, entry);
  }

  const expected = new Set([...settings.expected, ...Object.keys(settings.expectedInstances ?? {})]);
  for (const name of expected) if (!byName.has(name)) byName.set(name, { keel: true, instances: [] });
  const modules: ModuleStatus[] = [...byName.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([name, { keel, instances }]) => {
      instances.sort((a, b) => a.id.localeCompare(b.id));
      const requests = instances.reduce((sum, instance) => sum + instance.requests, 0);
      const processingMs = instances.reduce((sum, instance) => sum + instance.processingMs, 0);
      const uptimes = instances.flatMap((instance) => (instance.uptimeMs === undefined ? [] : [instance.uptimeMs]));
      return {
        name,
        keel,
        expected: expected.size === 0 || expected.has(name),
        instances,
        instancesExpected: settings.expectedInstances?.[name],
        versions: [...new Set(instances.map((instance) => instance.version))].sort(),
        uptimeMs: uptimes.length > 0 ? Math.max(...uptimes) : undefined,
        requests,
        errors: instances.reduce((sum, instance) => sum + instance.errors, 0),
        averageMs: requests > 0 ? processingMs / requests : undefined,
        circuits: Object.assign({}, ...instances.map((instance) => instance.circuits)) as Record<string, 'open' | 'half-open'>,
        databaseDown: instances.filter((instance) => instance.databaseDown).length,
      };
    });
  const missing = modules.filter((module) => expected.has(module.name) && module.instances.length === 0).map((module) => module.name);
  return { ok: missing.length === 0, servers: connection.getServer(), modules, missing };
}

/**
 * A duration for people: `850ms`, `12s`, `3m 05s`, `2h 14m`, `3d 4h`.
 *
 * @example
 * ```ts
 * formatDuration(185_000); // '3m 05s'
 * ```
 */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const seconds = Math.floor(ms / 1_000);
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m ${String(seconds % 60).padStart(2, '0')}s`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h ${String(minutes % 60).padStart(2, '0')}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

function formatAverage(ms: number | undefined): string {
  if (ms === undefined) return '-';
  return ms >= 100 ? `${ms.toFixed(0)}ms` : ms >= 1 ? `${ms.toFixed(2)}ms` : `${(ms * 1_000).toFixed(0)}µs`;
}

/**
 * The human table of `keel status`.
 *
 * @example
 * ```ts
 * process.stdout.write(formatStatusReport(report));
 * ```
 */
export function formatStatusReport(report: StatusReport, options: { readonly instances?: boolean } = {}): string {
  const header = ['MODULE', 'INSTANCES', 'VERSION', 'UPTIME', 'REQUESTS', 'ERRORS', 'AVG TIME'];
  const rows: string[][] = [];
  const notes = new Map<number, string>();
  for (const module of report.modules) {
    const row = [
      module.keel ? module.name : `${module.name} (not keel)`,
      String(module.instances.length),
      module.versions.length > 0 ? module.versions.join(', ') : '-',
      module.uptimeMs === undefined ? '-' : formatDuration(module.uptimeMs),
      module.instances.length > 0 ? String(module.requests) : '-',
      module.instances.length > 0 ? String(module.errors) : '-',
      formatAverage(module.averageMs),
    ];
    const said: string[] = [];
    if (module.instances.length === 0) said.push('expected, but no instance answers');
    else if (module.instancesExpected !== undefined && module.instances.length < module.instancesExpected) {
      said.push(`${module.instances.length} of the ${module.instancesExpected} instances the topology names answer`);
    }
    const circuits = Object.entries(module.circuits);
    if (circuits.length > 0) said.push(`circuit breaker ${circuits.map(([dependency, state]) => `${state} to ${dependency}`).join(', ')}: those calls fail fast`);
    if (module.databaseDown > 0) {
      const where = module.databaseDown === module.instances.length ? '' : ` for ${module.databaseDown} of its ${module.instances.length} instances`;
      said.push(`database down${where}: its calls and durable events fail or wait until it answers`);
    }
    if (said.length > 0) notes.set(rows.length, said.join('; '));
    rows.push(row);
    if (options.instances) {
      for (const instance of module.instances) {
        rows.push([
          `  ${instance.id}`,
          '',
          instance.version,
          instance.uptimeMs === undefined ? '-' : formatDuration(instance.uptimeMs),
          String(instance.requests),
          String(instance.errors),
          formatAverage(instance.requests > 0 ? instance.processingMs / instance.requests : undefined),
        ]);
      }
    }
  }
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column] ?? 0))
      .join('  ')
      .trimEnd();
  const lines = [line(header), ...rows.map((row, index) => (notes.has(index) ? `${line(row)}  ← ${notes.get(index)}` : line(row)))];
  const instances = report.modules.reduce((sum, module) => sum + module.instances.length, 0);
  const running = report.modules.filter((module) => module.instances.length > 0).length;
  lines.push('');
  if (report.modules.length === 0) {
    lines.push(`keel status: no keel module answers on ${report.servers}.`);
  } else if (report.missing.length > 0) {
    lines.push(
      `keel status: ${report.missing.join(', ')} ${report.missing.length === 1 ? 'has' : 'have'} no running instance on ${report.servers} (${running} module${running === 1 ? '' : 's'} and ${instances} instance${instances === 1 ? '' : 's'} answer).`,
    );
  } else {
    lines.push(`keel status: ${running} module${running === 1 ? '' : 's'}, ${instances} instance${instances === 1 ? '' : 's'} on ${report.servers}.`);
  }
  return `${lines.join('\n')}\n`;
}
