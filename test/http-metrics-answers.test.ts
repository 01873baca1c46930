/**
 * The HTTP metric counts every answer fastify routes, whichever part of the gateway sends it:
 * the CORS plugin's preflight, the rate limit's 429, an onRequest hook of the application, the
 * gateway's own 404 and its handlers, and the 400 of a URL fastify cannot decode, which no hook
 * sees. The count is taken on the raw response's 'finish', from a hook that runs before every
 * other one, and from the gateway's handler of fastify's framework errors (gateway.ts). The answers
 * Node's client-error handler writes to the socket (a request that is not HTTP, a request
 * timeout, headers over Node's limit) are counted as method `_OTHER`, route `unparsed`, with no duration. Not counted:
 * answers cut off by a lost connection.
 */
import { maxHeaderSize } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { HttpGateway } from 'keel/http';
import { runGateway, type RunningGateway } from './support/http-fixture.js';

const ORIGIN = 'https://shop.example';

/** `keel_http_requests_total`'s samples, as `METHOD route status` → count, leaving out the scrapes. */
function httpCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^keel_http_requests_total\{method="([^"]+)",route="([^"]+)",status="(\d+)"\} (\d+)$/gm)) {
    if (match[2] === '/metrics') continue;
    counts.set(`${match[1]} ${match[2]} ${match[3]}`, Number(match[4]));
  }
  return counts;
}

/** `keel_http_request_duration_seconds`'s observation counts, as `METHOD route` → count, leaving out the scrapes. */
function durationCounts(text: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const match of text.matchAll(/^keel_http_request_duration_seconds_count\{method="([^"]+)",route="([^"]+)"\} (\d+)$/gm)) {
    if (match[2] === '/metrics') continue;
    counts.set(`${match[1]} ${match[2]}`, Number(match[3]));
  }
  return counts;
}

/** The sum of `counts` by `METHOD route`, the status left out. */
function byRoute(counts: Map<string, number>): Record<string, number> {
  const sums: Record<string, number> = {};
  for (const [key, count] of counts) {
    const route = key.slice(0, key.lastIndexOf(' '));
    sums[route] = (sums[route] ?? 0) + count;
  }
  return sums;
}

describe('http - the HTTP metric counts every answer', () => {
  let running: RunningGateway | undefined;
  let url: string;

  beforeAll(async () => {
    running = await runGateway({
      metrics: { defaultMetrics: false },
      cors: { origins: [ORIGIN] },
      rateLimit: { max: 4, windowMs: 60_000 },
      configure: (server) => {
        server.addHook('onRequest', (request, reply, done) => {
          if (request.headers['x-blocked'] === 'yes') {
            void reply.code(403).send({ blocked: true });
            return;
          }
          done();
        });
      },
    });
    url = running.url;
  });
  afterAll(() => running?.stop());

  it("http - a CORS preflight, an application hook's 403, a 404, an undecodable URL's 400, an operation's 200 and the rate limit's 429 are each counted once, by route and status", async () => {
    const statuses: number[] = [];
    const send = async (path: string, init: RequestInit): Promise<void> => {
      const response = await fetch(`${url}${path}`, init);
      await response.arrayBuffer();
      statuses.push(response.status);
    };
    const post = (key: string): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key, value: 1 }) });
    await send('/store/put', { method: 'OPTIONS', headers: { origin: ORIGIN, 'access-control-request-method': 'POST' } });
    await send('/store/put', { ...post('a'), headers: { 'content-type': 'application/json', 'x-blocked': 'yes' } });
    await send('/store/nothing', post('a'));
    // An undecodable URL: refused by fastify's framework errors, before any hook.
    await send('/store/%zz', { method: 'GET' });
    await send('/store/put', post('a'));
    // Until the rate limit refuses one, at most ten requests.
    for (let key = 0; key < 10 && !statuses.includes(429); key += 1) await send('/store/put', post(`k${key}`));
    const served = statuses.filter((status) => status === 200).length;
    expect(statuses.slice(0, 4)).toEqual([204, 403, 404, 400]);
    expect(statuses.at(-1)).toBe(429);
    expect(served).toBe(statuses.length - 5);

    const text = await (await fetch(`${url}/metrics`)).text();
    const counts = httpCounts(text);
    expect(Object.fromEntries(counts)).toEqual({
      'OPTIONS * 204': 1,
      'POST /store/put 403': 1,
      'POST unmatched 404': 1,
      'GET unmatched 400': 1,
      'POST /store/put 200': served,
      'POST /store/put 429': 1,
    });
    expect(Object.fromEntries(durationCounts(text))).toEqual(byRoute(counts));
  });
});

describe('http - the HTTP metric and server.inject()', () => {
  let running: RunningGateway | undefined;
  let gateway: HttpGateway;

  beforeAll(async () => {
    running = await runGateway({ metrics: { defaultMetrics: false } });
    gateway = running.gateway;
  });
  afterAll(() => running?.stop());

  it("http - an answer to server.inject() is counted once, though light-my-request's response emits 'finish' twice", async () => {
    const injected = await gateway.server.inject({ method: 'POST', url: '/store/put', payload: { key: 'once', value: 1 } });
    expect(injected.statusCode).toBe(200);
    // The response's second 'finish' comes a tick after inject() resolves: wait for it (at most a second).
    const response = injected.raw.res;
    let finishes = 0;
    await Promise.race([
      new Promise<void>((resolve) => response.once('finish', () => resolve(void (finishes += 1)))),
      new Promise((resolve) => setTimeout(resolve, 1000)),
    ]);
    const text = (await gateway.server.inject({ method: 'GET', url: '/metrics' })).body;
    expect(Object.fromEntries(httpCounts(text))).toEqual({ 'POST /store/put 200': 1 });
    expect(Object.fromEntries(durationCounts(text))).toEqual({ 'POST /store/put': 1 });
    // What makes the test able to fail: the second 'finish' did come before the scrape.
    expect(finishes).toBe(1);
  });
});

/** Sends `text` on a new connection to `port`; resolves with all the server wrote once it closes the connection (at most 10 s). */
async function rawExchange(port: number, text: string): Promise<string> {
  const socket = connect({ host: '127.0.0.1', port });
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined); // a reset is a close too
  socket.write(text);
  const timer = setTimeout(() => socket.destroy(), 10_000);
  await closed;
  clearTimeout(timer);
  return received;
}

describe("http - the HTTP metric and the answers Node's client-error handler writes", () => {
  let running: RunningGateway | undefined;
  let url: string;

  beforeAll(async () => {
    running = await runGateway({ metrics: { defaultMetrics: false }, headersTimeoutMs: 1_000, requestTimeoutMs: 2_000 });
    url = running.url;
  });
  afterAll(() => running?.stop());

  it('http - a request that is not HTTP (400), one whose headers never end (408) and one whose headers are too large (431) are counted as _OTHER unparsed, with no duration observed', async () => {
    const port = Number(new URL(url).port);
    expect(await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    // Headers begun and never finished: Node's headers timeout answers 408 (checked once a second).
    expect(await rawExchange(port, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never: ')).toMatch(/^HTTP\/1\.1 408 /);
    expect(await rawExchange(port, `GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: ${'c'.repeat(maxHeaderSize + 1)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    // And a routed answer, so the scrape shows the counting did not stop at them.
    const put = await fetch(`${url}/store/put`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'after', value: 1 }) });
    expect(put.status).toBe(200);

    const text = await (await fetch(`${url}/metrics`)).text();
    expect(Object.fromEntries(httpCounts(text))).toEqual({
      '_OTHER unparsed 400': 1,
      '_OTHER unparsed 408': 1,
      '_OTHER unparsed 431': 1,
      'POST /store/put 200': 1,
    });
    expect(Object.fromEntries(durationCounts(text))).toEqual({ 'POST /store/put': 1 });
  });
});
