/**
 * A module's PostgreSQL gone while the process runs must show where an operator looks: the
 * gateway's `/metrics` (`keel_database_up`, `keel_database_down_total`) and `/readyz`'s body, both
 * read from `kernel.status().databases`, which a `select 1` every `databaseCheckMs` keeps. The
 * database is reached through a TCP proxy the test cuts (every connection reset, new ones
 * refused) and restores, and the figures must follow it down and back up. `/readyz` stays 200:
 * a database outage does not take the process out of rotation (docs/design-notes.md). The proxy
 * also black-holes (nothing forwarded, nothing closed), as a lost route does: the check must give
 * its `select 1` up and close its connection. And a pool busy with the module's own long
 * statements is not an outage: the checks go on, on a connection of their own.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type DatabaseEngine, type Kernel } from 'keel';
import { createHttpGateway, type HttpGateway, type HttpGatewayOptions } from 'keel/http';
import { createPGliteDatabase } from 'keel/pglite';
import { createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { formatStatusReport, readStatus } from '../cli/tooling/status.js';
import { startNatsServer } from './support/nats-server.js';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { CuttableProxy } from './support/cuttable-proxy.js';
import { linesLogger, type LogLine } from './support/log-lines.js';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: {
    add: operation({ input: z.object({ label: z.string() }), output: z.object({ count: z.number() }) }),
    hold: operation({ input: z.object({ seconds: z.number() }), output: z.object({}) }),
  },
});
const ledgerModule = defineModule({
  contract: ledger,
  data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
  create: ({ db }) => ({
    handlers: {
      add: async ({ label }) => {
        await db.query('insert into entries (label) values ($1) on conflict do nothing', [label]);
        const { rows } = await db.query<{ count: string }>('select count(*) as count from entries');
        return { count: Number(rows[0]?.count) };
      },
      hold: async ({ seconds }) => {
        await db.query('select pg_sleep($1)', [seconds]);
        return {};
      },
    },
  }),
});
/** A module without data: it has no database to report. */
const clock = defineContract({ name: 'clock', version: '1.0.0', operations: { now: operation({ input: z.object({}), output: z.object({ at: z.number() }) }) } });
const clockModule = defineModule({ contract: clock, create: () => ({ handlers: { now: () => ({ at: Date.now() }) } }) });

let database: TestDatabase | undefined;
const engines: DatabaseEngine[] = [];
const gateways: HttpGateway[] = [];
const proxies: CuttableProxy[] = [];
afterAll(async () => {
  for (const gateway of gateways) await gateway.close().catch(() => undefined);
  for (const proxy of proxies) await proxy.cut();
  for (const engine of engines) await engine.close().catch(() => undefined);
  await database?.drop();
});

interface Readiness {
  readonly status: number;
  readonly body: { ready: boolean; databases: { module: string; engine: string; state: string; since: string; downs: number }[] };
  readonly text: string;
}

async function readyz(url: string): Promise<Readiness> {
  const response = await fetch(`${url}/readyz`);
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as Readiness['body'], text };
}

/** The `keel_database_*` lines of `/metrics`. */
async function databaseSeries(url: string): Promise<string[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return text.split('\n').filter((line) => line.startsWith('keel_database_'));
}

async function started(engine: DatabaseEngine, options: Partial<HttpGatewayOptions> = {}, lines?: LogLine[]): Promise<{ kernel: Kernel; url: string }> {
  const logger = lines === undefined ? silentLogger : linesLogger(lines);
  const kernel = createKernel({ modules: [clockModule, ledgerModule], database: engine, databaseCheckMs: 200, logger });
  const gateway = await createHttpGateway({ ...options, kernel, port: 0, logger: silentLogger });
  gateways.push(gateway);
  await kernel.start();
  return { kernel, url: await gateway.listen() };
}

/** The file's PostgreSQL database, reached through a proxy of the test's own that it can cut (the tests share the database and its ledger schema). */
async function proxiedDatabase(options: { poolSize?: number } = {}): Promise<{ proxy: CuttableProxy; engine: DatabaseEngine }> {
  database ??= await createTestDatabase();
  const proxy = new CuttableProxy({ host: new URL(database.url).hostname, port: Number(new URL(database.url).port || 5432) });
  proxies.push(proxy);
  await proxy.open();
  const proxied = new URL(database.url);
  proxied.port = String(proxy.port);
  const engine = createPostgresDatabase({ url: proxied.toString(), connectTimeoutMs: 1_000, ...options });
  engines.push(engine);
  return { proxy, engine };
}

/** The statements running `pg_sleep` in the file's database, as the server lists them. */
async function sleepers(): Promise<number> {
  const client = new pg.Client({ connectionString: database!.url });
  await client.connect();
  try {
    const { rows } = await client.query<{ count: string }>("select count(*) as count from pg_stat_activity where datname = current_database() and state = 'active' and query like 'select pg_sleep%'");
    return Number(rows[0]?.count);
  } finally {
    await client.end();
  }
}

describe('data - a module database that goes away while the process runs', () => {
  it('is down in /metrics (keel_database_up 0, keel_database_down_total 1) and in /readyz\'s body, which stays 200, then up again once it answers; one log line each way', { timeout: 60_000 }, async () => {
    const { proxy, engine } = await proxiedDatabase();
    const lines: LogLine[] = [];
    const { kernel, url } = await started(engine, {}, lines);
    const said = (text: string) => lines.filter((line) => line.message.includes(text));

    expect(await kernel.client(ledger).add({ label: 'before' })).toEqual({ count: 1 });
    const before = await readyz(url);
    expect(before.status).toBe(200);
    expect(before.body.ready).toBe(true);
    expect(before.body.databases).toEqual([{ module: 'ledger', engine: 'postgres', state: 'up', since: expect.any(String), downs: 0 }]);
    expect(await databaseSeries(url)).toEqual(expect.arrayContaining(['keel_database_up{module="ledger"} 1', 'keel_database_down_total{module="ledger"} 0']));

    await proxy.cut();
    await vi.waitFor(async () => expect(await databaseSeries(url)).toContain('keel_database_up{module="ledger"} 0'), { timeout: 10_000, interval: 100 });
    expect(await databaseSeries(url)).toContain('keel_database_down_total{module="ledger"} 1');
    const during = await readyz(url);
    expect(during.status).toBe(200);
    expect(during.body.ready).toBe(true);
    expect(during.body.databases).toEqual([{ module: 'ledger', engine: 'postgres', state: 'down', since: expect.any(String), downs: 1 }]);
    expect(Date.parse(during.body.databases[0]!.since)).toBeGreaterThan(Date.parse(before.body.databases[0]!.since));
    // Neither the database's address nor its URL in what anyone who reaches the port reads.
    for (const text of [during.text, ...(await databaseSeries(url))]) {
      expect(text).not.toContain(String(proxy.port));
      expect(text).not.toContain('postgres://');
    }
    await expect(kernel.client(ledger).add({ label: 'during' })).rejects.toThrow();

    await proxy.open();
    await vi.waitFor(async () => expect(await databaseSeries(url)).toContain('keel_database_up{module="ledger"} 1'), { timeout: 10_000, interval: 100 });
    expect(await databaseSeries(url)).toContain('keel_database_down_total{module="ledger"} 1');
    const after = await readyz(url);
    expect(after.status).toBe(200);
    expect(after.body.databases).toEqual([{ module: 'ledger', engine: 'postgres', state: 'up', since: expect.any(String), downs: 1 }]);
    expect(await kernel.client(ledger).add({ label: 'after' })).toEqual({ count: 2 });
    // One line when it went, however many checks failed while it was away, and one when it came back.
    expect(said('does not answer')).toEqual([
      expect.objectContaining({ level: 'error', record: expect.objectContaining({ engine: 'postgres', database: expect.stringContaining(`:${proxy.port}/`) }) }),
    ]);
    expect(said('answers again')).toEqual([expect.objectContaining({ level: 'info', record: expect.objectContaining({ downMs: expect.any(Number) }) })]);
  });

  it('with readyNeedsDatabases, /readyz answers 503 while the database is down, and 200 once it answers again', { timeout: 60_000 }, async () => {
    const { proxy, engine } = await proxiedDatabase();
    const { url } = await started(engine, { readyNeedsDatabases: true });
    expect((await readyz(url)).status).toBe(200);

    await proxy.cut();
    await vi.waitFor(async () => expect((await readyz(url)).body.databases[0]?.state).toBe('down'), { timeout: 10_000, interval: 100 });
    const during = await readyz(url);
    expect(during.status).toBe(503);
    expect(during.body.ready).toBe(false);

    await proxy.open();
    await vi.waitFor(async () => expect((await readyz(url)).body.databases[0]?.state).toBe('up'), { timeout: 10_000, interval: 100 });
    const after = await readyz(url);
    expect(after.status).toBe(200);
    expect(after.body.ready).toBe(true);
  });

  it('a pool whose every connection runs the module\'s own statements past databaseCheckMs stays up: the checks go on, each on a connection of its own, and none reads it as down', { timeout: 60_000 }, async () => {
    const { proxy, engine } = await proxiedDatabase({ poolSize: 1 });
    const lines: LogLine[] = [];
    const { kernel } = await started(engine, {}, lines);
    const states = new Set<string>();
    const sample = setInterval(() => states.add(kernel.status().databases[0]!.state), 20);
    try {
      let over = false;
      const held = kernel
        .client(ledger)
        .hold({ seconds: 3 })
        .finally(() => {
          over = true;
        });
      // The hold's pg_sleep runs on the pool's one connection, as the server sees it.
      await vi.waitFor(async () => expect(await sleepers()).toBe(1), { timeout: 5_000, interval: 20 });
      const before = proxy.accepted;
      // Positive signal that checks ran while the pool was taken: each opened a connection of its own.
      await vi.waitFor(() => expect(proxy.accepted).toBeGreaterThanOrEqual(before + 3), { timeout: 2_500, interval: 20 });
      expect(over).toBe(false);
      await held;
    } finally {
      clearInterval(sample);
    }
    expect([...states]).toEqual(['up']);
    expect(kernel.status().databases).toEqual([expect.objectContaining({ state: 'up', downs: 0 })]);
    expect(lines.filter((line) => line.level === 'error')).toEqual([]);
  });

  it('with the network black-holed, the select 1 that gets no answer is given up and its connection closed by keel: once the network is back, the module\'s one connection serves at once and the check reads up', { timeout: 60_000 }, async () => {
    const { proxy, engine } = await proxiedDatabase({ poolSize: 1 });
    const { kernel } = await started(engine);
    await kernel.client(ledger).add({ label: 'before the black hole' });

    proxy.blackHole();
    // The pool's one connection, idle between the checks, is in the hole; nothing closes it but its client.
    expect(proxy.silenced).toBe(1);
    await vi.waitFor(() => expect(kernel.status().databases[0]).toMatchObject({ state: 'down', downs: 1 }), { timeout: 5_000, interval: 20 });
    // The check's select 1 on it got no answer: keel closed it rather than waiting for TCP to give up.
    await vi.waitFor(() => expect(proxy.silenced).toBe(0), { timeout: 5_000, interval: 20 });

    await proxy.open();
    await vi.waitFor(() => expect(kernel.status().databases[0]).toMatchObject({ state: 'up', downs: 1 }), { timeout: 10_000, interval: 20 });
    await expect(kernel.client(ledger).add({ label: 'after the black hole' })).resolves.toEqual({ count: expect.any(Number) });
  });

  it('an embedded PGlite is not checked and is reported up in /readyz and /metrics', { timeout: 120_000 }, async () => {
    const engine = await createPGliteDatabase();
    engines.push(engine);
    const { url } = await started(engine);
    expect((await readyz(url)).body.databases).toEqual([{ module: 'ledger', engine: 'pglite', state: 'up', since: expect.any(String), downs: 0 }]);
    expect(await databaseSeries(url)).toEqual(expect.arrayContaining(['keel_database_up{module="ledger"} 1']));
  });
});

describe('data - keel status over NATS names a module whose database is down', () => {
  it('keel status says "database down" for the module while its checks fail, and nothing once its database answers again', { timeout: 60_000 }, async () => {
    const nats = await startNatsServer();
    const { proxy, engine } = await proxiedDatabase();
    const transport = await createNatsTransport({ servers: nats.url, prefix: 'dbstatus', logger: silentLogger });
    const kernel = createKernel({ modules: [clockModule, ledgerModule], database: engine, databaseCheckMs: 200, logger: silentLogger, topology: { transport } });
    const nc = await connect({ servers: nats.url });
    try {
      await kernel.start();
      const ledgerRow = async () => (await readStatus(nc, { maxWaitMs: 1_000 })).modules.find((module) => module.name === 'ledger');
      expect(await ledgerRow()).toMatchObject({ databaseDown: 0 });
      await proxy.cut();
      await vi.waitFor(() => expect(kernel.status().databases).toContainEqual(expect.objectContaining({ module: 'ledger', state: 'down' })), { timeout: 20_000 });
      const report = await readStatus(nc, { maxWaitMs: 1_000 });
      expect(report.modules.find((module) => module.name === 'ledger')).toMatchObject({ databaseDown: 1, instances: [expect.objectContaining({ databaseDown: true })] });
      // clock owns no data: nothing is said of it.
      expect(report.modules.find((module) => module.name === 'clock')).toMatchObject({ databaseDown: 0 });
      expect(formatStatusReport(report)).toMatch(/^ledger .*← database down: its calls and durable events fail or wait until it answers$/m);
      expect(formatStatusReport(report)).not.toMatch(/^clock .*database down/m);
      await proxy.open();
      await vi.waitFor(() => expect(kernel.status().databases).toContainEqual(expect.objectContaining({ module: 'ledger', state: 'up' })), { timeout: 20_000 });
      const after = await readStatus(nc, { maxWaitMs: 1_000 });
      expect(after.modules.find((module) => module.name === 'ledger')).toMatchObject({ databaseDown: 0 });
      expect(formatStatusReport(after)).not.toMatch(/database down/);
    } finally {
      await nc.close();
      await kernel.stop();
      await transport.close();
      await nats.stop();
    }
  });
});
