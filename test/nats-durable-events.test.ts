import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  defineContract,
  defineModule,
  event,
  operation,
  silentLogger,
  type AnyModule,
  type Kernel,
  type Logger,
  type Transport,
} from 'keel';
import type { DeadLetter } from 'keel/transport';
import { createNatsTransport } from 'keel/nats';
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { keelEventHeaders, natsHeaders } from './support/keel-headers.js';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: {
    record: operation({ input: z.object({ tag: z.string(), failTimes: z.number().int() }), output: z.object({}) }),
  },
  events: {
    recorded: event({ payload: z.object({ tag: z.string(), failTimes: z.number().int() }), delivery: 'durable' }),
  },
});

const auditor = defineContract({
  name: 'auditor',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

interface Delivery {
  readonly instance: string;
  readonly tag: string;
  readonly attempt: number;
}

const deliveries: Delivery[] = [];
const deadLetters: DeadLetter[] = [];
const failures = new Map<string, number>();

function manifest(instance: string): AnyModule[] {
  return [
    defineModule({
      contract: ledger,
      create: ({ emit }) => ({
        handlers: {
          record: async ({ tag, failTimes }) => {
            await emit('recorded', { tag, failTimes });
            return {};
          },
        },
      }),
    }),
    defineModule({
      contract: auditor,
      subscribesTo: [ledger],
      create: () => ({
        handlers: { noop: () => ({}) },
        events: {
          ledger: {
            recorded: {
              maxAttempts: 3,
              handle: ({ tag, failTimes }, context) => {
                deliveries.push({ instance, tag, attempt: context.attempt });
                const seen = failures.get(tag) ?? 0;
                failures.set(tag, seen + 1);
                if (seen < failTimes) throw new Error(`failing on purpose (${seen + 1})`);
              },
            },
          },
        },
      }),
    }),
  ];
}

function tagged(tag: string): Delivery[] {
  return deliveries.filter((delivery) => delivery.tag === tag);
}

describe('nats - durable events on JetStream', () => {
  let server: NatsServer;
  const transports: Transport[] = [];
  const kernels = new Map<string, Kernel>();
  let raw: NatsConnection;

  const boot = async (name: string, host: string[]): Promise<Kernel> => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, redeliveryDelayMs: 50 });
    transports.push(transport);
    const kernel = createKernel({
      modules: manifest(name),
      topology: { host, transport },
      logger: silentLogger,
      onDeadLetter: (letter) => deadLetters.push(letter),
    });
    await kernel.start();
    kernels.set(name, kernel);
    return kernel;
  };

  const client = (): Kernel => kernels.get('client') as Kernel;

  /**
   * Waits until auditor's durable consumer has nothing waiting and nothing unacknowledged: no
   * further delivery (a redelivery included) can happen, so counting deliveries is final. This
   * is the positive signal an absence check waits for, instead of a fixed sleep.
   */
  const consumerDrained = async (): Promise<void> => {
    const jsm = await jetstreamManager(raw);
    await vi.waitFor(
      async () => {
        const info = await jsm.consumers.info('keel_ledger', 'auditor__recorded');
        expect({ pending: info.num_pending, unacknowledged: info.num_ack_pending }).toEqual({ pending: 0, unacknowledged: 0 });
      },
      { timeout: 15_000, interval: 50 },
    );
  };

  beforeAll(async () => {
    server = await startNatsServer();
    await boot('ledger', ['ledger']);
    await boot('auditor-1', ['auditor']);
    await boot('client', []);
    raw = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await raw?.close();
    for (const kernel of [...kernels.values()].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
  });

  it('nats - redelivers a durable event after its handler fails, until it succeeds', async () => {
    await client().client(ledger).record({ tag: 'retry', failTimes: 2 });
    await vi.waitFor(() => expect(tagged('retry').map((delivery) => delivery.attempt)).toEqual([1, 2, 3]), {
      timeout: 15_000,
      interval: 50,
    });
    await consumerDrained();
    expect(tagged('retry')).toHaveLength(3);
    expect(deadLetters.some((letter) => (letter.payload as { tag: string }).tag === 'retry')).toBe(false);
  });

  it('nats - dead-letters a durable event after maxAttempts and stores it on the dead-letter stream', async () => {
    await client().client(ledger).record({ tag: 'hopeless', failTimes: 100 });
    await vi.waitFor(
      () => expect(deadLetters.find((letter) => (letter.payload as { tag: string }).tag === 'hopeless')?.metadata.attempt).toBe(3),
      { timeout: 15_000, interval: 50 },
    );
    await consumerDrained();
    expect(tagged('hopeless').map((delivery) => delivery.attempt)).toEqual([1, 2, 3]);

    const jsm = await jetstreamManager(raw);
    const stored = (await jsm.streams.getMessage('keel__dead-letters', { last_by_subj: 'keel._dead-letter.auditor.ledger.recorded' }))!;
    expect(stored.json()).toEqual({ tag: 'hopeless', failTimes: 100 });
    expect(stored.header.get('Keel-Subscriber')).toBe('auditor');
    expect(stored.header.get('Keel-Attempts')).toBe('3');
    expect(stored.header.get('Keel-Failure')).toContain('failing on purpose');
    expect(stored.header.get('Keel-Correlation-Id')).not.toBe('');
  });

  it('nats - terminates an event whose payload breaks the contract at once (INVALID_EVENT is not retried)', async () => {
    const eventHeaders = natsHeaders(keelEventHeaders('ledger', 'bad-payload-1', { 'Keel-Correlation-Id': 'bad-payload' }));
    const js = jetstream(raw);
    await js.publish('keel.ledger.durable.recorded', new TextEncoder().encode('{"tag": 42}'), { headers: eventHeaders });
    await js.publish('keel.ledger.durable.recorded', new TextEncoder().encode('not json'), { headers: eventHeaders, msgID: 'bad-bytes-1' });
    await vi.waitFor(() => {
      const invalid = deadLetters.filter((letter) => letter.metadata.id === 'bad-payload-1');
      expect(invalid.map((letter) => letter.metadata.attempt)).toEqual([1, 1]);
      expect(invalid.every((letter) => (letter.error as { code?: string }).code === 'INVALID_EVENT')).toBe(true);
    }, { timeout: 10_000, interval: 50 });
    // The good event after them is handled.
    await client().client(ledger).record({ tag: 'after-invalid', failTimes: 0 });
    await vi.waitFor(() => expect(tagged('after-invalid')).toHaveLength(1), { timeout: 10_000 });
  });

  it('nats - keeps durable events published while the subscribing module is down, and delivers them when it is back', async () => {
    await (kernels.get('auditor-1') as Kernel).stop();
    kernels.delete('auditor-1');
    await client().client(ledger).record({ tag: 'while-down', failTimes: 0 });
    // Kept: the event waits on the durable consumer (a positive signal), and no instance has handled it.
    const jsm = await jetstreamManager(raw);
    await vi.waitFor(async () => expect((await jsm.consumers.info('keel_ledger', 'auditor__recorded')).num_pending).toBeGreaterThanOrEqual(1), {
      timeout: 10_000,
      interval: 50,
    });
    expect(tagged('while-down')).toHaveLength(0);
    await boot('auditor-2', ['auditor']);
    await vi.waitFor(() => expect(tagged('while-down').map((delivery) => delivery.instance)).toEqual(['auditor-2']), {
      timeout: 15_000,
    });
  });

  it('nats - balances durable events across instances of the subscribing module, each event handled once', async () => {
    await boot('auditor-3', ['auditor']);
    const tags = Array.from({ length: 40 }, (_, index) => `balanced-${index}`);
    for (const tag of tags) await client().client(ledger).record({ tag, failTimes: 0 });
    await vi.waitFor(() => expect(tags.every((tag) => tagged(tag).length >= 1)).toBe(true), { timeout: 15_000 });
    await consumerDrained();
    for (const tag of tags) expect(tagged(tag)).toHaveLength(1);
  });

  it('nats - creates one stream per publishing module and one durable consumer per subscribing module and event', async () => {
    const jsm = await jetstreamManager(raw);
    const stream = await jsm.streams.info('keel_ledger');
    expect(stream.config.subjects).toEqual(['keel.ledger.durable.>']);
    // Limits retention kept 7 days: interest retention loses confirmed events over a restart (nats-reconnect.test.ts).
    expect(stream.config).toMatchObject({ retention: RetentionPolicy.Limits, max_age: nanos(7 * 24 * 60 * 60 * 1000) });
    const consumer = await jsm.consumers.info('keel_ledger', 'auditor__recorded');
    expect(consumer.config).toMatchObject({
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      filter_subject: 'keel.ledger.durable.recorded',
    });
  });
});

describe('nats - a stream made by an earlier keel with interest retention', () => {
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  it('nats - keeps publishing to it and warns, naming the stream and how to make it again with limits retention; only its publisher updates its limits, a subscriber warns', async () => {
    const raw = await connect({ servers: server.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.add({ name: 'old_ledger', subjects: ['old.ledger.durable.>'], retention: RetentionPolicy.Interest, storage: StorageType.File });
    const warnings: string[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_record, message) => void warnings.push(message),
      error: () => undefined,
      child: () => logger,
    };
    const transport = await createNatsTransport({ servers: server.url, prefix: 'old', logger, eventMaxAgeMs: 60_000 });
    const kernel = createKernel({ modules: manifest('old'), topology: { host: ['ledger'], transport }, logger: silentLogger });
    try {
      await kernel.start();
      await kernel.client(ledger).record({ tag: 'old-stream', failTimes: 0 });
      const info = await jsm.streams.info('old_ledger');
      // Accepted (an interest stream without consumers keeps nothing, but counts it).
      expect(info.state.last_seq).toBe(1);
      expect(info.config.max_age).toBe(nanos(60_000));
      expect(warnings).toEqual([expect.stringMatching(/stream old_ledger has interest retention.*nats stream rm old_ledger/)]);

      // A subscriber with other limits changes nothing (its NATS user may not): it warns instead.
      warnings.length = 0;
      const subscriberTransport = await createNatsTransport({ servers: server.url, prefix: 'old', logger, eventMaxAgeMs: 30_000 });
      const subscriber = createKernel({ modules: manifest('old-auditor'), topology: { host: ['auditor'], transport: subscriberTransport }, logger: silentLogger });
      try {
        await subscriber.start();
        expect((await jsm.streams.info('old_ledger')).config.max_age).toBe(nanos(60_000));
        expect(warnings).toContainEqual(expect.stringMatching(/stream old_ledger differs from this process's options \(max_age 60000000000, not 30000000000/));
      } finally {
        await subscriber.stop();
        await subscriberTransport.close();
      }
    } finally {
      await kernel.stop();
      await transport.close();
      await raw.close();
    }
  });
});

describe('nats - two prefixes that differ only in dots and underscores', () => {
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
  });

  it('nats - refuses a publisher of prefix acme_shop on the streams of acme.shop at its first durable event, and a subscriber at its start, with INVALID_CONFIG naming both prefixes; the stream keeps its subject and event', async () => {
    const transport = await createNatsTransport({ servers: server.url, prefix: 'acme.shop', logger: silentLogger });
    const kernel = createKernel({ modules: manifest('acme.shop'), topology: { host: ['ledger', 'auditor'], transport }, logger: silentLogger });
    const raw = await connect({ servers: server.url });
    const refusal = {
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/stream acme_shop_ledger holds the events of prefix "acme\.shop", not this process's "acme_shop".*differs in more than dots and underscores/),
    };
    const other = async (host: string[], use: (kernel: Kernel) => Promise<void>): Promise<void> => {
      const otherTransport = await createNatsTransport({ servers: server.url, prefix: 'acme_shop', logger: silentLogger });
      const otherKernel = createKernel({ modules: manifest('acme_shop'), topology: { host, transport: otherTransport }, logger: silentLogger });
      try {
        await use(otherKernel);
      } finally {
        await otherKernel.stop();
        await otherTransport.close();
      }
    };
    try {
      await kernel.start();
      await kernel.client(ledger).record({ tag: 'acme.shop', failTimes: 0 });
      const jsm = await jetstreamManager(raw);
      expect((await jsm.streams.info('acme_shop_ledger')).config.subjects).toEqual(['acme.shop.ledger.durable.>']);

      await other(['ledger'], async (publisher) => {
        await publisher.start();
        await expect(publisher.client(ledger).record({ tag: 'acme_shop', failTimes: 0 })).rejects.toMatchObject(refusal);
      });
      await other(['auditor'], async (subscriber) => {
        await expect(subscriber.start()).rejects.toMatchObject(refusal);
      });

      const after = await jsm.streams.info('acme_shop_ledger');
      expect({ subjects: after.config.subjects, messages: after.state.messages }).toEqual({ subjects: ['acme.shop.ledger.durable.>'], messages: 1 });
    } finally {
      await raw.close();
      await kernel.stop();
      await transport.close();
    }
  });
  it('nats - refuses a subscriber whose prefix shares a stream an earlier keel let two prefixes share, naming both and how to take the other subject out', async () => {
    const raw = await connect({ servers: server.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.add({ name: 'old_shop_ledger', subjects: ['old.shop.ledger.durable.>', 'old_shop.ledger.durable.>'], storage: StorageType.File });
    const transport = await createNatsTransport({ servers: server.url, prefix: 'old_shop', logger: silentLogger });
    const kernel = createKernel({ modules: manifest('old_shop'), topology: { host: ['auditor'], transport }, logger: silentLogger });
    try {
      await expect(kernel.start()).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringMatching(/stream old_shop_ledger holds the events of prefix "old\.shop" as well as this process's "old_shop".*nats stream edit old_shop_ledger --subjects/),
      });
    } finally {
      await kernel.stop();
      await transport.close();
      await raw.close();
    }
  });

  it('nats - refuses a publisher whose module stream has the name of another prefix\'s dead-letter stream (zz_ and module dead-letters against zz), and leaves that stream as it was', async () => {
    const raw = await connect({ servers: server.url });
    const jsm = await jetstreamManager(raw);
    await jsm.streams.add({ name: 'zz__dead-letters', subjects: ['zz._dead-letter.>'], storage: StorageType.File, max_msgs: 10_000 });
    const letters = defineContract({
      name: 'dead-letters',
      version: '1.0.0',
      operations: { note: operation({ input: z.object({}), output: z.object({}) }) },
      events: { noted: event({ payload: z.object({}), delivery: 'durable' }) },
    });
    const module = defineModule({
      contract: letters,
      create: ({ emit }) => ({
        handlers: {
          note: async () => {
            await emit('noted', {});
            return {};
          },
        },
      }),
    });
    const transport = await createNatsTransport({ servers: server.url, prefix: 'zz_', logger: silentLogger });
    const kernel = createKernel({ modules: [module], topology: { host: ['dead-letters'], transport }, logger: silentLogger });
    try {
      await kernel.start();
      await expect(kernel.client(letters).note({})).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringContaining('JetStream stream zz__dead-letters holds the events of prefix "zz", not this process\'s "zz_"'),
      });
      const after = await jsm.streams.info('zz__dead-letters');
      expect({ subjects: after.config.subjects, maxMessages: after.config.max_msgs }).toEqual({ subjects: ['zz._dead-letter.>'], maxMessages: 10_000 });
    } finally {
      await kernel.stop();
      await transport.close();
      await raw.close();
    }
  });
});

describe('nats - durable events without JetStream', () => {
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false });
  });

  it('nats - refuses to start a durable subscriber with UNAVAILABLE saying JetStream is needed', async () => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, jetStreamTimeoutMs: 2_000 });
    const kernel = createKernel({ modules: manifest('no-js'), topology: { host: ['auditor'], transport }, logger: silentLogger });
    try {
      await expect(kernel.start()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringContaining('JetStream') });
    } finally {
      await kernel.stop();
      await transport.close();
    }
  });
});
