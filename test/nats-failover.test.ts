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
  operations: { work: operation({ input: z.object({ ms: z.number() }), output: z.object({ runs: z.number() }) }) },
});

let runs = 0;
const modules = [
  defineModule({
    contract: slow,
    create: () => ({
      handlers: {
        work: async ({ ms }) => {
          runs += 1;
          await new Promise((resolve) => setTimeout(resolve, ms));
          return { runs };
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
    for (const kernel of [...kernels].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
    await cluster?.stop();
  });

  it("keeps a call in flight when the caller's node dies and the client fails over within the grace: the answer arrives, and the handler ran once", async () => {
    expect(await caller.client(slow).work({ ms: 0 })).toEqual({ runs: 1 });
    const pending = caller.client(slow).work({ ms: 1_500 }, { timeoutMs: 10_000 });
    // The request has reached the callee (its handler started) before the caller's node dies.
    const started = Date.now();
    while (runs < 2) {
      if (Date.now() - started > 5_000) throw new Error('the call did not reach the callee');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    await cluster.kill9('n1');
    expect(await pending).toEqual({ runs: 2 });
    expect(runs).toBe(2);
  });
});
