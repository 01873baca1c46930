/**
 * keel over a three-node NATS cluster (test/support/nats-cluster.ts): R3 event streams, and the
 * loss of a node under load (kill -9 of the event stream's leader). Loopback only, bounded in
 * calls and time; docs/nats-cluster.md reports what it measured.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, operation, silentLogger, type AnyModule, type Kernel, type Logger, type Transport } from 'keel';
import { createNatsTransport, type NatsTransportOptions } from 'keel/nats';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startNatsCluster, type NatsCluster } from './support/nats-cluster.js';

const counter = defineContract({
  name: 'counter',
  version: '1.0.0',
  operations: { add: operation({ input: z.object({ id: z.string() }), output: z.object({ id: z.string() }) }) },
  events: { added: event({ payload: z.object({ id: z.string() }), delivery: 'durable' }) },
});

const tally = defineContract({
  name: 'tally',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

/** Ids whose call handler ran (the counter's state), and ids whose event tally handled, with how often. */
const applied = new Set<string>();
const delivered = new Map<string, number>();
/** When tally handled each event, for the longest pause in deliveries around the kill. */
const deliveredAt: number[] = [];

const modules: AnyModule[] = [
  defineModule({
    contract: counter,
    create: ({ emit }) => ({
      handlers: {
        add: async ({ id }) => {
          applied.add(id);
          await emit('added', { id });
          return { id };
        },
      },
    }),
  }),
  defineModule({
    contract: tally,
    subscribesTo: [counter],
    create: () => ({
      handlers: { noop: () => ({}) },
      events: {
        counter: {
          added: ({ id }) => {
            delivered.set(id, (delivered.get(id) ?? 0) + 1);
            deliveredAt.push(performance.now());
          },
        },
      },
    }),
  }),
];

/** What the publisher's transport logged: its re-sent events, confirmed on a later attempt. */
const resent: Array<{ attempt: number; duplicate: boolean }> = [];
const publisherLogger: Logger = {
  debug: () => undefined,
  info: (record, message) => {
    if (message.includes('durable event sent again')) resent.push(record as { attempt: number; duplicate: boolean });
  },
  warn: () => undefined,
  error: () => undefined,
  child: () => publisherLogger,
};

/** Calls made under load, how many at once, and the pause each worker takes between two. */
const CALLS = 300;
const WORKERS = 4;
const PAUSE_MS = 60;

describe('nats - a three-node NATS cluster', () => {
  let cluster: NatsCluster;
  let raw: NatsConnection;
  const transports: Transport[] = [];
  const kernels: Kernel[] = [];
  /** Which modules each transport's process hosts, for the report. */
  const roles = new Map<Transport, string>();

  const boot = async (host: string[], options: NatsTransportOptions = {}): Promise<Kernel> => {
    const transport = await createNatsTransport({
      servers: [...cluster.urls],
      logger: silentLogger,
      reconnectTimeWaitMs: 250,
      jetStreamTimeoutMs: 2_000,
      streamReplicas: 3,
      ...options,
    });
    transports.push(transport);
    roles.set(transport, host.join(',') || 'caller');
    const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger });
    await kernel.start();
    kernels.push(kernel);
    return kernel;
  };

  beforeAll(async () => {
    cluster = await startNatsCluster();
    raw = await connect({ servers: [...cluster.urls], reconnectTimeWait: 250, maxReconnectAttempts: -1 });
  }, 60_000);

  afterAll(async () => {
    for (const kernel of kernels.reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
    await raw?.close();
    await cluster?.stop();
  });

  it('nats - makes the event stream and its durable consumer with three replicas, one on each node', async () => {
    await boot(['tally']);
    const publisher = await boot(['counter'], { logger: publisherLogger });
    await publisher.client(counter).add({ id: 'first' });
    const jsm = await jetstreamManager(raw);
    const stream = await jsm.streams.info('keel_counter');
    expect(stream.config.num_replicas).toBe(3);
    const peers = [stream.cluster?.leader, ...(stream.cluster?.replicas ?? []).map((replica) => replica.name)].sort();
    expect(peers).toEqual(['n1', 'n2', 'n3']);
    // keel leaves the consumer's replicas unset: JetStream gives it the stream's.
    const consumer = await jsm.consumers.info('keel_counter', 'tally__added');
    expect(consumer.config.num_replicas ?? 0).toBe(0);
    expect([consumer.cluster?.leader, ...(consumer.cluster?.replicas ?? []).map((replica) => replica.name)].sort()).toEqual(['n1', 'n2', 'n3']);
    await vi.waitFor(() => expect(delivered.get('first')).toBe(1), { timeout: 10_000 });
  });

  it('nats - refuses more stream replicas than the cluster has with INVALID_CONFIG naming the option', async () => {
    const transport = await createNatsTransport({ servers: [...cluster.urls], logger: silentLogger, prefix: 'wide', streams: { counter: { replicas: 5 } } });
    transports.push(transport);
    const published = {
      contract: 'counter',
      version: '1.0.0',
      event: 'added',
      delivery: 'durable' as const,
      payload: { id: 'wide' },
      metadata: { id: 'wide-1', correlationId: 'wide', traceparent: undefined, publisher: 'counter', publishedAt: Date.now() },
    };
    const failure = await transport.publish(published).then(() => undefined, (error: unknown) => error);
    expect(isKeelError(failure, 'INVALID_CONFIG'), String(failure)).toBe(true);
    expect(String((failure as Error).message)).toMatch(/streams\.counter\.replicas asks for 5/);
  });

  it('nats - keeps every acknowledged call applied and every acknowledged durable event delivered when the stream leader is killed (kill -9) under load, and serves again', async () => {
    const client = await boot([]);
    const jsm = await jetstreamManager(raw);
    const ok = new Set<string>();
    const failed = new Map<string, string>();
    let next = 0;
    let killedAt: number | undefined;
    let firstOkAfterKill: number | undefined;
    let killing: Promise<string> | undefined;
    let onKilledNode: string[] = [];

    const killLeader = async (): Promise<string> => {
      const leader = (await jsm.streams.info('keel_counter')).cluster?.leader;
      if (leader === undefined) throw new Error('the stream has no leader before the kill');
      const port = `:${cluster.node(leader).port}`;
      onKilledNode = [...roles].filter(([transport]) => (transport.status().detail ?? '').includes(port)).map(([, role]) => role);
      killedAt = performance.now();
      await cluster.kill9(leader);
      probing = probe();
      return leader;
    };

    // From the kill on, a fresh call every 250 ms (2 s deadline) until one is answered OK.
    let probing: Promise<number> | undefined;
    const probe = async (): Promise<number> => {
      for (let index = 0; performance.now() - (killedAt ?? 0) < 30_000; index++) {
        const id = `probe-${index}`;
        try {
          await client.client(counter).add({ id }, { timeoutMs: 2_000 });
          ok.add(id);
          return performance.now() - (killedAt ?? 0);
        } catch (error) {
          failed.set(id, isKeelError(error) ? error.code : String(error));
        }
        await sleep(250);
      }
      throw new Error('no call was answered OK within 30 s of the kill');
    };

    const worker = async (): Promise<void> => {
      while (next < CALLS) {
        const id = `load-${next++}`;
        if (next === Math.floor(CALLS / 3)) {
          killing = killLeader();
          // Its failure is reported by the `await killing` below, not as an unhandled rejection meanwhile.
          killing.catch(() => undefined);
        }
        const started = performance.now();
        try {
          await client.client(counter).add({ id }, { timeoutMs: 20_000 });
          ok.add(id);
          if (killedAt !== undefined && started >= killedAt && firstOkAfterKill === undefined) firstOkAfterKill = performance.now();
        } catch (error) {
          failed.set(id, isKeelError(error) ? error.code : String(error));
        }
        await sleep(PAUSE_MS);
      }
    };
    const loadStarted = performance.now();
    await Promise.all(Array.from({ length: WORKERS }, () => worker()));
    const loadMs = performance.now() - loadStarted;
    const killed = await killing;
    expect(killed).toBeDefined();
    const recoveredMs = await probing;

    // Serves again: a bounded wait that fails the test if calls never come back.
    await vi.waitFor(async () => {
      await client.client(counter).add({ id: 'after' }, { timeoutMs: 2_000 });
      ok.add('after');
    }, { timeout: 30_000, interval: 200 });
    firstOkAfterKill ??= performance.now();

    // Every call answered OK ran, and its event (acknowledged before the answer) is delivered.
    expect([...ok].filter((id) => !applied.has(id))).toEqual([]);
    await vi.waitFor(() => expect([...ok].filter((id) => !delivered.has(id))).toEqual([]), { timeout: 45_000, interval: 100 });
    const times = [killedAt ?? 0, ...deliveredAt.filter((time) => time > (killedAt ?? 0))];
    const deliveryPauseMs = Math.max(...times.slice(1).map((time, index) => time - (times[index] as number)));

    // JetStream stored each event once, however often its publish was sent. The read is retried:
    // a JetStream API request can time out while the cluster elects new leaders after the kill.
    const stored = await vi.waitFor(() => storedIds(jsm), { timeout: 30_000, interval: 500 });
    const copies = [...stored.values()].filter((count) => count > 1).length;
    expect(copies).toBe(0);

    const redelivered = [...delivered.values()].filter((count) => count > 1).length;
    console.info(
      `nats cluster: killed ${killed} (stream leader) at call ${Math.floor(CALLS / 3)}, connected to it: ${onKilledNode.join(', ') || 'none'}; ${ok.size} calls OK, ${failed.size} failed ` +
        `(${[...new Set(failed.values())].join(', ') || 'none'}); load ran ${Math.round(loadMs)} ms; ` +
        `a fresh call answered OK ${Math.round(recoveredMs ?? 0)} ms after the kill; ` +
        `first OK load call started after the kill ${Math.round((firstOkAfterKill ?? 0) - (killedAt ?? 0))} ms after it; ` +
        `longest pause in deliveries from the kill on ${Math.round(deliveryPauseMs)} ms; ` +
        `${resent.length} events confirmed on a later attempt (up to attempt ${Math.max(0, ...resent.map((line) => line.attempt))}), ` +
        `${resent.filter((line) => line.duplicate).length} of them as duplicates of an earlier stored attempt; ` +
        `${stored.size} events stored, none twice; ${redelivered} delivered more than once`,
    );

    // The node comes back and catches up: three current replicas again.
    await cluster.restart(killed as string);
    await vi.waitFor(async () => {
      const info = await jsm.streams.info('keel_counter');
      expect((info.cluster?.replicas ?? []).filter((replica) => replica.current && !replica.offline)).toHaveLength(2);
    }, { timeout: 30_000, interval: 250 });
  }, 90_000);
});

/** How many times each `counter.added` payload id is stored in the stream, read message by message. */
async function storedIds(jsm: JetStreamManager): Promise<Map<string, number>> {
  const { first_seq: first, last_seq: last } = (await jsm.streams.info('keel_counter')).state;
  const counts = new Map<string, number>();
  for (let seq = first; seq <= last; seq++) {
    const { id } = (await jsm.streams.getMessage('keel_counter', { seq }))!.json<{ id: string }>();
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}
