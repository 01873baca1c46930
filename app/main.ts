/**
 * `npm start`: runs the shop. Hosts the modules the topology names (all of them by default),
 * keeps their data in the database the environment names (app/database.ts: PGlite in
 * `.keel/data` by default), serves them over HTTP with the gateway options of keel.config.ts
 * (see docs/http.md), prints what runs here,
 * and stops cleanly on SIGINT or SIGTERM.
 */
import { KeelError, KeelErrorCode, createKernel, type AnyContract, type Kernel } from 'keel';
import { createHttpGateway, createKernelMetrics, type HttpGateway, type KernelMetrics } from 'keel/http';
import { tracingRequested } from 'keel/transport';
import { catalog } from '../modules/catalog/contract.js';
import { inventory } from '../modules/inventory/contract.js';
import config from '../keel.config.js';
import { modules } from '../modules/index.js';
import { databasesFromEnv, describeDatabases } from './database.js';
import { topologyFromEnv } from './topology.js';

const topology = await topologyFromEnv(process.env).catch((error: unknown) => fail('read its topology', error));
const hosted = modules.filter((module) => topology.host?.includes(module.name) ?? true);
// Traces when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_TRACES_EXPORTER) asks for them; the SDK is loaded only then.
const tracing = tracingRequested()
  ? await import('keel/otel')
      .then(({ startTracing }) => startTracing({ serviceName: topology.host === undefined ? 'shop' : hosted.map((module) => module.name).join('+') }))
      .catch((error: unknown) => fail('start tracing', error))
  : undefined;
const database = await databasesFromEnv(process.env, hosted).catch(async (error: unknown) => {
  await topology.transport?.close();
  return fail('open its database', error);
});
const port = await httpPort().catch(async (error: unknown) => {
  await topology.transport?.close();
  await database?.close();
  return fail('serve HTTP', error);
});
let metrics: KernelMetrics | undefined;
const kernel = await startKernel().catch(async (error: unknown) => {
  await topology.transport?.close();
  await database?.close();
  return fail('start', error);
});
const gateway = await startGateway(kernel).catch(async (error: unknown) => {
  await kernel.stop();
  await topology.transport?.close();
  await database?.close();
  return fail('serve HTTP', error);
});

// Nothing else may hold the process open (the local transport has no sockets), so hold it until a signal.
const keepAlive = setInterval(() => {}, 2 ** 31 - 1);
let stopping = false;

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    console.error(`${signal} again: exiting without waiting for work in flight.`);
    process.exit(1);
  }
  stopping = true;
  console.log(`${signal} received: finishing work in flight, then stopping.`);
  try {
    // The order matters: stop taking HTTP requests and answer those in flight, then stop the
    // modules (which finish their own work in flight), then close the connection to the others
    // and the database.
    await gateway?.close();
    await kernel.stop();
    await topology.transport?.close();
    await database?.close();
    await tracing?.shutdown();
  } catch (error) {
    console.error('The shop did not stop cleanly:', error);
    process.exit(1);
  }
  clearInterval(keepAlive);
  console.log('Stopped.');
  process.exit(0);
}

process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

// Only now that SIGINT and SIGTERM stop it cleanly: whoever waits for this summary may signal at once.
console.log(await summary(kernel));

async function startKernel(): Promise<Kernel> {
  const created = createKernel({
    modules,
    topology,
    principal: config.principal,
    ...config.resilience,
    ...(database === undefined ? {} : { database: database.engineOf }),
  });
  // The gateway's metrics observe the kernel from before start(): its first calls, and the events
  // durable consumers find waiting (the start-up backlog), are counted. The gateway comes after.
  if (port !== undefined) metrics = createKernelMetrics(created);
  await created.start();
  return created;
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
 * operations `KEEL_HTTP_OPERATIONS` says: the names `keel start` reads too. It serves the metrics
 * made before the kernel started.
 */
async function startGateway(running: Kernel): Promise<HttpGateway | undefined> {
  if (port === undefined) return undefined;
  const contracts = exposedContracts(running);
  // The shop's pure reads, also offered as GET ?input=<json> (the other idempotent operations change state),
  // among the exposed operations only: the gateway refuses a GET route for an operation it does not serve.
  const getOperations = [
    'catalog.getProduct',
    'catalog.listProducts',
    'inventory.getStock',
    'orders.getOrder',
    'orders.listOrders',
    'payments.getPayment',
    'payments.listPayments',
    'notifications.listNotifications',
  ].filter((name) => contracts.some((contract) => contract.name === name.split('.')[0]));
  const served = await createHttpGateway({
    // keel.config.ts: the gateway options the shop shares with `keel start` (authentication, CORS, rate limit, timeouts, ...).
    ...config.gateway,
    kernel: running,
    port,
    ...(metrics === undefined ? {} : { metrics }),
    host: process.env['KEEL_HTTP_HOST']?.trim() || '127.0.0.1',
    stopKernelOnClose: false,
    contracts,
    getOperations,
    openapi: { title: 'keel shop', description: 'The example shop of keel: catalog, inventory, payments, orders and notifications.' },
  });
  await served.listen();
  return served;
}

/**
 * The contracts whose operations the gateway exposes, from `KEEL_HTTP_OPERATIONS`: `all` (the
 * default) every module's, those hosted elsewhere reached over NATS; `hosted` those of the
 * modules this process hosts; `none` no operation, for a module process that serves only
 * /healthz, /readyz and /metrics.
 */
function exposedContracts(running: Kernel): readonly AnyContract[] {
  const value = process.env['KEEL_HTTP_OPERATIONS']?.trim() || 'all';
  switch (value) {
    case 'all':
      return running.modules.map((module) => module.contract as AnyContract);
    case 'hosted':
      return running.modules.filter((module) => running.hosted.includes(module.name)).map((module) => module.contract as AnyContract);
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

function fail(what: string, error: unknown): never {
  console.error(`The shop could not ${what}: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}

/** A human summary of what this process runs, with the catalog when it is hosted here. */
async function summary(running: Kernel): Promise<string> {
  const status = running.status();
  const lines = [
    '',
    `keel shop ${status.ready ? 'is ready' : 'started, not ready yet'}`,
    `  hosted here: ${status.modules.map((module) => `${module.name} ${module.version}`).join(', ') || 'nothing (a client of the others)'}`,
    `  elsewhere:   ${status.remote.length ? status.remote.join(', ') : 'nothing (every module runs in this process)'}`,
    `  transports:  ${status.transports.map((transport) => `${transport.name}${transport.ready ? '' : ' (not ready)'}`).join(', ')}`,
  ];
  if (database !== undefined) lines.push(`  data:        ${describeDatabases(database)}`);
  if (gateway?.url !== undefined) {
    const exposed = new Set(Object.keys(gateway.openapi.paths).map((path) => path.split('/')[1]));
    const reference = `API reference ${gateway.url}/docs, OpenAPI ${gateway.url}/openapi.json`;
    lines.push(
      exposed.size === 0
        ? `  http:        ${gateway.url}  (no operation: readiness ${gateway.url}/readyz, metrics ${gateway.url}/metrics)`
        : exposed.size < running.modules.length
          ? `  http:        ${gateway.url}  (operations of ${[...exposed].join(', ')} only; ${reference})`
          : `  http:        ${gateway.url}  (${reference})`,
    );
  }
  if (running.hosted.includes(catalog.name)) {
    const { products } = await running.client(catalog).listProducts({});
    const stock = running.hosted.includes(inventory.name) ? running.client(inventory) : undefined;
    lines.push('  catalog:');
    for (const product of products) {
      const onHand = stock ? `  ${(await stock.getStock({ sku: product.sku })).available} available` : '';
      lines.push(`    ${product.sku.padEnd(10)} ${product.name.padEnd(22)} ${formatCents(product.priceCents).padStart(9)}${onHand}`);
    }
  }
  lines.push('Press Ctrl+C to stop.', '');
  return lines.join('\n');
}

function formatCents(cents: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}
