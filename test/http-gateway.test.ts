import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ErrorKind, KeelError, KeelErrorCode, createKernel, defineContract, defineModule, operation, silentLogger, type Kernel } from 'keel';
import { newTraceparent, type CallRecord } from 'keel/transport';
import {
  HTTP_STATUS_BY_CODE,
  HTTP_STATUS_BY_KIND,
  HttpProblemCode,
  createHttpGateway,
  httpStatusOf,
  type Problem,
} from 'keel/http';
import { listenFailure } from '../adapters/http/listen-failure.js';
import { fixtureModules, gate, gatewayForTest, kindErrors, openAllGates, runGateway, store, type RunningGateway } from './support/http-fixture.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) });
}

async function problemOf(response: Response): Promise<Problem> {
  expect(response.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
  const problem = (await response.json()) as Problem;
  expect(problem.status).toBe(response.status);
  expect(problem.type).toBe(`urn:keel:error:${problem.code}`);
  expect(typeof problem.title).toBe('string');
  expect(typeof problem.detail).toBe('string');
  expect(problem.correlationId).toBe(response.headers.get('x-correlation-id'));
  return problem;
}

describe('http - gateway in one process', () => {
  let running: RunningGateway | undefined;
  let kernel: Kernel;
  let url: string;
  const made: CallRecord[] = [];

  beforeAll(async () => {
    running = await runGateway({ metrics: { defaultMetrics: false }, getOperations: ['store.get', 'store.greeting'] });
    ({ kernel, url } = running);
    kernel.observe({ callMade: (record) => made.push(record) });
  });
  afterEach(() => openAllGates());
  afterAll(() => running?.stop());

  it('http - an operation is POST /<module>/<operation>, JSON in and JSON out', async () => {
    const put = await post(`${url}/store/put`, { key: 'a', value: { nested: [1, 'two', null] } });
    expect(put.status).toBe(200);
    expect(put.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expect(await put.json()).toEqual({ key: 'a', stored: true });

    const got = await post(`${url}/store/get`, { key: 'a' });
    expect(await got.json()).toEqual({ key: 'a', value: { nested: [1, 'two', null] }, tags: [] });

    const greeting = await post(`${url}/store/greeting`, { name: 'Ada' });
    expect(await greeting.text()).toBe('"hello, Ada"');
  });

  it('http - operations chosen in getOperations also answer GET with a JSON input query; others answer 405 with an Allow that lists HEAD beside GET, percent-encoded paths as decoded; a trailing slash or segments after the operation are a 404 naming the path', async () => {
    await post(`${url}/store/put`, { key: 'g', value: 7, tags: ['x'] });
    const got = await fetch(`${url}/store/get?input=${encodeURIComponent(JSON.stringify({ key: 'g' }))}`);
    expect(got.status).toBe(200);
    expect(await got.json()).toEqual({ key: 'g', value: 7, tags: ['x'] });

    const contextByGet = await fetch(`${url}/probe/context?input=%7B%7D`);
    expect(contextByGet.status).toBe(405);
    // An idempotent operation not named in getOperations: the answer says how GET is offered (a non-idempotent one's does not, below).
    expect((await problemOf(contextByGet)).detail).toBe(
      '/probe/context does not take GET; use POST. To serve it as GET ?input=<json>, name "probe.context" in the gateway\'s getOperations, if it is a pure read.',
    );
    const notIdempotent = await fetch(`${url}/store/put?input=${encodeURIComponent('{"key":"h","value":1}')}`);
    expect(notIdempotent.status).toBe(405);
    expect(notIdempotent.headers.get('allow')).toBe('POST');
    expect((await problemOf(notIdempotent)).code).toBe(HttpProblemCode.METHOD_NOT_ALLOWED);

    const put = await fetch(`${url}/store/get`, { method: 'PUT', headers: JSON_HEADERS, body: '{}' });
    expect(put.status).toBe(405);
    // HEAD is served wherever GET is (the GET without its body), so Allow lists it too.
    expect(put.headers.get('allow')).toBe('POST, GET, HEAD');
    expect(await problemOf(put)).toMatchObject({ details: { allow: ['POST', 'GET', 'HEAD'] } });
    const head = await fetch(`${url}/store/get?input=${encodeURIComponent(JSON.stringify({ key: 'g' }))}`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    const headOfPost = await fetch(`${url}/store/put`, { method: 'HEAD' });
    expect(headOfPost.status).toBe(405);
    expect(headOfPost.headers.get('allow')).toBe('POST');

    // A trailing slash is another path, whatever the method: a 404 naming the path served, not a 405 asking for the method used.
    for (const method of ['POST', 'PUT']) {
      const slashed = await fetch(`${url}/store/put/`, { method, headers: JSON_HEADERS, body: '{"key":"s","value":1}' });
      expect(slashed.status).toBe(404);
      expect(slashed.headers.get('allow')).toBeNull();
      expect(await problemOf(slashed)).toMatchObject({
        code: HttpProblemCode.ROUTE_NOT_FOUND,
        detail: `No route ${method} /store/put/: drop the trailing slash (POST /store/put).`,
      });
    }

    // Percent-encoded, a path is the one the router decodes: served by POST, 405 with its Allow for another method.
    const encodedPost = await post(`${url}/store/%70ut`, { key: 'encoded', value: 1 });
    expect(await encodedPost.json()).toEqual({ key: 'encoded', stored: true });
    const encodedGet = await fetch(`${url}/store/%70ut?input=%7B%7D`);
    expect(encodedGet.status).toBe(405);
    expect(encodedGet.headers.get('allow')).toBe(notIdempotent.headers.get('allow'));
    expect(await problemOf(encodedGet)).toMatchObject({ code: HttpProblemCode.METHOD_NOT_ALLOWED, detail: '/store/put does not take GET; use POST.' });
    const encodedPut = await fetch(`${url}/store/%67et`, { method: 'PUT', headers: JSON_HEADERS, body: '{}' });
    expect(encodedPut.status).toBe(405);
    expect(encodedPut.headers.get('allow')).toBe(put.headers.get('allow'));
    expect((await problemOf(await post(`${url}/store/%70urge`, {}))).detail).toContain('Module "store" has no operation "purge"');

    // Segments after the operation: a longer path than an operation's, not an operation the module lacks.
    const longer = await post(`${url}/store/put/x`, { key: 'l', value: 1 });
    expect(longer.status).toBe(404);
    expect(await problemOf(longer)).toMatchObject({
      code: HttpProblemCode.ROUTE_NOT_FOUND,
      detail: "No route POST /store/put/x: the path has segments after the operation; an operation's path is /{module}/{operation} (POST /store/put).",
    });
    expect((await problemOf(await post(`${url}/store/purge/x/y`, {}))).detail).toBe(
      'No route POST /store/purge/x/y: the path has segments after the operation; an operation\'s path is /{module}/{operation}; ' +
        'the operations of "store" are put, get, greeting (POST /store/<operation>).',
    );
    // An empty segment is said to be one, not taken for segments after an operation.
    expect((await problemOf(await post(`${url}/store//put`, { key: 'e', value: 1 }))).detail).toBe(
      "No route POST /store//put: the path has an empty segment (//); an operation's path is /{module}/{operation}.",
    );
    // Outside an exposed module, the plain not-found answer with its list of operations.
    expect((await problemOf(await fetch(`${url}//healthz`))).detail).toMatch(/^No route GET \/\/healthz\. Operations are POST/);
    // A path under no exposed module is no operation's: the plain not-found answer.
    expect((await problemOf(await fetch(`${url}/nowhere/put/x`))).detail).toMatch(/^No route GET \/nowhere\/put\/x\. Operations are POST/);

    const badQuery = await fetch(`${url}/store/get?input=%7Bnot-json`);
    expect((await problemOf(badQuery)).code).toBe(HttpProblemCode.MALFORMED_JSON);

    // A misspelt input, or the input given as parameters of its own: named, not "expected object, received undefined".
    const misspelt = await fetch(`${url}/store/get?inptu=${encodeURIComponent('{"key":"g"}')}&key=g`);
    expect(misspelt.status).toBe(400);
    expect(await problemOf(misspelt)).toMatchObject({
      code: HttpProblemCode.MALFORMED_REQUEST,
      detail: expect.stringMatching(/^The query has "inptu", "key" and no "input": a GET operation takes its whole input as one query parameter, \?input=<URL-encoded JSON>/),
    });
    // Beside an input, another parameter (a cache buster) is left alone.
    expect((await fetch(`${url}/store/get?input=${encodeURIComponent('{"key":"g"}')}&_=17`)).status).toBe(200);
  });

  it('http - GET ?input= refuses a constructor.prototype or __proto__ key with MALFORMED_JSON, exactly as POST does', async () => {
    await post(`${url}/store/put`, { key: 'poison', value: 1 });
    for (const text of ['{"key":"poison","constructor":{"prototype":{"polluted":true}}}', '{"key":"poison","__proto__":{"polluted":true}}']) {
      const byPost = await fetch(`${url}/store/get`, { method: 'POST', headers: JSON_HEADERS, body: text });
      expect(byPost.status).toBe(400);
      expect((await problemOf(byPost)).code).toBe(HttpProblemCode.MALFORMED_JSON);
      const byGet = await fetch(`${url}/store/get?input=${encodeURIComponent(text)}`);
      expect(byGet.status).toBe(400);
      expect((await problemOf(byGet)).code).toBe(HttpProblemCode.MALFORMED_JSON);
    }
    // The same input without the poisoned key is served by GET.
    expect((await fetch(`${url}/store/get?input=${encodeURIComponent('{"key":"poison","constructor":{}}')}`)).status).toBe(200);
  });

  it("http - invalid fields get the kernel's INVALID_INPUT as a 400 problem with the zod issues", async () => {
    const response = await post(`${url}/store/put`, { key: '', value: 1, tags: 'not-an-array' });
    expect(response.status).toBe(400);
    const problem = await problemOf(response);
    expect(problem.code).toBe(KeelErrorCode.INVALID_INPUT);
    expect(problem.detail).toMatch(/^Invalid input for store\.put: /);
    expect(problem.details).toMatchObject({ contract: 'store', operation: 'put' });
    const paths = (problem.details?.['issues'] as { path: unknown[] }[]).map((issue) => issue.path.join('.'));
    expect([...new Set(paths)].sort()).toEqual(['key', 'tags']);
    expect(made.some((record) => record.operation === 'put' && record.outcome === 'INVALID_INPUT' && record.caller === 'http')).toBe(true);
  });

  it("http - declared errors answer their kind's status with code, message and data", async () => {
    await post(`${url}/store/put`, { key: 'dup', value: { v: 1 } });
    const taken = await post(`${url}/store/put`, { key: 'dup', value: 2 });
    expect(taken.status).toBe(409);
    const problem = await problemOf(taken);
    expect(problem).toMatchObject({
      code: 'TAKEN',
      title: 'The key holds another value already.',
      detail: 'Key "dup" is taken.',
      data: { key: 'dup', current: { v: 1 } },
    });

    const missing = await post(`${url}/store/get`, { key: 'nope' });
    expect(missing.status).toBe(404);
    expect(await problemOf(missing)).toMatchObject({ code: 'NOT_THERE', data: { key: 'nope' } });

    for (const declared of kindErrors) {
      const response = await post(`${url}/probe/fail`, { as: declared.kind });
      expect(response.status).toBe(HTTP_STATUS_BY_KIND[declared.kind]);
      expect(await problemOf(response)).toMatchObject({ code: declared.code, data: { kind: declared.kind } });
    }
  });

  it('http - an undeclared failure is a 500 INTERNAL that shows no internals', async () => {
    const response = await post(`${url}/probe/fail`, { as: 'boom' });
    expect(response.status).toBe(500);
    const problem = await problemOf(response);
    expect(problem.code).toBe(KeelErrorCode.INTERNAL);
    expect(JSON.stringify(problem)).not.toMatch(/secret|stack|at .*\.ts/);
    expect(problem.stack).toBeUndefined();
  });

  it('http - the call context carries x-correlation-id, traceparent and the timeout header, capped', async () => {
    const traceparent = newTraceparent();
    const response = await post(`${url}/probe/context`, {}, { 'x-correlation-id': 'req-42', traceparent, 'x-keel-timeout-ms': '60000' });
    expect(response.headers.get('x-correlation-id')).toBe('req-42');
    const context = (await response.json()) as { correlationId: string; traceparent: string | null; caller: string; remainingMs: number };
    expect(context).toMatchObject({ correlationId: 'req-42', traceparent, caller: 'http' });
    // The operation declares 5000 ms: a client may shorten a deadline, never lengthen it.
    expect(context.remainingMs).toBeLessThanOrEqual(5000);

    const short = (await (await post(`${url}/probe/context`, {}, { 'x-keel-timeout-ms': '1500' })).json()) as { remainingMs: number };
    expect(short.remainingMs).toBeLessThanOrEqual(1500);

    const generated = await post(`${url}/probe/context`, {}, { traceparent: 'not-a-traceparent', 'x-correlation-id': 'bad id with spaces' });
    const body = (await generated.json()) as { correlationId: string; traceparent: string | null };
    expect(body.traceparent).toBeNull();
    expect(body.correlationId).not.toBe('bad id with spaces');
    expect(generated.headers.get('x-correlation-id')).toBe(body.correlationId);

    // Well-formed but invalid (W3C Trace Context: ignored), lest every log line of every such request carry trace_id 000…0.
    for (const invalid of [
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ]) {
      const ignored = (await (await post(`${url}/probe/context`, {}, { traceparent: invalid })).json()) as { traceparent: string | null };
      expect(ignored.traceparent, invalid).toBeNull();
    }

    for (const value of ['abc', '0', '-5', '1.5', '99999999999999999']) {
      const bad = await post(`${url}/probe/context`, {}, { 'x-keel-timeout-ms': value });
      expect(bad.status, value).toBe(400);
      expect((await problemOf(bad)).code).toBe(HttpProblemCode.MALFORMED_REQUEST);
    }
  });

  it('http - a call past its deadline is a 504 TIMEOUT', async () => {
    gate('late');
    const response = await post(`${url}/probe/wait`, { gate: 'late' }, { 'x-keel-timeout-ms': '50' });
    expect(response.status).toBe(504);
    expect((await problemOf(response)).code).toBe(KeelErrorCode.TIMEOUT);
  });

  it('http - the call is cancelled when the client disconnects, and the running handler\'s callSignal() aborts with CANCELLED', async () => {
    const waiting = gate('abandoned');
    const cancelled = new Promise<CallRecord>((resolve) => {
      const stop = kernel.observe({
        callMade: (record) => {
          if (record.operation === 'wait' && record.outcome === KeelErrorCode.CANCELLED) {
            stop();
            resolve(record);
          }
        },
      });
    });
    const controller = new AbortController();
    const response = fetch(`${url}/probe/wait`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ gate: 'abandoned' }),
      signal: controller.signal,
    }).catch((error: unknown) => error);
    await waiting.entered;
    controller.abort();
    expect(await response).toBeInstanceOf(Error);
    expect(await cancelled).toMatchObject({ contract: 'probe', operation: 'wait', caller: 'http', outcome: 'CANCELLED' });
    expect(await waiting.abandoned).toMatchObject({ code: KeelErrorCode.CANCELLED });
    waiting.open();
  });

  it('http - healthz is live, readyz follows the kernel', async () => {
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      state: 'started',
      modules: [
        { name: 'store', state: 'started' },
        { name: 'probe', state: 'started' },
      ],
    });
  });

  it("http - metrics count calls made and served, failed ones by error code as their outcome, latency, and HTTP requests by route template (an operation's also when asked by GET or refused before its handler ran)", async () => {
    await post(`${url}/store/get`, { key: 'metrics-missing' });
    await post(`${url}/store/greeting`, { name: 'm' });
    // The route of an operation asked by GET, and of one refused before its handler ran (its body is no JSON).
    expect((await fetch(`${url}/store/greeting?input=${encodeURIComponent('{"name":"g"}')}`)).status).toBe(200);
    expect((await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_HEADERS, body: '{not json' })).status).toBe(400);
    const response = await fetch(`${url}/metrics`);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await response.text();
    // Failed calls are counted once, in keel_calls_total; the duplicate error counter is gone.
    expect(text).not.toContain('keel_call_errors_total');
    const labels = 'contract="store",operation="greeting",transport="local",caller="http"';
    expect(text).toMatch(new RegExp(`keel_calls_total\\{side="made",${labels},outcome="ok"\\} [1-9]`));
    expect(text).toMatch(new RegExp(`keel_calls_total\\{side="served",${labels},outcome="ok"\\} [1-9]`));
    expect(text).toMatch(/keel_calls_total\{side="made",contract="store",operation="get",transport="local",caller="http",outcome="NOT_THERE"\} [1-9]/);
    expect(text).toMatch(/keel_calls_total\{side="served",contract="store",operation="get",transport="local",caller="http",outcome="NOT_THERE"\} [1-9]/);
    expect(text).toMatch(new RegExp(`keel_call_duration_seconds_count\\{side="served",${labels}\\} [1-9]`));
    expect(text).toMatch(/keel_http_requests_total\{method="POST",route="\/store\/greeting",status="200"\} [1-9]/);
    expect(text).toMatch(/keel_http_requests_total\{method="GET",route="\/store\/greeting",status="200"\} [1-9]/);
    expect(text).toMatch(/keel_http_requests_total\{method="POST",route="\/store\/put",status="400"\} [1-9]/);
    expect(text).toMatch(/keel_http_request_duration_seconds_bucket\{le="[^"]+",method="POST",route="\/store\/get"\}/);
  });

  it('http - the status table covers every keel code and every error kind', () => {
    for (const code of Object.values(KeelErrorCode)) expect(HTTP_STATUS_BY_CODE[code], code).toBeGreaterThanOrEqual(400);
    for (const code of Object.values(HttpProblemCode)) expect(HTTP_STATUS_BY_CODE[code], code).toBeLessThan(500);
    expect(HTTP_STATUS_BY_KIND).toEqual({
      [ErrorKind.NOT_FOUND]: 404,
      [ErrorKind.CONFLICT]: 409,
      [ErrorKind.INVALID]: 400,
      [ErrorKind.UNPROCESSABLE]: 422,
      [ErrorKind.FORBIDDEN]: 403,
      [ErrorKind.UNAUTHENTICATED]: 401,
      [ErrorKind.RATE_LIMITED]: 429,
      [ErrorKind.UNAVAILABLE]: 503,
    });
    expect(HTTP_STATUS_BY_CODE).toMatchObject({ INVALID_INPUT: 400, NO_RESPONDERS: 503, UNAVAILABLE: 503, TIMEOUT: 504, INTERNAL: 500 });
    expect(httpStatusOf(new Error('anything'))).toBe(500);
  });
});

describe('http - gateway options and lifecycle', () => {
  it('http - development mode shows the internal message and stack', async () => {
    const { kernel, gateway, url } = await gatewayForTest({ development: true, metrics: false });
    const response = await post(`${url}/probe/fail`, { as: 'boom' });
    const problem = await problemOf(response);
    expect(problem.code).toBe(KeelErrorCode.INTERNAL);
    expect(typeof problem.stack).toBe('string');
    expect((await fetch(`${url}/metrics`)).status).toBe(404);
    await gateway.close();
    expect(kernel.state).toBe('stopped');
  });

  it('http - close finishes requests in flight, then stops the kernel', async () => {
    const { kernel, gateway, url } = await gatewayForTest({ metrics: false });
    const inFlight = gate('shutdown');
    const response = post(`${url}/probe/wait`, { gate: 'shutdown' });
    await inFlight.entered;

    let closed = false;
    const closing = gateway.close().then(() => (closed = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(closed).toBe(false);
    expect(kernel.state).toBe('started');

    inFlight.open();
    const answered = await response;
    expect(answered.status).toBe(200);
    expect(await answered.json()).toEqual({ gate: 'shutdown' });
    await closing;
    expect(kernel.state).toBe('stopped');
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });

  it('http - an onRequest hook the application adds in configure changes the security headers of every answer: its own routes\', the reference page\'s and an operation\'s', async () => {
    const { url } = await gatewayForTest({
      metrics: false,
      docsPath: '/docs',
      configure: (server) => {
        server.addHook('onRequest', (_request, reply, done) => {
          reply.header('x-frame-options', 'DENY');
          reply.header('content-security-policy', "default-src 'none'; frame-ancestors 'none'; report-to app");
          done();
        });
        server.get('/own/page', async () => 'page');
      },
    });
    for (const response of [await fetch(`${url}/own/page`), await fetch(`${url}/docs/`), await post(`${url}/probe/context`, {})]) {
      expect(response.status, response.url).toBe(200);
      expect(response.headers.get('x-frame-options'), response.url).toBe('DENY');
      expect(response.headers.get('content-security-policy'), response.url).toBe("default-src 'none'; frame-ancestors 'none'; report-to app");
    }
  });

  it('http - with CORS off, a route of the application keeps the route option helmet: none with false, its own with options, the full set otherwise; an operation gets the API set', async () => {
    const { url } = await gatewayForTest({
      configure: (server) => {
        server.get('/own/plain', async () => ({ plain: true }));
        server.get('/own/off', { helmet: false } as never, async () => ({ off: true }));
        server.get('/own/framed', { helmet: { frameguard: { action: 'deny' } } } as never, async () => ({ framed: true }));
      },
    });
    const [plain, off, framed, operation] = await Promise.all([
      fetch(`${url}/own/plain`),
      fetch(`${url}/own/off`),
      fetch(`${url}/own/framed`),
      post(`${url}/probe/context`, {}),
    ]);
    // The route's own headers are worked out once: a second request gets the same.
    const framedAgain = await fetch(`${url}/own/framed`);
    expect(framedAgain.headers.get('x-frame-options')).toBe('DENY');
    expect(framedAgain.headers.get('content-security-policy')).toBe(framed.headers.get('content-security-policy'));
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    expect(plain.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(plain.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(off.status).toBe(200);
    expect(off.headers.get('x-frame-options')).toBeNull();
    expect(off.headers.get('content-security-policy')).toBeNull();
    // None of the lines every request gets first, before its route's own, is left on a route without headers.
    expect(off.headers.get('x-content-type-options')).toBeNull();
    expect(off.headers.get('strict-transport-security')).toBeNull();
    expect(framed.headers.get('x-frame-options')).toBe('DENY');
    expect(framed.headers.get('content-security-policy')).toContain("default-src 'self'");
    expect(framed.headers.get('x-dns-prefetch-control')).toBe('off');
    // An operation's answer is JSON: the API set, stricter on framing, without the lines only HTML reads.
    expect(operation.status).toBe(200);
    expect(operation.headers.get('x-frame-options')).toBe('DENY');
    expect(operation.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
    expect(operation.headers.get('x-dns-prefetch-control')).toBeNull();
  });

  it('http - the security header lines, byte for byte: first in the head: the API set on an operation and a problem, helmet\'s full set on a route of the application, and what its hooks change', async () => {
    const running = await gatewayForTest({
      metrics: false,
      rateLimit: false,
      configure: (server) => {
        server.get('/own/plain', async (_request, reply) => reply.header('x-own', 'yes').send('plain'));
        // A hook of the application sees the security headers as the answer's own, and may change or drop them.
        server.get(
          '/own/hooked',
          {
            onSend: (_request, reply, payload, done) => {
              reply.header('x-seen', String(reply.getHeader('x-frame-options')));
              reply.header('x-frame-options', 'DENY');
              reply.removeHeader('x-xss-protection');
              done(null, payload);
            },
          },
          async () => 'hooked',
        );
      },
    });
    const url = new URL(running.url);
    /** The head's lines as sent (names in their case, in their order), without the Date line. */
    const headOf = async (request: string): Promise<string[]> => {
      const socket = connect({ host: url.hostname, port: Number(url.port) });
      let received = '';
      socket.setEncoding('latin1').on('data', (chunk: string) => (received += chunk));
      await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
      socket.write(request);
      await new Promise((resolve) => socket.once('close', resolve));
      return received
        .slice(0, received.indexOf('\r\n\r\n'))
        .split('\r\n')
        .filter((line) => !line.startsWith('Date: '));
    };
    const csp =
      "content-security-policy: default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';" +
      "img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'";
    const security = [
      csp,
      'cross-origin-opener-policy: same-origin',
      'cross-origin-resource-policy: same-origin',
      'origin-agent-cluster: ?1',
      'referrer-policy: no-referrer',
      'strict-transport-security: max-age=31536000; includeSubDomains',
      'x-content-type-options: nosniff',
      'x-dns-prefetch-control: off',
      'x-download-options: noopen',
      'x-frame-options: SAMEORIGIN',
      'x-permitted-cross-domain-policies: none',
      'x-xss-protection: 0',
    ];
    // The answers of operations and problems are JSON: the API set (OWASP's REST Security Cheat Sheet).
    const api = [
      "content-security-policy: default-src 'none';frame-ancestors 'none'",
      'cross-origin-resource-policy: same-origin',
      'referrer-policy: no-referrer',
      'strict-transport-security: max-age=31536000; includeSubDomains',
      'x-content-type-options: nosniff',
      'x-frame-options: DENY',
      'cache-control: no-store',
    ];
    const id = 'x-correlation-id: head-1';
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: x\r\nX-Correlation-Id: head-1\r\nConnection: close\r\n\r\n`;
    const body = JSON.stringify({ key: 'head', value: 1 });
    const operation = await headOf(
      `POST /store/put HTTP/1.1\r\nHost: x\r\nX-Correlation-Id: head-1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    );
    expect(operation).toEqual(['HTTP/1.1 200 OK', ...api, id, 'content-type: application/json; charset=utf-8', 'content-length: 28', 'Connection: close']);
    const notFound = await headOf(get('/nowhere'));
    expect(notFound).toEqual([
      'HTTP/1.1 404 Not Found',
      ...api,
      id,
      'content-type: application/problem+json; charset=utf-8',
      expect.stringMatching(/^content-length: [0-9]+$/),
      'Connection: close',
    ]);
    const own = await headOf(get('/own/plain'));
    // A route of the application may answer HTML: helmet's full set, first in the head as well.
    expect(own).toEqual(['HTTP/1.1 200 OK', ...security, id, 'x-own: yes', 'content-type: text/plain; charset=utf-8', 'content-length: 5', 'Connection: close']);
    const hooked = await headOf(get('/own/hooked'));
    expect(hooked).toEqual([
      'HTTP/1.1 200 OK',
      ...security.slice(0, 9),
      'x-frame-options: DENY',
      'x-permitted-cross-domain-policies: none',
      id,
      'content-type: text/plain; charset=utf-8',
      'x-seen: SAMEORIGIN',
      'content-length: 6',
      'Connection: close',
    ]);
  });

  it('http - answers given while closing end their connection: an operation route, a route of the application, and a problem', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inOwnRoute = new Promise<void>((resolve) => (entered = resolve));
    const running = await gatewayForTest({
      configure: (server) => {
        server.get('/own/slow', async () => {
          entered();
          await released;
          return { own: true };
        });
      },
    });
    const { gateway } = running;
    const url = new URL(running.url);
    // Keep-alive requests, as a pooling client sends them: the answer's own header must end the connection.
    const agent = new Agent({ keepAlive: true });
    const ask = (method: string, path: string, body?: string) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const request = httpRequest({ host: url.hostname, port: url.port, method, path, agent, headers: body === undefined ? {} : { 'content-type': 'application/json' } }, (response) => {
          response.resume();
          response.once('end', () => resolve({ status: response.statusCode ?? 0, connection: response.headers.connection }));
        });
        request.once('error', reject);
        request.end(body);
      });
    try {
      const inFlight = gate('closing-connection');
      const operation = ask('POST', '/probe/wait', JSON.stringify({ gate: 'closing-connection' }));
      const own = ask('GET', '/own/slow');
      const failingGate = gate('closing-problem');
      const failing = ask('POST', '/probe/wait', JSON.stringify({ gate: 'closing-problem' }));
      await Promise.all([inFlight.entered, inOwnRoute, failingGate.entered]);
      const closing = gateway.close();
      inFlight.open();
      failingGate.fail();
      release();
      expect(await operation).toEqual({ status: 200, connection: 'close' });
      expect(await own).toEqual({ status: 200, connection: 'close' });
      // An operation that fails is answered with a problem (an operation route has no onSend hook): the same header.
      expect(await failing).toEqual({ status: 500, connection: 'close' });
      await closing;
    } finally {
      agent.destroy();
    }
  });

  it('http - stopKernelOnClose false leaves the kernel running', async () => {
    const { kernel, gateway } = await gatewayForTest({ metrics: false, stopKernelOnClose: false });
    await gateway.close();
    expect(kernel.state).toBe('started');
  });

  it('http - listen() on a port another server holds rejects with INVALID_CONFIG naming the address and EADDRINUSE, and the server holding the port keeps answering', async () => {
    const { kernel, url: holderUrl } = await gatewayForTest({ metrics: false }, { startKernel: false });
    const port = Number(new URL(holderUrl).port);
    const second = await createHttpGateway({ kernel, port, logger: silentLogger, metrics: false });
    try {
      const refused = await second.listen().then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(KeelError);
      expect(refused).toMatchObject({
        code: KeelErrorCode.INVALID_CONFIG,
        message: `HTTP gateway: cannot listen on 127.0.0.1:${port}: another process listens there (EADDRINUSE). Pick another port (0 picks a free one) or address, or stop what holds it.`,
        details: { address: `127.0.0.1:${port}`, errno: 'EADDRINUSE', reason: 'another process listens there' },
        cause: expect.objectContaining({ code: 'EADDRINUSE' }),
      });
      // The holder is untouched by the refusal.
      expect((await fetch(`${holderUrl}/healthz`)).status).toBe(200);
    } finally {
      await second.close();
    }
  });

  it('http - listen() called again, at once or later, resolves with the same URL (not fastify\'s FST_ERR_REOPENED_SERVER)', async () => {
    const { kernel } = await gatewayForTest({ metrics: false }, { startKernel: false });
    const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, stopKernelOnClose: false });
    try {
      const [first, together] = await Promise.all([gateway.listen(), gateway.listen()]);
      expect(together).toBe(first);
      expect(await gateway.listen()).toBe(first);
      expect((await fetch(`${first}/healthz`)).status).toBe(200);
    } finally {
      await gateway.close();
    }
  });

  it('http - a listen failure on an IPv6 host names the address in brackets ([::1]:8080), not ::1:8080', () => {
    const taken = Object.assign(new Error('listen EADDRINUSE: address already in use ::1:8080'), { code: 'EADDRINUSE' });
    expect(listenFailure(taken, '::1', 8080)).toMatchObject({
      code: KeelErrorCode.INVALID_CONFIG,
      message: expect.stringContaining('cannot listen on [::1]:8080: another process listens there (EADDRINUSE).'),
      details: { address: '[::1]:8080', errno: 'EADDRINUSE' },
    });
    expect(listenFailure(taken, '127.0.0.1', 8080)).toMatchObject({ details: { address: '127.0.0.1:8080' } });
  });

  it('http - readyz is 503 until the kernel has started', async () => {
    const { kernel, url } = await gatewayForTest({ metrics: false }, { startKernel: false });
    const before = await fetch(`${url}/readyz`);
    expect(before.status).toBe(503);
    expect(await before.json()).toMatchObject({ ready: false, state: 'created' });
    await kernel.start();
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
  });

  it('http - only the chosen contracts are exposed', async () => {
    const { gateway, url } = await gatewayForTest({ contracts: [store], metrics: false });
    expect((await post(`${url}/store/greeting`, { name: 'x' })).status).toBe(200);
    const hidden = await post(`${url}/probe/context`, {});
    expect(hidden.status).toBe(404);
    expect((await problemOf(hidden)).code).toBe(HttpProblemCode.ROUTE_NOT_FOUND);
    expect(Object.keys(gateway.openapi.paths).sort()).toEqual(['/store/get', '/store/greeting', '/store/put']);
  });

  it('http - configure adds hooks that run before every operation', async () => {
    const { url } = await gatewayForTest({
      metrics: false,
      configure: (server) => {
        server.addHook('onRequest', async (request, reply) => {
          if (request.url.startsWith('/store/') && request.headers['authorization'] !== 'Bearer letmein') {
            return reply.status(401).type('application/problem+json').send({ status: 401, code: 'UNAUTHENTICATED' });
          }
          return undefined;
        });
      },
    });
    expect((await post(`${url}/store/greeting`, { name: 'x' })).status).toBe(401);
    expect((await post(`${url}/store/greeting`, { name: 'x' }, { authorization: 'Bearer letmein' })).status).toBe(200);
  });

  it('http - invalid options are refused with INVALID_CONFIG', async () => {
    const kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
    await expect(createHttpGateway({ kernel, bodyLimit: -1 })).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    await expect(createHttpGateway({ kernel, docsPath: '/store' })).rejects.toThrow(/shadow the gateway's \/store path/);
    await expect(createHttpGateway({ kernel, contracts: [store, store] })).rejects.toThrow(/listed twice/);
    await expect(createHttpGateway({ kernel, getOperations: ['store.put'] })).rejects.toThrow(/does not declare idempotent/);
    await expect(createHttpGateway({ kernel, getOperations: ['store'] })).rejects.toThrow(/write it as "module.operation"/);
  });
});

describe('http - a GET operation that takes no input', () => {
  const clock = defineContract({
    name: 'clock',
    version: '1.0.0',
    operations: { now: operation({ input: z.object({}).optional(), output: z.object({ ticks: z.number() }), idempotent: true }) },
  });
  const clockModule = defineModule({ contract: clock, create: () => ({ handlers: { now: () => ({ ticks: 42 }) } }) });

  it('http - an optional input: answers without a query and with ?input= beside a cache buster; a parameter with no input is refused as a misspelt input, not ignored', async () => {
    const kernel = createKernel({ modules: [clockModule], logger: silentLogger });
    await kernel.start();
    const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, getOperations: ['clock.now'] });
    try {
      const url = await gateway.listen();
      for (const query of ['', '?input=%7B%7D', '?input=%7B%7D&_=1733500000000']) {
        const answer = await fetch(`${url}/clock/now${query}`);
        expect(answer.status, query).toBe(200);
        expect(await answer.json()).toEqual({ ticks: 42 });
      }
      // `?page=2` for an optional { page } would be called as no input, a silent wrong answer.
      const stray = await fetch(`${url}/clock/now?_=1733500000000`);
      expect(stray.status).toBe(400);
      expect(await problemOf(stray)).toMatchObject({ code: HttpProblemCode.MALFORMED_REQUEST });
      // The document says the same: the input of a GET is optional here.
      expect((gateway.openapi as any).paths['/clock/now'].get.parameters[0]).toMatchObject({ name: 'input', required: false });
    } finally {
      await gateway.close();
    }
  });
});
