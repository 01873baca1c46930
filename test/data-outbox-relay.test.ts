/**
 * The outbox relay sends the next events before the last one is confirmed (a window of
 * publishes). Over NATS, on PostgreSQL: JetStream still stores them in the order they were
 * written; at a publish that fails the relay sends nothing more, marks sent exactly what
 * JetStream confirmed, and retries the failed event alone before any event behind it; with
 * `outboxWindow: 1`, no event behind a failed one is stored at all. In
 * process, on PGlite: an event not yet confirmed keeps every event more than the window behind it
 * from being sent.
 */
import { afterAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { createNatsTransport } from 'keel/nats';
import { postgresUnderTest } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const burst = defineContract({
  name: 'burst',
  version: '1.0.0',
  operations: {
    /**
     * Writes `n` tick events in one transaction, with a `blocked` event in place `blockedAt` and
     * a tick of 8 000 bytes in place `bigAt` when given.
     */
    fire: operation({
      input: z.object({ n: z.number().int(), blockedAt: z.number().int().optional(), bigAt: z.number().int().optional() }),
      output: z.object({ n: z.number() }),
    }),
  },
  events: {
    tick: event({ payload: z.object({ i: z.number(), pad: z.string().optional() }), delivery: 'durable' }),
    blocked: event({ payload: z.object({ i: z.number() }), delivery: 'durable' }),
  },
});

const burstModule = defineModule({
  contract: burst,
  data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
  create: ({ db, emit }) => ({
    handlers: {
      fire: ({ n, blockedAt, bigAt }) =>
        db.transaction(async () => {
          for (let i = 0; i < n; i += 1) await emit(i === blockedAt ? 'blocked' : 'tick', i === bigAt ? { i, pad: 'x'.repeat(8_000) } : { i });
          return { n };
        }),
    },
  }),
});

const postgres = postgresUnderTest();
const transports: Transport[] = [];
const kernels: Kernel[] = [];
const connections: NatsConnection[] = [];
const servers: NatsServer[] = [];

afterAll(async () => {
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
  for (const nc of connections) await nc.close();
  await postgres.cleanup();
  for (const server of servers) await server.stop();
});

/** A kernel hosting burst over NATS (its `outboxWindow` when given), on a fresh PostgreSQL database, and a way to read its outbox. */
async function boot(server: NatsServer, logger: Logger, auth: { user: string; password: string } | undefined, outboxWindow?: number) {
  const database = await postgres.fresh();
  const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, ...auth });
  transports.push(transport);
  const kernel = createKernel({
    modules: [burstModule],
    topology: { host: ['burst'], transport },
    database,
    logger,
    ...(outboxWindow === undefined ? {} : { outboxWindow }),
  });
  await kernel.start();
  kernels.push(kernel);
  const outbox = await database.connect('burst');
  const rows = async () =>
    (
      await outbox.query<{ id: string; event: string; sent: boolean; setAside: boolean; attempts: number }>(
        'select id, event, sent_at is not null as sent, failed_at is not null as "setAside", attempts from keel_outbox order by seq',
      )
    ).rows;
  return { kernel, rows };
}

/** The event ids JetStream stored on burst's stream, in the stream's order. */
async function storedIds(server: NatsServer): Promise<string[]> {
  const nc = await connect({ servers: server.url, user: 'reader', pass: 'reader' });
  connections.push(nc);
  const jsm = await jetstreamManager(nc);
  const { state } = await jsm.streams.info('keel_burst');
  const ids: string[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq += 1) {
    ids.push((await jsm.streams.getMessage('keel_burst', { seq }))?.header.get('Nats-Msg-Id') ?? `missing ${seq}`);
  }
  await nc.close();
  return ids;
}

/** Every user may do anything, but `relay` may not publish burst's `blocked` events. */
const AUTHORIZATION = `
authorization {
  users: [
    { user: "relay", password: "relay", permissions: { publish: { allow: [">"], deny: ["keel.burst.durable.blocked"] }, subscribe: { allow: [">"] } } }
    { user: "reader", password: "reader" }
  ]
}`;

/** A nats-server of its own for each case, so that each starts with no stream; it takes messages up to 4 KiB. */
async function natsServer(): Promise<NatsServer> {
  const server = await startNatsServer({ extraConfig: AUTHORIZATION, maxPayload: 4096 });
  servers.push(server);
  return server;
}

describe('data - the outbox relay sends a window of events over NATS', () => {
  it('stores 600 events of one transaction in JetStream once each, in the order they were written', { timeout: 60_000 }, async () => {
    const server = await natsServer();
    const { kernel, rows } = await boot(server, silentLogger, { user: 'relay', password: 'relay' });
    await kernel.client(burst).fire({ n: 600 });
    await vi.waitFor(async () => expect((await rows()).filter((row) => !row.sent)).toEqual([]), { timeout: 30_000, interval: 50 });
    const written = (await rows()).map((row) => row.id);
    expect(written).toHaveLength(600);
    expect(await storedIds(server)).toEqual(written);
  });

  // With the default window, up to 31 events behind the failed one may be stored before its
  // failure is known; with outboxWindow 1, none.
  it.each([
    { window: undefined, past: 31, title: 'at a failed publish sends nothing more' },
    { window: 1, past: 0, title: 'with outboxWindow 1, stores no event behind a failed publish' },
  ])('$title, marks sent exactly what JetStream stored, and retries the failed event alone; one refused for good beside it is set aside', { timeout: 60_000 }, async ({ window, past }) => {
    const server = await natsServer();
    const warnings: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_fields, message) => void warnings.push(message),
      error: () => undefined,
      child: () => logger,
    };
    const { kernel, rows } = await boot(server, logger, { user: 'relay', password: 'relay' }, window);
    const retried = () => warnings.filter((message) => message.startsWith('outbox relay could not publish')).length;
    // 250: the first round claims 200, and 50 more ahead while it publishes.
    await kernel.client(burst).fire({ n: 250, blockedAt: 10, bigAt: 5 });
    // Two failed rounds: the first one's window, then the retry, which sends the blocked event alone.
    await vi.waitFor(() => expect(retried()).toBeGreaterThanOrEqual(2), { timeout: 30_000, interval: 20 });
    const afterFirstRetry = await storedIds(server);
    await vi.waitFor(() => expect(retried()).toBeGreaterThanOrEqual(4), { timeout: 30_000, interval: 20 });
    const outbox = await rows();
    const stored = await storedIds(server);
    const blocked = outbox[10];
    expect(blocked?.event).toBe('blocked');
    expect(blocked?.sent).toBe(false);
    // The one too large for the server was set aside, and the others before the blocked one went
    // out, in order; what is marked sent is exactly what JetStream holds.
    expect(outbox.filter((row) => row.setAside).map((row) => row.id)).toEqual([outbox[5]?.id]);
    expect(stored.slice(0, 9)).toEqual(outbox.slice(0, 10).filter((_, place) => place !== 5).map((row) => row.id));
    expect(new Set(stored)).toEqual(new Set(outbox.filter((row) => row.sent).map((row) => row.id)));
    expect(stored).not.toContain(blocked?.id);
    // At most the window's worth went past it in the first round, and the retries sent none.
    expect(stored.length).toBeLessThanOrEqual(9 + past);
    expect(stored).toEqual(afterFirstRetry);
    // Unsent: the blocked event, the one set aside, and all but `past` at most of the 239 behind them.
    expect(outbox.filter((row) => !row.sent).length).toBeGreaterThanOrEqual(250 - 9 - past);
    // Each retry claimed the blocked event alone, and `attempts` counts the publishes tried: the
    // events behind it that were never sent (the rest of the first batch, and the 50 claimed
    // ahead) were released without counting one.
    expect(blocked?.attempts).toBeGreaterThanOrEqual(4);
    expect(new Set(outbox.filter((row) => !row.sent && !row.setAside && row !== blocked).map((row) => row.attempts))).toEqual(new Set([0]));
  });
});

describe('data - the outbox relay in process', () => {
  // The subscriber holds the `blocked` event (place 10) until the test releases it, so its
  // publish stays unconfirmed: the relay may send the next window - 1 places meanwhile, and
  // nothing after them.
  it.each([
    { window: undefined, after: 31, title: 'by default sends no event 32 or more places behind one its subscriber has not yet handled' },
    { window: 1, after: 0, title: 'with outboxWindow 1 sends no event behind one its subscriber has not yet handled' },
  ])('$title', { timeout: 120_000 }, async ({ window, after }) => {
    const log: (number | 'released')[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    const watcher = defineContract({ name: 'watcher', version: '1.0.0', operations: { seen: operation({ input: z.object({}), output: z.object({ n: z.number() }) }) } });
    const watcherModule = defineModule({
      contract: watcher,
      subscribesTo: [burst],
      create: () => ({
        handlers: { seen: async () => ({ n: log.length }) },
        events: {
          burst: {
            tick: async ({ i }) => void log.push(i),
            blocked: async () => held,
          },
        },
      }),
    });
    const database = await createPGliteDatabase();
    const kernel = createKernel({ modules: [burstModule, watcherModule], database, logger: silentLogger, ...(window === undefined ? {} : { outboxWindow: window }) });
    await kernel.start();
    try {
      await kernel.client(burst).fire({ n: 100, blockedAt: 10 });
      await vi.waitFor(() => expect(log.length).toBeGreaterThanOrEqual(10 + after), { timeout: 60_000, interval: 5 });
      log.push('released');
      release();
      await vi.waitFor(() => expect(log.length).toBe(100), { timeout: 60_000, interval: 20 });
      const at = log.indexOf('released');
      const places = (from: number, count: number) => Array.from({ length: count }, (_, i) => from + i);
      // The window was used: the ones after the held one were handled while it was held...
      expect(log.slice(0, at).sort((a, b) => Number(a) - Number(b))).toEqual([...places(0, 10), ...places(11, after)]);
      // ...and none further: each of those was sent only after the held one was confirmed.
      expect(log.slice(at + 1).sort((a, b) => Number(a) - Number(b))).toEqual(places(11 + after, 89 - after));
    } finally {
      release();
      await kernel.stop();
      await database.close();
    }
  });
});
