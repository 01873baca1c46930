import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtobufExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider, type SpanExporter } from '@opentelemetry/sdk-trace';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, treeOf, type OtlpReceiver } from './support/otlp-receiver.js';

let receiver: OtlpReceiver;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
});

afterAll(async () => {
  await receiver?.close();
});

/**
 * Exports, through the real SDK and exporter, a server span with a child client span that links
 * to another span, and returns the ids the SDK gave them.
 */
async function exportTwoSpans(exporter: SpanExporter, service: string) {
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, 'deployment.environment.name': 'test' }),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  const tracer = provider.getTracer('keel-test', '1.2.3');
  const linked = tracer.startSpan('earlier');
  linked.end();
  const parent = tracer.startSpan('POST /orders', { kind: SpanKind.SERVER, attributes: { 'http.request.method': 'POST', 'http.response.status_code': 201 } });
  const child = tracer.startSpan(
    'orders.place',
    {
      kind: SpanKind.CLIENT,
      attributes: { 'keel.operation': 'place', 'keel.retry': true, 'keel.ratio': 0.25, 'keel.delta': -5, 'keel.modules': ['orders', 'payments'] },
      links: [{ context: linked.spanContext(), attributes: { 'keel.link': 'event' } }],
    },
    // The parent, given explicitly: the test installs no context manager.
    trace.setSpan(context.active(), parent),
  );
  child.addEvent('retried', { 'keel.attempt': 2 });
  child.setStatus({ code: SpanStatusCode.ERROR, message: 'TIMEOUT' });
  child.end();
  parent.end();
  await provider.forceFlush();
  await provider.shutdown();
  return { traceId: parent.spanContext().traceId, parentId: parent.spanContext().spanId, childId: child.spanContext().spanId, linked: linked.spanContext() };
}

describe.each([
  ['json', 'json', 'application/json', (url: string) => new JsonExporter({ url: `${url}/v1/traces` })],
  ['protobuf', 'protobuf', 'application/x-protobuf', (url: string) => new ProtobufExporter({ url: `${url}/v1/traces` })],
  ['protobuf, gzip', 'protobuf', 'application/x-protobuf', (url: string) => new ProtobufExporter({ url: `${url}/v1/traces`, compression: CompressionAlgorithm.GZIP })],
] as const)('otlp receiver - http/%s', (label, protocol, contentType, exporterFor) => {
  it(`otlp receiver - decodes the SDK's ${label} export: ids, parent, kind, attributes, link, event, status and service name`, async () => {
    const service = `service-${label.replace(/\W+/g, '-')}`;
    const ids = await exportTwoSpans(exporterFor(receiver.url), service);
    const spans = await receiver.waitFor((all) => all.filter((span) => span.serviceName === service).length === 3);
    const ofService = spans.filter((span) => span.serviceName === service);
    const tree = treeOf(ofService, ids.traceId);
    const parent = ofService.find((span) => span.spanId === ids.parentId);
    const child = ofService.find((span) => span.spanId === ids.childId);

    expect(receiver.failures).toEqual([]);
    const encoding = label.endsWith('gzip') ? 'gzip' : 'identity';
    expect(receiver.requests.filter((request) => request.contentType === contentType && request.encoding === encoding).length).toBeGreaterThan(0);
    expect(parent, tree).toMatchObject({
      protocol,
      traceId: ids.traceId,
      parentSpanId: undefined,
      name: 'POST /orders',
      kind: 'server',
      attributes: { 'http.request.method': 'POST', 'http.response.status_code': 201 },
      status: { code: 'unset' },
      scope: { name: 'keel-test', version: '1.2.3' },
      resource: { 'service.name': service, 'deployment.environment.name': 'test' },
    });
    expect(child, tree).toMatchObject({
      traceId: ids.traceId,
      parentSpanId: ids.parentId,
      name: 'orders.place',
      kind: 'client',
      attributes: { 'keel.operation': 'place', 'keel.retry': true, 'keel.ratio': 0.25, 'keel.delta': -5, 'keel.modules': ['orders', 'payments'] },
      links: [{ traceId: ids.linked.traceId, spanId: ids.linked.spanId, attributes: { 'keel.link': 'event' } }],
      events: [{ name: 'retried', attributes: { 'keel.attempt': 2 } }],
      status: { code: 'error', message: 'TIMEOUT' },
    });
    // The SDK's start times have millisecond grain and its ends come from a monotonic clock: only each span's own order is certain.
    for (const span of [parent!, child!]) expect(span.startNs > 1_600_000_000_000_000_000n && span.endNs >= span.startNs, tree).toBe(true);
    expect(tree).toBe(`POST /orders [server] ${service}\n  orders.place [client] ${service}`);
  });
});

describe('otlp receiver - waitFor', () => {
  it('otlp receiver - waitFor fails naming the spans that did arrive, as trees', async () => {
    const own = await startOtlpReceiver();
    try {
      await exportTwoSpans(new JsonExporter({ url: `${own.url}/v1/traces` }), 'waited');
      await own.waitFor((spans) => spans.length === 3);
      const failure = await own.waitFor(() => false, 50).then(
        () => undefined,
        (error: Error) => error.message,
      );
      expect(failure).toMatch(/did not get the spans waited for within 50 ms; \d+ request\(s\), 3 span\(s\) arrived/);
      expect(failure).toMatch(/POST \/orders \[server\] waited\n\s+orders\.place \[client\] waited/);
    } finally {
      await own.close();
    }
  });

  it('otlp receiver - answers 400 naming the problem for a body it cannot decode, and 404 off /v1/traces', async () => {
    const bad = await fetch(`${receiver.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf' }, body: new Uint8Array([0x0a, 0x05, 0x01]) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toMatch(/truncated field 1/);
    expect(receiver.failures.at(-1)).toMatchObject({ contentType: 'application/x-protobuf' });
    receiver.failures.length = 0;
    expect((await fetch(`${receiver.url}/v1/metrics`, { method: 'POST', body: '{}' })).status).toBe(404);
  });
});
