import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type Kernel } from 'keel';
import { HttpProblemCode, createHttpGateway, type HttpGateway, type Problem } from 'keel/http';
import { fixtureModules, gatewayForTest, runGateway, store, type RunningGateway } from './support/http-fixture.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

async function post(url: string, body: unknown): Promise<Response> {
  return fetch(url, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body) });
}

async function problemOf(response: Response): Promise<Problem> {
  expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
  return (await response.json()) as Problem;
}

describe('http - a gateway exposing no operation (contracts: [])', () => {
  let running: RunningGateway | undefined;
  let kernel: Kernel;
  let gateway: HttpGateway;
  let url: string;

  beforeAll(async () => {
    running = await runGateway({ contracts: [], metrics: { defaultMetrics: false } });
    ({ kernel, gateway, url } = running);
  });
  afterAll(() => running?.stop());

  it('http - an operation of a module of the application is a 404 problem saying it is not exposed here', async () => {
    const response = await post(`${url}/store/put`, { key: 'a', value: 1 });
    expect(response.status).toBe(404);
    const problem = await problemOf(response);
    expect(problem.code).toBe(HttpProblemCode.ROUTE_NOT_FOUND);
    expect(problem.detail).toBe(
      'No route POST /store/put: module "store" is not exposed by this gateway. ' +
        'This gateway exposes no operation; it serves only /healthz, /readyz, /metrics, /openapi.json, /docs.',
    );
    expect(problem.detail).not.toContain('has no operation');
    // GET is no more routed than POST: no 405 that would suggest the route exists.
    expect((await fetch(`${url}/store/get?input=%7B%7D`)).status).toBe(404);
  });

  it('http - a path naming no module says that no operation is exposed', async () => {
    const response = await post(`${url}/billing/charge`, {});
    expect(response.status).toBe(404);
    expect((await problemOf(response)).detail).toBe(
      'No route POST /billing/charge. This gateway exposes no operation; it serves only /healthz, /readyz, /metrics, /openapi.json, /docs.',
    );
  });

  it('http - health, readiness and metrics still answer; the OpenAPI document has no paths', async () => {
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ ready: true, state: 'started' });
    // The kernel still serves its operations in process: the gateway exposes none of them.
    await kernel.client(store).put({ key: 'in-process', value: 1 });
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/^keel_calls_total\{side="served",contract="store",operation="put",[^}]*\} 1$/m);
    expect(metrics).toMatch(/^keel_http_requests_total\{method="GET",route="\/readyz",status="200"\} 1$/m);
    const document = (await (await fetch(`${url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    expect(document.paths).toEqual({});
    expect(gateway.openapi.paths).toEqual({});
    expect((await fetch(`${url}/docs`)).status).toBe(200);
  });
});

describe('http - a gateway exposing some contracts', () => {
  it('http - an unexposed module of the application is named as not exposed, with what is', async () => {
    const { url } = await gatewayForTest({ contracts: [store], metrics: false, docsPath: false });
    const hidden = await post(`${url}/probe/context`, {});
    expect(hidden.status).toBe(404);
    expect((await problemOf(hidden)).detail).toBe(
      'No route POST /probe/context: module "probe" is not exposed by this gateway. ' +
        'Operations are POST /<module>/<operation>, for the modules store; the list is at /openapi.json.',
    );
    expect((await problemOf(await post(`${url}/store/purge`, {}))).detail).toContain('Module "store" has no operation "purge"');
  });

  it("http - getOperations may name an unexposed module of the application (one list for every process: passed over); a name that is no module is refused", async () => {
    const kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
    const passed = await createHttpGateway({ kernel, contracts: [], getOperations: ['store.get'], logger: silentLogger, metrics: false });
    await passed.close();
    const refused = await createHttpGateway({ kernel, contracts: [], getOperations: ['ghost.get'], logger: silentLogger, metrics: false }).catch(
      (error: unknown) => error,
    );
    expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('getOperations names "ghost.get", which is no operation of the exposed contracts');
  });
});
