/**
 * A durable event from an outbox whose subscriber cannot reach its database (the network to it
 * cut, the server restarting): the event's transaction failed as a whole, no fault of the event
 * or its handler. It must wait for the database to come back, not use up its attempts and be
 * dead-lettered: in one process it waits in the outbox (a dead letter there is gone, its row
 * marked sent), or, published with no outbox, on the bus; over NATS the subscriber holds the
 * message, kept alive, without counting it.
 *
 * The watcher's database is reached through a TCP proxy to this file's PostgreSQL database that
 * the test cuts (every connection reset, new ones refused) and restores; the burst module, whose
 * outbox holds the events, reaches the same database directly.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type DatabaseEngine, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import type { DeadLetter } from 'keel/transport';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { LABELS, burst, burstModule, watcherModule, type Seen } from './support/inbox-kernel.js';
import { CuttableProxy } from './support/cuttable-proxy.js';

/** A subscriber that owns no data (no inbox): it must handle each event once, though the watcher's database was away. */
const notifier = defineContract({ name: 'notifier', version: '1.0.0', operations: { ping: operation({ input: z.object({}), output: z.object({}) }) } });
const notifierModule = (notified: string[]) =>
  defineModule({
    contract: notifier,
    subscribesTo: [burst],
    create: () => ({
      handlers: { ping: () => ({}) },
      events: { burst: { happened: ({ label }) => void notified.push(label) } },
    }),
  });

/** burst's events published by a module without data: no outbox, each event straight onto the bus. */
const burstWithoutData = defineModule({
  contract: burst,
  create: ({ emit }) => ({
    handlers: {
      write: async ({ labels }) => {
        for (const label of labels) await emit('happened', { label });
        return {};
      },
    },
  }),
});

let database: TestDatabase | undefined;
let nats: NatsServer | undefined;
const engines: DatabaseEngine[] = [];
const transports: Transport[] = [];
const proxies: CuttableProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) await proxy.cut();
  for (const engine of engines) await engine.close().catch(() => undefined);
  for (const transport of transports) await transport.close().catch(() => undefined);
  await nats?.stop();
  await database?.drop();
});

/**
 * In process, the bus gives an event five attempts 50 to 200 ms apart; over NATS, here, JetStream
 * redelivers 50, 100, 150 and 200 ms apart (`redeliveryDelayMs: 50`): either would have
 * dead-lettered every event within the outage, had the failures counted as attempts.
 */
const transportsUnderTest = {
  'in one process': async (): Promise<Transport | undefined> => undefined,
  'over NATS': async (): Promise<Transport | undefined> => {
    nats ??= await startNatsServer();
    const transport = await createNatsTransport({ servers: nats.url, prefix: 'unreachable', redeliveryDelayMs: 50, logger: silentLogger });
    transports.push(transport);
    return transport;
  },
};

describe.each(Object.entries(transportsUnderTest))('data - a durable event from an outbox whose subscriber cannot reach its database, %s', (_name, transportOf) => {
  it('is held until the database is back, then handled once: never dead-lettered, never lost, and handled once by a subscriber without data', { timeout: 60_000 }, async () => {
    const { proxy, direct, cuttable } = await databases();
    const seen: Seen = new Map();
    const notified: string[] = [];
    const deadLetters: DeadLetter[] = [];
    const transport = await transportOf();
    const kernel = createKernel({
      modules: [burstModule, watcherModule(seen), notifierModule(notified)],
      database: (module) => (module === 'watcher' ? cuttable : direct),
      logger: silentLogger,
      onDeadLetter: (deadLetter) => void deadLetters.push(deadLetter),
      ...(transport === undefined ? {} : { topology: { transport } }),
    });
    await kernel.start();
    try {
      await clearTables(direct);
      await proxy.cut();
      await kernel.client(burst).write({ labels: LABELS });
      // The outage: longer than the five attempts would take (50 + 100 + 150 + 200 ms), and than the relay's first backoffs.
      await sleep(2_000);
      expect(deadLetters).toEqual([]);
      expect(seen.size).toBe(0);
      await proxy.open();
      await vi.waitFor(() => expect([...seen.keys()].sort()).toEqual([...LABELS].sort()), { timeout: 30_000, interval: 50 });
      expect(deadLetters).toEqual([]);
      // Each handled once (the watcher's entries have no unique label), and the outbox drained.
      expect(await rowsOf(direct, 'watcher', 'select label from entries order by label')).toEqual([...LABELS].sort().map((label) => ({ label })));
      await vi.waitFor(async () => expect(await rowsOf(direct, 'burst', 'select count(*)::int as n from keel_outbox where sent_at is null')).toEqual([{ n: 0 }]), {
        timeout: 20_000,
        interval: 100,
      });
      // Once the outbox is drained nothing is sent again: the subscriber without data handled each event once.
      expect(notified.sort()).toEqual([...LABELS].sort());
    } finally {
      await kernel.stop();
    }
  });
});

describe.each(Object.entries(transportsUnderTest))('data - a durable event not from an outbox whose subscriber cannot reach its database, %s', (_name, transportOf) => {
  it('is held until the database is back, then handled once: never dead-lettered, never lost', { timeout: 60_000 }, async () => {
    const { proxy, direct, cuttable } = await databases();
    const seen: Seen = new Map();
    const deadLetters: DeadLetter[] = [];
    const transport = await transportOf();
    const kernel = createKernel({
      modules: [burstWithoutData, watcherModule(seen)],
      database: cuttable,
      logger: silentLogger,
      onDeadLetter: (deadLetter) => void deadLetters.push(deadLetter),
      ...(transport === undefined ? {} : { topology: { transport } }),
    });
    await kernel.start();
    try {
      await clearWatcher(direct);
      await proxy.cut();
      await kernel.client(burst).write({ labels: LABELS });
      // The outage: longer than the five attempts would take in one process (50 + 100 + 150 + 200 ms) and over NATS.
      await sleep(2_000);
      expect(deadLetters).toEqual([]);
      expect(seen.size).toBe(0);
      await proxy.open();
      await vi.waitFor(() => expect([...seen.keys()].sort()).toEqual([...LABELS].sort()), { timeout: 30_000, interval: 50 });
      expect(deadLetters).toEqual([]);
      expect(await rowsOf(direct, 'watcher', 'select label from entries order by label')).toEqual([...LABELS].sort().map((label) => ({ label })));
    } finally {
      await kernel.stop();
    }
  });
});

/**
 * This file's database, reached two ways: `direct`, and `cuttable` through a TCP proxy the test
 * cuts and restores. Each run in schemas of its own database: the two transports' runs do not
 * share their tables.
 */
async function databases(): Promise<{ proxy: CuttableProxy; direct: DatabaseEngine; cuttable: DatabaseEngine }> {
  database ??= await createTestDatabase();
  const url = new URL(database.url);
  const proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port || 5432) });
  proxies.push(proxy);
  await proxy.open();
  const proxied = new URL(database.url);
  proxied.port = String(proxy.port);
  const direct = createPostgresDatabase({ url: database.url });
  const cuttable = createPostgresDatabase({ url: proxied.toString(), connectTimeoutMs: 1_000 });
  engines.push(direct, cuttable);
  return { proxy, direct, cuttable };
}

async function rowsOf(engine: DatabaseEngine, module: string, sql: string): Promise<unknown[]> {
  const connection = await engine.connect(module);
  try {
    return (await connection.query(sql)).rows;
  } finally {
    await connection.close();
  }
}

/** The watcher's rows of an earlier run in the same schemas: gone. */
async function clearWatcher(engine: DatabaseEngine): Promise<void> {
  const connection = await engine.connect('watcher');
  try {
    await connection.query('delete from entries');
    await connection.query('delete from keel_inbox');
  } finally {
    await connection.close();
  }
}

/** The second run meets the first's rows in the same schemas: start from none. */
async function clearTables(engine: DatabaseEngine): Promise<void> {
  for (const [module, table] of [['watcher', 'entries'], ['burst', 'keel_outbox'], ['watcher', 'keel_inbox']] as const) {
    const connection = await engine.connect(module);
    try {
      await connection.query(`delete from ${table}`);
    } finally {
      await connection.close();
    }
  }
}
