/**
 * The HTTP gateway's server span, over real HTTP on a free loopback port with keel's tracing on
 * (the SDK's in-memory exporter in this process) and keel's context manager as OTel's: the span
 * is the active span while its request is handled (the handler, user instrumentation, the
 * gateway's log lines), and only its own request's; it keeps the request's `tracestate`; it
 * carries the HTTP server attributes; a 4xx leaves its status unset, a 5xx and an aborted
 * request mark it ERROR with `error.type`.
 */
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SpanKind, SpanStatusCode, context, trace, type Tracer } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { createKernel, silentLogger, type Kernel } from 'keel';
import { KeelContextManager, LogFormat, createLogger, disableTracing, enableTracing, logFields, newTraceparent } from 'keel/transport';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { fixtureModules, gate, openAllGates } from './support/http-fixture.js';

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
const userTracer: Tracer = provider.getTracer('user-instrumentation');

/** What the custom route's handler saw: the active span and the log fields, before and after it waited. */
interface Seen {
  readonly traceId: string | undefined;
  readonly spanId: string | undefined;
  readonly fields: Record<string, unknown>;
}
interface Observed {
  readonly before: Seen;
  readonly after: Seen;
  readonly userSpan: ReadableSpan;
}
const observed = new Map<string, Observed>();

/** Releases the test controls for the custom route: the handler waits on the one of its tag, when there is one. */
const holds = new Map<string, { entered: () => void; released: Promise<void> }>();
function hold(tag: string): { entered: Promise<void>; release: () => void } {
  let entered!: () => void;
  let release!: () => void;
  const enteredPromise = new Promise<void>((resolve) => (entered = resolve));
  const released = new Promise<void>((resolve) => (release = resolve));
  holds.set(tag, { entered, released });
  return { entered: enteredPromise, release };
}

/** Resolvers of requests whose headers the test waits for (by their x-test-arrival header). */
const arrivals = new Map<string, () => void>();

function seenNow(): Seen {
  const span = trace.getActiveSpan()?.spanContext();
  return { traceId: span?.traceId, spanId: span?.spanId, fields: logFields() };
}

const lines: Record<string, unknown>[] = [];
const logger = createLogger({ format: LogFormat.JSON, level: 'info', destination: { write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) } });

let kernel: Kernel;
let gateway: HttpGateway;
let url: string;
let port: number;

beforeAll(async () => {
  context.setGlobalContextManager(new KeelContextManager());
  enableTracing({ provider });
  kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
  await kernel.start();
  gateway = await createHttpGateway({
    kernel,
    port: 0,
    host: '127.0.0.1',
    logger,
    metrics: false,
    docsPath: false,
    // A route of the application's own, with its own OTel instrumentation: what it sees of the request's span.
    configure: (server) => {
      // Tells the test that a request's headers have arrived, before its body is read.
      server.addHook('preParsing', (request, _reply, payload, done) => {
        const tag = request.headers['x-test-arrival'];
        if (typeof tag === 'string') arrivals.get(tag)?.();
        done(null, payload);
      });
      server.post('/custom/observe', (request) => {
        const { tag } = request.body as { tag: string };
        const before = seenNow();
        const held = holds.get(tag);
        held?.entered();
        return (held?.released ?? Promise.resolve()).then(() => {
          const after = seenNow();
          let userSpan: ReadableSpan | undefined;
          userTracer.startActiveSpan(`user work ${tag}`, (span) => {
            span.end();
            userSpan = span as unknown as ReadableSpan;
          });
          observed.set(tag, { before, after, userSpan: userSpan as ReadableSpan });
          return { tag };
        });
      });
    },
  });
  url = await gateway.listen();
  port = Number(new URL(url).port);
});
afterEach(() => openAllGates());
afterAll(async () => {
  await gateway?.close();
  await kernel?.stop();
  disableTracing();
  context.disable();
  await provider.shutdown();
});

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

let arrivalCount = 0;

/** POSTs `body` in two packets: the headers, then (once the gateway has them) the body; resolves with the status. */
async function postInTwoParts(path: string, body: unknown, headers: Record<string, string>): Promise<number> {
  const text = JSON.stringify(body);
  const tag = `two-parts-${++arrivalCount}`;
  const arrived = new Promise<void>((resolve) => arrivals.set(tag, resolve));
  const request = httpRequest(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-test-arrival': tag, ...headers },
  });
  const status = new Promise<number>((resolve, reject) => {
    request.on('response', (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode ?? 0));
    });
    request.on('error', reject);
  });
  request.flushHeaders();
  await arrived;
  request.end(text);
  return status;
}

/** The gateway's span of the trace `traceId`, once it has ended. */
async function httpSpanOf(traceId: string): Promise<ReadableSpan> {
  const find = (): ReadableSpan | undefined =>
    exporter.getFinishedSpans().find((span) => span.kind === SpanKind.SERVER && span.spanContext().traceId === traceId && span.attributes['http.request.method'] !== undefined);
  await expect.poll(() => find() !== undefined, { timeout: 10_000 }).toBe(true);
  return find() as ReadableSpan;
}

describe('http tracing - the request span is the active span while its request is handled', () => {
  for (const [how, send] of [
    ['with the body in the packet of the headers', (traceparent: string, tag: string) => post('/custom/observe', { tag }, { traceparent }).then((answer) => answer.status)],
    ['with the body sent after the headers arrived (read in the socket\'s async context)', (traceparent: string, tag: string) => postInTwoParts('/custom/observe', { tag }, { traceparent })],
  ] as const) {
    it(`a handler sees the HTTP span as active, after the body is read and after it awaits; its own spans and log fields fall under it: ${how}`, async () => {
      const traceparent = newTraceparent();
      const tag = `one ${how}`;
      expect(await send(traceparent, tag)).toBe(200);
      const span = (await httpSpanOf(traceparent.slice(3, 35))).spanContext();
      const seen = observed.get(tag) as Observed;
      for (const moment of [seen.before, seen.after]) {
        expect(moment).toMatchObject({ traceId: span.traceId, spanId: span.spanId });
        expect(moment.fields).toMatchObject({ trace_id: span.traceId, span_id: span.spanId });
      }
      expect(seen.userSpan.parentSpanContext?.spanId).toBe(span.spanId);
      expect(seen.userSpan.spanContext().traceId).toBe(span.traceId);
    });
  }

  it('two concurrent requests with different traceparents each see only their own span; a third, without one, a root span of its own; none leaks out', async () => {
    const first = { traceparent: newTraceparent(), hold: hold('a') };
    const second = { traceparent: newTraceparent(), hold: hold('b') };
    const answers = [postInTwoParts('/custom/observe', { tag: 'a' }, { traceparent: first.traceparent }), postInTwoParts('/custom/observe', { tag: 'b' }, { traceparent: second.traceparent })];
    await Promise.all([first.hold.entered, second.hold.entered]);
    // Released in the other order than they came: each resumes in its own context.
    second.hold.release();
    expect(await answers[1]).toBe(200);
    first.hold.release();
    expect(await answers[0]).toBe(200);
    for (const [tag, traceparent] of [['a', first.traceparent], ['b', second.traceparent]] as const) {
      const span = await httpSpanOf(traceparent.slice(3, 35));
      expect(span.parentSpanContext?.spanId).toBe(traceparent.slice(36, 52));
      const seen = observed.get(tag) as Observed;
      expect(seen.before).toMatchObject({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId });
      expect(seen.after).toMatchObject({ traceId: span.spanContext().traceId, spanId: span.spanContext().spanId });
      expect(seen.userSpan.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
    }

    expect((await post('/custom/observe', { tag: 'fresh' })).status).toBe(200);
    const fresh = observed.get('fresh') as Observed;
    expect(fresh.before.traceId).toBeDefined();
    expect([first.traceparent.slice(3, 35), second.traceparent.slice(3, 35)]).not.toContain(fresh.before.traceId);
    const freshSpan = await httpSpanOf(fresh.before.traceId as string);
    expect(freshSpan.parentSpanContext).toBeUndefined();
    expect(fresh.after.spanId).toBe(freshSpan.spanContext().spanId);
    // The test's own code runs in no request's context.
    expect(trace.getActiveSpan()).toBeUndefined();
    expect(logFields()).toEqual({});
  });

  it('the gateway\'s own log line for a 5xx carries the HTTP span\'s trace_id and span_id; the call\'s client span is its child', async () => {
    const traceparent = newTraceparent();
    const answer = await post('/probe/fail', { as: 'boom' }, { traceparent });
    expect(answer.status).toBe(500);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    const line = lines.find((entry) => entry['msg'] === 'request failed' && entry['trace_id'] === span.spanContext().traceId);
    expect(line, JSON.stringify(lines)).toMatchObject({ trace_id: span.spanContext().traceId, span_id: span.spanContext().spanId });
    const client = exporter.getFinishedSpans().find((candidate) => candidate.kind === SpanKind.CLIENT && candidate.name === 'probe/fail' && candidate.spanContext().traceId === span.spanContext().traceId);
    expect(client?.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
  });
});

describe('http tracing - tracestate', () => {
  it('the request\'s tracestate is kept on the HTTP span\'s remote parent, and carried on by its span and the call\'s client span', async () => {
    const traceparent = newTraceparent();
    const answer = await post('/store/greeting', { name: 'Ada' }, { traceparent, tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7' });
    expect(answer.status).toBe(200);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.parentSpanContext?.spanId).toBe(traceparent.slice(36, 52));
    expect(span.parentSpanContext?.traceState?.serialize()).toBe('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    expect(span.spanContext().traceState?.get('congo')).toBe('t61rcWkgMzE');
    const client = exporter.getFinishedSpans().find((candidate) => candidate.kind === SpanKind.CLIENT && candidate.spanContext().traceId === span.spanContext().traceId);
    expect(client?.parentSpanContext?.spanId).toBe(span.spanContext().spanId);
    expect(client?.spanContext().traceState?.serialize()).toBe('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
  });

  it('tracestate sent as two header lines is one list; without a valid traceparent it is ignored', async () => {
    const traceparent = newTraceparent();
    const status = await new Promise<number>((resolve, reject) => {
      const body = JSON.stringify({ name: 'Ada' });
      const request = httpRequest(
        `${url}/store/greeting`,
        { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), traceparent, tracestate: ['one=1', 'two=2'] } },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        },
      );
      request.on('error', reject);
      request.end(body);
    });
    expect(status).toBe(200);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.parentSpanContext?.traceState?.serialize()).toBe('one=1,two=2');

    expect((await post('/custom/observe', { tag: 'orphan-state' }, { tracestate: 'lost=1' })).status).toBe(200);
    const orphan = await httpSpanOf(observed.get('orphan-state')?.before.traceId as string);
    expect(orphan.parentSpanContext).toBeUndefined();
    expect(orphan.spanContext().traceState).toBeUndefined();
  });
});

describe('http tracing - HTTP server attributes', () => {
  it('server.address and server.port from the Host header, network.protocol.version, with the rest', async () => {
    const traceparent = newTraceparent();
    expect((await post('/store/greeting', { name: 'Ada' }, { traceparent, 'user-agent': 'tracing-test/1' })).status).toBe(200);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.name).toBe('POST /store/greeting');
    expect(span.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/store/greeting',
      'url.path': '/store/greeting',
      'url.scheme': 'http',
      'server.address': '127.0.0.1',
      'server.port': port,
      'network.protocol.version': '1.1',
      'client.address': '127.0.0.1',
      'user_agent.original': 'tracing-test/1',
      'http.response.status_code': 200,
    });
  });

  it('attributesAtStart false (keel/otel\'s way): the request span, and the call\'s spans under it, carry the very attributes they carry by default', async () => {
    const attributesOf = async (attributesAtStart: boolean | undefined) => {
      enableTracing({ provider, attributesAtStart });
      const traceparent = newTraceparent();
      expect((await post('/store/greeting', { name: 'Ada' }, { traceparent, 'user-agent': 'tracing-test/1' })).status).toBe(200);
      const traceId = traceparent.slice(3, 35);
      await httpSpanOf(traceId);
      return exporter
        .getFinishedSpans()
        .filter((span) => span.spanContext().traceId === traceId)
        .map((span) => ({ name: span.name, attributes: { ...span.attributes, 'keel.correlation_id': 'keel.correlation_id' in span.attributes } }));
    };
    try {
      const byDefault = await attributesOf(undefined);
      expect(byDefault.map((span) => span.name).sort()).toEqual(['POST /store/greeting', 'store/greeting', 'store/greeting']);
      expect(await attributesOf(false)).toEqual(byDefault);
    } finally {
      enableTracing({ provider });
    }
  });

  it("server.inject() makes one span with its status, though light-my-request's response emits 'finish' twice", async () => {
    const traceparent = newTraceparent();
    const injected = await gateway.server.inject({ method: 'POST', url: '/store/greeting', payload: { name: 'Ada' }, headers: { traceparent } });
    expect(injected.statusCode).toBe(200);
    // The response's second 'finish' comes a tick after inject() resolves: wait for it (at most a second).
    let finishes = 0;
    await Promise.race([
      new Promise<void>((resolve) => injected.raw.res.once('finish', () => resolve(void (finishes += 1)))),
      new Promise((resolve) => setTimeout(resolve, 1000)),
    ]);
    const traceId = traceparent.slice(3, 35);
    const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId && span.attributes['http.request.method'] !== undefined);
    expect(spans.map((span) => [span.name, span.attributes['http.response.status_code']])).toEqual([['POST /store/greeting', 200]]);
    // What makes the test able to fail: the second 'finish' did come before the spans were read.
    expect(finishes).toBe(1);
  });

  /** Sends `head` and the greeting body on a raw connection; resolves with the status line. */
  const raw = (head: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const body = JSON.stringify({ name: 'Ada' });
      const socket = connect({ host: '127.0.0.1', port }, () => socket.write(`${head}content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`));
      let received = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        received += chunk;
        if (received.includes('\r\n')) {
          socket.destroy();
          resolve(received.slice(0, received.indexOf('\r\n')));
        }
      });
      socket.on('error', reject);
    });

  it('behind a proxy the gateway trusts: X-Forwarded-Host and X-Forwarded-Proto', async () => {
    const proxied = await createHttpGateway({ kernel, port: 0, host: '127.0.0.1', logger: silentLogger, metrics: false, docsPath: false, trustProxy: true, stopKernelOnClose: false });
    try {
      const proxiedUrl = await proxied.listen();
      const traceparent = newTraceparent();
      const answer = await fetch(`${proxiedUrl}/store/greeting`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent, 'x-forwarded-host': 'shop.example', 'x-forwarded-proto': 'https' },
        body: JSON.stringify({ name: 'Ada' }),
      });
      expect(answer.status).toBe(200);
      const span = await httpSpanOf(traceparent.slice(3, 35));
      expect(span.attributes).toMatchObject({ 'server.address': 'shop.example', 'server.port': 443, 'url.scheme': 'https' });
    } finally {
      await proxied.close();
    }
  });

  it('a Host header without a port: the port its scheme implies', async () => {
    const traceparent = newTraceparent();
    expect(await raw(`POST /store/greeting HTTP/1.1\r\nhost: shop.example\r\ntraceparent: ${traceparent}\r\n`)).toBe('HTTP/1.1 200 OK');
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.attributes).toMatchObject({ 'server.address': 'shop.example', 'server.port': 80, 'network.protocol.version': '1.1' });
  });

  it('HTTP/1.0 without a Host header: the address and port the request came in on', async () => {
    const traceparent = newTraceparent();
    expect(await raw(`POST /store/greeting HTTP/1.0\r\ntraceparent: ${traceparent}\r\n`)).toMatch(/^HTTP\/1\.[01] 200 OK$/);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.attributes).toMatchObject({ 'server.address': '127.0.0.1', 'server.port': port, 'network.protocol.version': '1.0' });
  });
});

describe('http tracing - status', () => {
  it('a 4xx answer leaves the span status UNSET, with http.response.status_code and no error.type', async () => {
    const traceparent = newTraceparent();
    expect((await post('/store/get', { key: 'never-put' }, { traceparent })).status).toBe(404);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.status.code).toBe(SpanStatusCode.UNSET);
    expect(span.attributes['http.response.status_code']).toBe(404);
    expect(span.attributes['error.type']).toBeUndefined();
  });

  it('a 5xx answer sets ERROR with error.type the status code', async () => {
    const traceparent = newTraceparent();
    expect((await post('/probe/fail', { as: 'unavailable' }, { traceparent })).status).toBe(503);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes).toMatchObject({ 'http.response.status_code': 503, 'error.type': '503' });
  });

  it('a client that goes away before the answer: ERROR with error.type aborted, and no status code', async () => {
    const traceparent = newTraceparent();
    const waiting = gate('abandoned');
    const body = JSON.stringify({ gate: 'abandoned' });
    const request = httpRequest(`${url}/probe/wait`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), traceparent },
    });
    const failed = new Promise<Error>((resolve) => request.on('error', resolve));
    request.end(body);
    // The handler runs: the request has been read whole; the client then goes away.
    await waiting.entered;
    request.destroy();
    expect(await failed).toBeInstanceOf(Error);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['error.type']).toBe('aborted');
    expect(span.attributes['http.response.status_code']).toBeUndefined();
    waiting.open();
  });

  it('a client that goes away while its body is still being sent: ERROR with error.type aborted', async () => {
    const traceparent = newTraceparent();
    const request = httpRequest(`${url}/store/put`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': 1000, traceparent, 'x-test-arrival': 'half' },
    });
    const arrived = new Promise<void>((resolve) => arrivals.set('half', resolve));
    const failed = new Promise<Error>((resolve) => request.on('error', resolve));
    request.write('{"key":"half');
    // The gateway has the headers (its span has started) and waits for the rest of the body: the client goes.
    await arrived;
    request.destroy();
    expect(await failed).toBeInstanceOf(Error);
    const span = await httpSpanOf(traceparent.slice(3, 35));
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.attributes['error.type']).toBe('aborted');
  });
});
