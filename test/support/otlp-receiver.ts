/**
 * A real OTLP/HTTP trace receiver for tests: a node:http server on a free loopback port that
 * takes `POST /v1/traces` as the OpenTelemetry exporters send it, in JSON
 * (`application/json`) or protobuf (`application/x-protobuf`, gzip or not), and keeps every
 * span it decoded as one flat {@link ReceivedSpan}. It answers 200 with an empty
 * `ExportTraceServiceResponse` in the request's encoding. No mocked exporter stands in for
 * the SDK's: tests point the real one at {@link OtlpReceiver.url}.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { decodeTraceRequest } from './otlp-protobuf.js';

/** An attribute value as OTLP carries it: arrays and key-value lists nest. int64 values beyond 2^53 stay bigint. */
export type AttributeValue = string | number | bigint | boolean | null | AttributeValue[] | { [key: string]: AttributeValue };

/** The span kinds of OTLP, by their enum number (`SPAN_KIND_INTERNAL` = 1, ...); 0 (unspecified) reads as internal. */
const KINDS = ['internal', 'internal', 'server', 'client', 'producer', 'consumer'] as const;
const STATUS_CODES = ['unset', 'ok', 'error'] as const;

/**
 * One span as the receiver decoded it, flat: the resource's `service.name` beside the span.
 *
 * @example
 * ```ts
 * const span: ReceivedSpan = receiver.spans[0]!;
 * span.parentSpanId === undefined; // a root span
 * ```
 */
export interface ReceivedSpan {
  readonly serviceName: string | undefined;
  readonly traceId: string;
  readonly spanId: string;
  /** undefined for a root span. */
  readonly parentSpanId: string | undefined;
  readonly name: string;
  readonly kind: (typeof KINDS)[number];
  readonly attributes: Record<string, AttributeValue>;
  readonly links: { traceId: string; spanId: string; attributes: Record<string, AttributeValue> }[];
  readonly events: { name: string; attributes: Record<string, AttributeValue> }[];
  readonly status: { code: (typeof STATUS_CODES)[number]; message?: string };
  readonly startNs: bigint;
  readonly endNs: bigint;
  /** The instrumentation scope (the tracer's name and version). */
  readonly scope: { name?: string; version?: string };
  /** Every resource attribute, `service.name` among them. */
  readonly resource: Record<string, AttributeValue>;
  /** `json` or `protobuf`: how it arrived. */
  readonly protocol: 'json' | 'protobuf';
}

/**
 * A running receiver. `spans` and `requests` grow as exports arrive.
 *
 * @example
 * ```ts
 * const receiver = await startOtlpReceiver();
 * process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = receiver.url;
 * await receiver.waitFor((spans) => spans.some((span) => span.name === 'POST /orders'));
 * await receiver.close();
 * ```
 */
export interface OtlpReceiver {
  /** The base URL, such as `http://127.0.0.1:43817`; exporters post to `${url}/v1/traces`. */
  readonly url: string;
  readonly spans: ReceivedSpan[];
  /** Every export request, decoded or not: its Content-Type, Content-Encoding (`gzip`, or `identity` when none) and body size (unzipped). */
  readonly requests: { contentType: string; encoding: string; bytes: number; apiKey: string | undefined }[];
  /** Requests it could not decode, with why: a test can assert there are none. */
  readonly failures: { contentType: string; error: string }[];
  /**
   * Resolves with the spans once `predicate` holds for them (it is checked at each export), or
   * fails after `timeoutMs` (default 10 000) with a message listing every span that arrived.
   */
  waitFor(predicate: (spans: readonly ReceivedSpan[]) => boolean, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

/** OTLP/JSON writes int64 as a string (proto3 JSON) or a number; a bigint only past 2^53. */
function int64Of(value: unknown): number | bigint {
  const big = BigInt(value as string | number);
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
}

function valueOf(value: Record<string, any> | undefined): AttributeValue {
  if (value === undefined) return null;
  if ('stringValue' in value) return String(value['stringValue']);
  if ('boolValue' in value) return Boolean(value['boolValue']);
  if ('intValue' in value) return int64Of(value['intValue']);
  if ('doubleValue' in value) return Number(value['doubleValue']);
  if ('arrayValue' in value) return ((value['arrayValue']?.values ?? []) as Record<string, any>[]).map(valueOf);
  if ('kvlistValue' in value) return attributesOf(value['kvlistValue']?.values);
  if ('bytesValue' in value) return String(value['bytesValue']);
  return null;
}

function attributesOf(list: { key: string; value?: Record<string, any> }[] | undefined): Record<string, AttributeValue> {
  return Object.fromEntries((list ?? []).map(({ key, value }) => [key, valueOf(value)]));
}

/** OTLP/JSON ids are hex; an exporter that wrote base64 (the proto3 JSON default for bytes) is read too. */
function idOf(id: unknown, hexLength: number): string | undefined {
  if (typeof id !== 'string' || id === '') return undefined;
  if (new RegExp(`^[0-9a-fA-F]{${hexLength}}$`).test(id)) return id.toLowerCase();
  return Buffer.from(id, 'base64').toString('hex');
}

function flatten(request: { resourceSpans?: Record<string, any>[] }, protocol: ReceivedSpan['protocol']): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of request.resourceSpans ?? []) {
    const resource = attributesOf(resourceSpans['resource']?.attributes);
    const serviceName = typeof resource['service.name'] === 'string' ? resource['service.name'] : undefined;
    for (const scopeSpans of (resourceSpans['scopeSpans'] ?? []) as Record<string, any>[]) {
      const scope = { ...(scopeSpans['scope']?.name ? { name: scopeSpans['scope'].name } : {}), ...(scopeSpans['scope']?.version ? { version: scopeSpans['scope'].version } : {}) };
      for (const span of (scopeSpans['spans'] ?? []) as Record<string, any>[]) {
        const status = span['status'] ?? {};
        const code = typeof status.code === 'string' ? (status.code.replace('STATUS_CODE_', '').toLowerCase() as ReceivedSpan['status']['code']) : (STATUS_CODES[status.code ?? 0] ?? 'unset');
        const kind = typeof span['kind'] === 'string' ? (span['kind'].replace('SPAN_KIND_', '').toLowerCase() as ReceivedSpan['kind']) : (KINDS[span['kind'] ?? 0] ?? 'internal');
        spans.push({
          serviceName,
          traceId: idOf(span['traceId'], 32) ?? '',
          spanId: idOf(span['spanId'], 16) ?? '',
          parentSpanId: idOf(span['parentSpanId'], 16),
          name: String(span['name'] ?? ''),
          kind,
          attributes: attributesOf(span['attributes']),
          links: ((span['links'] ?? []) as Record<string, any>[]).map((link) => ({
            traceId: idOf(link['traceId'], 32) ?? '',
            spanId: idOf(link['spanId'], 16) ?? '',
            attributes: attributesOf(link['attributes']),
          })),
          events: ((span['events'] ?? []) as Record<string, any>[]).map((event) => ({ name: String(event['name'] ?? ''), attributes: attributesOf(event['attributes']) })),
          status: { code, ...(status.message ? { message: String(status.message) } : {}) },
          startNs: BigInt(span['startTimeUnixNano'] ?? 0),
          endNs: BigInt(span['endTimeUnixNano'] ?? 0),
          scope,
          resource,
          protocol,
        });
      }
    }
  }
  return spans;
}

/**
 * The spans of one trace as an indented tree, one line per span (`name [kind] service`), children
 * under their parent in start order: for assertion messages. Spans whose parent did not arrive
 * are listed as roots, marked `(parent ... missing)`.
 *
 * @example
 * ```ts
 * expect(names, treeOf(receiver.spans, traceId)).toContain('orders.place');
 * // POST /orders [server] storefront
 * //   orders.place [client] storefront
 * //     orders.place [server] back-office
 * ```
 */
export function treeOf(spans: readonly ReceivedSpan[], traceId: string): string {
  const ofTrace = spans.filter((span) => span.traceId === traceId).sort((a, b) => (a.startNs < b.startNs ? -1 : a.startNs > b.startNs ? 1 : 0));
  const ids = new Set(ofTrace.map((span) => span.spanId));
  const lines: string[] = [];
  const walk = (span: ReceivedSpan, depth: number): void => {
    const missing = span.parentSpanId !== undefined && !ids.has(span.parentSpanId) ? ` (parent ${span.parentSpanId} missing)` : '';
    lines.push(`${'  '.repeat(depth)}${span.name} [${span.kind}] ${span.serviceName ?? '(no service.name)'}${missing}`);
    for (const child of ofTrace.filter((candidate) => candidate.parentSpanId === span.spanId)) walk(child, depth + 1);
  };
  for (const root of ofTrace.filter((span) => span.parentSpanId === undefined || !ids.has(span.parentSpanId))) walk(root, 0);
  return lines.length === 0 ? `(no span of trace ${traceId})` : lines.join('\n');
}

/** Every trace that arrived, as trees: what `waitFor` prints when it gives up. */
function everyTree(spans: readonly ReceivedSpan[]): string {
  const traces = [...new Set(spans.map((span) => span.traceId))];
  return traces.length === 0 ? '(no span arrived)' : traces.map((traceId) => `trace ${traceId}:\n${treeOf(spans, traceId).replace(/^/gm, '  ')}`).join('\n');
}

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  return request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body;
}

/**
 * Starts a receiver on a free port of 127.0.0.1. Close it after the test file (`afterAll`).
 *
 * @example
 * ```ts
 * const receiver = await startOtlpReceiver();
 * const exporter = new OTLPTraceExporter({ url: `${receiver.url}/v1/traces` });
 * ```
 */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const requests: OtlpReceiver['requests'] = [];
  const failures: OtlpReceiver['failures'] = [];
  const waiters = new Set<() => void>();

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    if (request.method !== 'POST' || request.url?.split('?')[0] !== '/v1/traces') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('This receiver takes POST /v1/traces only.\n');
      return;
    }
    const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const body = await bodyOf(request);
    const apiKey = request.headers['x-api-key'];
    requests.push({ contentType, encoding: request.headers['content-encoding'] ?? 'identity', bytes: body.length, apiKey: Array.isArray(apiKey) ? apiKey.join(',') : apiKey });
    const protobuf = contentType === 'application/x-protobuf';
    try {
      if (protobuf) spans.push(...flatten(decodeTraceRequest(body), 'protobuf'));
      else if (contentType === 'application/json') spans.push(...flatten(JSON.parse(body.toString('utf8')), 'json'));
      else throw new Error(`Content-Type "${contentType}" is neither application/json nor application/x-protobuf`);
    } catch (error) {
      failures.push({ contentType, error: (error as Error).message });
      response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 3, message: (error as Error).message }));
      return;
    }
    // An empty ExportTraceServiceResponse: zero bytes in protobuf, `{}` in JSON.
    response.writeHead(200, { 'content-type': protobuf ? 'application/x-protobuf' : 'application/json' }).end(protobuf ? '' : '{}');
    for (const wake of waiters) wake();
  };

  const server = createServer((request, response) => {
    handle(request, response).catch((error: Error) => {
      failures.push({ contentType: String(request.headers['content-type']), error: error.message });
      if (!response.headersSent) response.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    requests,
    failures,
    waitFor(predicate, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (!predicate(spans)) return false;
          clearTimeout(timer);
          waiters.delete(wake);
          resolve([...spans]);
          return true;
        };
        const wake = (): void => void check();
        const timer = setTimeout(() => {
          waiters.delete(wake);
          const failed = failures.length === 0 ? '' : `\nundecodable requests: ${failures.map((failure) => `${failure.contentType}: ${failure.error}`).join('; ')}`;
          reject(new Error(`The OTLP receiver did not get the spans waited for within ${timeoutMs} ms; ${requests.length} request(s), ${spans.length} span(s) arrived:\n${everyTree(spans)}${failed}`));
        }, timeoutMs);
        waiters.add(wake);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
