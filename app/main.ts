/**
 * `npm start`: runs the shop. Hosts the modules the topology names (all of them by default),
 * keeps their data in the database the environment names (app/database.ts: PGlite in
 * `.keel/data` by default), serves them over HTTP with the gateway options of keel.config.ts
 * (see docs/http.md), logs what runs here (JSON lines, or pretty ones on a terminal: see
 * docs/observability.md), and stops cleanly on SIGINT or SIGTERM.
 */
import { KeelError, KeelErrorCode, createKernel, type AnyContract, type Kernel, type Logger } from 'keel';
import { createHttpGateway, servedOperations, type HttpGateway } from 'keel/http';
import { createLogger, tracingRequested } from 'keel/transport';
import type { Tracing } from 'keel/otel';
import { catalog } from '../modules/catalog/contract.js';
import { inventory } from '../modules/inventory/contract.js';
import { modules } from '../modules/index.js';
import { databasesFromEnv, describeDatabases } from './database.js';
import { topologyFromEnv } from './topology.js';

// keel.config.ts runs code (the authenticator from SHOP_AUTH_SECRET): a mistake there is said in one
// line, as keel start says it, never as an uncaught error's stack. Before the logger, whose format it sets.
const config = await import('../keel.config.js').then(
  (loaded) => loaded.default,
  (error: unknown) => {
    // A configuration mistake (a KeelError, whose message says what to do) in one line; anything else, a bug, with its stack.
    const said = error instanceof KeelError ? error.message : error instanceof Error ? (error.stack ?? error.message) : String(error);
    process.stderr.write(`The shop could not start: keel.config.ts failed: ${said}\n`);
    return process.exit(1);
  },
);
// One logger for the process: its own lines, the kernel's and the gateway's share one format.
const logger = processLogger();
// Declared before anything can fail: fail() shuts it down on every failure path.
let tracing: Tracing | undefined;
// Reads KEEL_MODULES and the KEEL_NATS_* variables, and connects to NATS when they name a server.
const topology = await topologyFromEnv(process.env, { logger }).catch((error: unknown) => fail('set up its topology (KEEL_MODULES, KEEL_NATS_URL)', error));
const hosted = modules.filter((module) => topology.host?.includes(module.name) ?? true);
// Traces when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) asks for them; the SDK is loaded only then.
tracing = tracingRequested()
  ? await import('keel/otel')
      .then(({ startTracing }) =>
        startTracing({ serviceName: topology.host === undefined ? 'shop' : hosted.map((module) => module.name).join('+'), logger }),
      )
      .catch((error: unknown) => fail('start tracing', error))
  : undefined;
// The gateway's port and operations are checked before anything opens: a refused value costs no start-up.
const port = await httpPort().catch((error: unknown) => fail('serve HTTP', error, () => topology.transport?.close()));
const exposed = await Promise.resolve()
  .then(exposedContracts)
  .catch((error: unknown) => fail('serve HTTP', error, () => topology.transport?.close()));
const database = await databasesFromEnv(process.env, hosted, { logger }).catch((error: unknown) =>
  fail('open its database', error, () => topology.transport?.close()),
);
const kernel = await Promise.resolve()
  .then(createShopKernel)
  .catch((error: unknown) => fail('start', error, () => topology.transport?.close(), () => database?.close()));
// The gateway (and its metrics) before kernel.start(): the first calls, and the events durable
// consumers find waiting (the start-up backlog), are counted. It listens once the kernel started.
const gateway = await createGateway(kernel).catch((error: unknown) =>
  fail('serve HTTP', error, () => topology.transport?.close(), () => database?.close()),
);
await kernel.start().catch((error: unknown) =>
  fail('start', error, () => gateway?.close(), () => kernel.stop(), () => topology.transport?.close(), () => database?.close()),
);
await gateway?.listen().catch((error: unknown) =>
  fail('serve HTTP', error, () => gateway?.close(), () => kernel.stop(), () => topology.transport?.close(), () => database?.close()),
);

// Nothing else may hold the process open (the local transport has no sockets), so hold it until a signal.
const keepAlive = setInterval(() => {}, 2 ** 31 - 1);
let stopping = false;
/** When a first SIGINT came: one Ctrl-C reaches this process twice under `npm start` (the terminal signals the group, npm forwards it too). */
let firstSigintAt: number | undefined;

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    // The same Ctrl-C, relayed within milliseconds: not a second press.
    if (signal === 'SIGINT' && firstSigintAt !== undefined && performance.now() - firstSigintAt < 500) return;
    logger.warn({ signal }, `${signal} again: exiting without waiting for work in flight`);
    process.exit(1);
  }
  stopping = true;
  if (signal === 'SIGINT') firstSigintAt = performance.now();
  logger.info({ signal }, `${signal} received: finishing work in flight, then stopping`);
  try {
    // The order matters: stop taking HTTP requests and answer those in flight, then stop the
    // modules (which finish their own work in flight), then close the connection to the others
    // and the database.
    await gateway?.close();
    await kernel.stop();
    await topology.transport?.close();
    await database?.close();
  } catch (error) {
    logger.error({ err: error }, 'the shop did not stop cleanly');
    await tracing?.shutdown();
    process.exit(1);
  }
  // Last, and bounded: it sends the spans of the work that just finished, or gives up warning.
  await tracing?.shutdown();
  clearInterval(keepAlive);
  logger.info({}, 'stopped');
  process.exit(0);
}

process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

// Only now that SIGINT and SIGTERM stop it cleanly: whoever waits for the ready record may signal at once.
await logSummary(kernel).catch((error: unknown) =>
  fail('say what it runs', error, () => gateway?.close(), () => kernel.stop(), () => topology.transport?.close(), () => database?.close()),
);

function createShopKernel(): Kernel {
  return createKernel({
    modules,
    topology,
    principal: config.principal,
    ...config.resilience,
    ...config.data,
    ...(database === undefined ? {} : { database: database.engineOf }),
    logger,
  });
}

/**
 * The HTTP gateway's port: `KEEL_HTTP_PORT`, else `PORT` (0: any free port; `off`: none).
 * Without either it serves on 3000 in the default one-process topology only, so that the module
 * processes of a split topology (`KEEL_MODULES` set) do not all claim one port.
 */
async function httpPort(): Promise<number | undefined> {
  const variable = ['KEEL_HTTP_PORT', 'PORT'].find((name) => process.env[name]?.trim());
  const value = variable === undefined ? undefined : (process.env[variable]?.trim() as string);
  if (value === 'off' || (value === undefined && process.env['KEEL_MODULES']?.trim())) return undefined;
  const number = value === undefined ? 3000 : Number(value);
  if (value !== undefined && !(/^\d+$/.test(value) && number <= 65_535)) {
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} "${value}" is not a port number (0 to 65535), nor "off".`);
  }
  return number;
}

/**
 * The HTTP gateway, on {@link httpPort} and `KEEL_HTTP_HOST` (default 127.0.0.1), exposing the
 * operations `KEEL_HTTP_OPERATIONS` says: the names `keel start` reads too. Made before the
 * kernel starts, as `keel start` makes it, so that its metrics (keel.config.ts' `metrics`
 * option included) miss nothing.
 */
async function createGateway(created: Kernel): Promise<HttpGateway | undefined> {
  if (port === undefined) return undefined;
  return createHttpGateway({
    // keel.config.ts: the gateway options the shop shares with `keel start` (authentication, CORS, rate limit, timeouts, metrics, ...).
    ...config.gateway,
    kernel: created,
    port,
    host: process.env['KEEL_HTTP_HOST']?.trim() || '127.0.0.1',
    stopKernelOnClose: false,
    contracts: exposed,
    logger,
  });
}

/**
 * The contracts whose operations the gateway exposes, from `KEEL_HTTP_OPERATIONS`: `all` (the
 * default) every module's, those hosted elsewhere reached over NATS; `hosted` those of the
 * modules this process hosts; `none` no operation, for a module process that serves only
 * /healthz, /readyz and /metrics. `all` where only some modules are hosted and no NATS reaches the
 * others is refused, unless a hosted module itself needs one of them (the kernel then names it).
 */
function exposedContracts(): readonly AnyContract[] {
  if (port === undefined) return [];
  const value = process.env['KEEL_HTTP_OPERATIONS']?.trim() || 'all';
  switch (value) {
    case 'all': {
      const elsewhere = modules.filter((module) => !hosted.includes(module)).map((module) => module.name);
      const isHosted = (name: string): boolean => hosted.some((module) => module.name === name);
      const needsElsewhere = hosted.some((module) => [...module.dependsOn, ...module.subscribesTo].some((contract) => !isHosted(contract.name)));
      if (topology.transport === undefined && elsewhere.length > 0 && !needsElsewhere) {
        throw new KeelError(
          KeelErrorCode.INVALID_CONFIG,
          `The HTTP gateway exposes every module's operations (KEEL_HTTP_OPERATIONS all, the default), and this process reaches no module it does not host ` +
            `(${elsewhere.join(', ')}): no NATS server was given. Set KEEL_HTTP_OPERATIONS=hosted to expose ${hosted.map((module) => module.name).join(', ')} alone, or KEEL_NATS_URL to reach the others.`,
        );
      }
      return modules.map((module) => module.contract as AnyContract);
    }
    case 'hosted':
      return hosted.map((module) => module.contract as AnyContract);
    case 'none':
      return [];
    default:
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `KEEL_HTTP_OPERATIONS "${value}" is not one of all (every operation), hosted (those of the modules hosted here) ` +
          'or none (no operation: only /healthz, /readyz and /metrics).',
      );
  }
}

/** The process's logger; a KEEL_LOG_FORMAT it cannot use leaves no format to log in, so that one is said plainly. */
function processLogger(): Logger {
  // keel.config.ts's logging section, under KEEL_LOG_LEVEL and KEEL_LOG_FORMAT when they are set.
  const env = process.env;
  const level = env['KEEL_LOG_LEVEL']?.trim() || config.logging?.level;
  const format = env['KEEL_LOG_FORMAT']?.trim() || config.logging?.format;
  try {
    return createLogger({ env: { ...env, KEEL_LOG_LEVEL: level, KEEL_LOG_FORMAT: format } });
  } catch (error) {
    process.stderr.write(`The shop could not start: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
}

/**
 * Closes what is open (`closers`, in order: one that throws is logged and the next still runs),
 * logs why the shop cannot go on, sends the spans buffered so far (tracing's shutdown is bounded
 * and never rejects), and exits 1.
 */
async function fail(what: string, error: unknown, ...closers: (() => Promise<unknown> | undefined)[]): Promise<never> {
  for (const close of closers) {
    try {
      await close();
    } catch (closeError) {
      logger.warn({ err: closeError }, `while stopping after the failure: ${closeError instanceof Error ? closeError.message : String(closeError)}`);
    }
  }
  logger.error({ err: error }, `The shop could not ${what}: ${error instanceof Error ? error.message : String(error)}`);
  await tracing?.shutdown();
  process.exit(1);
}

/**
 * What this process runs, as records: the modules hosted here and elsewhere, the data, the HTTP
 * gateway, the catalog when it is hosted here, then `keel shop is ready`.
 */
async function logSummary(running: Kernel): Promise<void> {
  const status = running.status();
  const hostedHere = status.modules.map((module) => `${module.name} ${module.version}`);
  logger.info(
    { modules: status.modules.map(({ name, version }) => ({ name, version })) },
    `hosting ${hostedHere.join(', ') || 'nothing (a client of the others)'}`,
  );
  if (status.remote.length > 0) {
    // The transport the remote modules are reached over (the kernel's own local one serves this process).
    const remote = status.transports.filter((transport) => transport.name === topology.transport?.name);
    const transports = (remote.length > 0 ? remote : status.transports).map((transport) => `${transport.name}${transport.ready ? '' : ' (not ready)'}`);
    logger.info({ remote: status.remote, transports: remote.length > 0 ? remote : status.transports }, `reaching ${status.remote.join(', ')} over ${transports.join(', ')}`);
  }
  if (database !== undefined) logger.info({ data: describeDatabases(database) }, `data: ${describeDatabases(database)}`);
  if (gateway?.url !== undefined) {
    const url = gateway.url;
    const served = [...new Set(Object.keys(gateway.openapi.paths).map((path) => path.split('/')[1] as string))];
    const reference = `API reference ${url}/docs, OpenAPI ${url}/openapi.json`;
    const what =
      served.length === 0
        ? `no operation: readiness ${url}/readyz, metrics ${url}/metrics`
        : served.length < running.modules.length
          ? `operations of ${served.join(', ')} only; ${reference}`
          : reference;
    logger.info({ url, modules: served }, `HTTP gateway on ${url} (${what})`);
    // The served operations that need a caller identity (their contract's auth).
    const guarded = exposed.flatMap((contract) =>
      servedOperations(contract)
        .filter(([, operation]) => operation.auth !== undefined)
        .map(([name]) => `${contract.name}.${name}`),
    );
    if (guarded.length > 0) {
      // Whether a bearer token is verified (keel.config.ts, app/principal.ts): a 401 for a request with a token otherwise reads as a bad token.
      const authenticates = config.gateway?.authenticate !== undefined;
      logger.info(
        { authenticates, guarded },
        authenticates
          ? `HTTP authentication on: bearer tokens are verified (the shop's: signed with SHOP_AUTH_SECRET; npm run token makes one) for ${guarded.join(', ')}`
          : `HTTP authentication off: every request is anonymous, so ${guarded.join(', ')} answer 401; set SHOP_AUTH_SECRET to verify bearer tokens`,
      );
    }
  }
  if (running.hosted.includes(catalog.name)) {
    const { products } = await running.client(catalog).listProducts({});
    const stock = running.hosted.includes(inventory.name) ? running.client(inventory) : undefined;
    for (const product of products) {
      const available = stock ? (await stock.getStock({ sku: product.sku })).available : undefined;
      logger.info(
        { sku: product.sku, product: product.name, priceCents: product.priceCents, ...(available === undefined ? {} : { available }) },
        `catalog: ${product.sku} ${product.name}, ${formatCents(product.priceCents)}${available === undefined ? '' : `, ${available} available`}`,
      );
    }
  }
  logger.info({ ready: status.ready }, status.ready ? 'keel shop is ready' : 'keel shop started, not ready yet');
}

function formatCents(cents: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}
