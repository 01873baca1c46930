/**
 * Where an operator sees callers recover: a process's circuit breakers and retries in the
 * gateway's /metrics, and its open breakers in `keel status` (through `$SRV.STATS`). A real
 * nats-server, two kernels as two processes (relay calls flaky), real HTTP.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { KeelError, KeelErrorCode, createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { createNatsTransport } from 'keel/nats';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { formatStatusReport, readStatus } from '../cli/tooling/status.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const flaky = defineContract({
  name: 'flaky',
  version: '1.0.0',
  operations: { fail: operation({ input: z.object({}), output: z.object({}), idempotent: true }) },
});

const relay = defineContract({
  name: 'relay',
  version: '1.0.0',
  operations: {
    /** Calls flaky.fail with the given retry attempts and answers with the code it failed with. */
    pass: operation({ input: z.object({ attempts: z.number().int() }), output: z.object({ code: z.string(), attempts: z.number().nullable() }) }),
  },
});

let failRuns = 0;
const modules = [
  defineModule({
    contract: flaky,
    create: () => ({
      handlers: {
        fail: () => {
          failRuns += 1;
          throw new KeelError(KeelErrorCode.UNAVAILABLE, 'flaky is unwell (as the test asked)');
        },
      },
    }),
  }),
  defineModule({
    contract: relay,
    dependsOn: [flaky],
    create: ({ get }) => {
      const client = get(flaky);
      return {
        handlers: {
          pass: async ({ attempts }) => {
            try {
              await client.fail({}, { retry: { maxAttempts: attempts, backoffMs: 1 } });
              return { code: 'ok', attempts: null };
            } catch (error) {
              if (!isKeelError(error)) throw error;
              return { code: error.details?.['circuit'] === 'open' ? 'CIRCUIT_OPEN' : error.code, attempts: (error.details?.['attempts'] as number | undefined) ?? null };
            }
          },
        },
      };
    },
  }),
];

describe('resilience - observed', () => {
  let server: NatsServer;
  let relayKernel: Kernel;
  let gateway: HttpGateway;
  let nc: NatsConnection;
  const kernels: Kernel[] = [];
  const transports: Transport[] = [];

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false });
    for (const [host, options] of [
      [['flaky'], {}],
      // The relay's breaker opens once two attempts were made and half failed, and stays open for the test.
      [['relay'], { circuitBreaker: { minimumAttempts: 2, failureRatio: 0.5, openMs: 600_000 } }],
    ] as const) {
      const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
      transports.push(transport);
      const kernel = createKernel({ modules, topology: { host: [...host], transport }, logger: silentLogger, ...options });
      await kernel.start();
      kernels.push(kernel);
    }
    relayKernel = kernels[1] as Kernel;
    gateway = await createHttpGateway({ kernel: relayKernel, port: 0, logger: silentLogger, metrics: { defaultMetrics: false } });
    await gateway.listen();
    nc = await connect({ servers: server.url });
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await gateway?.close();
    for (const kernel of [...kernels].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
    await server?.stop();
  });

  it('a retried call shows in keel_call_retries_total, and the breaker it opened in kernel.status(), keel_circuit_state and keel_circuit_opened_total', async () => {
    const relayClient = relayKernel.client(relay);
    expect(await relayClient.pass({ attempts: 2 })).toEqual({ code: 'UNAVAILABLE', attempts: 2 });
    expect(failRuns).toBe(2);
    // The breaker is open now: the next call is refused without reaching flaky.
    expect(await relayClient.pass({ attempts: 1 })).toEqual({ code: 'CIRCUIT_OPEN', attempts: null });
    expect(failRuns).toBe(2);
    expect(relayKernel.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'flaky', state: 'open', opened: 1 }));

    const metrics = await (await fetch(`${gateway.url ?? ''}/metrics`)).text();
    expect(metrics).toContain('keel_call_retries_total{contract="flaky",operation="fail",transport="nats",caller="relay",reason="retry"} 1');
    expect(metrics).toContain('keel_circuit_state{dependency="flaky"} 1');
    expect(metrics).toContain('keel_circuit_opened_total{dependency="flaky"} 1');
    expect(metrics).toContain('keel_retries_over_budget_total{dependency="flaky"} 0');

    // Through the gateway: 503, with Retry-After saying when the breaker lets a probe through.
    const refused = await fetch(`${gateway.url ?? ''}/flaky/fail`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(refused.status).toBe(503);
    const body = await refused.clone().text();
    expect(Number(refused.headers.get("retry-after")), body).toBeGreaterThan(500);
    expect(await refused.json()).toMatchObject({ code: 'UNAVAILABLE', detail: expect.stringContaining('the circuit breaker for "flaky" is open') });
    expect(failRuns).toBe(2);
  });

  it('keel status shows that the relay process has its breaker to flaky open', async () => {
    const report = await readStatus(nc, { maxWaitMs: 2_000 });
    const relayStatus = report.modules.find((module) => module.name === 'relay');
    expect(relayStatus?.circuits).toEqual({ flaky: 'open' });
    expect(report.modules.find((module) => module.name === 'flaky')?.circuits).toEqual({});
    expect(formatStatusReport(report)).toMatch(/^relay .*← circuit breaker open to flaky: those calls fail fast$/m);
  });

  it('a retry the retry budget refused shows in keel_retries_over_budget_total and kernel.status(), and flaky ran once', async () => {
    const kernel = createKernel({ modules, logger: silentLogger, retryBudget: { ratio: 0, minRetries: 0 } });
    await kernel.start();
    const own = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: { defaultMetrics: false } });
    await own.listen();
    try {
      const before = failRuns;
      expect(await kernel.client(relay).pass({ attempts: 3 })).toEqual({ code: 'UNAVAILABLE', attempts: null });
      expect(failRuns - before).toBe(1);
      expect(kernel.status().circuits).toContainEqual(expect.objectContaining({ dependency: 'flaky', retries: 0, retriesRefused: 1 }));
      const metrics = await (await fetch(`${own.url ?? ''}/metrics`)).text();
      expect(metrics).toContain('keel_retries_over_budget_total{dependency="flaky"} 1');
    } finally {
      await own.close();
      await kernel.stop();
    }
  });
});
