/**
 * One running process of an application (what `keel start` runs): a kernel hosting some or all
 * modules, the NATS transport to the others when configured, the databases of the hosted
 * modules that own data, and the HTTP gateway when asked.
 */
import type { HttpGateway, HttpGatewayConfig } from 'keel/http';
import { tracingRequested } from 'keel/transport';
import { KeelError, KeelErrorCode, createKernel, type AnyContract, type AnyModule, type Kernel, type KernelOptions, type Logger, type Transport } from 'keel';
import { openDatabases, planDatabases, type OpenDatabases, type PlannedDatabase } from 'keel/databases';
import { CLIError, CliErrorCode } from './errors.js';
import type { KeelConfig } from './config.js';

/**
 * Which operations the HTTP gateway of {@link startHost} exposes: `all` (every module's, those
 * hosted elsewhere reached over NATS), `hosted` (those of the modules this process hosts) or
 * `none` (no operation: only `/healthz`, `/readyz`, `/metrics` and an OpenAPI document without
 * paths, for a module process that needs probing and scraping only).
 *
 * @example
 * ```ts
 * const host = await startHost({ modules, host: ['orders'], env: process.env, httpPort: 3004, httpOperations: HttpOperations.NONE });
 * ```
 */
export const HttpOperations = {
  ALL: 'all',
  HOSTED: 'hosted',
  NONE: 'none',
} as const;

/** An {@link HttpOperations} value. */
export type HttpOperations = (typeof HttpOperations)[keyof typeof HttpOperations];

/** What each {@link HttpOperations} value exposes, for messages that list the allowed values. */
export const HTTP_OPERATIONS_CHOICES =
  'all (every operation), hosted (those of the modules hosted here) or none (no operation: only /healthz, /readyz and /metrics)';

/** True when `value` is an {@link HttpOperations} value. */
export function isHttpOperations(value: string): value is HttpOperations {
  return (Object.values(HttpOperations) as string[]).includes(value);
}

/**
 * What {@link startHost} takes.
 *
 * @example
 * ```ts
 * const options: HostOptions = { modules, host: ['catalog', 'orders'], env: process.env, natsUrl: 'nats://127.0.0.1:4222', httpPort: 3000 };
 * const host = await startHost(options);
 * ```
 */
export interface HostOptions {
  /** The application manifest. */
  readonly modules: readonly AnyModule[];
  /** Modules to host here (default: all). */
  readonly host?: readonly string[] | undefined;
  /**
   * Environment: NATS settings are read from `KEEL_NATS_*` (see keel/nats); the databases of
   * modules that own data from `DATABASE_URL`, `DATABASE_URL_<MODULE>` and `KEEL_DATA_DIR`, and
   * `KEEL_PROCESS_NAME` names the default folder of the embedded one (docs/cli.md, "Data").
   */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The project folder: the embedded database's default folder is `.keel/data/<process>` in it (default: the current directory). */
  readonly root?: string | undefined;
  /** NATS server URL(s); overrides `KEEL_NATS_URL`. Without either, no transport: every module must be hosted here. */
  readonly natsUrl?: string | undefined;
  /** HTTP gateway port; without one, no gateway. */
  readonly httpPort?: number | undefined;
  /** HTTP gateway address (default the gateway's, 127.0.0.1). */
  readonly httpHost?: string | undefined;
  /** The operations the HTTP gateway exposes (default `all`). */
  readonly httpOperations?: HttpOperations | undefined;
  /**
   * The rest of the gateway's options: the `gateway` section of the application's
   * `keel.config.ts` (timeouts, CORS, rate limit, ...), given to `createHttpGateway` as it is.
   */
  readonly gateway?: HttpGatewayConfig | undefined;
  /** The application's principal schema (the `principal` of `keel.config.ts`), given to the kernel. */
  readonly principal?: KernelOptions['principal'] | undefined;
  /** The `resilience` section of `keel.config.ts`, given to the kernel. */
  readonly resilience?: KeelConfig['resilience'] | undefined;
  /** The `data` section of `keel.config.ts`, given to the kernel. */
  readonly data?: KeelConfig['data'] | undefined;
  readonly logger?: Logger | undefined;
  /**
   * Aborted before the start is over (`keel start` passes its SIGTERM or Ctrl-C): the start stops
   * rather than runs on. From the kernel's creation, its `stop()` runs at once, as
   * `kernel.stop()` during `kernel.start()` does: the modules already started drain within
   * `drainTimeoutMs`, the one starting gives up a wait for its migration lock and gets what is
   * left of that time, the others never start. The gateway never listens (or is closed, if it
   * already did), the transport and the databases close, and {@link startHost} rejects with
   * `INVALID_STATE`, which is then the stop's doing, no failure. Aborted while NATS connects or
   * the databases open, the start goes no further once they have. Once {@link startHost}
   * resolved, the signal is no longer watched: stop the host with {@link Host.stop}.
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Where one hosted module keeps its data, as {@link startHost} opened it.
 *
 * @example
 * ```ts
 * for (const { module, engine, location } of host.databases) console.log(`${module}: ${engine} ${location}`);
 * // ledger: pglite in .keel/data/app
 * ```
 */
export interface HostedDatabase {
  readonly module: string;
  readonly schema: string;
  /** `pglite` or `postgres`. */
  readonly engine: string;
  /** Safe to print (no password): `in .keel/data/app`, `in memory`, `at 127.0.0.1:5432/shop (DATABASE_URL)`. */
  readonly location: string;
}

/**
 * A running process, from {@link startHost}.
 *
 * @example
 * ```ts
 * const host: Host = await startHost({ modules, env: process.env, httpPort: 3000 });
 * console.log(host.kernel.hosted, host.transport?.name ?? 'in process', host.httpUrl);
 * process.once('SIGTERM', () => void host.stop());
 * ```
 */
export interface Host {
  readonly kernel: Kernel;
  /** The NATS transport, when one is configured. */
  readonly transport: Transport | undefined;
  /** The gateway's URL, when it listens. */
  readonly httpUrl: string | undefined;
  /** The hosted modules that own data, each with its database. */
  readonly databases: readonly HostedDatabase[];
  /** Stops the gateway (requests in flight finish), the kernel (work in flight finishes), then closes the transport and the databases. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts one process of an application. Throws `E_UNKNOWN_MODULE` for a module name that is
 * not in the manifest, `E_USAGE` for an `httpOperations` that is no {@link HttpOperations}
 * value, and `INVALID_CONFIG` for a database URL that is not PostgreSQL's; the kernel's own
 * checks (a hosted module that needs one not reachable here, for example) surface as its
 * `KeelError`. The databases are opened only when a hosted module owns data. Stopped by its
 * `signal` before it is over, it rejects with `INVALID_STATE` once the stop is done ({@link HostOptions.signal}).
 *
 * @example
 * ```ts
 * const host = await startHost({ modules, host: ['orders'], env: process.env, natsUrl: 'nats://127.0.0.1:4222' });
 * // ... later
 * await host.stop();
 * ```
 */
export async function startHost(options: HostOptions): Promise<Host> {
  if (options.httpOperations !== undefined && !isHttpOperations(options.httpOperations)) {
    throw new CLIError(CliErrorCode.E_USAGE, `httpOperations "${String(options.httpOperations)}" is not one of ${HTTP_OPERATIONS_CHOICES}.`);
  }
  const names = options.modules.map((module) => module.name as string);
  const unknown = (options.host ?? []).filter((name) => !names.includes(name));
  if (unknown.length > 0) {
    throw new CLIError(
      CliErrorCode.E_UNKNOWN_MODULE,
      `No module named ${unknown.map((name) => `"${name}"`).join(', ')} in the manifest (it has: ${names.join(', ')}).`,
    );
  }
  const root = options.root ?? process.cwd();
  const hosted = options.host === undefined ? options.modules : options.modules.filter((module) => options.host?.includes(module.name));
  // Checked before tracing starts: a database URL it refuses leaves nothing to shut down.
  const plan = planDatabases(hosted, { env: options.env, root });
  // Before the kernel and the gateway: their spans need the SDK. Loaded only when OTEL_* asks for traces.
  // From here on every failure path, and stop(), shuts it down.
  const tracing = tracingRequested(options.env ?? process.env)
    ? (await import('keel/otel')).startTracing({
        env: options.env ?? process.env,
        serviceName: (options.host ?? ['keel']).join('+'),
        ...(options.logger ? { logger: options.logger } : {}),
      })
    : undefined;
  // Load the gateway's code while NATS connects and the modules start: loading is most of a start.
  const gatewayCode = options.httpPort === undefined ? undefined : import('keel/http');
  gatewayCode?.catch(() => undefined);
  const { transport, databases } = await connectAndOpen(options, plan, root).catch(async (error: unknown) => {
    await tracing?.shutdown();
    throw error;
  });
  let kernel: Kernel | undefined;
  let gateway: HttpGateway | undefined;
  // The stop's clock starts with the signal, not once the start is over; the catch below awaits
  // the same stop (kernel.stop() is idempotent), and hears how it ended.
  const stopOnSignal = (): void => void kernel?.stop().catch(() => undefined);
  options.signal?.addEventListener('abort', stopOnSignal, { once: true });
  try {
    if (options.signal?.aborted) throw stoppedBeforeReady();
    kernel = createKernel({
      modules: options.modules,
      topology: { ...(options.host ? { host: options.host } : {}), transport },
      ...(databases ? { database: databases.engineOf } : {}),
      ...(options.principal ? { principal: options.principal } : {}),
      ...options.resilience,
      ...options.data,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    // The gateway (and its metrics' observer) before kernel.start(): durable consumers handle
    // their backlog during start(), and /metrics counts from the first call and the first event.
    if (options.httpPort !== undefined) gateway = await createGateway(kernel, options, await (gatewayCode as Promise<typeof import('keel/http')>));
    // Aborted while the gateway's code loaded: the kernel was not there yet to stop.
    if (options.signal?.aborted) throw stoppedBeforeReady();
    await kernel.start();
    if (gateway !== undefined) await listen(gateway);
    // Aborted while the gateway took its port: the kernel is stopping already; close the gateway too.
    if (options.signal?.aborted) throw stoppedBeforeReady();
  } catch (error) {
    try {
      await gateway?.close().catch(() => undefined);
      await kernel?.stop();
    } finally {
      await closeConnections(transport, databases);
      await tracing?.shutdown();
    }
    throw error;
  } finally {
    options.signal?.removeEventListener('abort', stopOnSignal);
  }
  const running = kernel;
  let stopping: Promise<void> | undefined;
  return {
    kernel: running,
    transport,
    httpUrl: gateway?.url,
    databases: (databases?.modules ?? []).map(({ module, schema, engine, location }) => ({ module, schema, engine: engine.name, location })),
    stop() {
      stopping ??= (async () => {
        try {
          await gateway?.close();
          await running.stop();
        } finally {
          await closeConnections(transport, databases);
          await tracing?.shutdown();
        }
      })();
      return stopping;
    },
  };
}

/** The rejection of a start its signal stopped before the kernel's own start() could say so. */
function stoppedBeforeReady(): KeelError {
  return new KeelError(
    KeelErrorCode.INVALID_STATE,
    'The process was stopped while it was starting (its signal was aborted, such as a SIGTERM during a deploy): ' +
      'what had started was stopped, and the rest never started. Start a new one to run again.',
  );
}

/** Connects NATS and opens the databases side by side (each can take a while); if either fails, closes what the other opened. */
async function connectAndOpen(
  options: HostOptions,
  plan: readonly PlannedDatabase[],
  root: string,
): Promise<{ transport: Transport | undefined; databases: OpenDatabases | undefined }> {
  const [transport, databases] = await Promise.allSettled([
    connectNats(options),
    plan.length === 0 ? Promise.resolve(undefined) : openDatabases(plan, root, { logger: options.logger }),
  ]);
  if (transport.status === 'fulfilled' && databases.status === 'fulfilled') return { transport: transport.value, databases: databases.value };
  await closeConnections(
    transport.status === 'fulfilled' ? transport.value : undefined,
    databases.status === 'fulfilled' ? databases.value : undefined,
  ).catch(() => undefined);
  throw transport.status === 'rejected' ? transport.reason : (databases as PromiseRejectedResult).reason;
}

/** Closes the transport, then the databases, whatever the first does: after the kernel, which uses both, stopped. */
async function closeConnections(transport: Transport | undefined, databases: OpenDatabases | undefined): Promise<void> {
  try {
    await transport?.close();
  } finally {
    await databases?.close();
  }
}

async function connectNats(options: HostOptions): Promise<Transport | undefined> {
  const env = options.natsUrl === undefined ? options.env : { ...options.env, KEEL_NATS_URL: options.natsUrl };
  if (!env['KEEL_NATS_URL']) return undefined;
  const { createNatsTransport, natsOptionsFromEnv } = await import('keel/nats');
  const natsOptions = natsOptionsFromEnv(env) ?? {};
  return createNatsTransport({ ...natsOptions, ...(options.logger ? { logger: options.logger } : {}) });
}

/** The contracts whose operations the gateway exposes. */
function exposedContracts(kernel: Kernel, operations: HttpOperations): readonly AnyContract[] {
  switch (operations) {
    case HttpOperations.ALL:
      return kernel.modules.map((module) => module.contract as AnyContract);
    case HttpOperations.HOSTED:
      return kernel.modules.filter((module) => kernel.hosted.includes(module.name)).map((module) => module.contract as AnyContract);
    case HttpOperations.NONE:
      return [];
  }
}

/**
 * The HTTP gateway, made before the kernel starts so that its metrics miss nothing; it listens
 * once the kernel started ({@link listen}).
 */
async function createGateway(kernel: Kernel, options: HostOptions, { createHttpGateway }: typeof import('keel/http')): Promise<HttpGateway> {
  const contracts = exposedContracts(kernel, options.httpOperations ?? HttpOperations.ALL);
  return createHttpGateway({
    ...options.gateway,
    kernel,
    contracts,
    // No operation, no reference page: a probes-and-metrics process loads and serves less.
    ...(contracts.length === 0 ? { docsPath: false as const } : {}),
    port: options.httpPort,
    stopKernelOnClose: false,
    ...(options.httpHost ? { host: options.httpHost } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
  });
}

/**
 * Opens the gateway's port; an address it cannot take (the gateway's `INVALID_CONFIG` with the
 * address, Node's code and its meaning in `details`) is `E_HTTP_LISTEN`, saying what to do.
 */
async function listen(gateway: HttpGateway): Promise<void> {
  try {
    await gateway.listen();
  } catch (error) {
    const details = error instanceof KeelError && error.code === KeelErrorCode.INVALID_CONFIG ? error.details : undefined;
    const { address, errno, reason } = details ?? {};
    if (typeof address !== 'string' || typeof errno !== 'string' || typeof reason !== 'string') throw error;
    throw new CLIError(CliErrorCode.E_HTTP_LISTEN, `The HTTP gateway cannot listen on ${address}: ${reason} (${errno}).`, {
      hint: 'Pick another port (0 picks a free one) or address, or stop what holds it.',
      cause: (error as KeelError).cause,
    });
  }
}
