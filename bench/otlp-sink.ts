/**
 * The OTLP collector of the tracing benchmarks ("tracing on, sampled at 100%, to a collector in
 * another process"): `tsx bench/otlp-sink.ts`. A node:http server on a free loopback port that
 * takes `POST /v1/traces` as the OpenTelemetry exporters send it, and answers 200 with an empty
 * `ExportTraceServiceResponse`, as a collector does, doing as little else as it can so that it
 * takes little of the CPU the measured processes share:
 * - `application/json`: parsed, and its spans counted;
 * - `application/x-protobuf`: not decoded; requests and bytes counted.
 *
 * It prints one JSON line when it listens, `{"url":"http://127.0.0.1:PORT"}` (the base URL:
 * give it as `OTEL_EXPORTER_OTLP_ENDPOINT`), answers `counts` on stdin with a JSON line
 * `{"requests":…,"bytes":…,"jsonSpans":…,"protobufRequests":…,"protobufBytes":…,"rejected":…}`
 * and `cpu` with its CPU time (µs), and exits when its stdin closes or on SIGTERM. It is a peer
 * of bench/peer.ts: `startPeer('otlp-sink.ts', [])`.
 */
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { servePeer } from './peer.js';

const counts = { requests: 0, bytes: 0, jsonSpans: 0, protobufRequests: 0, protobufBytes: 0, rejected: 0 };

async function bodyOf(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** The spans of an OTLP/JSON `ExportTraceServiceRequest`. */
function spansIn(request: { resourceSpans?: { scopeSpans?: { spans?: unknown[] }[] }[] }): number {
  let spans = 0;
  for (const resourceSpans of request.resourceSpans ?? []) for (const scopeSpans of resourceSpans.scopeSpans ?? []) spans += scopeSpans.spans?.length ?? 0;
  return spans;
}

const server = createServer((request, response) => {
  if (request.method !== 'POST' || request.url?.split('?')[0] !== '/v1/traces') {
    counts.rejected += 1;
    response.writeHead(404).end();
    return;
  }
  const contentType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  bodyOf(request).then(
    (body) => {
      counts.requests += 1;
      counts.bytes += body.length;
      if (contentType === 'application/x-protobuf') {
        counts.protobufRequests += 1;
        counts.protobufBytes += body.length;
        response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
        return;
      }
      try {
        const text = (request.headers['content-encoding'] === 'gzip' ? gunzipSync(body) : body).toString('utf8');
        counts.jsonSpans += spansIn(JSON.parse(text));
        response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (error) {
        counts.rejected += 1;
        response.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 3, message: (error as Error).message }));
      }
    },
    () => {
      counts.rejected += 1;
      if (!response.headersSent) response.writeHead(400).end();
    },
  );
});
// Exporters keep their connection open between exports, as they do with a collector.
server.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

const stop = (): Promise<void> =>
  new Promise((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });
process.once('SIGTERM', () => void stop().finally(() => process.exit(0)));
servePeer(JSON.stringify({ url }), stop, { counts: () => JSON.stringify(counts) });
