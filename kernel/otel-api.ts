/**
 * The OpenTelemetry API's values, from its CommonJS build. prom-client (the gateway's metrics)
 * `require`s that build; an ESM `import` would load the API's second, ESM build as well, some
 * fifty modules more at every start of a process. The API is made for several loaded copies: its
 * global registrations (context manager, tracer provider, propagator) and its context keys are
 * `Symbol.for` symbols, so a span set by the SDK's copy is the span keel's copy reads. Types come
 * from the package as usual (`import type`), which costs nothing at run time.
 */
import { createRequire } from 'node:module';
import type * as Api from '@opentelemetry/api';

const api = createRequire(import.meta.url)('@opentelemetry/api') as typeof Api;

export const { INVALID_SPANID, INVALID_TRACEID, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, createContextKey, createTraceState, trace } = api;
