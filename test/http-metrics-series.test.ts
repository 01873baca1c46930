/**
 * The gateway's metrics record into series (cheap per request) and must expose exactly what
 * prom-client's own Counter and Histogram expose for the same observations.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { KeelError, KeelErrorCode, createKernel, defineContract, defineError, defineModule, event, operation, silentLogger } from 'keel';
import type { CallRecord } from 'keel/transport';
import { DEFAULT_LATENCY_BUCKETS, createKernelMetrics } from 'keel/http';

const Missing = defineError({ code: 'MISSING', kind: 'not-found', data: z.object({}), message: () => 'missing' });
const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: {
    say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }), errors: [Missing] }),
  },
});
const echoModule = defineModule({
  contract: echo,
  create: () => ({
    handlers: {
      say: async ({ text }) => {
        if (text === '') throw new Missing({});
        return { text };
      },
    },
  }),
});

/** Prometheus text lines of the families whose names start with `prefix`, in order. */
async function lines(registry: Registry, prefix: string): Promise<string[]> {
  // keel_call_retries_total is fed by callRetried, which the reference does not model.
  return (await registry.metrics())
    .split('\n')
    .filter((line) => line.startsWith(prefix) || line.startsWith(`# HELP ${prefix}`) || line.startsWith(`# TYPE ${prefix}`))
    .filter((line) => !line.includes('keel_call_retries_total'));
}

/** prom-client metrics fed by hand with what the gateway's metrics are fed. */
function reference() {
  const registry = new Registry();
  const buckets = [...DEFAULT_LATENCY_BUCKETS];
  const callLabels = ['side', 'contract', 'operation', 'transport', 'caller'];
  const calls = new Counter({ name: 'keel_calls_total', help: 'Calls made and served, by outcome (ok or error code).', labelNames: [...callLabels, 'outcome'], registers: [registry] });
  const durations = new Histogram({ name: 'keel_call_duration_seconds', help: 'Latency of calls made and served.', labelNames: callLabels, buckets, registers: [registry] });
  const requests = new Counter({ name: 'keel_http_requests_total', help: 'HTTP requests answered by the gateway.', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const requestDurations = new Histogram({ name: 'keel_http_request_duration_seconds', help: 'Latency of HTTP requests.', labelNames: ['method', 'route'], buckets, registers: [registry] });
  return {
    registry,
    call(side: 'made' | 'served', record: CallRecord) {
      const labels = { side, contract: record.contract, operation: record.operation, transport: record.transport, caller: record.caller };
      calls.inc({ ...labels, outcome: record.outcome });
      durations.observe(labels, record.durationMs / 1000);
    },
    http(method: string, route: string, status: number, durationMs: number) {
      requests.inc({ method, route, status: String(status) });
      requestDurations.observe({ method, route }, durationMs / 1000);
    },
  };
}

const HTTP_OBSERVATIONS: readonly [string, string, number, number][] = [
  ['POST', '/echo/say', 200, 0],
  ['POST', '/echo/say', 200, 0.1],
  ['POST', '/echo/say', 404, 0.11],
  ['GET', '/healthz', 200, 3],
  ['POST', '/echo/say', 200, 250],
  ['GET', '/healthz', 200, 30_000],
  ['GET', '/healthz', 200, 31_000],
  ['POST', 'unmatched', 404, 1e-6],
  ['GET', '/healthz', 200, 4.9999],
];

describe('http - metric series', () => {
  it('http - HTTP request metrics expose what prom-client exposes for the same observations, before and after a reset', async () => {
    const kernel = createKernel({ modules: [echoModule], logger: silentLogger });
    const metrics = createKernelMetrics(kernel, { defaultMetrics: false });
    const expected = reference();
    const observe = (method: string, route: string, status: number, durationMs: number): void => {
      metrics.observeHttp(method, route, status, durationMs);
      expected.http(method, route, status, durationMs);
    };
    expect(await lines(metrics.registry, 'keel_http_')).toEqual(await lines(expected.registry, 'keel_http_'));
    for (const observation of HTTP_OBSERVATIONS) observe(...observation);
    expect(await lines(metrics.registry, 'keel_http_')).toEqual(await lines(expected.registry, 'keel_http_'));
    observe('POST', '/echo/say', 200, 7);
    expect(await lines(metrics.registry, 'keel_http_')).toEqual(await lines(expected.registry, 'keel_http_'));
    // A reset forgets everything, including what was recorded since the last read.
    observe('POST', '/echo/say', 200, 8);
    metrics.registry.resetMetrics();
    expected.registry.resetMetrics();
    expect(await lines(metrics.registry, 'keel_http_')).toEqual(await lines(expected.registry, 'keel_http_'));
    observe('POST', '/echo/say', 500, 9);
    expect(await lines(metrics.registry, 'keel_http_')).toEqual(await lines(expected.registry, 'keel_http_'));
    metrics.close();
  });

  it('http - call metrics expose what prom-client exposes for the same calls, errors included', async () => {
    const kernel = createKernel({ modules: [echoModule], logger: silentLogger });
    await kernel.start();
    const metrics = createKernelMetrics(kernel, { defaultMetrics: false });
    const expected = reference();
    kernel.observe({ callMade: (record) => expected.call('made', record), callServed: (record) => expected.call('served', record) });
    const client = kernel.client(echo, { caller: 'http' });
    for (const text of ['a', 'b', '', 'c', '']) await client.say({ text }).catch(() => undefined);
    expect(await lines(metrics.registry, 'keel_call')).toEqual(await lines(expected.registry, 'keel_call'));
    const text = (await lines(metrics.registry, 'keel_call')).join('\n');
    expect(text).toContain('keel_calls_total{side="served",contract="echo",operation="say",transport="local",caller="http",outcome="ok"} 3');
    expect(text).toContain('keel_calls_total{side="made",contract="echo",operation="say",transport="local",caller="http",outcome="MISSING"} 2');
    metrics.close();
    await kernel.stop();
  });

  it('http - two gateways sharing a registry add up in it', async () => {
    const registry = new Registry();
    const first = createKernelMetrics(createKernel({ modules: [echoModule], logger: silentLogger }), { registry, defaultMetrics: false });
    const second = createKernelMetrics(createKernel({ modules: [echoModule], logger: silentLogger }), { registry, defaultMetrics: false });
    first.observeHttp('GET', '/healthz', 200, 1);
    second.observeHttp('GET', '/healthz', 200, 2);
    let text = await registry.metrics();
    expect(text).toContain('keel_http_requests_total{method="GET",route="/healthz",status="200"} 2');
    expect(text).toContain('keel_http_request_duration_seconds_count{method="GET",route="/healthz"} 2');
    second.observeHttp('GET', '/healthz', 200, 3);
    second.close();
    first.observeHttp('GET', '/healthz', 200, 4);
    text = await registry.metrics();
    expect(text).toContain('keel_http_requests_total{method="GET",route="/healthz",status="200"} 4');
    first.close();
  });

  it('http - metrics already registered by prom-client under keel names are fed directly', async () => {
    const registry = new Registry();
    const requests = new Counter({ name: 'keel_http_requests_total', help: 'Mine.', labelNames: ['method', 'route', 'status'], registers: [registry] });
    const durations = new Histogram({ name: 'keel_http_request_duration_seconds', help: 'Mine.', labelNames: ['method', 'route'], buckets: [1], registers: [registry] });
    const metrics = createKernelMetrics(createKernel({ modules: [echoModule], logger: silentLogger }), { registry, defaultMetrics: false });
    metrics.observeHttp('GET', '/healthz', 200, 500);
    expect((await requests.get()).values).toEqual([{ labels: { method: 'GET', route: '/healthz', status: '200' }, value: 1 }]);
    expect((await durations.get()).values.find((value) => value.metricName === 'keel_http_request_duration_seconds_count')?.value).toBe(1);
    metrics.close();
  });

  it('http - an event handler throwing errors whose code comes from the payload adds at most 64 outcome series, then _other (a code named _other is counted there, taking no place); known codes, and a code literally "other", keep their own', async () => {
    const ledger = defineContract({
      name: 'ledger',
      version: '1.0.0',
      operations: { record: operation({ input: z.object({ code: z.string() }), output: z.object({}) }) },
      events: { recorded: event({ payload: z.object({ code: z.string() }) }) },
    });
    const auditor = defineContract({ name: 'auditor', version: '1.0.0', operations: { noop: operation({ input: z.object({}), output: z.object({}) }) } });
    let handled = 0;
    const kernel = createKernel({
      logger: silentLogger,
      modules: [
        defineModule({
          contract: ledger,
          create: ({ emit }) => ({
            handlers: {
              record: async ({ code }) => {
                await emit('recorded', { code });
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
                recorded: ({ code }) => {
                  handled += 1;
                  if (code === 'unavailable') throw new KeelError(KeelErrorCode.UNAVAILABLE, 'down');
                  // A library's error whose code is built from what it was given (an upstream's error field, say).
                  throw Object.assign(new Error(`rejected: ${code}`), { code });
                },
              },
            },
          }),
        }),
      ],
    });
    const metrics = createKernelMetrics(kernel, { defaultMetrics: false });
    await kernel.start();
    try {
      // The first is a code literally "other": admitted like any, and never confused with the overflow.
      await kernel.client(ledger).record({ code: 'other' });
      // A code named as the overflow is counted in it, and takes none of the 64 places.
      await kernel.client(ledger).record({ code: '_other' });
      for (let n = 1; n < 100; n += 1) await kernel.client(ledger).record({ code: `rejected-${n}` });
      await kernel.client(ledger).record({ code: 'unavailable' });
      await expect.poll(() => handled, { timeout: 10_000 }).toBe(102);
      const outcomes = new Map<string, number>();
      for (const value of (await metrics.registry.getSingleMetric('keel_events_handled_total')!.get()).values) {
        outcomes.set(String(value.labels['outcome']), value.value);
      }
      expect(outcomes.size).toBe(64 + 2);
      expect(outcomes.get('other')).toBe(1);
      expect(outcomes.get('rejected-1')).toBe(1);
      expect(outcomes.get('rejected-63')).toBe(1);
      expect(outcomes.has('rejected-64')).toBe(false);
      expect(outcomes.get('_other')).toBe(37);
      expect(outcomes.get('UNAVAILABLE')).toBe(1);
    } finally {
      metrics.close();
      await kernel.stop();
    }
  });
});
