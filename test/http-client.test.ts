/**
 * The typed HTTP client (`'keel/http-client'`) against a real gateway on a free port: the same
 * results and the same errors as the in-process client, the call's correlation id and deadline
 * sent as headers, and its options checked once.
 */
import { createServer as createHttpServer, maxHeaderSize } from 'node:http';
import { createServer } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, expectTypeOf, it, vi } from 'vitest';
import { z } from 'zod';
import { KeelError, createKernel, silentLogger, type Client, type Kernel } from 'keel';
import { KeelErrorCode, defineContract, isKeelError, operation } from 'keel/contract';
import { DEFAULT_HTTP_CLIENT_OPTIONS, createHttpClient, type HttpClient } from 'keel/http-client';
import { DEFAULT_HTTP_GATEWAY_OPTIONS, HTTP_STATUS_BY_CODE, HttpProblemCode, createHttpGateway, type HttpGateway } from 'keel/http';
import { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from 'keel/transport';
import { NotThere, Taken, fixtureModules, gate, openAllGates, probe, store } from './support/http-fixture.js';

/** A fetch that records each request's headers and each answer's headers. */
function recordingFetch(): { fetch: typeof fetch; sent: Headers[]; answered: Headers[] } {
  const sent: Headers[] = [];
  const answered: Headers[] = [];
  return {
    sent,
    answered,
    fetch: async (input, init) => {
      sent.push(new Headers(init?.headers));
      const response = await fetch(input, init);
      answered.push(response.headers);
      return response;
    },
  };
}

/** What an error is, as a caller sees it: its class's code, data or details, and whether it is a KeelError. */
function seen(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const { code, data } = error as { code?: unknown; data?: unknown };
  return { name: error.name, code, data, keel: error instanceof KeelError };
}

async function failureOf(call: Promise<unknown>): Promise<Error> {
  try {
    await call;
  } catch (error) {
    expect(error).toBeInstanceOf(Error);
    return error as Error;
  }
  throw new Error('the call did not fail');
}

describe('http client - against a gateway', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let baseUrl: string;

  beforeAll(async () => {
    kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false });
    baseUrl = await gateway.listen();
  });
  afterEach(() => openAllGates());
  afterAll(async () => {
    await gateway.close();
  });

  it('http client - gives the typed results of the in-process client, defaults applied', async () => {
    const remote = createHttpClient(store, { baseUrl });
    const local = kernel.client(store);
    expect(await remote.put({ key: 'typed', value: { nested: [1, 'two', null] } })).toEqual({ key: 'typed', stored: true });
    const got = await remote.get({ key: 'typed' });
    expectTypeOf(got).toEqualTypeOf<Awaited<ReturnType<Client<typeof store>['get']>>>();
    expect(got).toEqual(await local.get({ key: 'typed' }));
    expect(got).toEqual({ key: 'typed', value: { nested: [1, 'two', null] }, tags: [] });
    const greeting: string = await remote.greeting({ name: 'Ada' });
    expect(greeting).toBe('hello, Ada');
  });

  it('http client - is a Client: code written against kernel.client(contract) takes it', async () => {
    expectTypeOf<HttpClient<typeof store>>().toExtend<Client<typeof store>>();
    const greet = (client: Client<typeof store>) => client.greeting({ name: 'Grace' });
    expect(await greet(createHttpClient(store, { baseUrl }))).toBe('hello, Grace');
  });

  it('http client - a declared error is an instance of its contract class, with its data and correlation id, as in process', async () => {
    const remote = createHttpClient(store, { baseUrl });
    const missing = await failureOf(remote.get({ key: 'nowhere' }, { correlationId: 'declared-1' }));
    expect(missing).toBeInstanceOf(NotThere);
    expect(NotThere.is(missing) && missing.data).toEqual({ key: 'nowhere' });
    expect((missing as InstanceType<typeof NotThere>).correlationId).toBe('declared-1');
    expect(missing.message).toBe('No entry has key "nowhere".');
    expect(seen(missing)).toEqual(seen(await failureOf(kernel.client(store).get({ key: 'nowhere' }))));

    await remote.put({ key: 'held', value: 1 });
    const taken = await failureOf(remote.put({ key: 'held', value: 2 }));
    expect(taken).toBeInstanceOf(Taken);
    expect((taken as InstanceType<typeof Taken>).data).toEqual({ key: 'held', current: 1 });
  });

  it('http client - invalid input is INVALID_INPUT before any request, as in process', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(store, { baseUrl, fetch: recording.fetch });
    const invalid = await failureOf(remote.get({ key: '' }));
    expect(isKeelError(invalid, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect((invalid as KeelError).details).toMatchObject({ contract: 'store', operation: 'get', issues: [{ path: ['key'] }] });
    expect(recording.sent).toHaveLength(0);
    const badHeaders = await failureOf(remote.greeting({ name: 'a' }, { headers: { 'bad name': 'x' } }));
    expect(isKeelError(badHeaders, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(recording.sent).toHaveLength(0);
    expect(seen(invalid)).toEqual(seen(await failureOf(kernel.client(store).get({ key: '' }))));
  });

  it("http client - a framework error the gateway answers arrives as a KeelError with its code and details", async () => {
    // A caller whose contract is looser than the server's: the gateway refuses the input itself.
    const looser = defineContract({
      name: 'store',
      version: '1.0.0',
      operations: { get: operation({ input: z.object({ key: z.string() }), output: z.object({ key: z.string() }) }) },
    });
    const invalid = await failureOf(createHttpClient(looser, { baseUrl }).get({ key: '' }, { correlationId: 'server-side-1' }));
    expect(isKeelError(invalid, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect((invalid as KeelError).correlationId).toBe('server-side-1');
    expect((invalid as KeelError).details).toMatchObject({ contract: 'store', operation: 'get', issues: [{ path: ['key'] }] });
  });

  it('http client - an operation the gateway does not expose is UNKNOWN_OPERATION, the gateway code kept in the details', async () => {
    const elsewhere = defineContract({
      name: 'elsewhere',
      version: '1.0.0',
      operations: { ping: operation({ input: z.object({}), output: z.object({}) }) },
    });
    const unknown = await failureOf(createHttpClient(elsewhere, { baseUrl }).ping({}));
    expect(isKeelError(unknown, KeelErrorCode.UNKNOWN_OPERATION)).toBe(true);
    expect((unknown as KeelError).details).toMatchObject({ gatewayCode: 'ROUTE_NOT_FOUND', status: 404 });
  });

  it('http client - headers over the gateway\'s limit are PAYLOAD_TOO_LARGE, the gateway code HEADERS_TOO_LARGE and status 431 kept in the details', async () => {
    const large = createHttpClient(store, { baseUrl, headers: { cookie: 'c'.repeat(maxHeaderSize + 1) } });
    const refused = await failureOf(large.greeting({ name: 'x' }));
    expect(isKeelError(refused, KeelErrorCode.PAYLOAD_TOO_LARGE)).toBe(true);
    expect((refused as KeelError).details).toMatchObject({ gatewayCode: 'HEADERS_TOO_LARGE', status: 431 });
  });

  it('http client - every gateway problem code, and a 431 with no problem body, becomes a keel code other than INTERNAL', async () => {
    // A stand-in answering what the test asks for: each gateway code as a problem, then a bare 431.
    let answer: { status: number; body: string; type: string } = { status: 500, body: '', type: 'text/plain' };
    const server = createHttpServer((_request, response) => {
      response.writeHead(answer.status, { 'content-type': answer.type }).end(answer.body);
    });
    const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
    try {
      const client = createHttpClient(store, { baseUrl: `http://127.0.0.1:${port}` });
      const seenCodes: Record<string, string> = {};
      for (const code of Object.values(HttpProblemCode)) {
        const status = HTTP_STATUS_BY_CODE[code];
        const problem = { type: `urn:keel:error:${code}`, title: code, status, detail: 'stand-in', code, correlationId: 'c-1' };
        answer = { status, body: JSON.stringify(problem), type: 'application/problem+json; charset=utf-8' };
        seenCodes[code] = ((await failureOf(client.greeting({ name: 'x' }))) as KeelError).code;
      }
      answer = { status: 431, body: 'Request Header Fields Too Large', type: 'text/plain' };
      seenCodes['431 with no problem'] = ((await failureOf(client.greeting({ name: 'x' }))) as KeelError).code;
      for (const [given, code] of Object.entries(seenCodes)) expect(code, given).not.toBe(KeelErrorCode.INTERNAL);
      expect(seenCodes).toMatchObject({ HEADERS_TOO_LARGE: 'PAYLOAD_TOO_LARGE', '431 with no problem': 'PAYLOAD_TOO_LARGE' });
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('http client - sends the correlation id (the gateway echoes it) and the deadline as headers', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(probe, { baseUrl, fetch: recording.fetch });
    const given = await remote.context({}, { correlationId: 'browser-42', timeoutMs: 1_500 });
    expect(given.correlationId).toBe('browser-42');
    expect(given.remainingMs).toBeGreaterThan(0);
    expect(given.remainingMs).toBeLessThanOrEqual(1_500);
    expect(recording.sent[0]?.get('x-correlation-id')).toBe('browser-42');
    expect(recording.sent[0]?.get('x-keel-timeout-ms')).toBe('1500');
    expect(recording.answered[0]?.get('x-correlation-id')).toBe('browser-42');

    const fresh = await remote.context({});
    expect(fresh.correlationId).toMatch(/^[0-9a-f]{16}-[0-9a-z]+$/);
    expect(recording.answered[1]?.get('x-correlation-id')).toBe(fresh.correlationId);
    // Without a call option, the operation's own deadline (probe.context: 5 000 ms).
    expect(recording.sent[1]?.get('x-keel-timeout-ms')).toBe('5000');
  });

  it('http client - the gateway honours the deadline it is sent: TIMEOUT with the correlation id', async () => {
    // The client stops waiting 250 ms past the deadline: a stall of a loaded machine across that
    // margin would end the call with the client's own TIMEOUT. This fetch ignores the client's
    // abort and waits up to 10 s, so the outcome below is what the gateway answered.
    const remote = createHttpClient(probe, { baseUrl, fetch: (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(10_000) }) });
    gate('slow');
    const late = await failureOf(remote.wait({ gate: 'slow' }, { timeoutMs: 200, correlationId: 'late-1' }));
    expect(isKeelError(late, KeelErrorCode.TIMEOUT)).toBe(true);
    expect((late as KeelError).correlationId).toBe('late-1');
    // The gateway's own answer, rebuilt from its problem body, not the client giving up on it.
    expect(late.cause).toBeUndefined();
  });

  it('http client - sends the client headers (a function called per call) and the call headers', async () => {
    const recording = recordingFetch();
    let token = 0;
    const remote = createHttpClient(store, {
      baseUrl,
      fetch: recording.fetch,
      headers: () => ({ authorization: `Bearer t${(token += 1)}`, 'x-app': 'shop' }),
    });
    await remote.greeting({ name: 'a' });
    await remote.greeting({ name: 'b' }, { headers: { 'x-app': 'admin' } });
    expect(recording.sent.map((headers) => [headers.get('authorization'), headers.get('x-app')])).toEqual([
      ['Bearer t1', 'shop'],
      ['Bearer t2', 'admin'],
    ]);
  });

  it('http client - a call aborted by its signal is CANCELLED', async () => {
    // A server that holds every request: the call is in flight until the caller aborts it. (Not
    // the gateway: a connection aborted mid-call there keeps the gateway's close() waiting until
    // the client's keep-alive ends; see the report of this branch.)
    const held = createHttpServer(() => {});
    await new Promise<void>((resolve) => held.listen(0, '127.0.0.1', resolve));
    const { port } = held.address() as { port: number };
    const entered = new Promise<void>((resolve) => held.once('request', () => resolve()));
    try {
      const controller = new AbortController();
      const call = failureOf(createHttpClient(probe, { baseUrl: `http://127.0.0.1:${port}` }).wait({ gate: 'x' }, { signal: controller.signal, correlationId: 'cancel-1' }));
      await entered;
      controller.abort();
      const cancelled = await call;
      expect(isKeelError(cancelled, KeelErrorCode.CANCELLED)).toBe(true);
      expect((cancelled as KeelError).correlationId).toBe('cancel-1');
    } finally {
      held.closeAllConnections();
      await new Promise((resolve) => held.close(resolve));
    }
  });

  it('http client - an answer with no problem body and no reason phrase (HTTP/2) is named by its status alone', async () => {
    const bare = createHttpClient(store, { baseUrl, fetch: async () => new Response('<html>bad gateway</html>', { status: 502 }) });
    const failure = await failureOf(bare.greeting({ name: 'x' }));
    expect(isKeelError(failure, KeelErrorCode.INTERRUPTED)).toBe(true);
    expect(failure.message).toContain('failed with HTTP 502 and no keel problem body');
    expect((failure as KeelError).details).toEqual({ status: 502 });
  });

  it('http client - a gateway it cannot reach is INTERRUPTED: the outcome is unknown', async () => {
    const port = await new Promise<number>((resolve) => {
      const server = createServer().listen(0, '127.0.0.1', () => {
        const { port: free } = server.address() as { port: number };
        server.close(() => resolve(free));
      });
    });
    const unreachable = await failureOf(createHttpClient(store, { baseUrl: `http://127.0.0.1:${port}` }).greeting({ name: 'x' }));
    expect(isKeelError(unreachable, KeelErrorCode.INTERRUPTED)).toBe(true);
    expect(unreachable.message).toContain(`http://127.0.0.1:${port}/store/greeting`);
  });
});

describe('http client - fetch, headers, deadlines and call options', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let baseUrl: string;

  beforeAll(async () => {
    kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false });
    baseUrl = await gateway.listen();
  });
  afterEach(() => openAllGates());
  afterAll(async () => {
    await gateway.close();
  });

  const refusedAtCreate = (options: Record<string, unknown>): string => {
    try {
      createHttpClient(store, { baseUrl, ...options } as never);
    } catch (error) {
      expect(isKeelError(error, KeelErrorCode.INVALID_CONFIG)).toBe(true);
      return (error as Error).message;
    }
    throw new Error('accepted');
  };

  it("http client - an answer its contract does not accept is VERSION_MISMATCH whose message names each issue on one line, not a dump", async () => {
    const answer = async (): Promise<Response> => new Response(JSON.stringify({ greeting: 1 }), { status: 200, headers: { 'content-type': 'application/json' } });
    const error = await failureOf(createHttpClient(store, { baseUrl, fetch: answer }).greeting({ name: 'x' }, { correlationId: 'mismatch-1' }));
    expect(isKeelError(error, KeelErrorCode.VERSION_MISMATCH)).toBe(true);
    expect(error.message).toBe(
      "store.greeting answered with output this caller's contract does not accept ((root): Invalid input: expected string, received object). " +
        'Caller and callee disagree on the contract; deploy matching versions.',
    );
    expect((error as KeelError).details).toEqual({ issues: [{ path: [], message: 'Invalid input: expected string, received object', code: 'invalid_type' }] });
  });

  it('http client - calls the given fetch detached, as a browser fetch (window.fetch) needs', async () => {
    const thisSeen: unknown[] = [];
    // A browser's fetch throws "Illegal invocation" when `this` is anything but the global object or undefined.
    const strictFetch = function (this: unknown, input: Parameters<typeof fetch>[0], init?: RequestInit): Promise<Response> {
      thisSeen.push(this);
      if (this !== undefined && this !== globalThis) throw new TypeError("Failed to execute 'fetch' on 'Window': Illegal invocation");
      return fetch(input, init);
    };
    const remote = createHttpClient(store, { baseUrl, fetch: strictFetch });
    expect(await remote.greeting({ name: 'window' })).toBe('hello, window');
    expect(thisSeen).toHaveLength(1);
  });

  it('http client - header names are not case-sensitive: a call header replaces the client header of any case, never joined to it', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(store, { baseUrl, fetch: recording.fetch, headers: { 'X-App': 'shop', Authorization: 'Bearer s' } });
    await remote.greeting({ name: 'a' }, { headers: { 'x-app': 'admin' } });
    expect(recording.sent[0]?.get('x-app')).toBe('admin');
    expect(recording.sent[0]?.get('authorization')).toBe('Bearer s');
    const twice = await failureOf(remote.greeting({ name: 'a' }, { headers: { 'X-Trace': '1', 'x-trace': '2' } }));
    expect(isKeelError(twice, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(twice.message).toMatch(/^headers for store\.greeting names "x-trace" twice/);
    expect(recording.sent).toHaveLength(1);
  });

  it('http client - a header the client sets itself is refused, naming it and the option that sets it (INVALID_CONFIG, INVALID_INPUT)', async () => {
    expect(refusedAtCreate({ headers: { 'Content-Type': 'text/plain' } })).toMatch(/^createHttpClient: headers sets "Content-Type", which the client sets itself/);
    expect(refusedAtCreate({ headers: { 'X-Correlation-Id': 'abc' } })).toMatch(/sets "X-Correlation-Id", which the client sets itself: give the call option correlationId \(CallOptions\.correlationId\) instead/);
    expect(refusedAtCreate({ headers: { 'x-keel-timeout-ms': '5' } })).toMatch(/sets "x-keel-timeout-ms".*CallOptions\.timeoutMs/);
    expect(refusedAtCreate({ headers: { 'Idempotency-Key': 'k' } })).toMatch(/CallOptions\.idempotencyKey/);
    // The gateway's header names, as this client was told them.
    expect(refusedAtCreate({ correlationHeader: 'X-Request-Id', headers: { 'x-request-id': 'abc' } })).toMatch(/sets "x-request-id".*correlationId/);

    const recording = recordingFetch();
    let returned: unknown = { 'content-type': 'text/plain' };
    const remote = createHttpClient(store, { baseUrl, fetch: recording.fetch, headers: () => returned as Record<string, string> });
    const perCall = await failureOf(createHttpClient(store, { baseUrl, fetch: recording.fetch }).greeting({ name: 'a' }, { headers: { 'X-Correlation-Id': 'abc' }, correlationId: 'own-1' }));
    expect(isKeelError(perCall, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(perCall.message).toMatch(/^headers for store\.greeting sets "X-Correlation-Id", which the client sets itself: give the call option correlationId/);
    expect((perCall as KeelError).correlationId).toBe('own-1');
    const fromFunction = await failureOf(remote.greeting({ name: 'a' }));
    expect(isKeelError(fromFunction, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(fromFunction.message).toMatch(/^headers for store\.greeting: what the client's headers function returned sets "content-type", which the client sets itself/);
    returned = { accept: 'text/html' };
    expect((await failureOf(remote.greeting({ name: 'a' }))).message).toMatch(/sets "accept"/);
    expect(recording.sent).toHaveLength(0);
  });

  it('http client - a header value with CR, LF or NUL is refused naming the header, never showing the value', async () => {
    expect(refusedAtCreate({ headers: { authorization: 'Bearer s3cret\u0000' } })).toMatch(/^createHttpClient: headers has a value for "authorization" with a CR, LF, NUL/);
    expect(refusedAtCreate({ headers: { authorization: 'Bearer s3cret\u0000' } })).not.toContain('s3cret');
    const recording = recordingFetch();
    let token = 'Bearer t0k3n\nx-admin: yes';
    const remote = createHttpClient(store, { baseUrl, fetch: recording.fetch, headers: () => ({ authorization: token }) });
    const fromFunction = await failureOf(remote.greeting({ name: 'a' }));
    expect(isKeelError(fromFunction, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(fromFunction.message).toMatch(/has a value for "authorization" with a CR, LF, NUL/);
    expect(fromFunction.message).not.toContain('t0k3n');
    token = 'Bearer fine';
    const perCall = await failureOf(remote.greeting({ name: 'a' }, { headers: { 'X-Note': 'line\r\nbreak' } }));
    expect(isKeelError(perCall, KeelErrorCode.INVALID_INPUT)).toBe(true);
    expect(perCall.message).toMatch(/^headers for store\.greeting has a value for "X-Note" with a CR, LF, NUL/);
    expect(recording.sent).toHaveLength(0);
  });

  it('http client - a headers function may return a Headers or [name, value] pairs; anything else is refused naming the field', async () => {
    const recording = recordingFetch();
    let returned: unknown = new Headers({ Authorization: 'Bearer h' });
    const remote = createHttpClient(store, { baseUrl, fetch: recording.fetch, headers: async () => returned as Headers });
    await remote.greeting({ name: 'a' });
    returned = [['Authorization', 'Bearer p'], ['X-App', 'pairs']];
    await remote.greeting({ name: 'b' });
    expect(recording.sent.map((headers) => [headers.get('authorization'), headers.get('x-app')])).toEqual([
      ['Bearer h', null],
      ['Bearer p', 'pairs'],
    ]);
    for (const wrong of [42, 'authorization: x', null, [['authorization']], { authorization: 7 }]) {
      returned = wrong;
      const refused = await failureOf(remote.greeting({ name: 'c' }));
      expect(isKeelError(refused, KeelErrorCode.INVALID_INPUT)).toBe(true);
      expect(refused.message).toMatch(/^headers for store\.greeting: what the client's headers function returned must be a record of header names to string values, a Headers or an array of \[name, value\] pairs/);
    }
    expect(recording.sent).toHaveLength(2);
  });

  it('http client - a slow headers function is bounded by the deadline and the signal: nothing is sent', async () => {
    const recording = recordingFetch();
    let entered: () => void = () => {};
    const hanging = createHttpClient(store, {
      baseUrl,
      fetch: recording.fetch,
      headers: () => {
        entered();
        return new Promise<Record<string, string>>(() => {});
      },
    });
    const late = await failureOf(hanging.greeting({ name: 'a' }, { timeoutMs: 100, correlationId: 'slow-token-1' }));
    expect(isKeelError(late, KeelErrorCode.TIMEOUT)).toBe(true);
    expect(late.message).toMatch(/deadline of 100 ms passed while the client's headers function ran\. Nothing was sent/);
    expect((late as KeelError).correlationId).toBe('slow-token-1');

    const controller = new AbortController();
    const called = new Promise<void>((resolve) => (entered = resolve));
    const call = failureOf(hanging.greeting({ name: 'a' }, { signal: controller.signal }));
    await called;
    controller.abort();
    const cancelled = await call;
    expect(isKeelError(cancelled, KeelErrorCode.CANCELLED)).toBe(true);
    expect(cancelled.message).toMatch(/nothing was sent/);
    expect(recording.sent).toHaveLength(0);
  });

  it("http client - a slow headers function is given up at the deadline itself, not after the grace that waits for the gateway's answer", async () => {
    const recording = recordingFetch();
    const hanging = createHttpClient(store, { baseUrl, fetch: recording.fetch, headers: () => new Promise<Record<string, string>>(() => {}) });
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      let settled: unknown;
      void failureOf(hanging.greeting({ name: 'a' }, { timeoutMs: 100, correlationId: 'slow-token-2' })).then((error) => (settled = error));
      await vi.advanceTimersByTimeAsync(100);
      // Nothing was sent, so no answer is coming: the client's grace past a deadline (which waits for
      // the gateway's own TIMEOUT answer) has nothing to wait for.
      expect(isKeelError(settled, KeelErrorCode.TIMEOUT), String(settled)).toBe(true);
      expect((settled as Error).message).toMatch(/deadline of 100 ms passed while the client's headers function ran/);
    } finally {
      vi.useRealTimers();
    }
    expect(recording.sent).toHaveLength(0);
  });

  it('http client - the time a headers function takes comes off the deadline sent to the gateway', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(probe, {
      baseUrl,
      fetch: recording.fetch,
      headers: () => new Promise<Record<string, string>>((resolve) => setTimeout(() => resolve({ authorization: 'Bearer slow' }), 60)),
    });
    await remote.context({}, { timeoutMs: 5_000 });
    expect(Number(recording.sent[0]?.get('x-keel-timeout-ms'))).toBeLessThanOrEqual(4_950);
  });

  it('http client - a deadline near MAX_TIMEOUT_MS does not overflow the timer into an immediate TIMEOUT', async () => {
    const remote = createHttpClient(store, {
      baseUrl,
      // Answers only after a 10 ms timer: a client timer overflowed to 1 ms has fired by then.
      fetch: async (input, init) => {
        await new Promise((resolve) => setTimeout(resolve, 10));
        init?.signal?.throwIfAborted();
        return fetch(input, init);
      },
    });
    expect(await remote.greeting({ name: 'max' }, { timeoutMs: MAX_TIMEOUT_MS })).toBe('hello, max');
    expect(await createHttpClient(store, { baseUrl, timeoutMs: MAX_TIMEOUT_MS - 1 }).greeting({ name: 'near' })).toBe('hello, near');
  });

  it('http client - honours traceparent, retry: false and hedge: false; refuses principal and retry or hedge policies (INVALID_INPUT naming them)', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(probe, { baseUrl, fetch: recording.fetch });
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const given = await remote.context({}, { traceparent, retry: false, hedge: false });
    expect(recording.sent[0]?.get('traceparent')).toBe(traceparent);
    expect(given.traceparent?.slice(0, 35)).toBe(traceparent.slice(0, 35));
    const refusals: [Record<string, unknown>, RegExp][] = [
      [{ principal: { id: 'u-1' } }, /^principal for probe\.context cannot be sent over HTTP/],
      [{ retry: { maxAttempts: 3 } }, /^retry for probe\.context must be false or left out/],
      [{ hedge: { delayMs: 20 } }, /^hedge for probe\.context must be false or left out/],
      [{ traceparent: 'not-a-traceparent' }, /^traceparent for probe\.context must be a W3C traceparent/],
      [{ traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01' }, /^traceparent for probe\.context must be a W3C traceparent/],
    ];
    for (const [options, message] of refusals) {
      const refused = await failureOf(remote.context({}, options as never));
      expect(isKeelError(refused, KeelErrorCode.INVALID_INPUT)).toBe(true);
      expect(refused.message).toMatch(message);
    }
    expect(recording.sent).toHaveLength(1);
  });

  it('http client - refuses, before sending, a timeoutMs that is no number, a signal that is no AbortSignal, an unknown option and options that are no object (INVALID_INPUT naming them)', async () => {
    const recording = recordingFetch();
    const remote = createHttpClient(probe, { baseUrl, fetch: recording.fetch }) as unknown as Record<string, (input: unknown, options?: unknown) => Promise<unknown>>;
    const refusals: [unknown, RegExp][] = [
      [{ timeoutMs: '10' }, /^timeoutMs for probe\.context must be a number of milliseconds above 0 and at most 2147483647, got "10"/],
      [{ timeoutMs: true }, /^timeoutMs for probe\.context must be a number of milliseconds/],
      [{ signal: {} }, /^signal for probe\.context must be an AbortSignal/],
      [{ signal: 'abort' }, /^signal for probe\.context must be an AbortSignal/],
      [5_000, /^options for probe\.context must be an object/],
      [null, /^options for probe\.context must be an object/],
      [{ timeout: 5 }, /^options for probe\.context have an unknown option "timeout"; a call takes timeoutMs, signal, correlationId, traceparent, idempotencyKey, headers, retry, hedge, principal\. Did you mean timeoutMs\?$/],
      [{ header: { 'x-a': '1' } }, /^options for probe\.context have an unknown option "header"; .* Did you mean headers\?$/],
    ];
    for (const [options, message] of refusals) {
      const refused = await failureOf(remote['context']!({}, options));
      expect(isKeelError(refused, KeelErrorCode.INVALID_INPUT), `${JSON.stringify(options)}: ${String(refused)}`).toBe(true);
      expect(refused.message).toMatch(message);
    }
    expect(recording.sent).toHaveLength(0);
  });
});

describe('http client - options', () => {
  it('http client - checks its options once and names a wrong field (INVALID_CONFIG)', () => {
    const refusal = (options: unknown): string => {
      try {
        createHttpClient(store, options as never);
      } catch (error) {
        expect(isKeelError(error, KeelErrorCode.INVALID_CONFIG)).toBe(true);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refusal({ baseUrl: 'localhost:3000' })).toMatch(/^createHttpClient: baseUrl must be an absolute http or https URL/);
    expect(refusal({})).toMatch(/baseUrl must be an absolute http or https URL/);
    // Operation paths are appended to it: a query or a fragment would swallow every one.
    expect(refusal({ baseUrl: 'http://127.0.0.1:3000?x=1' })).toMatch(/baseUrl must be an absolute http or https URL without a query or fragment/);
    expect(refusal({ baseUrl: 'http://127.0.0.1:3000/#top' })).toMatch(/without a query or fragment/);
    expect(refusal({ baseUrl: new URL('http://127.0.0.1:3000/api?') })).toMatch(/without a query or fragment/);
    expect(refusal({ baseUrl: 'http://x', timeoutMs: 0 })).toMatch(/timeoutMs must be a number of milliseconds above 0/);
    expect(refusal({ baseUrl: 'http://x', fetch: 'fetch' })).toMatch(/fetch must be a fetch function/);
    expect(refusal({ baseUrl: 'http://x', headers: { authorization: 42 } })).toMatch(/headers must be a record .*\(not shown: it is a secret\)/);
    expect(refusal({ baseUrl: 'http://x', baseURL: 'http://y' })).toMatch(/unknown option "baseURL"/);
    expect(() => createHttpClient(store, { baseUrl: new URL('http://x/api/') })).not.toThrow();
  });

  it("http client - its defaults are the kernel's deadline and the gateway's header names", () => {
    expect(DEFAULT_HTTP_CLIENT_OPTIONS).toEqual({
      timeoutMs: DEFAULT_TIMEOUT_MS,
      correlationHeader: DEFAULT_HTTP_GATEWAY_OPTIONS.correlationHeader,
      timeoutHeader: DEFAULT_HTTP_GATEWAY_OPTIONS.timeoutHeader,
    });
  });
});
