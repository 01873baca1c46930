import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event as eventOf, isKeelError, operation, silentLogger } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { Fanout, createLocalTransport, type EventSubscription, type PublishedEvent } from 'keel/transport';
import { audit, auditModule, ledger, ledgerModule } from './fixtures/data/modules.js';

// The in-process bus's settled(): what the conformance suite's "handled once" waits for, and what
// an application's own tests can await instead of polling for an event's effects.

const event = (name: string, n: string, delivery: 'durable' | 'notification' = 'durable'): PublishedEvent => ({
  contract: 'shop',
  version: '1.0.0',
  event: name,
  delivery,
  payload: { n },
  metadata: { id: `${name}-${n}`, correlationId: `corr-${n}`, traceparent: undefined, publisher: 'shop', publishedAt: Date.now() },
});

interface Journal {
  readonly handled: string[];
  readonly deadLettered: string[];
}

function subscriber(
  name: string,
  journal: Journal,
  options: { readonly failUntil?: number; readonly maxAttempts?: number; readonly onHandle?: (n: string) => Promise<void> } = {},
): EventSubscription {
  return {
    subscriber: 'ledger',
    contract: 'shop',
    version: '1.0.0',
    event: name,
    delivery: 'durable',
    fanout: Fanout.BALANCED,
    maxAttempts: options.maxAttempts ?? 3,
    handle: async (payload, metadata) => {
      const n = (payload as { n: string }).n;
      journal.handled.push(`${name} ${n}#${metadata.attempt}`);
      if (metadata.attempt <= (options.failUntil ?? 0)) throw new Error(`failing attempt ${metadata.attempt} on purpose`);
      await options.onHandle?.(n);
    },
    deadLetter: (payload, metadata) => void journal.deadLettered.push(`${name} ${(payload as { n: string }).n}#${metadata.attempt}`),
  };
}

const journal = (): Journal => ({ handled: [], deadLettered: [] });

describe('local transport - settled()', () => {
  it('resolves at once on a bus with nothing published', async () => {
    const bus = createLocalTransport({ logger: silentLogger });
    await bus.settled();
    await bus.close();
  });

  it('resolves only after a failed durable event was retried and handled, not after its first attempt', async () => {
    const bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 30 });
    const seen = journal();
    await bus.subscribe(subscriber('sold', seen, { failUntil: 2 }));
    await bus.publish(event('sold', '1'));
    await bus.settled();
    expect(seen.handled).toEqual(['sold 1#1', 'sold 1#2', 'sold 1#3']);
    expect(seen.deadLettered).toEqual([]);
    await bus.close();
  });

  it('resolves after the last attempt of an event that never succeeds, once it is dead-lettered', async () => {
    const bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 10 });
    const seen = journal();
    await bus.subscribe(subscriber('sold', seen, { failUntil: 99, maxAttempts: 2 }));
    await bus.publish(event('sold', '1'));
    await bus.settled();
    expect(seen.handled).toEqual(['sold 1#1', 'sold 1#2']);
    expect(seen.deadLettered).toEqual(['sold 1#2']);
    await bus.close();
  });

  it('waits for an event a handler publishes while settled() is already waiting', async () => {
    const bus = createLocalTransport({ logger: silentLogger });
    const seen = journal();
    await bus.subscribe(subscriber('sold', seen, { onHandle: (n) => bus.publish(event('shipped', n)) }));
    await bus.subscribe(subscriber('shipped', seen));
    await bus.publish(event('sold', '1'));
    await bus.settled();
    expect(seen.handled).toEqual(['sold 1#1', 'shipped 1#1']);
    await bus.close();
  });

  it('does not wait for a durable event kept for a module with no running instance; it is delivered when one subscribes', async () => {
    const bus = createLocalTransport({ logger: silentLogger });
    const first = journal();
    const registration = await bus.subscribe(subscriber('sold', first));
    await registration.stop();
    await bus.publish(event('sold', '1'));
    await bus.settled();
    expect(first.handled).toEqual([]);
    const second = journal();
    await bus.subscribe(subscriber('sold', second));
    await bus.settled();
    expect(second.handled).toEqual(['sold 1#1']);
    await bus.close();
  });

  it('resolves when the bus closes with a retry still waiting for its timer', async () => {
    const bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 600_000 });
    const seen = journal();
    await bus.subscribe(subscriber('sold', seen, { failUntil: 1 }));
    await bus.publish(event('sold', '1'));
    let settled = false;
    const waiting = bus.settled().then(() => (settled = true));
    // The first attempt failed and its retry is ten minutes away: still outstanding.
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen.handled).toEqual(['sold 1#1']);
    expect(settled).toBe(false);
    await bus.close();
    await waiting;
    expect(seen.handled).toEqual(['sold 1#1']);
  });

  it('does not retry a durable delivery that fails after the bus closed: settled() resolves with the one attempt made', async () => {
    const bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 20 });
    const seen = journal();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    let started: () => void = () => {};
    const running = new Promise<void>((resolve) => (started = resolve));
    await bus.subscribe({
      ...subscriber('sold', seen),
      handle: async (payload, metadata) => {
        seen.handled.push(`sold ${(payload as { n: string }).n}#${metadata.attempt}`);
        started();
        await gate;
        throw new Error('failing after the bus closed, on purpose');
      },
    });
    await bus.publish(event('sold', '1'));
    await running;
    await bus.close();
    release();
    await bus.settled();
    expect(seen.handled).toEqual(['sold 1#1']);
  });

  it("rejects an outbox relay's confirmed publish with UNAVAILABLE when the bus closes before its retry, so the event stays in the outbox", async () => {
    const bus = createLocalTransport({ logger: silentLogger, redeliveryDelayMs: 600_000 });
    const seen = journal();
    await bus.subscribe(subscriber('sold', seen, { failUntil: 1 }));
    // The door the kernel's outbox relay uses for durable events in process (kernel/local.ts outboxPublisher).
    const confirmed = (bus as unknown as { publishConfirmed(event: PublishedEvent): Promise<void> }).publishConfirmed(event('sold', '1'));
    const outcome = confirmed.then(
      () => 'resolved',
      (error: unknown) => error,
    );
    while (seen.handled.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await bus.close();
    const error = await outcome;
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
    expect((error as Error).message).toContain('the transport closed before its retry');
    await bus.settled();
  });

  // These two make an in-memory PGlite inside the test: tens of seconds on a loaded two-core machine.
  it("waits for a durable event a handler's transaction wrote to its outbox, until the relay handed it over and the subscriber handled it", { timeout: 120_000 }, async () => {
    const bus = createLocalTransport({ logger: silentLogger });
    const database = await createPGliteDatabase();
    const kernel = createKernel({ modules: [auditModule, ledgerModule], database, topology: { host: ['audit', 'ledger'], transport: bus }, logger: silentLogger });
    await kernel.start();
    try {
      // ledger.add inserts and emits entryAdded in one transaction: the event leaves by the outbox.
      await kernel.client(ledger).add({ label: 'first' });
      await bus.settled();
      expect((await kernel.client(audit).seen({})).labels).toEqual(['first']);
    } finally {
      await kernel.stop();
      await database.close();
      await bus.close();
    }
  });

  it('waits for every event of a transaction that wrote more than one relay batch (100) to its outbox', { timeout: 120_000 }, async () => {
    const bulk = defineContract({
      name: 'bulk',
      version: '1.0.0',
      operations: { emitMany: operation({ input: z.object({ count: z.number().int() }), output: z.object({}) }) },
      events: { made: eventOf({ payload: z.object({ n: z.number().int() }), delivery: 'durable' }) },
    });
    const bulkModule = defineModule({
      contract: bulk,
      data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
      create: ({ db, emit }) => ({
        handlers: {
          emitMany: ({ count }) =>
            db.transaction(async () => {
              for (let n = 0; n < count; n += 1) await emit('made', { n });
              return {};
            }),
        },
      }),
    });
    const made: number[] = [];
    const counter = defineContract({ name: 'counter', version: '1.0.0', operations: {} });
    const counterModule = defineModule({
      contract: counter,
      subscribesTo: [bulk],
      create: () => ({ handlers: {}, events: { bulk: { made: ({ n }) => { made.push(n); } } } }),
    });
    const bus = createLocalTransport({ logger: silentLogger });
    const database = await createPGliteDatabase();
    const kernel = createKernel({ modules: [bulkModule, counterModule], database, topology: { host: ['bulk', 'counter'], transport: bus }, logger: silentLogger });
    await kernel.start();
    try {
      await kernel.client(bulk).emitMany({ count: 250 });
      await bus.settled();
      expect(made).toHaveLength(250);
      expect([...made].sort((a, b) => a - b)).toEqual(Array.from({ length: 250 }, (_, n) => n));
    } finally {
      await kernel.stop();
      await database.close();
      await bus.close();
    }
  });
  it("waits for the durable events a module's start hook committed, which its relay sends once every module of the kernel has started", { timeout: 120_000 }, async () => {
    const opener = defineContract({
      name: 'opener',
      version: '1.0.0',
      operations: {},
      events: { opened: eventOf({ payload: z.object({ n: z.number().int() }), delivery: 'durable' }) },
    });
    const openerModule = defineModule({
      contract: opener,
      data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
      create: ({ db, emit }) => ({
        handlers: {},
        start: () =>
          db.transaction(async () => {
            for (let n = 0; n < 3; n += 1) await emit('opened', { n });
          }),
      }),
    });
    const opened: number[] = [];
    const greeter = defineContract({ name: 'greeter', version: '1.0.0', operations: {} });
    // Listed after the opener, so it subscribes after the opener's start hook committed.
    const greeterModule = defineModule({
      contract: greeter,
      subscribesTo: [opener],
      create: () => ({ handlers: {}, events: { opener: { opened: ({ n }) => { opened.push(n); } } } }),
    });
    const bus = createLocalTransport({ logger: silentLogger });
    const database = await createPGliteDatabase();
    const kernel = createKernel({ modules: [openerModule, greeterModule], database, topology: { host: ['opener', 'greeter'], transport: bus }, logger: silentLogger });
    await kernel.start();
    try {
      await bus.settled();
      expect([...opened].sort()).toEqual([0, 1, 2]);
    } finally {
      await kernel.stop();
      await database.close();
      await bus.close();
    }
  });
});
