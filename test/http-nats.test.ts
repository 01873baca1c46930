/**
 * The gateway in a process that hosts no module: every call reaches the modules over a real
 * nats-server, served by another kernel.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { KeelErrorCode, createKernel, silentLogger, type Kernel, type Transport } from 'keel';
import { newTraceparent, type CallRecord } from 'keel/transport';
import { createHttpGateway, createKernelMetrics, type HttpGateway, type KernelMetrics, type Problem } from 'keel/http';
import { createNatsTransport } from 'keel/nats';
import { fixtureModules, gate, openAllGates, store } from './support/http-fixture.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const JSON_HEADERS = { 'content-type': 'application/json' };
const EVENTUALLY = { timeout: 20_000, interval: 50 } as const;

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) });
}

async function problemOf(response: Response): Promise<Problem> {
  expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
  const problem = (await response.json()) as Problem;
  expect(problem.status).toBe(response.status);
  return problem;
}

describe('http - gateway hosting no module, over NATS', () => {
  let server: NatsServer;
  const prefix = `keel.http-${randomUUID().slice(0, 8)}`;
  let servicesTransport: Transport;
  let services: Kernel;
  let servicesMetrics: KernelMetrics;
  let gatewayTransport: Transport;
  let gatewayKernel: Kernel;
  let gateway: HttpGateway;
  let url: string;
  const made: CallRecord[] = [];

  const transport = (): Promise<Transport> =>
    createNatsTransport({ servers: server.url, prefix, logger: silentLogger, reconnectTimeWaitMs: 100 });

  beforeAll(async () => {
    server = await startNatsServer();
    servicesTransport = await transport();
    services = createKernel({ modules: fixtureModules, topology: { transport: servicesTransport }, logger: silentLogger });
    servicesMetrics = createKernelMetrics(services, { defaultMetrics: false });
    await services.start();

    gatewayTransport = await transport();
    gatewayKernel = createKernel({ modules: fixtureModules, topology: { host: [], transport: gatewayTransport }, logger: silentLogger });
    await gatewayKernel.start();
    gatewayKernel.observe({ callMade: (record) => made.push(record) });
    gateway = await createHttpGateway({
      kernel: gatewayKernel,
      port: 0,
      logger: silentLogger,
      metrics: { defaultMetrics: false },
      getOperations: ['store.get'],
    });
    url = await gateway.listen();
  });
  afterEach(() => openAllGates());
  afterAll(async () => {
    await gateway?.close();
    await gatewayTransport?.close();
    servicesMetrics?.close();
    await services?.stop();
    await servicesTransport?.close();
    await server?.stop();
  });

  it('http - the gateway process hosts nothing and calls every operation over NATS', async () => {
    expect(gatewayKernel.hosted).toEqual([]);
    const put = await post(`${url}/store/put`, { key: 'remote', value: { list: [1, 2] }, tags: ['n'] });
    expect(put.status).toBe(200);
    expect(await put.json()).toEqual({ key: 'remote', stored: true });
    const got = await fetch(`${url}/store/get?input=${encodeURIComponent('{"key":"remote"}')}`);
    expect(await got.json()).toEqual({ key: 'remote', value: { list: [1, 2] }, tags: ['n'] });
    expect(made.filter((record) => record.contract === 'store').every((record) => record.transport === 'nats')).toBe(true);
  });

  it('http - declared errors cross NATS and keep their status, code and data', async () => {
    await post(`${url}/store/put`, { key: 'twice', value: 'first' });
    const taken = await post(`${url}/store/put`, { key: 'twice', value: 'second' });
    expect(taken.status).toBe(409);
    expect(await problemOf(taken)).toMatchObject({ code: 'TAKEN', data: { key: 'twice', current: 'first' } });
    const missing = await post(`${url}/store/get`, { key: 'absent' });
    expect(missing.status).toBe(404);
    expect(await problemOf(missing)).toMatchObject({ code: 'NOT_THERE', data: { key: 'absent' } });
    const internal = await post(`${url}/probe/fail`, { as: 'boom' });
    expect(internal.status).toBe(500);
    const problem = await problemOf(internal);
    expect(problem.code).toBe(KeelErrorCode.INTERNAL);
    expect(JSON.stringify(problem)).not.toContain('secret');
  });

  it('http - invalid input is refused in the gateway process with INVALID_INPUT', async () => {
    const response = await post(`${url}/store/put`, { key: 7 });
    expect(response.status).toBe(400);
    expect(await problemOf(response)).toMatchObject({ code: 'INVALID_INPUT', details: { contract: 'store', operation: 'put' } });
  });

  it('http - correlation id, traceparent and deadline reach the remote handler', async () => {
    const traceparent = newTraceparent();
    const response = await post(`${url}/probe/context`, {}, { 'x-correlation-id': 'over-nats-1', traceparent, 'x-keel-timeout-ms': '2500' });
    const context = (await response.json()) as { correlationId: string; traceparent: string; caller: string; remainingMs: number };
    expect(context).toMatchObject({ correlationId: 'over-nats-1', traceparent, caller: 'http' });
    expect(context.remainingMs).toBeLessThanOrEqual(2500);
  });

  it('http - a remote call past its deadline is a 504, and a disconnect cancels the call, down to the remote handler\'s callSignal()', async () => {
    gate('remote-late');
    const late = await post(`${url}/probe/wait`, { gate: 'remote-late' }, { 'x-keel-timeout-ms': '100' });
    expect(late.status).toBe(504);
    expect((await problemOf(late)).code).toBe(KeelErrorCode.TIMEOUT);

    const waiting = gate('remote-abandoned');
    const controller = new AbortController();
    const response = fetch(`${url}/probe/wait`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ gate: 'remote-abandoned' }),
      signal: controller.signal,
    }).catch((error: unknown) => error);
    await waiting.entered;
    controller.abort();
    expect(await response).toBeInstanceOf(Error);
    await vi.waitFor(() => {
      expect(made.some((record) => record.operation === 'wait' && record.transport === 'nats' && record.outcome === 'CANCELLED')).toBe(true);
    }, EVENTUALLY);
    // The cancel crossed NATS to the module's process: its handler was told, long before the gate or its deadline.
    expect(await waiting.abandoned).toMatchObject({ code: KeelErrorCode.CANCELLED });
  });

  it('http - metrics count calls made over NATS in the gateway process, and calls served over NATS in the module process', async () => {
    const labels = 'contract="store",operation="put",transport="nats",caller="http"';
    const made = await (await fetch(`${url}/metrics`)).text();
    expect(made).toMatch(new RegExp(`keel_calls_total\\{side="made",${labels},outcome="ok"\\} [1-9]`));
    expect(made).toMatch(new RegExp(`keel_calls_total\\{side="made",${labels},outcome="TAKEN"\\} [1-9]`));
    expect(made).toMatch(new RegExp(`keel_call_duration_seconds_count\\{side="made",${labels}\\} [1-9]`));
    expect(made).not.toContain('side="served"');

    const served = await servicesMetrics.registry.metrics();
    expect(served).toMatch(new RegExp(`keel_calls_total\\{side="served",${labels},outcome="ok"\\} [1-9]`));
    expect(served).toMatch(new RegExp(`keel_calls_total\\{side="served",${labels},outcome="TAKEN"\\} [1-9]`));
    expect(served).toMatch(new RegExp(`keel_call_duration_seconds_count\\{side="served",${labels}\\} [1-9]`));
  });

  it('http - the caller label of calls served over NATS is bounded: past 64 names the request made up, and for a name over 64 characters, it is "_other"', async () => {
    const invented = Array.from({ length: 100 }, (_, index) => `script-${index}`);
    for (const caller of [...invented, 'x'.repeat(65)]) await gatewayKernel.client(store, { caller }).greeting({ name: caller.slice(0, 9) });
    const served = (await servicesMetrics.registry.getSingleMetricAsString('keel_calls_total'))
      .split('\n')
      .filter((line) => line.startsWith('keel_calls_total{side="served",contract="store",operation="greeting"'));
    const counts = new Map(served.map((line) => [/caller="([^"]*)"/.exec(line)?.[1] ?? '', Number(line.split(' ').pop())]));
    // Every call is counted once; at most 64 invented names have series of their own (fewer if an
    // earlier test of this file served an unknown caller), the rest share "_other".
    expect([...counts.values()].reduce((sum, count) => sum + count, 0)).toBe(101);
    const admitted = [...counts.keys()].filter((caller) => caller.startsWith('script-'));
    expect(admitted.length).toBeGreaterThan(0);
    expect(admitted.length).toBeLessThanOrEqual(64);
    expect(counts.get('script-0')).toBe(1);
    expect(counts.get('_other')).toBe(101 - admitted.length);
    expect([...counts.keys()].some((caller) => caller.startsWith('xxx'))).toBe(false);
  });

  it('http - readyz follows the NATS connection', async () => {
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    await server.kill();
    await vi.waitFor(async () => {
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ready: false, state: 'started' });
    }, EVENTUALLY);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
    await server.start();
    await vi.waitFor(async () => expect((await fetch(`${url}/readyz`)).status).toBe(200), EVENTUALLY);
    await vi.waitFor(async () => expect((await post(`${url}/store/greeting`, { name: 'back' })).status).toBe(200), EVENTUALLY);
  });

  it('http - with no module serving, a call is a 503 NO_RESPONDERS problem', async () => {
    await services.stop();
    const response = await post(`${url}/store/greeting`, { name: 'nobody' });
    expect(response.status).toBe(503);
    expect((await problemOf(response)).code).toBe(KeelErrorCode.NO_RESPONDERS);
  });
});
