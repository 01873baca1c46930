/**
 * A caller's NATS node dies while its call is in flight, and the client fails over to another
 * node of the cluster within the reconnect grace: the call is kept, and the callee's answer,
 * sent after the client subscribed again, reaches it. Loopback only, a three-node cluster.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsCluster, type NatsCluster } from './support/nats-cluster.js';

const slow = defineContract({
  name: 'slow',
  version: '1.0.0',
  operations: { work: operation({ input: z.object({ held: z.boolean(), tag: z.string() }), output: z.object({ tag: z.string(), heldRuns: z.number() }) }) },
});

/** How many times the handler ran for a held call; a held call answers once `release` is called. Each answer echoes its call's tag. */
let heldRuns = 0;
let release = (): void => undefined;
const released = new Promise<void>((resolve) => (release = resolve));
const modules = [
  defineModule({
    contract: slow,
    create: () => ({
      handlers: {
        work: async ({ held, tag }) => {
          if (held) {
            heldRuns += 1;
            await released;
          }
          return { tag, heldRuns };
        },
      },
    }),
  }),
];

describe('nats - failover within the reconnect grace', () => {
  let cluster: NatsCluster;
  let caller: Kernel;
  const kernels: Kernel[] = [];
  const transports: Transport[] = [];

  beforeAll(async () => {
    cluster = await startNatsCluster();
    const [n1, n2] = cluster.urls as [string, string, string];
    // The callee on n2 only; the caller on n1 first (it learns the other nodes from n1 and fails over to them).
    for (const [servers, host] of [
      [n2, ['slow']],
      [n1, []],
    ] as const) {
      const transport = await createNatsTransport({ servers, logger: silentLogger, reconnectGraceMs: 5_000, reconnectTimeWaitMs: 100 });
      transports.push(transport);
      const kernel = createKernel({ modules, topology: { host: [...host], transport }, logger: silentLogger, retry: false });
      await kernel.start();
      kernels.push(kernel);
    }
    caller = kernels[1] as Kernel;
  }, 60_000);
  afterAll(async () => {
    release(); // a failed test's held call ends, and its kernel stops at once
    for (const kernel of [...kernels].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
    await cluster?.stop();
  });

  it("keeps a call in flight when the caller's node dies and the client fails over within the grace: the answer arrives, and the handler ran once", async () => {
    expect(await caller.client(slow).work({ held: false, tag: 'first' })).toEqual({ tag: 'first', heldRuns: 0 });
    let settled = false;
    const pending = caller.client(slow).work({ held: true, tag: 'held' }, { timeoutMs: 15_000 });
    const outcome = pending.then(
      (answer) => ({ answer }),
      (error: unknown) => ({ error }),
    );
    void outcome.then(() => (settled = true));
    // The request has reached the callee (its handler started) before the caller's node dies.
    const started = Date.now();
    while (heldRuns < 1) {
      if (Date.now() - started > 5_000) throw new Error('the call did not reach the callee');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await cluster.kill9('n1');
    // The callee answers once the caller has failed over: a later call answered proves its client
    // subscribed again (calls sent while it reconnects fail or time out, and are asked again).
    // Bounded by the reconnect grace, after which the held call fails by itself.
    const graceEnds = Date.now() + 5_000;
    let lastFailure: unknown;
    for (let probe = 0; ; probe++) {
      const answer = await caller
        .client(slow)
        .work({ held: false, tag: `probe-${probe}` }, { timeoutMs: 500 })
        .catch((error: unknown) => void (lastFailure = error));
      if (answer !== undefined) {
        expect(answer).toEqual({ tag: `probe-${probe}`, heldRuns: 1 });
        break;
      }
      if (settled || Date.now() > graceEnds) throw new Error(`the caller did not fail over to another node within the grace: ${String(lastFailure)}`, { cause: settled ? await outcome : 'the held call is still pending' });
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    release();
    expect(await outcome).toEqual({ answer: { tag: 'held', heldRuns: 1 } });
    expect(heldRuns).toBe(1);
  });
});
