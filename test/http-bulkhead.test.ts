/**
 * The gateway's answer to a call a module's bulkhead refuses: 429 RESOURCE_EXHAUSTED with
 * Retry-After (from the refusal's details.retryAfterMs) and a problem body naming the code; and the bulkhead's gauges and counter on
 * /metrics, read at scrape time.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Problem } from 'keel/http';
import { gate, openAllGates, runGateway, type RunningGateway } from './support/http-fixture.js';

const post = (url: string, body: unknown): Promise<Response> =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

const metricsOf = async (url: string): Promise<string> => (await fetch(`${url}/metrics`)).text();

describe('http - bulkhead', () => {
  let running: RunningGateway | undefined;
  let url: string;

  beforeAll(async () => {
    // probe: one run at a time and no queue; store keeps the default bulkhead.
    // retry: false: each refused request is one refused call (the gateway's client would otherwise retry RESOURCE_EXHAUSTED).
    running = await runGateway({ metrics: { defaultMetrics: false } }, { kernel: { retry: false, bulkheads: { probe: { maxConcurrent: 1, maxQueued: 0 } } } });
    ({ url } = running);
  });
  afterEach(() => openAllGates());
  afterAll(() => running?.stop());

  it('http - a call the full bulkhead refuses is a 429 RESOURCE_EXHAUSTED problem with Retry-After; the call holding the slot answers 200', async () => {
    const held = gate('bulkhead-held');
    const holding = post(`${url}/probe/wait`, { gate: 'bulkhead-held' });
    await held.entered;
    gate('bulkhead-refused');
    const refused = await post(`${url}/probe/wait`, { gate: 'bulkhead-refused' });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    const problem = (await refused.json()) as Problem;
    expect(problem).toMatchObject({
      type: 'urn:keel:error:RESOURCE_EXHAUSTED',
      code: 'RESOURCE_EXHAUSTED',
      status: 429,
      title: 'The module is at its concurrency limit',
      details: { module: 'probe', maxConcurrent: 1, maxQueued: 0 },
    });
    expect(problem.detail).toContain('Nothing ran: retry after a short backoff, or add instances.');
    held.open();
    const answered = await holding;
    expect(answered.status).toBe(200);
    expect(await answered.json()).toEqual({ gate: 'bulkhead-held' });
  });

  it('http - /metrics has each module bulkhead: running and queued gauges, and refused calls, read when scraped', async () => {
    const held = gate('bulkhead-metrics');
    const holding = post(`${url}/probe/wait`, { gate: 'bulkhead-metrics' });
    await held.entered;
    expect((await post(`${url}/probe/wait`, { gate: 'bulkhead-metrics' })).status).toBe(429);
    const during = await metricsOf(url);
    expect(during).toContain('# TYPE keel_bulkhead_running gauge');
    expect(during).toContain('keel_bulkhead_running{module="probe"} 1');
    expect(during).toContain('keel_bulkhead_queued{module="probe"} 0');
    expect(during).toContain('keel_bulkhead_running{module="store"} 0');
    expect(during).toContain('# TYPE keel_bulkhead_rejected_total counter');
    // One refused in this test, one in the one before.
    expect(during).toContain('keel_bulkhead_rejected_total{module="probe"} 2');
    expect(during).toContain('keel_bulkhead_rejected_total{module="store"} 0');
    expect(during).toMatch(/keel_calls_total\{side="served",contract="probe",operation="wait",transport="local",caller="http",outcome="RESOURCE_EXHAUSTED"\} 2/);
    held.open();
    expect((await holding).status).toBe(200);
    expect(await metricsOf(url)).toContain('keel_bulkhead_running{module="probe"} 0');
  });

  it("http - a full bulkhead's Retry-After is its details.retryAfterMs in seconds, rounded up: 2 or more once no slot freed for 1.1 s after a refusal", async () => {
    const held = gate('bulkhead-hint');
    const holding = post(`${url}/probe/wait`, { gate: 'bulkhead-hint' });
    await held.entered;
    expect((await post(`${url}/probe/wait`, { gate: 'bulkhead-hint' })).status).toBe(429);
    // The slot stays taken 1.1 s after that refusal (the duration the bulkhead measures, not a wait
    // for something to happen): a call refused now would wait at least that long for its turn.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const refused = await post(`${url}/probe/wait`, { gate: 'bulkhead-hint' });
    expect(refused.status).toBe(429);
    const problem = (await refused.json()) as Problem & { details: { retryAfterMs?: unknown } };
    const hintMs = problem.details.retryAfterMs;
    expect(typeof hintMs, JSON.stringify(problem.details)).toBe('number');
    expect(hintMs as number).toBeGreaterThanOrEqual(1_100);
    expect(hintMs as number).toBeLessThanOrEqual(10_000);
    expect(refused.headers.get('retry-after')).toBe(String(Math.ceil((hintMs as number) / 1000)));
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(2);
    held.open();
    expect((await holding).status).toBe(200);
  });
});
