/**
 * The gateway's HTTP server spans (HTTP semantic conventions), while keel's tracing is on: the
 * span of each request is the active span while the request is handled (the gateway's hooks,
 * the route's handler, the call it makes, log lines written meanwhile), and so the parent of the
 * client span of the call.
 */
import { createRequire } from 'node:module';
import type * as Api from '@opentelemetry/api';
import type { Attributes, Context, Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { KEEL_ROOT_CONTEXT, KeelContextManager, keelTracer, spanContextOf, startSpanWith, traceparentOf } from 'keel/transport';

// The API's CommonJS build, the one prom-client loads: one copy of the API per process (kernel/otel-api.ts says why).
const { SpanKind, SpanStatusCode, createTraceState, trace } = createRequire(import.meta.url)('@opentelemetry/api') as typeof Api;

/** A request's span, and the context it is active in. */
interface Traced {
  readonly span: Span;
  readonly context: Context;
}

const traced = new WeakMap<FastifyRequest, Traced>();
/** False until a gateway of this process adds the span hooks: until then no request has a span to look up. */
let anyTraced = false;

// keel's store of the process's contexts, whether or not OTel's global context manager is keel's.
const contexts = new KeelContextManager();

/**
 * Adds the hooks that start and end a server span per request, when tracing is on as the
 * gateway is made (`keel/otel`'s `startTracing()` runs before); nothing otherwise.
 *
 * The span is entered in the first `onRequest` hook, with `run` semantics (never `enterWith`):
 * the later hooks, the body's parsing (fastify carries the request's async context through it,
 * an `AsyncResource` in its content-type parser), the handler and the call it makes run inside
 * it, and no other request's code does.
 */
export function addHttpTracing(server: FastifyInstance): void {
  const tracer = keelTracer();
  if (tracer === undefined) return;
  anyTraced = true;
  server.addHook('onRequest', (request, reply, done) => {
    const route = request.routeOptions.url;
    const parent = parentContextOf(request);
    // Its attributes are worked out only for a span that records, when the tracer allows it
    // (keel/otel's does: its samplers read none).
    const span = startSpanWith(tracer, route === undefined ? request.method : `${request.method} ${route}`, SERVER, parent, requestAttributes, request);
    const context = trace.setSpan(parent, span);
    traced.set(request, { span, context });
    // The span ends on the raw response's 'finish', with the status written, rather than in an
    // onResponse hook: any onResponse hook makes fastify put two listeners on every response and
    // run its hook runner (about 4 k instructions a request; docs/performance.md, "Gateway,
    // thirteenth round", where the HTTP metric made the same move). end() runs once: it drops the
    // request's entry, and light-my-request's response emits 'finish' twice.
    // The answer's 'close' without its 'finish': the connection went before the answer was
    // written, whether the request was still being read (fastify's onRequestAbort) or its
    // handler was running.
    const response = reply.raw;
    response.once('finish', () => end(request, reply.statusCode));
    response.once('close', () => {
      if (!response.writableFinished) end(request, undefined);
    });
    contexts.with(context, done);
  });
}

/**
 * The remote parent of a request's span: its `traceparent` header, with the vendors' `tracestate`
 * kept on it (W3C Trace Context: a `tracestate` without a valid `traceparent` is ignored);
 * an empty context without a valid `traceparent` (keel's, which derives contexts cheaply).
 */
function parentContextOf(request: FastifyRequest): Context {
  const header = request.headers['traceparent'];
  const remote = spanContextOf(typeof header === 'string' ? header : undefined);
  if (remote === undefined) return KEEL_ROOT_CONTEXT;
  const state = request.headers['tracestate'];
  const value = Array.isArray(state) ? state.join(',') : state;
  return trace.setSpanContext(KEEL_ROOT_CONTEXT, value === undefined || value.trim() === '' ? remote : { ...remote, traceState: createTraceState(value) });
}

const SERVER = { kind: SpanKind.SERVER };

/** The attributes a request's span starts with (those a sampler may look at among them). */
function requestAttributes(request: FastifyRequest): Attributes {
  const route = request.routeOptions.url;
  const queryAt = request.url.indexOf('?');
  const userAgent = request.headers['user-agent'];
  const scheme = request.protocol;
  const attributes: Attributes = {
    'http.request.method': request.method,
    'url.path': queryAt === -1 ? request.url : request.url.slice(0, queryAt),
    'url.scheme': scheme,
    'client.address': request.ip,
    'network.protocol.version': protocolVersionOf(request.raw.httpVersion),
  };
  if (route !== undefined) attributes['http.route'] = route;
  if (typeof userAgent === 'string') attributes['user_agent.original'] = userAgent;
  // server.address and server.port: the Host header's (X-Forwarded-Host's behind a trusted
  // proxy), its port implied by the scheme when it names none; without a Host header (HTTP/1.0),
  // the address and port the request came in on.
  const host = request.host;
  if (host !== '') {
    const hostname = request.hostname;
    attributes['server.address'] = hostname.startsWith('[') ? hostname.slice(1, -1) : hostname;
    const port = request.port ?? (scheme === 'https' ? 443 : 80);
    attributes['server.port'] = port;
  } else {
    const socket = request.raw.socket;
    if (socket.localAddress !== undefined) attributes['server.address'] = socket.localAddress;
    if (socket.localPort !== undefined) attributes['server.port'] = socket.localPort;
  }
  return attributes;
}

/** `network.protocol.version` of Node's `httpVersion`: `1.1`, `1.0`, `2` (not `2.0`). */
function protocolVersionOf(httpVersion: string): string {
  return httpVersion === '2.0' ? '2' : httpVersion;
}

function end(request: FastifyRequest, status: number | undefined): void {
  const entry = traced.get(request);
  if (entry === undefined) return;
  traced.delete(request);
  const { span } = entry;
  if (status === undefined) {
    span.setAttribute('error.type', 'aborted');
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'the client went away before the answer' });
  } else {
    span.setAttribute('http.response.status_code', status);
    // A 4xx is the client's error, not the server's: the status stays UNSET (HTTP span status rules).
    if (status >= 500) {
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }
  span.end();
}

/** The traceparent of the request's server span, for the call it makes; `undefined` while tracing is off. */
export function requestTraceparent(request: FastifyRequest): string | undefined {
  if (!anyTraced) return undefined;
  const entry = traced.get(request);
  return entry === undefined ? undefined : traceparentOf(entry.span.spanContext());
}
