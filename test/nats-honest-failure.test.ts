/**
 * Honest failure while the NATS connection is down: a call made then is not handed to the NATS
 * client (which would drop it at its next reconnect attempt); it waits the reconnect grace and
 * is sent once the connection is back, or fails UNAVAILABLE — never TIMEOUT, which means "sent,
 * outcome unknown".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  defineContract,
  defineModule,
  isKeelError,
  operation,
  silentLogger,
  type KeelError,
  type Kernel,
  type Transport,
} from 'keel';
import { createNatsTransport, natsOptionsFromEnv, type NatsTransportOptions } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const counter = defineContract({
  name: 'counter',
  version: '1.0.0',
  operations: {
    hit: operation({ input: z.object({ tag: z.string(), ms: z.number().int() }), output: z.object({ tag: z.string() }) }),
  },
});

/** How often the handler ran for each tag. */
const runs = new Map<string, number>();

const counterModule = defineModule({
  contract: counter,
  create: () => ({
    handlers: {
      hit: async ({ tag, ms }) => {
        runs.set(tag, (runs.get(tag) ?? 0) + 1);
        if (ms > 0) await sleep(ms);
        return { tag };
      },
    },
  }),
});

/** What a call ended with: the KeelError code, or `ok`. */
async function outcome(answer: Promise<unknown>): Promise<{ code: string; error?: KeelError }> {
  try {
    await answer;
    return { code: 'ok' };
  } catch (error) {
    if (!isKeelError(error)) throw error;
    return { code: error.code, error };
  }
}

describe('nats - honest failure while the connection is down', () => {
  let server: NatsServer;
  const kernels: Kernel[] = [];
  const transports: Transport[] = [];

  const boot = async (host: string[], options: NatsTransportOptions = {}): Promise<{ kernel: Kernel; transport: Transport }> => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, reconnectTimeWaitMs: 100, ...options });
    transports.push(transport);
    const kernel = createKernel({ modules: [counterModule], topology: { host, transport }, logger: silentLogger });
    await kernel.start();
    kernels.push(kernel);
    return { kernel, transport };
  };

  /** Stops nats-server and waits until every transport so far has noticed. */
  const stopServer = async (): Promise<void> => {
    await server.kill();
    await vi.waitFor(() => {
      for (const transport of transports) expect(transport.status().ready).toBe(false);
    }, { timeout: 10_000, interval: 20 });
  };

  /** Starts nats-server again and waits until every kernel serves again. */
  const startServer = async (): Promise<void> => {
    await server.start();
    await vi.waitFor(() => {
      for (const kernel of kernels) expect(kernel.ready()).toBe(true);
    }, { timeout: 15_000, interval: 20 });
  };

  beforeAll(async () => {
    server = await startNatsServer();
    await boot(['counter']);
  });

  beforeEach(async () => {
    // A failed test must not leave the next one without a server.
    if (!server.running) await startServer();
  });

  afterAll(async () => {
    for (const kernel of kernels.reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
  });

  it('nats - a call made while nats-server is down fails UNAVAILABLE (retryable, not sent) after the grace, before its deadline; with a deadline shorter than the grace it is UNAVAILABLE too, never TIMEOUT', async () => {
    const { kernel: caller } = await boot([], { reconnectGraceMs: 300 });
    expect(await caller.client(counter).hit({ tag: 'down-warm-up', ms: 0 })).toEqual({ tag: 'down-warm-up' });
    await stopServer();
    try {
      const started = Date.now();
      const graceful = await outcome(caller.client(counter).hit({ tag: 'down-grace', ms: 0 }, { timeoutMs: 10_000 }));
      const elapsedMs = Date.now() - started;
      expect(graceful.code, graceful.error?.message).toBe('UNAVAILABLE');
      expect(graceful.error?.retryable).toBe(true);
      expect(graceful.error?.message).toContain('was not sent: the NATS connection is down (reconnecting to nats://127.0.0.1:');
      expect(graceful.error?.details).toMatchObject({ reconnectGraceMs: 300 });
      // A correctness bound, not a performance one: it did not wait for its 10 s deadline.
      expect(elapsedMs).toBeLessThan(10_000);

      const short = await outcome(caller.client(counter).hit({ tag: 'down-short', ms: 0 }, { timeoutMs: 50 }));
      expect(short.code, short.error?.message).toBe('UNAVAILABLE');
      expect(short.error?.retryable).toBe(true);
    } finally {
      await startServer();
    }
    // Served again, and neither call ran: nothing was sent.
    expect(await caller.client(counter).hit({ tag: 'down-after', ms: 0 })).toEqual({ tag: 'down-after' });
    expect(runs.get('down-grace')).toBeUndefined();
    expect(runs.get('down-short')).toBeUndefined();
  });

  it('nats - a call waiting for the connection is CANCELLED by its signal, and UNAVAILABLE when its transport closes; with a grace of 0 it fails at once', async () => {
    const { kernel: caller } = await boot([], { reconnectGraceMs: 60_000 });
    const { kernel: closing, transport: closingTransport } = await boot([], { reconnectGraceMs: 60_000 });
    const { kernel: impatient } = await boot([], { reconnectGraceMs: 0 });
    await stopServer();
    try {
      const controller = new AbortController();
      const cancelled = outcome(caller.client(counter).hit({ tag: 'cancelled', ms: 0 }, { timeoutMs: 30_000, signal: controller.signal }));
      controller.abort(new Error('the user went away'));
      expect((await cancelled).code).toBe('CANCELLED');

      const interrupted = outcome(closing.client(counter).hit({ tag: 'closed', ms: 0 }, { timeoutMs: 30_000 }));
      await closingTransport.close();
      const closed = await interrupted;
      expect(closed.code, closed.error?.message).toBe('UNAVAILABLE');
      expect(closed.error?.message).toContain('the NATS transport is closed');

      const atOnce = await outcome(impatient.client(counter).hit({ tag: 'at-once', ms: 0 }, { timeoutMs: 30_000 }));
      expect(atOnce.code, atOnce.error?.message).toBe('UNAVAILABLE');
      expect(atOnce.error?.details).toMatchObject({ reconnectGraceMs: 0 });
    } finally {
      await closing.stop();
      kernels.splice(kernels.indexOf(closing), 1);
      await startServer();
    }
  });

  it('nats - a call made while nats-server is down is sent when the connection comes back within the grace, and served once', async () => {
    // Caller and callee share one connection: on reconnecting, the client subscribes again
    // before it sends anything, so the call cannot meet a callee that is not back yet.
    // A long grace: how soon nats-server is back depends on the machine, not on what is tested.
    const { kernel: callee, transport: shared } = await boot(['counter'], { reconnectGraceMs: 30_000 });
    const caller = createKernel({ modules: [counterModule], topology: { host: [], transport: shared }, logger: silentLogger });
    await caller.start();
    kernels.push(caller);
    expect(callee.ready()).toBe(true);
    await stopServer();
    const readyAtCall = shared.status().ready;
    const answer = outcome(caller.client(counter).hit({ tag: 'comes-back', ms: 0 }, { timeoutMs: 30_000 }));
    await server.start();
    const result = await answer;
    expect(readyAtCall).toBe(false);
    expect(result.code, result.error?.message).toBe('ok');
    expect(runs.get('comes-back')).toBe(1);
    await startServer();
  });

  it('nats - under load through a nats-server restart, no call made while disconnected fails TIMEOUT, and no call reported not delivered reached the handler', async () => {
    const { kernel: caller, transport: callerTransport } = await boot([], { reconnectGraceMs: 300 });
    interface Record {
      readonly tag: string;
      /** The caller's connection was up when the call was made (so it was published at once). */
      readonly readyAtCall: boolean;
      code: string;
    }
    const records: Record[] = [];
    let stop = false;
    const MAX_CALLS = 3_000;
    const worker = async (name: string): Promise<void> => {
      for (let index = 0; !stop && records.length < MAX_CALLS; index++) {
        const tag = `load-${name}-${index}`;
        // Read in the same tick as the call reaches the transport (the client calls it synchronously).
        const record: Record = { tag, readyAtCall: callerTransport.status().ready, code: 'pending' };
        records.push(record);
        // A call made while disconnected and sent once the connection is back may still TIMEOUT if its answer
        // is late: its deadline leaves room for that on a loaded machine, far past the 300 ms grace.
        record.code = (await outcome(caller.client(counter).hit({ tag, ms: 20 }, { timeoutMs: 5_000 }))).code;
        if (record.code !== 'ok') await sleep(5); // pacing: fast failures must not spin
      }
    };
    const count = (predicate: (record: Record) => boolean): number => records.filter(predicate).length;
    const workers = Promise.all(['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(worker));
    try {
      await vi.waitFor(() => expect(count((record) => record.code === 'ok')).toBeGreaterThanOrEqual(40), { timeout: 15_000, interval: 20 });
      await stopServer();
      // Down until calls made during the outage have settled.
      await vi.waitFor(() => expect(count((record) => !record.readyAtCall && record.code !== 'pending')).toBeGreaterThanOrEqual(16), {
        timeout: 15_000,
        interval: 20,
      });
      await startServer();
      const okBefore = count((record) => record.code === 'ok');
      await vi.waitFor(() => expect(count((record) => record.code === 'ok')).toBeGreaterThanOrEqual(okBefore + 40), { timeout: 15_000, interval: 20 });
    } finally {
      stop = true;
      await workers;
    }

    const codes = new Set(records.map((record) => record.code));
    // INTERRUPTED: sent, and the connection dropped before the answer (outcome unknown, like TIMEOUT).
    expect([...codes].filter((code) => !['ok', 'UNAVAILABLE', 'NO_RESPONDERS', 'TIMEOUT', 'INTERRUPTED'].includes(code))).toEqual([]);
    // TIMEOUT only for a call published while connected: its outcome is unknown.
    expect(records.filter((record) => record.code === 'TIMEOUT' && !record.readyAtCall)).toEqual([]);
    // Not delivered means not delivered: the handler never ran for such a call.
    expect(records.filter((record) => ['UNAVAILABLE', 'NO_RESPONDERS'].includes(record.code) && runs.has(record.tag))).toEqual([]);
    // A call answered ran exactly once.
    expect(records.filter((record) => record.code === 'ok' && runs.get(record.tag) !== 1)).toEqual([]);
    expect(count((record) => !record.readyAtCall && record.code === 'UNAVAILABLE')).toBeGreaterThanOrEqual(16);
  });
});

describe('nats - the reconnect grace option', () => {
  it('nats - reads KEEL_NATS_RECONNECT_GRACE_MS, refuses one that is not a whole number of milliseconds, and refuses a negative reconnectGraceMs naming the field', async () => {
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_RECONNECT_GRACE_MS: '250' })).toMatchObject({ reconnectGraceMs: 250 });
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_RECONNECT_GRACE_MS: '0' })).toMatchObject({ reconnectGraceMs: 0 });
    expect(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_RECONNECT_GRACE_MS: 'soon' })).toThrow(
      'KEEL_NATS_RECONNECT_GRACE_MS="soon" is not a number of milliseconds',
    );
    expect(() => natsOptionsFromEnv({ KEEL_NATS_RECONNECT_GRACE_MS: '250' })).toThrow('KEEL_NATS_RECONNECT_GRACE_MS is set but KEEL_NATS_URL is not');
    const refused = await createNatsTransport({ reconnectGraceMs: -1 }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('reconnectGraceMs must be a number of milliseconds, 0 or more and at most 2147483647, got -1');
  });
});
