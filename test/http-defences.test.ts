/**
 * The gateway's defences, each attacked over real HTTP on a free loopback port: slow clients are
 * cut off by the configured timeouts, the connection limit holds, CORS answers only configured
 * origins (and nobody by default), the rate limit answers 429 with Retry-After, and every
 * answer carries the security headers.
 */
import { maxHeaderSize } from 'node:http';
import { connect, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { HttpGateway, Problem } from 'keel/http';
import { gatewayForTest, type RunningGateway } from './support/http-fixture.js';

/**
 * How late after its timeout Node may cut a request: it checks once a second (gateway-defences.ts),
 * plus a stall of a loaded machine (server and clients share this event loop). A server that does
 * not cut is still told apart: the trickled body would take over 200 s.
 */
const CUT_MARGIN_MS = 1_000 + 5_000;

/** A gateway for one test, without metrics or API reference page unless `options` asks, and its port. */
async function startGateway(options: Parameters<typeof gatewayForTest>[0] = {}): Promise<RunningGateway & { port: number }> {
  const running = await gatewayForTest({ metrics: false, docsPath: false, ...options });
  return { ...running, port: Number(new URL(running.url).port) };
}

const put = (url: string, key: string, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${url}/store/put`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ key, value: 1 }),
  });

/** A raw connection, with what the server sent and when it closed the connection. */
interface RawClient {
  readonly socket: Socket;
  readonly received: () => string;
  /** Resolves with the milliseconds from `openedAt` to the close. */
  readonly closed: Promise<number>;
  readonly openedAt: number;
}

async function openRaw(port: number): Promise<RawClient> {
  const socket = connect({ host: '127.0.0.1', port });
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => undefined); // a reset counts as a close below
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const openedAt = Date.now();
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - openedAt)));
  return { socket, received: () => received, closed, openedAt };
}

/** Writes `text` one byte every `everyMs` while the socket is open, for at most `limitMs`; returns a stop function. */
function trickle(client: RawClient, text: string, everyMs: number, limitMs: number): () => void {
  let index = 0;
  const timer = setInterval(() => {
    if (client.socket.destroyed || index >= text.length || Date.now() - client.openedAt > limitMs) return;
    client.socket.write(text[index++] ?? '');
  }, everyMs);
  return () => clearInterval(timer);
}

describe('http - gateway defences', () => {
  it('http - 20 connections trickling a body one byte a second are closed by the server within requestTimeoutMs (plus the 1 s check), with 408', async () => {
    const requestTimeoutMs = 2_000;
    const { url, port } = await startGateway({ requestTimeoutMs, headersTimeoutMs: 1_000 });
    const bound = requestTimeoutMs + CUT_MARGIN_MS;
    const headers = 'POST /store/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n';
    const clients = await Promise.all(Array.from({ length: 20 }, () => openRaw(port)));
    // The trickle runs at most twice the bound: a server that never cuts fails the assertions below, it does not hang the test.
    const stops = clients.map((client) => {
      client.socket.write(headers);
      return trickle(client, `{"key":"slow","value":"${'x'.repeat(200)}`, 1_000, 2 * bound);
    });
    const closedAfter = await Promise.all(clients.map((client) => within(client.closed, 2 * bound + 1_000)));
    stops.forEach((stop) => stop());
    clients.forEach((client) => client.socket.destroy());
    for (const [index, elapsed] of closedAfter.entries()) {
      expect(elapsed, `connection ${index} closed after ${elapsed} ms`).toBeLessThanOrEqual(bound);
      expect(elapsed, `connection ${index} closed before its timeout`).toBeGreaterThanOrEqual(requestTimeoutMs - 100);
      expect(clients[index]?.received()).toMatch(/^HTTP\/1\.1 408 /);
    }
    // The gateway still serves a client that sends its request at once.
    expect((await put(url, 'fast')).status).toBe(200);
  });

  it('http - a client trickling its headers one byte a second is closed by the server within headersTimeoutMs (plus the 1 s check)', async () => {
    const headersTimeoutMs = 1_000;
    // The request timeout far past the bound: were headersTimeoutMs ignored, Node's default (the request timeout) would not cut within it.
    const { port } = await startGateway({ headersTimeoutMs, requestTimeoutMs: 30_000 });
    const bound = headersTimeoutMs + CUT_MARGIN_MS;
    const client = await openRaw(port);
    const stop = trickle(client, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'y'.repeat(60), 200, 2 * bound);
    const elapsed = await within(client.closed, 2 * bound + 1_000);
    stop();
    client.socket.destroy();
    expect(elapsed).toBeLessThanOrEqual(bound);
    expect(client.received()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('http - headers over Node\'s maxHeaderSize get 431 HEADERS_TOO_LARGE as a problem naming the limit, and the gateway keeps serving', async () => {
    const { url, port } = await startGateway();
    const client = await openRaw(port);
    // One header line larger than the whole limit: Node's parser refuses it before any route runs.
    client.socket.write(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${'c'.repeat(maxHeaderSize + 1)}\r\n\r\n`);
    await within(client.closed, 5_000);
    client.socket.destroy();
    const [head = '', body = ''] = client.received().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
    expect(head).toContain('Content-Type: application/problem+json; charset=utf-8');
    expect(head).toContain('Cache-Control: no-store');
    const problem = JSON.parse(body) as Problem;
    expect(problem).toMatchObject({ status: 431, code: 'HEADERS_TOO_LARGE', title: 'Request headers too large' });
    expect(problem.detail).toContain(`${maxHeaderSize} bytes`);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('http - chunk extensions over Node\'s 16 KiB get 413 PAYLOAD_TOO_LARGE as a problem, and the gateway keeps serving', async () => {
    const { url, port } = await startGateway();
    const client = await openRaw(port);
    client.socket.write(
      `POST /store/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=${'e'.repeat(20_000)}\r\n`,
    );
    await within(client.closed, 5_000);
    client.socket.destroy();
    const [head = '', body = ''] = client.received().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 413 Payload Too Large\r\n/);
    expect(JSON.parse(body) as Problem).toMatchObject({ status: 413, code: 'PAYLOAD_TOO_LARGE' });
    expect((await put(url, 'after')).status).toBe(200);
  });

  it('http - the connection limit closes a connection above maxConnections at once, and serves again when one ends', async () => {
    const { gateway, port } = await startGateway({ maxConnections: 3 });
    const held = await Promise.all([openRaw(port), openRaw(port), openRaw(port)]);
    // Each held connection is served one request and kept alive: the server has counted it.
    for (const client of held) {
      client.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      await waitFor(() => client.received().includes('"status":"ok"'));
    }
    const refused = await openRaw(port);
    refused.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const refusedAfter = await within(refused.closed, 5_000);
    refused.socket.destroy();
    expect(refusedAfter, 'the connection above the limit was left open').toBeLessThan(Infinity);
    expect(refused.received()).toBe('');

    held[0]?.socket.end();
    await held[0]?.closed;
    await waitFor(async () => (await connectionsOf(gateway)) === 2);
    const admitted = await openRaw(port);
    admitted.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    await admitted.closed;
    expect(admitted.received()).toMatch(/^HTTP\/1\.1 200 /);
    for (const client of held.slice(1)) client.socket.destroy();
  });

  it('http - CORS is off by default: a preflight gets 405 and no answer carries access-control headers', async () => {
    const { url } = await startGateway();
    const preflight = await fetch(`${url}/store/put`, {
      method: 'OPTIONS',
      headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST' },
    });
    expect(preflight.status).toBe(405);
    expect(preflight.headers.get('access-control-allow-origin')).toBeNull();
    const call = await put(url, 'cors-off', { origin: 'https://shop.example.com' });
    expect(call.status).toBe(200);
    expect(call.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('http - CORS allows the preflight and the call of a configured origin, and answers no other origin', async () => {
    const { url } = await startGateway({ cors: { origins: ['https://shop.example.com'], credentials: true, maxAgeSeconds: 60 } });
    const allowed = await fetch(`${url}/store/put`, {
      method: 'OPTIONS',
      headers: { origin: 'https://shop.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get('access-control-allow-origin')).toBe('https://shop.example.com');
    expect(allowed.headers.get('access-control-allow-methods')).toBe('GET, POST');
    expect(allowed.headers.get('access-control-allow-headers')).toBe('content-type');
    expect(allowed.headers.get('access-control-allow-credentials')).toBe('true');
    expect(allowed.headers.get('access-control-max-age')).toBe('60');
    // CORS answers the preflight from its own hook: the security headers' hook ran before it (its route, CORS's own, takes helmet's full set).
    expect(allowed.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    const call = await put(url, 'cors-on', { origin: 'https://shop.example.com' });
    expect(call.status).toBe(200);
    expect(call.headers.get('access-control-allow-origin')).toBe('https://shop.example.com');
    expect(call.headers.get('access-control-expose-headers')).toContain('x-correlation-id');
    expect(call.headers.get('vary')).toContain('Origin');

    const other = await fetch(`${url}/store/put`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(other.status).toBe(405);
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    const otherCall = await put(url, 'cors-other', { origin: 'https://evil.example' });
    expect(otherCall.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('http - the rate limit answers 429 RATE_LIMITED with Retry-After once a client passes it, and never limits the probes', async () => {
    const { url } = await startGateway({ rateLimit: { max: 5, windowMs: 60_000 } });
    for (let index = 0; index < 5; index++) {
      const response = await put(url, `limited-${index}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('x-ratelimit-remaining')).toBe(String(4 - index));
    }
    const refused = await put(url, 'limited-6', { 'x-correlation-id': 'rate-limit-test' });
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers.get('content-type')).toBe('application/problem+json; charset=utf-8');
    expect(refused.headers.get('x-frame-options')).toBe('DENY');
    const problem = (await refused.json()) as Problem;
    expect(problem).toMatchObject({
      type: 'urn:keel:error:RATE_LIMITED',
      status: 429,
      code: 'RATE_LIMITED',
      correlationId: 'rate-limit-test',
      details: { limit: 5, windowMs: 60_000, retryAfterSeconds: retryAfter },
    });
    expect(problem.detail).toMatch(/at most 5 every 60 s/);
    // A forged X-Forwarded-For does not buy a new budget: without trustProxy the TCP peer is the client.
    expect((await put(url, 'limited-7', { 'x-forwarded-for': '203.0.113.9' })).status).toBe(429);
    for (const path of ['/healthz', '/readyz']) expect((await fetch(`${url}${path}`)).status).toBe(200);
  });

  it('http - the rate limit is on by default (1000 a minute), and trustProxy counts each forwarded client on its own', async () => {
    const byDefault = await startGateway();
    const response = await put(byDefault.url, 'default-limit');
    expect(response.headers.get('x-ratelimit-limit')).toBe('1000');

    const proxied = await startGateway({ rateLimit: { max: 1 }, trustProxy: '127.0.0.1' });
    expect((await put(proxied.url, 'p1', { 'x-forwarded-for': '203.0.113.1' })).status).toBe(200);
    expect((await put(proxied.url, 'p2', { 'x-forwarded-for': '203.0.113.1' })).status).toBe(429);
    expect((await put(proxied.url, 'p3', { 'x-forwarded-for': '203.0.113.2' })).status).toBe(200);

    const off = await startGateway({ rateLimit: false });
    expect((await put(off.url, 'off')).headers.get('x-ratelimit-limit')).toBeNull();
  });

  it('http - Cache-Control: a hook of configure may let an operation\'s answers be cached, but its problems (declared error, bad input, rate limit) stay no-store; with securityHeaders false a problem is still no-store', async () => {
    const { url } = await startGateway({
      rateLimit: { max: 4 },
      configure: (server) => {
        server.addHook('onRequest', async (request, reply) => {
          if (request.url === '/store/get') reply.header('cache-control', 'public, max-age=60');
        });
      },
    });
    const get = (key: unknown) => fetch(`${url}/store/get`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key }) });
    expect((await put(url, 'cached')).headers.get('cache-control')).toBe('no-store');
    const found = await get('cached');
    expect(found.status).toBe(200);
    expect(found.headers.get('cache-control')).toBe('public, max-age=60');
    const missing = await get('nowhere');
    expect(missing.status).toBe(404);
    expect(missing.headers.get('cache-control')).toBe('no-store');
    const malformed = await get(42);
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('cache-control')).toBe('no-store');
    const limited = await get('cached');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('cache-control')).toBe('no-store');

    const bare = await startGateway({ securityHeaders: false });
    expect((await fetch(`${bare.url}/no/such`)).headers.get('cache-control')).toBe('no-store');
  });

  it('http - every answer carries the security headers: the API set on JSON answers and problems, helmet\'s full set on the API reference page; securityHeaders: false sends none', async () => {
    const { url } = await startGateway();
    for (const response of [await put(url, 'headers'), await fetch(`${url}/no/such`), await fetch(`${url}/healthz`), await fetch(`${url}/openapi.json`)]) {
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
      expect(response.headers.get('x-frame-options')).toBe('DENY');
      expect(response.headers.get('strict-transport-security')).toMatch(/^max-age=\d+/);
      expect(response.headers.get('referrer-policy')).toBe('no-referrer');
      expect(response.headers.get('cross-origin-resource-policy')).toBe('same-origin');
      expect(response.headers.get('content-security-policy')).toBe("default-src 'none';frame-ancestors 'none'");
      // No cache keeps an operation's answer, a problem, or a health reading.
      expect(response.headers.get('cache-control')).toBe('no-store');
      // The lines only a browser rendering HTML reads are left out of JSON answers.
      expect(response.headers.get('x-dns-prefetch-control')).toBeNull();
      expect(response.headers.get('cross-origin-opener-policy')).toBeNull();
    }
    const withPage = await startGateway({ docsPath: '/docs' });
    const page = await fetch(`${withPage.url}/docs/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(page.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(page.headers.get('x-dns-prefetch-control')).toBe('off');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("frame-ancestors 'self'");
    expect(csp).not.toContain('upgrade-insecure-requests');
    const bare = await startGateway({ securityHeaders: false });
    const response = await put(bare.url, 'bare');
    expect(response.status).toBe(200);
    expect(response.headers.get('x-content-type-options')).toBeNull();
    expect(response.headers.get('content-security-policy')).toBeNull();
    expect(response.headers.get('cache-control')).toBeNull();
  });
});

/** What `promise` resolves with, or Infinity when it has not within `ms`. */
function within(promise: Promise<number>, ms: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<number>((resolve) => (timer = setTimeout(() => resolve(Infinity), ms)))]).finally(() => clearTimeout(timer));
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every 20 ms for at most 5 s. */
async function waitFor(condition: () => boolean | Promise<boolean>): Promise<void> {
  const until = Date.now() + 5_000;
  while (!(await condition())) {
    if (Date.now() > until) throw new Error('condition not met within 5 s');
    await delay(20);
  }
}

function connectionsOf(gateway: HttpGateway): Promise<number> {
  return new Promise((resolve, reject) => gateway.server.server.getConnections((error, count) => (error ? reject(error) : resolve(count))));
}
