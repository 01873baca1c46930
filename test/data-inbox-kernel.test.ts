/**
 * The inbox as a kernel wires it, in one process, on both engines (PGlite in memory, and the
 * machine's PostgreSQL in a database made for this file): the kernel's `inboxBatch` and
 * `inboxBatchMs`, which deliveries run in a transaction of their own (`ownTransaction`, a last
 * attempt, a redelivery), and how many transactions a module runs at once (one fewer than its engine's
 * connections). The inbox itself is driven directly in test/data-inbox.test.ts.
 *
 * The burst module writes all its events in one transaction, so its relay publishes them in one
 * round, and the in-process transport hands them to the watcher's inbox in one turn of the event
 * loop, all of them before the first transaction's first statement has come back, even on PGlite,
 * which answers within microtasks. Which events share a transaction then depends on the options
 * alone, and `txid_current()` in each handler tells which one it ran in.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createKernel, defineContract, defineModule, silentLogger, type DatabaseEngine, type KernelOptions } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { createPostgresDatabase } from 'keel/postgres';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { HUNG_TIMEOUT_MS, HungAttempt, LABELS, burst, burstModule, expectHungHandlerGivenUp, watcherModule, type HandlerShape, type Seen } from './support/inbox-kernel.js';

/**
 * Writes {@link LABELS} in one transaction through a kernel with `options`, waits until the
 * watcher handled every one (each reported after its commit), and returns the transaction of each
 * label's handling that took effect.
 */
async function handled(database: DatabaseEngine, options: Partial<KernelOptions>, handler: HandlerShape = {}): Promise<Seen> {
  const seen: Seen = new Map();
  const kernel = createKernel({ modules: [burstModule, watcherModule(seen, handler)], database, logger: silentLogger, ...options });
  let done = 0;
  kernel.observe({ eventHandled: ({ subscriber, outcome }) => void (subscriber === 'watcher' && outcome === 'ok' && (done += 1)) });
  await kernel.start();
  try {
    await kernel.client(burst).write({ labels: LABELS });
    await vi.waitFor(() => expect(done).toBe(LABELS.length), { timeout: 20_000, interval: 20 });
  } finally {
    await kernel.stop();
  }
  return seen;
}

/** How many events each transaction held, largest first. */
async function groups(database: DatabaseEngine, options: Partial<KernelOptions>, handler: HandlerShape = {}): Promise<number[]> {
  const sizes = new Map<string, number>();
  for (const tx of (await handled(database, options, handler)).values()) sizes.set(tx, (sizes.get(tx) ?? 0) + 1);
  return [...sizes.values()].sort((a, b) => b - a);
}

const made: DatabaseEngine[] = [];
let postgres: TestDatabase | undefined;
afterAll(async () => {
  await Promise.all(made.map((engine) => engine.close()));
  await postgres?.drop();
});

/** An engine on this file's PostgreSQL database, with `poolSize` connections. */
async function onPostgres(poolSize: number): Promise<DatabaseEngine> {
  postgres ??= await createTestDatabase();
  const engine = createPostgresDatabase({ url: postgres.url, poolSize });
  made.push(engine);
  return engine;
}

/** Engines on which a module runs one inbox transaction at a time: PGlite (one connection), PostgreSQL with two. */
const oneAtATime = [
  {
    name: 'pglite',
    engine: async () => {
      const engine = await createPGliteDatabase();
      made.push(engine);
      return engine;
    },
  },
  { name: 'postgres, poolSize 2', engine: () => onPostgres(2) },
];

const LONG = { inboxBatchMs: 60_000 } as const;

describe.each(oneAtATime)('data - the inbox through a kernel, on $name', ({ engine }) => {
  it('puts durable events that wait together in one transaction, at most inboxBatch of them', { timeout: 90_000 }, async () => {
    expect(await groups(await engine(), { ...LONG, inboxBatch: 4 })).toEqual([4, 4, 2]);
    expect(await groups(await engine(), LONG)).toEqual([10]);
  });

  it('takes no further event into a transaction that has run inboxBatchMs', { timeout: 90_000 }, async () => {
    // Every handler takes 3 ms, more than the 1 ms a transaction may take events for.
    expect(await groups(await engine(), { inboxBatchMs: 1 }, { sleepMs: 3 })).toEqual(Array(10).fill(1));
  });

  it('gives each event a transaction of its own with inboxBatch 1, with ownTransaction, and on a last attempt', { timeout: 90_000 }, async () => {
    expect(await groups(await engine(), { ...LONG, inboxBatch: 1 })).toEqual(Array(10).fill(1));
    expect(await groups(await engine(), LONG, { ownTransaction: true })).toEqual(Array(10).fill(1));
    // With one delivery in all, every attempt is the last.
    expect(await groups(await engine(), { ...LONG, maxDeliveryAttempts: 1 })).toEqual(Array(10).fill(1));
  });

  it('gives each redelivered event a transaction of its own, though the redeliveries wait together', { timeout: 90_000 }, async () => {
    const fails = new Set(['e1', 'e4', 'e7']);
    const seen = await handled(await engine(), { ...LONG, maxDeliveryAttempts: 5 }, { failFirst: fails, retryHoldMs: 300 });
    const holding = (label: string) => [...seen.values()].filter((tx) => tx === seen.get(label)).length;
    expect([...fails].map(holding)).toEqual([1, 1, 1]);
    // The others took effect in their first attempts' one transaction.
    expect(new Set(LABELS.filter((label) => !fails.has(label)).map((label) => seen.get(label))).size).toBe(1);
  });
});

describe.each(oneAtATime)('data - a durable event handler that outruns its timeoutMs, in one process, on $name', ({ engine }) => {
  // The handler's own timeoutMs here, under the kernel's default eventTimeoutMs (30 s); the NATS test takes each.
  it('is given up on: its work rolled back, its event delivered again, the events sharing its transaction committed, its later queries refused', async () => {
    const hang = new HungAttempt('e3');
    const seen: Seen = new Map();
    const kernel = createKernel({
      modules: [burstModule, watcherModule(seen, { hang, timeoutMs: HUNG_TIMEOUT_MS })],
      database: await engine(),
      logger: silentLogger,
      ...LONG,
    });
    const records: { attempt: number; outcome: string }[] = [];
    kernel.observe({ eventHandled: ({ subscriber, attempt, outcome }) => void (subscriber === 'watcher' && records.push({ attempt, outcome })) });
    await kernel.start();
    try {
      // The rows of this file's earlier cases on PostgreSQL.
      await hang.db?.exec('delete from entries');
      await kernel.client(burst).write({ labels: LABELS });
      await expectHungHandlerGivenUp(hang, seen, records, { shared: true, own: true });
    } finally {
      hang.release();
      await kernel.stop();
    }
  });
});

describe.each(oneAtATime)('data - a durable event handler whose timeoutMs is longer than the kernel\'s eventTimeoutMs, on $name', ({ engine }) => {
  it('runs to its end, each event on its first attempt, though it outlasts eventTimeoutMs', async () => {
    // Each handler holds its transaction 300 ms, past the kernel's 100 ms, within its own 10 s.
    const attempts: number[] = [];
    const database = await engine();
    const seen: Seen = new Map();
    const kernel = createKernel({
      modules: [burstModule, watcherModule(seen, { holdMs: 300, timeoutMs: 10_000 })],
      database,
      logger: silentLogger,
      ...LONG,
      eventTimeoutMs: 100,
    });
    kernel.observe({ eventHandled: ({ subscriber, attempt, outcome }) => void (subscriber === 'watcher' && attempts.push(outcome === 'ok' ? attempt : -attempt)) });
    await kernel.start();
    try {
      await kernel.client(burst).write({ labels: LABELS });
      await vi.waitFor(() => expect(attempts).toHaveLength(LABELS.length), { timeout: 30_000, interval: 20 });
      expect(attempts).toEqual(Array(LABELS.length).fill(1));
    } finally {
      await kernel.stop();
    }
  });
});

/**
 * A module between the publisher and the subscriber in the start order, whose start hook takes
 * 100 ms (long enough for a relay started with its own module to send first, on either engine),
 * or fails.
 */
function between(start: 'slow' | 'fails') {
  return defineModule({
    contract: defineContract({ name: 'between', version: '1.0.0', operations: {} }),
    create: () => ({
      handlers: {},
      start: () =>
        start === 'slow' ? new Promise<void>((resolve) => setTimeout(resolve, 100)) : Promise.reject(new Error('between fails to start')),
    }),
  });
}

describe.each(oneAtATime)('data - durable events a crash left in the outbox, in one process, on $name', ({ engine }) => {
  /** Rows in burst's outbox as a crash between the commit and the relay's publish leaves them, after a start that made both schemas. */
  async function leftUnsent(database: DatabaseEngine): Promise<void> {
    const before = createKernel({ modules: [burstModule, watcherModule(new Map())], database, logger: silentLogger });
    await before.start();
    await before.stop();
    const run = randomUUID().slice(0, 8);
    const outbox = await database.connect('burst');
    try {
      for (const label of LABELS) {
        await outbox.query("insert into keel_outbox (id, event, payload, correlation_id) values ($1, 'happened', $2, $1)", [`${run}-${label}`, JSON.stringify({ label })]);
      }
    } finally {
      await outbox.close();
    }
  }

  /** Starts burst, `between` and the watcher on `database`, and waits until the watcher handled every label. */
  async function expectAllHandled(database: DatabaseEngine): Promise<void> {
    const seen: Seen = new Map();
    const kernel = createKernel({ modules: [burstModule, between('slow'), watcherModule(seen)], database, logger: silentLogger });
    await kernel.start();
    try {
      await vi.waitFor(() => expect([...seen.keys()].sort()).toEqual([...LABELS].sort()), { timeout: 20_000, interval: 20 });
    } finally {
      await kernel.stop();
    }
  }

  it('reach their subscriber at the next start, which subscribes every hosted module before any relay sends', async () => {
    const database = await engine();
    await leftUnsent(database);
    await expectAllHandled(database);
  });

  it('stay in the outbox through a start that fails before the subscriber started, and reach it at the next', async () => {
    const database = await engine();
    await leftUnsent(database);
    const seen: Seen = new Map();
    const failing = createKernel({ modules: [burstModule, between('fails'), watcherModule(seen)], database, logger: silentLogger });
    await expect(failing.start()).rejects.toThrow('between fails to start');
    expect(seen.size).toBe(0);
    await expectAllHandled(database);
  });
});

describe('data - the inbox through a kernel, on PostgreSQL: transactions at once', () => {
  it("runs one transaction fewer than the engine's connections at once, and one on a pool of one", async () => {
    // Two at once: the first two events open one each, and the others join them as they come free.
    const two = await groups(await onPostgres(3), LONG);
    expect(two).toHaveLength(2);
    expect(two[0]! + two[1]!).toBe(10);
    expect(await groups(await onPostgres(1), LONG)).toEqual([10]);
  });
});
