/**
 * The gateway's HTTP server spans (HTTP semantic conventions), while keel's tracing is on: the
 * span of each request is the parent of the client span of the call it makes.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { keelTracer, spanContextOf, traceparentOf } from 'keel/transport';

const spans = new WeakMap<FastifyRequest, Span>();

/**
 * Adds the hooks that start and end a server span per request, when tracing is on as the
 * gateway is made (`keel/otel`'s `startTracing()` runs before); nothing otherwise.
 */
export function addHttpTracing(server: FastifyInstance): void {
  const tracer = keelTracer();
  if (tracer === undefined) return;
  server.addHook('onRequest', (request, _reply, done) => {
    const route = request.routeOptions.url;
    const header = request.headers['traceparent'];
    const remote = spanContextOf(typeof header === 'string' ? header : undefined);
    const queryAt = request.url.indexOf('?');
    const userAgent = request.headers['user-agent'];
    const span = tracer.startSpan(
      route === undefined ? request.method : `${request.method} ${route}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': request.method,
          'url.path': queryAt === -1 ? request.url : request.url.slice(0, queryAt),
          'url.scheme': request.protocol,
          ...(route === undefined ? {} : { 'http.route': route }),
          'client.address': request.ip,
          ...(typeof userAgent === 'string' ? { 'user_agent.original': userAgent } : {}),
        },
      },
      remote === undefined ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, remote),
    );
    spans.set(request, span);
    done();
  });
  server.addHook('onResponse', (request, reply, done) => {
    end(request, reply.statusCode);
    done();
  });
  server.addHook('onRequestAbort', (request, done) => {
    end(request, undefined);
    done();
  });
}

function end(request: FastifyRequest, status: number | undefined): void {
  const span = spans.get(request);
  if (span === undefined) return;
  spans.delete(request);
  if (status === undefined) {
    span.setAttribute('error.type', 'aborted');
    span.setStatus({ code: SpanStatusCode.ERROR, message: 'the client went away before the answer' });
  } else {
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) {
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }
  span.end();
}

/** The traceparent of the request's server span, for the call it makes; `undefined` while tracing is off. */
export function requestTraceparent(request: FastifyRequest): string | undefined {
  const span = spans.get(request);
  return span === undefined ? undefined : traceparentOf(span.spanContext());
}
