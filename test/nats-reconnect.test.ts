import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  defineContract,
  defineModule,
  event,
  isKeelError,
  operation,
  silentLogger,
  type AnyModule,
  type Kernel,
  type Transport,
} from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const worker = defineContract({
  name: 'worker',
  version: '1.0.0',
  operations: {
    work: operation({ input: z.object({ ms: z.number().int(), tag: z.string() }), output: z.object({ tag: z.string() }) }),
  },
  events: { done: event({ payload: z.object({ tag: z.string() }), delivery: 'durable' }) },
});

const watcher = defineContract({
  name: 'watcher',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

const seen: string[] = [];

const workerModule = defineModule({
  contract: worker,
  create: ({ emit }) => ({
    handlers: {
      work: async ({ ms, tag }) => {
        await sleep(ms);
        if (tag.startsWith('event')) await emit('done', { tag });
        return { tag };
      },
    },
  }),
});

const watcherModule = defineModule({
  contract: watcher,
  subscribesTo: [worker],
  create: () => ({
    handlers: { noop: () => ({}) },
    events: { worker: { done: ({ tag }) => void seen.push(tag) } },
  }),
});

const modules: AnyModule[] = [workerModule, watcherModule];

/** How late past its deadline a call may settle: a correctness bound (it settles), not a performance one. */
const SETTLE_SLACK_MS = 5_000;

describe('nats - nats-server restart', () => {
  let server: NatsServer;
  const transports: Transport[] = [];
  const kernels: Kernel[] = [];
  let client: Kernel;
  let clientTransport: Transport;

  const boot = async (host: string[]): Promise<{ kernel: Kernel; transport: Transport }> => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, reconnectTimeWaitMs: 100 });
    transports.push(transport);
    const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger });
    await kernel.start();
    kernels.push(kernel);
    return { kernel, transport };
  };

  beforeAll(async () => {
    server = await startNatsServer();
    await boot(['worker']);
    await boot(['watcher']);
    ({ kernel: client, transport: clientTransport } = await boot([]));
  });

  beforeEach(async () => {
    // A failed test must not leave the next one without a server.
    if (!server.running) await server.start();
  });

  afterAll(async () => {
    for (const kernel of kernels.reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
  });

  it('nats - settles every in-flight call by its deadline (INTERRUPTED when the connection drops), reports not ready while disconnected, and serves again after reconnecting', async () => {
    expect(await client.client(worker).work({ ms: 0, tag: 'warm-up' })).toEqual({ tag: 'warm-up' });

    // Outcomes and settle times are captured at once: nothing is left unhandled whatever happens below.
    const timeoutMs = 1_000;
    const inFlight = Array.from({ length: 8 }, (_, index) => {
      const started = performance.now();
      return client
        .client(worker)
        .work({ ms: 300, tag: `in-flight-${index}` }, { timeoutMs })
        .then(
          () => ({ failure: undefined as unknown, elapsedMs: performance.now() - started }),
          (error: unknown) => ({ failure: error, elapsedMs: performance.now() - started }),
        );
    });
    await sleep(50);
    await server.kill();

    // Each process notices the lost connection on its own.
    await vi.waitFor(() => {
      expect(clientTransport.status().ready).toBe(false);
      for (const kernel of kernels) expect(kernel.ready()).toBe(false);
    }, { timeout: 10_000, interval: 20 });

    // Every call settles: an answer that got out before the restart, or INTERRUPTED as soon as the
    // connection dropped (its answer is lost with it; outcome unknown), or TIMEOUT at its deadline;
    // never later than its deadline (the slack absorbs timer and scheduling delays on a busy machine).
    for (const { failure, elapsedMs } of await Promise.all(inFlight)) {
      if (failure !== undefined) expect(isKeelError(failure, 'INTERRUPTED') || isKeelError(failure, 'TIMEOUT'), String(failure)).toBe(true);
      expect(elapsedMs).toBeLessThanOrEqual(timeoutMs + SETTLE_SLACK_MS);
    }

    await server.start();
    await vi.waitFor(() => {
      for (const kernel of kernels) expect(kernel.ready()).toBe(true);
    }, { timeout: 15_000, interval: 50 });

    await vi.waitFor(async () => {
      expect(await client.client(worker).work({ ms: 0, tag: 'after' }, { timeoutMs: 500 })).toEqual({ tag: 'after' });
    }, { timeout: 15_000, interval: 100 });
  });

  it('nats - keeps delivering durable events after the server restarts', async () => {
    await client.client(worker).work({ ms: 0, tag: 'event-before' });
    await vi.waitFor(() => expect(seen).toContain('event-before'), { timeout: 10_000 });

    await server.restart();
    await vi.waitFor(() => {
      for (const kernel of kernels) expect(kernel.ready()).toBe(true);
    }, { timeout: 15_000, interval: 50 });

    await vi.waitFor(async () => {
      await client.client(worker).work({ ms: 0, tag: 'event-after' }, { timeoutMs: 2_000 });
    }, { timeout: 15_000, interval: 200 });
    await vi.waitFor(() => expect(seen).toContain('event-after'), { timeout: 20_000, interval: 100 });
  });

  it('nats - delivers every durable event JetStream confirmed, when nats-server stops and starts while events are published and handled', async () => {
    // Two publishers emit while the subscriber handles (and acknowledges) as it goes; the server
    // stops once a third are out. Every emit that resolved was confirmed stored by JetStream, so
    // every one of those must be handled after the restart. With interest retention, nats-server
    // 2.9 lost the last one or two confirmed events in 5 of 6 such runs.
    const perPublisher = 90;
    const confirmed: string[] = [];
    let sent = 0;
    let stopped: Promise<void> | undefined;
    const publisher = async (name: string): Promise<void> => {
      for (let index = 0; index < perPublisher; index++) {
        const tag = `event-burst-${name}-${index}`;
        for (let attempt = 0; ; attempt++) {
          try {
            await client.client(worker).work({ ms: 0, tag }, { timeoutMs: 1_000 });
            confirmed.push(tag);
            break;
          } catch (error) {
            if (attempt >= 100) throw error;
            await sleep(100);
          }
        }
        if (++sent === Math.floor((2 * perPublisher) / 3)) stopped = server.kill();
        await sleep(5);
      }
    };
    const publishing = Promise.all([publisher('a'), publisher('b')]);
    await vi.waitFor(() => expect(stopped).toBeDefined(), { timeout: 20_000, interval: 20 });
    await stopped;
    await server.start();
    await publishing;

    await vi.waitFor(() => expect(confirmed.filter((tag) => !seen.includes(tag))).toEqual([]), { timeout: 30_000, interval: 100 });
    expect(confirmed).toHaveLength(2 * perPublisher);
  });

  it('nats - fails a new call with UNAVAILABLE (not sent, safe to retry), not TIMEOUT or a hang, while the server is down', async () => {
    await server.kill();
    await vi.waitFor(() => expect(clientTransport.status().ready).toBe(false), { timeout: 10_000, interval: 20 });
    try {
      // Its deadline is shorter than the reconnect grace: the call gives up at its deadline, still never sent.
      await client.client(worker).work({ ms: 0, tag: 'down' }, { timeoutMs: 200 });
      throw new Error('expected a failure');
    } catch (error) {
      expect(isKeelError(error, 'UNAVAILABLE'), String(error)).toBe(true);
      expect((error as { retryable?: boolean }).retryable).toBe(true);
    } finally {
      await server.start();
    }
    await vi.waitFor(async () => {
      expect(await client.client(worker).work({ ms: 0, tag: 'up' }, { timeoutMs: 500 })).toEqual({ tag: 'up' });
    }, { timeout: 15_000, interval: 100 });
  });
});
