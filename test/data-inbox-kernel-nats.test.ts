/**
 * The inbox's options through kernels over NATS (a nats-server of this file's own), as
 * test/data-inbox-kernel.test.ts holds them in one process: `inboxBatch`, `inboxBatchMs` and
 * `ownTransaction` reach the inbox of a module whose durable events come from JetStream.
 *
 * One kernel hosts `burst`, another `watcher`, each on an embedded database of its own. The
 * watcher's consumer is made first (its kernel started and stopped), then burst's events are
 * stored while no watcher runs, so that the watcher, started again, is handed all ten in one pull.
 * How many then arrive before the first transaction's first statement has come back depends on
 * the socket, so the checks are bounds: no transaction holds more than `inboxBatch` events, and
 * some hold more than one, where the options let them.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { KernelOptions } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import {
  HUNG_TIMEOUT_MS,
  HungAttempt,
  LABELS,
  bootOverNats,
  burst,
  burstModule,
  expectHungHandlerGivenUp,
  watcherModule,
  type HandlerShape,
  type Seen,
} from './support/inbox-kernel.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let server: NatsServer;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

let cases = 0;

/** A kernel hosting `host` over NATS under `prefix`, on a fresh PGlite; `close` stops it and closes both. */
async function boot(prefix: string, host: string, seen: Seen, options: Partial<KernelOptions>, handler: HandlerShape = {}) {
  const database = await createPGliteDatabase();
  const booted = await bootOverNats(server.url, prefix, host, [burstModule, watcherModule(seen, handler)], database, options).catch(async (error: unknown) => {
    await database.close();
    throw error;
  });
  return {
    kernel: booted.kernel,
    close: async () => {
      await booted.close();
      await database.close();
    },
  };
}

/**
 * The transaction each of {@link LABELS} was handled in by a watcher kernel with `options`, its ten
 * events stored on JetStream before it started.
 */
async function handledOverNats(options: Partial<KernelOptions>, handler: HandlerShape = {}): Promise<Seen> {
  const prefix = `inbox${(cases += 1)}`;
  // The watcher's durable consumer, made by its kernel's start.
  await (await boot(prefix, 'watcher', new Map(), options, handler)).close();

  const publisher = await boot(prefix, 'burst', new Map(), {});
  const nc = await connect({ servers: server.url }).catch(async (error: unknown) => {
    await publisher.close();
    throw error;
  });
  try {
    await publisher.kernel.client(burst).write({ labels: LABELS });
    const jsm = await jetstreamManager(nc);
    await vi.waitFor(async () => expect((await jsm.consumers.info(`${prefix}_burst`, 'watcher__happened')).num_pending).toBe(LABELS.length), {
      timeout: 20_000,
      interval: 20,
    });
  } finally {
    await nc.close();
    await publisher.close();
  }

  const seen: Seen = new Map();
  const watcher = await boot(prefix, 'watcher', seen, options, handler);
  try {
    await vi.waitFor(() => expect(seen.size).toBe(LABELS.length), { timeout: 20_000, interval: 20 });
  } finally {
    await watcher.close();
  }
  return seen;
}

/** How many events each transaction held, largest first. */
async function groups(options: Partial<KernelOptions>, handler: HandlerShape = {}): Promise<number[]> {
  const sizes = new Map<string, number>();
  for (const tx of (await handledOverNats(options, handler)).values()) sizes.set(tx, (sizes.get(tx) ?? 0) + 1);
  return [...sizes.values()].sort((a, b) => b - a);
}

const LONG = { inboxBatchMs: 60_000 } as const;

describe('data - the inbox through kernels over NATS, on PGlite', () => {
  it('puts durable events from JetStream that wait together in one transaction, at most inboxBatch of them', { timeout: 120_000 }, async () => {
    const capped = await groups({ ...LONG, inboxBatch: 4 });
    expect(capped[0], `transactions ${capped.join(', ')}`).toBe(4);
    expect(capped.reduce((sum, size) => sum + size, 0)).toBe(LABELS.length);
    // The default (32) puts more than four together.
    const free = await groups(LONG);
    expect(free[0], `transactions ${free.join(', ')}`).toBeGreaterThan(4);
  });

  it('gives each event from JetStream a transaction of its own with inboxBatch 1, with ownTransaction, and once inboxBatchMs is spent', { timeout: 120_000 }, async () => {
    expect(await groups({ ...LONG, inboxBatch: 1 })).toEqual(Array(10).fill(1));
    expect(await groups(LONG, { ownTransaction: true })).toEqual(Array(10).fill(1));
    expect(await groups({ inboxBatchMs: 1 }, { sleepMs: 3 })).toEqual(Array(10).fill(1));
  });

  it.each([
    ["the kernel's eventTimeoutMs", { own: false, options: { eventTimeoutMs: HUNG_TIMEOUT_MS }, handler: {} }],
    ["the handler's own timeoutMs", { own: true, options: {}, handler: { timeoutMs: HUNG_TIMEOUT_MS } }],
  ] as const)(
    'gives up on a handler still running %s after it started: its work rolled back, its event delivered again by JetStream, the events sharing its transaction committed, its later queries refused',
    { timeout: 120_000 },
    async (_by, { own, options, handler }) => {
      const prefix = `inbox${(cases += 1)}`;
      const hang = new HungAttempt('e3');
      const seen: Seen = new Map();
      const watcher = await boot(prefix, 'watcher', seen, { ...LONG, ...options }, { hang, ...handler });
      const records: { attempt: number; outcome: string }[] = [];
      watcher.kernel.observe({ eventHandled: ({ subscriber, attempt, outcome }) => void (subscriber === 'watcher' && records.push({ attempt, outcome })) });
      try {
        const publisher = await boot(prefix, 'burst', new Map(), {});
        try {
          await publisher.kernel.client(burst).write({ labels: LABELS });
          await expectHungHandlerGivenUp(hang, seen, records, { shared: false, own });
        } finally {
          await publisher.close();
        }
      } finally {
        hang.release();
        await watcher.close();
      }
    },
  );
});
