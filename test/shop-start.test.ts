import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPGliteDatabase } from 'keel/pglite';
import { catalog } from '../modules/catalog/contract.js';
import { orders } from '../modules/orders/contract.js';
import { modules } from '../modules/index.js';
import { notifications } from '../modules/notifications/contract.js';
import { NO_MODULES, topologyFromEnv } from '../app/topology.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { copyOfPGlite, freshPGliteFolder, pgliteTemplateFolder } from './support/topologies.js';
import { eventSource } from './support/shop-suite.js';
import { Principal } from '../app/principal.js';
import { SHOP_AUTH_ENV, asCustomer, bearer } from './support/shop-auth.js';

const root = fileURLToPath(new URL('..', import.meta.url));
/** package.json's `start` script, as npm runs it (its `node` is this one). */
const startScript = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { scripts: { start: string } }).scripts.start.split(' ');
/**
 * Bounds, not timings: a whole shop in a child process (tsx compiling it, PGlite starting) has taken
 * 20 s to be ready on a loaded 2-core CI machine, and a test starts up to three of them in turn.
 */
const READY_MS = 60_000;
const SPAWNING = { timeout: 180_000 } as const;

/** An empty embedded database, initialised once for the file: each shop started gets a copy. */
let template: string;
beforeAll(async () => {
  template = await pgliteTemplateFolder();
});

/** Every shop a test started: one a failed assertion left running is killed after its test, never left behind. */
const started = new Set<ReturnType<typeof spawn>>();
afterEach(async () => {
  const left = [...started].filter((child) => child.exitCode === null && child.signalCode === null);
  started.clear();
  for (const child of left) child.kill('SIGKILL');
  await Promise.all(left.map((child) => (child.exitCode === null && child.signalCode === null ? once(child, 'exit') : undefined)));
});

/** The line a process hosting every module logs: each module with its contract's version, from the manifest. */
const HOSTING_ALL = `hosting ${modules.map((module) => `${module.name} ${module.contract.version}`).join(', ')}`;

/**
 * `npm start` (app/main.ts) in a child process, with exactly the given settings of its own:
 * through package.json's `start` script as `npm start` runs it, or through node with tsx's loader.
 * Unless `env` names its database, it keeps its data in a copy of the file's empty embedded
 * database, removed when it exits: never the repository's .keel/data, and no initdb per process.
 */
function startShop(env: Record<string, string>, via: 'script' | 'node' = 'node') {
  const data = 'KEEL_DATA_DIR' in env || 'DATABASE_URL' in env ? undefined : copyOfPGlite(template);
  const [command, args] =
    via === 'script'
      ? [startScript[0] === 'node' ? process.execPath : (startScript[0] as string), startScript.slice(1)]
      : [process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'app/main.ts']];
  const child = spawn(command, args, {
    cwd: root,
    env: {
      ...process.env,
      // Not the developer's: a shell that exported it (README's auth section) would change what these processes log and refuse.
      SHOP_AUTH_SECRET: '',
      KEEL_MODULES: '',
      KEEL_NATS_URL: '',
      KEEL_HTTP_PORT: '',
      KEEL_HTTP_HOST: '',
      KEEL_HTTP_OPERATIONS: '',
      PORT: '',
      KEEL_LOG_LEVEL: 'info',
      KEEL_LOG_FORMAT: 'json',
      DATABASE_URL: '',
      ...(data === undefined ? {} : { KEEL_DATA_DIR: data.folder }),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  let output = '';
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  /** Its stdout, one JSON record a line (KEEL_LOG_FORMAT=json): parsing fails at any other line. */
  const records = () =>
    stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as { msg: string } & Record<string, unknown>);
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  void exited.then(() => data?.remove());
  return {
    child,
    exited,
    output: () => output,
    stdout: () => stdout,
    records,
    /** True when a message it logged contains `text`. */
    said: (text: string) => records().some((record) => record.msg.includes(text)),
    /** Resolves once it logged that it is ready, with its gateway's URL; fails with its output if it exits first. */
    ready: async () => {
      await expect.poll(() => output || child.exitCode, { timeout: READY_MS, interval: 50 }).toSatisfy(
        (seen) => typeof seen === 'string' && seen.includes('"msg":"keel shop is ready"'),
      );
      return records().find((record) => record.msg.startsWith('HTTP gateway on '))?.['url'] as string | undefined;
    },
    /** Waits for it to exit by itself and returns the exit code. */
    exit: async () => {
      const timer = setTimeout(() => child.kill('SIGKILL'), READY_MS);
      const [code] = await exited;
      clearTimeout(timer);
      return code;
    },
    /** Sends the signal and returns the exit code; kills it if it is still running afterwards. */
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      try {
        if (child.exitCode === null && child.signalCode === null) child.kill(signal);
        const [code] = await exited;
        return code;
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    },
  };
}

describe('app - npm start', SPAWNING, () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('app - logs what it hosts, then stops and exits 0 on %s', async (signal) => {
    const shop = startShop({ PORT: '0' }, 'script');
    await shop.ready();
    const messages = shop.records().map((record) => record.msg);
    expect(messages).toContain(HOSTING_ALL);
    expect(messages).toContainEqual(expect.stringMatching(/^data: PGlite in \S+keel-pglite-/));
    expect(shop.records()).toContainEqual(
      expect.objectContaining({ sku: 'KB-001', product: 'Mechanical keyboard', priceCents: 8900, available: 25, msg: 'catalog: KB-001 Mechanical keyboard, $89.00, 25 available' }),
    );
    expect(messages).toContain('HTTP authentication off: every request is anonymous, so catalog.addProduct, catalog.setPrice, inventory.restock, payments.getPayment, payments.listPayments, orders.getOrder, orders.listOrders, orders.cancelOrder, notifications.listNotifications answer 401; set SHOP_AUTH_SECRET to verify bearer tokens');
    expect(messages.at(-1)).toBe('keel shop is ready');
    expect(await shop.stop(signal)).toBe(0);
    expect(shop.said(`${signal} received`)).toBe(true);
    expect(shop.records().at(-1)?.msg).toBe('stopped');
  });

  it('app - with KEEL_LOG_FORMAT=json every stdout line, from start to stop, is one JSON record; a handler\'s line carries the trace id of the call', async () => {
    const shop = startShop({ PORT: '0', ...SHOP_AUTH_ENV });
    const url = await shop.ready();
    expect(shop.records()).toContainEqual(expect.objectContaining({ authenticates: true, msg: expect.stringMatching(/^HTTP authentication on: bearer tokens are verified .* for catalog\.addProduct, catalog\.setPrice, inventory\.restock, payments\.getPayment, payments\.listPayments, orders\.getOrder, orders\.listOrders, orders\.cancelOrder, notifications\.listNotifications$/) }));
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    // orders.placeOrder calls payments, whose handler logs "payment captured": a line two modules down the call.
    const response = await fetch(`${url}/orders/placeOrder`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-00f067aa0ba902b7-01`, 'x-correlation-id': 'shop-log-test-1' },
      body: JSON.stringify({ customerId: 'c-logs', lines: [{ sku: 'KB-001', quantity: 1 }], card: { token: 'tok_visa' } }),
    });
    expect(response.status, await response.clone().text()).toBe(200);
    expect(await shop.stop()).toBe(0);
    const lines = shop.stdout().split('\n').filter((line) => line !== '');
    expect(lines.length).toBeGreaterThan(5);
    for (const line of lines) expect(() => JSON.parse(line), line).not.toThrow();
    expect(shop.records()).toContainEqual(expect.objectContaining({ msg: 'keel shop is ready', level: 30 }));
    expect(shop.records()).toContainEqual(
      expect.objectContaining({
        msg: 'payment captured',
        module: 'payments',
        trace_id: traceId,
        span_id: expect.stringMatching(/^[0-9a-f]{16}$/),
        correlation_id: 'shop-log-test-1',
      }),
    );
  });

  it('app - PORT=off serves no HTTP; KEEL_HTTP_PORT wins over PORT, as in keel start', async () => {
    const off = startShop({ PORT: 'off' });
    const both = startShop({ KEEL_HTTP_PORT: '0', PORT: 'not-a-port' });
    const bad = startShop({ PORT: 'eighty' });
    try {
      expect(await off.ready(), off.output()).toBeUndefined();
      expect(off.said('HTTP gateway on')).toBe(false);

      const url = await both.ready();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);

      expect(await bad.exit()).toBe(1);
      expect(bad.records().at(-1)).toMatchObject({ level: 50, msg: 'The shop could not serve HTTP: PORT "eighty" is not a port number (0 to 65535), nor "off".' });
    } finally {
      expect(await Promise.all([off.stop(), both.stop()])).toEqual([0, 0]);
    }
  });

  it('app - a SHOP_AUTH_SECRET under 32 bytes stops the start with one line naming the variable and how to make one, no stack', async () => {
    const bad = startShop({ PORT: '0', SHOP_AUTH_SECRET: 'short' });
    expect(await bad.exit()).toBe(1);
    expect(bad.output(), bad.output()).toContain(
      'The shop could not start: keel.config.ts failed: SHOP_AUTH_SECRET is 5 bytes long; it needs at least 32 (a shorter HMAC secret can be guessed). ' +
        'Make one with: export SHOP_AUTH_SECRET=$(openssl rand -hex 32)\n',
    );
    expect(bad.output()).not.toMatch(/^\s+at /m);
  });

  it('app - KEEL_HTTP_OPERATIONS refuses a value other than all, hosted or none, naming the variable', async () => {
    const bad = startShop({ PORT: '0', KEEL_HTTP_OPERATIONS: 'some' });
    expect(await bad.exit()).toBe(1);
    expect(bad.said(
      'The shop could not serve HTTP: KEEL_HTTP_OPERATIONS "some" is not one of all (every operation), ' +
        'hosted (those of the modules hosted here) or none (no operation: only /healthz, /readyz and /metrics).',
    ), bad.output()).toBe(true);
  });

  it('app - a gateway of every operation in a process hosting some modules, with no NATS, is refused naming KEEL_HTTP_OPERATIONS=hosted', async () => {
    const bad = startShop({ KEEL_MODULES: 'catalog', PORT: '0' });
    expect(await bad.exit()).toBe(1);
    expect(bad.said(
      "The shop could not serve HTTP: The HTTP gateway exposes every module's operations (KEEL_HTTP_OPERATIONS all, the default), and this process " +
        'reaches no module it does not host (inventory, payments, orders, notifications): no NATS server was given. ' +
        'Set KEEL_HTTP_OPERATIONS=hosted to expose catalog alone, or KEEL_NATS_URL to reach the others.',
    ), bad.output()).toBe(true);
    // Refused before anything opened: the process has exited, and no database was opened on the way.
    expect(bad.output()).not.toContain('migrations applied');
    expect(bad.output()).not.toContain('opening the embedded database');
  });
});

describe('app - data', SPAWNING, () => {
  async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: unknown }> {
    const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
    return { status: response.status, body: await response.json() };
  }

  it('app - keeps the data in KEEL_DATA_DIR across a restart, refuses a second process on it, and answers an Idempotency-Key retry with the same order', async () => {
    const data = await freshPGliteFolder();
    const order = { customerId: `c-${Date.now()}`, lines: [{ sku: 'KB-001', quantity: 2 }], card: { token: 'tok_visa' } };
    try {
      const first = startShop({ PORT: '0', KEEL_DATA_DIR: data.folder });
      let url = await first.ready();
      expect(first.said(`data: PGlite in ${data.folder}`)).toBe(true);
      const second = startShop({ PORT: '0', KEEL_DATA_DIR: data.folder });
      expect(await second.exit()).toBe(1);
      expect(second.said(`The shop could not open its database: The embedded database in ${data.folder} is open in process ${first.child.pid}, and PGlite serves one process at a time.`), second.output()).toBe(true);

      const placed = await postJson(`${url}/orders/placeOrder`, order, { 'idempotency-key': 'checkout-1' });
      expect(placed.status, JSON.stringify(placed.body)).toBe(200);
      const retried = await postJson(`${url}/orders/placeOrder`, order, { 'idempotency-key': 'checkout-1' });
      expect(retried).toEqual(placed);
      const { orderId } = placed.body as { orderId: string };
      await expect.poll(async () => (await postJson(`${url}/inventory/getStock`, { sku: 'KB-001' })).body, { timeout: 15_000 }).toMatchObject({ onHand: 23 });
      expect(await first.stop()).toBe(0);

      const again = startShop({ PORT: '0', KEEL_DATA_DIR: data.folder, ...SHOP_AUTH_ENV });
      url = await again.ready();
      try {
        expect(again.said('catalog: KB-001 Mechanical keyboard, $89.00, 23 available')).toBe(true);
        expect(await postJson(`${url}/orders/getOrder`, { orderId }, await bearer({ sub: order.customerId, roles: ['customer'] }))).toEqual(placed);
        expect((await postJson(`${url}/orders/placeOrder`, order, { 'idempotency-key': 'checkout-1' })).body).toEqual(placed.body);
        // The customer's own payments: read with that customer's token.
        const { body: paid } = await postJson(`${url}/payments/listPayments`, { customerId: order.customerId }, await bearer({ sub: order.customerId, roles: ['customer'] }));
        expect((paid as { payments: unknown[] }).payments).toHaveLength(1);
      } finally {
        expect(await again.stop()).toBe(0);
      }
    } finally {
      data.remove();
    }
  });
});

describe('app - topology from the environment', () => {
  it('app - KEEL_MODULES=none hosts no module, and without KEEL_NATS_URL has no transport', async () => {
    expect(NO_MODULES).toBe('none');
    expect(await topologyFromEnv({ KEEL_MODULES: 'none' })).toEqual({ host: [] });
    expect(await topologyFromEnv({ KEEL_MODULES: '  none ' })).toEqual({ host: [] });
    expect(await topologyFromEnv({})).toEqual({});
    expect(await topologyFromEnv({ KEEL_MODULES: ' ' })).toEqual({});
    expect(await topologyFromEnv({ KEEL_MODULES: 'catalog, orders,catalog' })).toEqual({ host: ['catalog', 'orders'] });
  });

  it('app - KEEL_MODULES refuses a name that is not a module, naming the variable', async () => {
    const refused = await topologyFromEnv({ KEEL_MODULES: 'catalog,billing' }).catch((error: unknown) => error);
    expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('KEEL_MODULES names "billing", which is not in the application');
  });
});

describe('app - npm start split over NATS', SPAWNING, () => {
  let server: NatsServer;
  let transport: Transport;
  let database: DatabaseEngine;
  let data: { remove(): void } | undefined;
  let shop: Kernel;

  beforeAll(async () => {
    server = await startNatsServer();
    // Every module of the shop, in this test process, reached by the child processes over NATS.
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    const copy = copyOfPGlite(template);
    data = copy;
    database = await createPGliteDatabase({ dataDir: copy.folder });
    shop = createKernel({ modules, principal: Principal, logger: silentLogger, topology: { transport }, database });
    await shop.start();
  });

  afterAll(async () => {
    await shop?.stop();
    await transport?.close();
    await database?.close();
    data?.remove();
  });

  it('app - KEEL_MODULES=none PORT=0 is a gateway that hosts nothing and answers over NATS, and drains on SIGTERM', async () => {
    const gateway = startShop({ KEEL_MODULES: 'none', PORT: '0', KEEL_NATS_URL: server.url });
    const url = await gateway.ready();
    expect(gateway.said('hosting nothing (a client of the others)')).toBe(true);
    // The NATS transport writes to the process's logger, as the kernel and the gateway do: one name on every record.
    expect(gateway.records().find((record) => record.msg === 'connected to NATS')).toMatchObject({ name: 'keel' });
    expect(gateway.records().find((record) => record.msg.startsWith('reaching '))?.msg).toMatch(
      /^reaching catalog, inventory, payments, orders, notifications over nats$/,
    );
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    try {
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const response = await fetch(`${url}/catalog/getProduct`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'KB-001' }),
      });
      expect(await response.json()).toMatchObject({ sku: 'KB-001', name: 'Mechanical keyboard' });
    } finally {
      expect(await gateway.stop()).toBe(0);
    }
    expect(gateway.records().at(-1)?.msg).toBe('stopped');
  });

  it('app - a module process serves HTTP only when given PORT, and then shows its NATS-served calls in /metrics', async () => {
    const silent = startShop({ KEEL_MODULES: 'catalog', KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: 'silent' });
    expect(await silent.ready(), silent.output()).toBeUndefined();
    expect(silent.said(`hosting catalog ${catalog.version}`)).toBe(true);
    // catalog calls no module and subscribes to none: the modules hosted elsewhere are not its business.
    expect(silent.records().some((record) => record.msg.startsWith('reaching '))).toBe(false);
    expect(await silent.stop()).toBe(0);

    // Its own prefix, so that the calls below reach this process and not the test's catalog.
    const prefix = 'metrics';
    const served = startShop({ KEEL_MODULES: 'catalog', KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: prefix, PORT: '0' });
    const url = await served.ready();
    const callerTransport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    const caller = createKernel({ modules, principal: Principal, logger: silentLogger, topology: { host: [], transport: callerTransport } });
    try {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      await caller.start();
      await caller.client(catalog).getProduct({ sku: 'KB-001' });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^keel_calls_total\{[^}]*side="served"[^}]*transport="nats"[^}]*\} [1-9]/m);
    } finally {
      await caller.stop();
      await callerTransport.close();
      expect(await served.stop()).toBe(0);
    }
  });

  it('app - a notifications process restarted with 20 orderPlaced events waiting handles them all and shows all 20 in /metrics', async () => {
    const prefix = 'backlog';
    const backlog = 20;
    // Its first run makes its durable consumers; what orders publishes while it is down waits there.
    const first = startShop({ KEEL_MODULES: 'notifications', KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: prefix });
    await first.ready();
    expect(await first.stop()).toBe(0);
    const publisherTransport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    const fakeOrders = eventSource(orders);
    const publisher = createKernel({ modules: [fakeOrders.module], logger: silentLogger, topology: { transport: publisherTransport } });
    await publisher.start();
    const customerId = `customer-${randomUUID()}`;
    for (let n = 0; n < backlog; n += 1) {
      const orderId = randomUUID();
      const lines = [{ sku: 'KB-001', quantity: 1, unitPriceCents: 8900 }];
      await fakeOrders.emit('orderPlaced', { orderId, customerId, lines, totalCents: 8900, paymentId: `pay_${orderId}`, placedAt: new Date().toISOString() });
    }
    await publisher.stop();
    await publisherTransport.close();

    const restarted = startShop({ KEEL_MODULES: 'notifications', KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: prefix, PORT: '0', KEEL_HTTP_OPERATIONS: 'none' });
    const url = await restarted.ready();
    const caller = await callerOn(prefix);
    try {
      // Positive signal: one e-mail per order, so every event was handled.
      await expect
        .poll(async () => (await caller.kernel.client(notifications).listNotifications({ customerId }, asCustomer(customerId))).notifications.length, { timeout: 20_000, interval: 100 })
        .toBe(backlog);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toContain(`keel_events_handled_total{contract="orders",event="orderPlaced",subscriber="notifications",outcome="ok"} ${backlog}\n`);
    } finally {
      await caller.close();
      expect(await restarted.stop()).toBe(0);
    }
  });

  /** A kernel hosting nothing, calling the modules of `prefix` over the test's nats-server. */
  async function callerOn(prefix: string): Promise<{ kernel: Kernel; close(): Promise<void> }> {
    const callerTransport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    const kernel = createKernel({ modules, principal: Principal, logger: silentLogger, topology: { host: [], transport: callerTransport } });
    await kernel.start();
    return {
      kernel,
      close: async () => {
        await kernel.stop();
        await callerTransport.close();
      },
    };
  }

  async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  }

  it('app - KEEL_HTTP_OPERATIONS=none: a module process serves readiness and metrics on its PORT, and no operation', async () => {
    const prefix = 'operations-none';
    const ordersProcess = startShop({
      KEEL_MODULES: 'orders',
      KEEL_HTTP_OPERATIONS: 'none',
      KEEL_NATS_URL: server.url,
      KEEL_NATS_PREFIX: prefix,
      PORT: '0',
    });
    const url = await ordersProcess.ready();
    const caller = await callerOn(prefix);
    try {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(ordersProcess.said(`HTTP gateway on ${url} (no operation: readiness ${url}/readyz, metrics ${url}/metrics)`)).toBe(true);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);

      const placeOrder = await postJson(`${url}/orders/placeOrder`, {
        customerId: 'c-1',
        lines: [{ sku: 'KB-001', quantity: 1 }],
        card: { token: 'tok_visa' },
      });
      expect(placeOrder.status).toBe(404);
      expect(placeOrder.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
      expect(await placeOrder.json()).toMatchObject({
        code: 'ROUTE_NOT_FOUND',
        detail: expect.stringContaining('module "orders" is not exposed by this gateway'),
      });
      expect((await postJson(`${url}/catalog/getProduct`, { sku: 'KB-001' })).status).toBe(404);
      expect(((await (await fetch(`${url}/openapi.json`)).json()) as { paths: object }).paths).toEqual({});

      // The module still serves over NATS, and its metrics show it.
      expect(await caller.kernel.client(orders).listOrders({ customerId: 'c-1' }, asCustomer('c-1'))).toEqual({ orders: [] });
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(metrics).toMatch(/^keel_calls_total\{side="served",contract="orders",operation="listOrders",transport="nats",[^}]*\} 1$/m);
      expect(metrics).toMatch(/^keel_http_requests_total\{method="GET",route="\/readyz",status="200"\} 1$/m);
    } finally {
      await caller.close();
      expect(await ordersProcess.stop()).toBe(0);
    }
  });

  it('app - KEEL_HTTP_OPERATIONS=hosted: only the operations of the modules hosted here, GET reads among them', async () => {
    const ordersProcess = startShop({
      KEEL_MODULES: 'orders',
      KEEL_HTTP_OPERATIONS: 'hosted',
      KEEL_NATS_URL: server.url,
      KEEL_NATS_PREFIX: 'operations-hosted',
      PORT: '0',
      ...SHOP_AUTH_ENV,
    });
    const url = await ordersProcess.ready();
    try {
      expect(ordersProcess.said(`HTTP gateway on ${url} (operations of orders only; API reference ${url}/docs, OpenAPI ${url}/openapi.json)`)).toBe(true);
      // What orders depends on, not notifications, which it never calls.
      expect(ordersProcess.records().find((record) => record.msg.startsWith('reaching '))?.msg).toMatch(/^reaching catalog, inventory, payments over nats$/);
      // The customer's own orders: read with that customer's token.
      const customer = await bearer({ sub: 'c-1', roles: ['customer'] });
      const listed = await postJson(`${url}/orders/listOrders`, { customerId: 'c-1' }, customer);
      expect(await listed.json()).toEqual({ orders: [] });
      const read = await fetch(`${url}/orders/listOrders?input=${encodeURIComponent(JSON.stringify({ customerId: 'c-1' }))}`, { headers: customer });
      expect(read.status).toBe(200);
      const catalogRead = await postJson(`${url}/catalog/getProduct`, { sku: 'KB-001' });
      expect(catalogRead.status).toBe(404);
      expect(await catalogRead.json()).toMatchObject({ detail: expect.stringContaining('module "catalog" is not exposed by this gateway') });
      const paths = Object.keys(((await (await fetch(`${url}/openapi.json`)).json()) as { paths: object }).paths);
      expect(paths.sort()).toEqual(['/orders/cancelOrder', '/orders/getOrder', '/orders/listOrders', '/orders/placeOrder']);
    } finally {
      expect(await ordersProcess.stop()).toBe(0);
    }
  });
});
