/**
 * Hundreds of generated malformed requests against a real gateway on loopback: every answer
 * must be a well-formed 4xx problem, and the server must still serve a good request after.
 * Bounded: a fixed number of requests, a few at a time, from a seeded generator.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Problem } from 'keel/http';
import { gatewayForTest, runGateway, type RunningGateway } from './support/http-fixture.js';
import { gzipSync } from 'node:zlib';

const REQUESTS = 480;
const CONCURRENCY = 16;
const BODY_LIMIT = 2048;

/** mulberry32: a small seeded generator, so a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Malformed {
  readonly kind: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly body?: string | Uint8Array;
}

const JSON_TYPE = { 'content-type': 'application/json' };

function generators(next: () => number): ((index: number) => Malformed)[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const int = (max: number): number => Math.floor(next() * max);
  const text = (length: number): string =>
    Array.from({ length }, () => String.fromCharCode(32 + int(95))).join('');
  const validPut = (): string => JSON.stringify({ key: `k${int(1e6)}`, value: { n: int(100), s: text(int(20)) }, tags: ['a'] });
  const wrongValues = [null, true, 12, 'text', [], {}, [1, 2], { nested: { deep: 1 } }, -1, 1.5, ''];
  return [
    () => {
      const json = validPut();
      return { kind: 'truncated JSON', method: 'POST', path: '/store/put', headers: JSON_TYPE, body: json.slice(0, 1 + int(json.length - 2)) };
    },
    () => ({
      kind: 'random bytes',
      method: 'POST',
      path: pick(['/store/put', '/store/get', '/probe/fail']),
      headers: JSON_TYPE,
      body: Uint8Array.from({ length: 1 + int(200) }, () => int(256)),
    }),
    () => ({
      kind: 'wrong field types',
      method: 'POST',
      path: '/store/put',
      headers: JSON_TYPE,
      body: JSON.stringify(
        pick([
          { key: pick(wrongValues.filter((value) => typeof value !== 'string')), value: 1 },
          { key: 'x'.repeat(65 + int(100)), value: 1 },
          { key: 'ok', value: 1, tags: pick([12, 'tag', [1], [null], Array.from({ length: 11 }, () => 't')]) },
          { value: pick(wrongValues) },
        ]),
      ),
    }),
    () => ({
      kind: 'root not an object',
      method: 'POST',
      path: pick(['/store/put', '/store/get', '/probe/context', '/probe/fail']),
      headers: JSON_TYPE,
      body: JSON.stringify(pick([null, true, false, 0, 42, 'string', [], [{}], [1, 2, 3]])),
    }),
    () => ({
      kind: 'wrong content type',
      method: 'POST',
      path: pick(['/store/put', '/store/get']),
      headers: {
        'content-type': pick([
          'text/plain',
          'application/xml',
          'multipart/form-data; boundary=abc',
          'application/x-www-form-urlencoded',
          'application/jsonx',
          'image/png',
          'text/html; charset=utf-8',
          'invalid',
          'a/b/c',
        ]),
      },
      body: pick([validPut(), 'key=value', '<xml/>', text(50)]),
    }),
    () => ({
      kind: 'oversized body',
      method: 'POST',
      path: pick(['/store/put', '/store/get', '/nowhere']),
      headers: JSON_TYPE,
      body: JSON.stringify({ key: 'big', value: 'x'.repeat(BODY_LIMIT + int(BODY_LIMIT * 4)) }),
    }),
    () => ({
      kind: 'unknown route',
      method: pick(['GET', 'POST', 'PUT']),
      path: pick([
        `/${text(1 + int(10)).replace(/[^a-z]/gi, 'x')}`,
        `/store/${text(5).replace(/[^a-z]/gi, 'y')}`,
        '/store',
        '/store/put/extra',
        '/probe/',
        '/openapi.yaml',
        `/${'a/'.repeat(1 + int(30))}`,
        '/%zz',
        `/store/put?${text(10).replace(/[^a-z]/gi, 'q')}`.replace('/put?', '/putt?'),
      ]),
      headers: JSON_TYPE,
      body: undefined,
    }),
    () => ({
      kind: 'wrong method',
      method: pick(['PUT', 'DELETE', 'PATCH', 'GET']),
      path: pick(['/store/put', '/probe/wait', '/probe/fail']),
      headers: JSON_TYPE,
      body: undefined,
    }),
    () => ({
      kind: 'bad timeout header',
      method: 'POST',
      path: '/probe/context',
      headers: { ...JSON_TYPE, 'x-keel-timeout-ms': pick(['abc', '0', '-1', '1e3', '12.5', ' ', '9'.repeat(20), 'Infinity', '0x10']) },
      body: '{}',
    }),
    () => ({
      kind: 'bad GET input',
      method: 'GET',
      path: pick([
        `/store/get?input=${encodeURIComponent(text(1 + int(30)))}{`,
        '/store/get?input=%7B%22key%22%3A',
        '/store/get?input={}&input={}',
        `/store/get?input=${encodeURIComponent(JSON.stringify({ key: int(100) }))}`,
        '/store/get',
        `/store/greeting?input=${encodeURIComponent(JSON.stringify([text(5)]))}`,
      ]),
      headers: {},
      body: undefined,
    }),
    () => ({
      kind: 'prototype pollution',
      method: 'POST',
      path: '/store/put',
      headers: JSON_TYPE,
      body: pick([
        '{"key":"p","value":1,"__proto__":{"polluted":true}}',
        '{"key":"p","value":{"__proto__":{"polluted":true}}}',
        '{"key":"p","value":{"constructor":{"prototype":{"polluted":true}}}}',
      ]),
    }),
    () => {
      const depth = 50 + int(900);
      return {
        kind: 'deep nesting without a key',
        method: 'POST',
        path: '/store/put',
        headers: JSON_TYPE,
        body: `{"value":${'['.repeat(depth)}${']'.repeat(depth)}}`,
      };
    },
    () => ({ kind: 'empty JSON body', method: 'POST', path: '/store/put', headers: JSON_TYPE, body: '' }),
    () => ({ kind: 'no body', method: 'POST', path: pick(['/store/put', '/store/get']), headers: {}, body: undefined }),
  ];
}

function checkProblem(request: Malformed, status: number, contentType: string | null, text: string): string | undefined {
  const label = `${request.kind}: ${request.method} ${request.path.slice(0, 60)} -> ${status}`;
  if (status < 400 || status > 499) return `${label}: not a 4xx (${text.slice(0, 200)})`;
  if (contentType !== 'application/problem+json; charset=utf-8') return `${label}: content-type ${contentType}`;
  let problem: Problem;
  try {
    problem = JSON.parse(text) as Problem;
  } catch {
    return `${label}: body is not JSON (${text.slice(0, 200)})`;
  }
  if (problem.status !== status) return `${label}: problem.status ${problem.status}`;
  for (const field of ['type', 'title', 'detail', 'code', 'correlationId'] as const) {
    if (typeof problem[field] !== 'string' || problem[field] === '') return `${label}: problem.${field} missing`;
  }
  if (problem.type !== `urn:keel:error:${problem.code}`) return `${label}: type ${problem.type}`;
  if (/\bat .+:\d+:\d+/.test(text) || 'stack' in problem) return `${label}: leaks a stack trace`;
  return undefined;
}

describe('http - malformed requests', () => {
  let running: RunningGateway | undefined;
  let url: string;

  beforeAll(async () => {
    running = await runGateway({ bodyLimit: BODY_LIMIT, metrics: { defaultMetrics: false }, getOperations: ['store.get', 'store.greeting'] });
    ({ url } = running);
  });
  afterAll(() => running?.stop());

  it(`http - ${REQUESTS} generated malformed requests each get a well-formed 4xx problem, and the server keeps serving`, async () => {
    const next = random(0x6b65656c);
    const makers = generators(next);
    const requests = Array.from({ length: REQUESTS }, (_, index) => (makers[index % makers.length] as (index: number) => Malformed)(index));
    const failures: string[] = [];
    const statuses = new Map<string, Set<number>>();
    for (let start = 0; start < requests.length; start += CONCURRENCY) {
      await Promise.all(
        requests.slice(start, start + CONCURRENCY).map(async (request) => {
          const response = await fetch(`${url}${request.path}`, {
            method: request.method,
            headers: request.headers,
            ...(request.body === undefined ? {} : { body: request.body }),
          });
          const text = await response.text();
          const failure = checkProblem(request, response.status, response.headers.get('content-type'), text);
          if (failure !== undefined) failures.push(failure);
          const seen = statuses.get(request.kind) ?? new Set<number>();
          seen.add(response.status);
          statuses.set(request.kind, seen);
        }),
      );
    }
    expect(failures).toEqual([]);
    const byKind = Object.fromEntries([...statuses].map(([kind, seen]) => [kind, [...seen].sort()]));
    expect(byKind).toMatchObject({
      'truncated JSON': [400],
      'wrong content type': [415],
      'oversized body': expect.arrayContaining([413]),
      'wrong method': [405],
      'bad timeout header': [400],
      'prototype pollution': [400],
      'empty JSON body': [400],
    });
    expect(byKind['unknown route']).toContain(404);

    const good = await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ key: 'after', value: 1 }) });
    expect(good.status).toBe(200);
    expect(await good.json()).toEqual({ key: 'after', stored: true });
    expect((await fetch(`${url}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/keel_http_requests_total\{method="POST",route="unmatched",status="404"\}/);
  });

  it('http - a body sent with a Content-Encoding (gzip) is 415 naming the encoding, not MALFORMED_JSON, and so is one whose bytes happen to be JSON: nothing stored', async () => {
    const body = gzipSync(JSON.stringify({ key: 'zipped', value: 1 }));
    const zipped = await fetch(`${url}/store/put`, { method: 'POST', headers: { ...JSON_TYPE, 'content-encoding': 'gzip' }, body });
    expect(zipped.status).toBe(415);
    expect(await zipped.json()).toMatchObject({
      code: 'UNSUPPORTED_MEDIA_TYPE',
      detail: 'The body is sent with Content-Encoding "gzip", which this gateway does not decode: send the JSON without Content-Encoding.',
    });
    // Refused before its bytes are decoded: a body labelled gzip (or br) that is plain JSON is not taken as it is.
    for (const encoding of ['gzip', 'br']) {
      const labelled = await fetch(`${url}/store/put`, {
        method: 'POST',
        headers: { ...JSON_TYPE, 'content-encoding': encoding },
        body: JSON.stringify({ key: `labelled-${encoding}`, value: 1 }),
      });
      expect(labelled.status).toBe(415);
      expect(await labelled.json()).toMatchObject({ code: 'UNSUPPORTED_MEDIA_TYPE', detail: expect.stringContaining(`Content-Encoding "${encoding}"`) });
      const read = await fetch(`${url}/store/get`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ key: `labelled-${encoding}` }) });
      expect(await read.json()).toMatchObject({ status: 404, code: 'NOT_THERE' });
    }
    // identity is no encoding; a request without a body, or not to an operation, is not refused for the header.
    const plain = await fetch(`${url}/store/put`, { method: 'POST', headers: { ...JSON_TYPE, 'content-encoding': 'identity' }, body: JSON.stringify({ key: 'plain', value: 1 }) });
    expect(plain.status).toBe(200);
    // A repeated header is joined with ", " by Node: identity twice is still none; identity then gzip is an encoding.
    const twice = await fetch(`${url}/store/put`, { method: 'POST', headers: { ...JSON_TYPE, 'content-encoding': 'identity, IDENTITY' }, body: JSON.stringify({ key: 'twice', value: 1 }) });
    expect(twice.status).toBe(200);
    const mixed = await fetch(`${url}/store/put`, { method: 'POST', headers: { ...JSON_TYPE, 'content-encoding': 'identity, gzip' }, body: JSON.stringify({ key: 'mixed', value: 1 }) });
    expect(mixed.status).toBe(415);
    expect((await fetch(`${url}/healthz`, { headers: { 'content-encoding': 'gzip' } })).status).toBe(200);
    expect((await fetch(`${url}/store/get?input=${encodeURIComponent('{"key":"plain"}')}`, { headers: { 'content-encoding': 'br' } })).status).toBe(200);
  });

  it('http - a POST body that is not UTF-8 is 400 MALFORMED_JSON naming UTF-8, as ?input= with the same bytes is; nothing is stored', async () => {
    // {"key":"k-\xff\xfe","value":1}: lenient decoding would store the key "k-\ufffd\ufffd".
    const bytes = Buffer.concat([Buffer.from('{"key":"k-'), Buffer.from([0xff, 0xfe]), Buffer.from('","value":1}')]);
    const posted = await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_TYPE, body: bytes });
    expect(posted.status).toBe(400);
    expect(await posted.json()).toMatchObject({
      code: 'MALFORMED_JSON',
      detail: 'The body is not valid UTF-8: send the input as JSON encoded in UTF-8 (with content-type application/json).',
    });
    const asQuery = await fetch(`${url}/store/get?input=${[...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join('')}`);
    expect(asQuery.status).toBe(400);
    expect(await asQuery.json()).toMatchObject({ code: 'MALFORMED_JSON' });
    // The key lenient decoding would have made is not there.
    const replaced = await fetch(`${url}/store/get`, { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ key: 'k-\ufffd\ufffd' }) });
    expect(await replaced.json()).toMatchObject({ status: 404, code: 'NOT_THERE' });
    // Valid UTF-8 is taken as sent: multi-byte characters, a U+FFFD the client wrote, a leading BOM.
    const key = `k-é€😀\ufffd-${Date.now()}`;
    const stored = await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_TYPE, body: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify({ key, value: 1 }))]) });
    expect(await stored.json()).toEqual({ key, stored: true });
    const read = await fetch(`${url}/store/get?input=${encodeURIComponent(JSON.stringify({ key }))}`);
    expect(await read.json()).toMatchObject({ key, value: 1 });
    // Two BOMs are refused by both methods alike: one is dropped, the second is not JSON.
    const twoBoms = `\ufeff\ufeff${JSON.stringify({ key: 'two-boms', value: 1 })}`;
    const postedTwice = await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_TYPE, body: Buffer.from(twoBoms) });
    const queriedTwice = await fetch(`${url}/store/get?input=${encodeURIComponent(twoBoms)}`);
    expect([postedTwice.status, queriedTwice.status]).toEqual([400, 400]);
    // A body of a BOM alone is an empty body, and is answered as one.
    const bomOnly = await fetch(`${url}/store/put`, { method: 'POST', headers: JSON_TYPE, body: Buffer.from([0xef, 0xbb, 0xbf]) });
    expect(await bomOnly.json()).toMatchObject({ code: 'MALFORMED_JSON', detail: 'The body is empty but its content-type says JSON: send the input as JSON, for example {}.' });
  });

  it('http - broken HTTP on a raw socket gets a 400 problem and the server keeps serving', async () => {
    const { port } = new URL(url);
    const raw = async (bytes: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const socket = connect(Number(port), '127.0.0.1');
        let received = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (received += chunk));
        socket.on('end', () => resolve(received));
        socket.on('error', reject);
        socket.write(bytes);
      });
    for (const bytes of [
      'NOT HTTP AT ALL\r\n\r\n',
      'POST /store/put HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
      'POST /store/put HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n',
      'GET / HTTP/9.9\r\n\r\n',
    ]) {
      const answer = await raw(bytes);
      expect(answer, bytes).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('Content-Type: application/problem+json');
      const problem = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Problem;
      expect(problem).toMatchObject({ status: 400, code: 'MALFORMED_REQUEST' });
    }
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('http - broken HTTP after an answer on the same connection sent its head writes nothing into that answer: the connection is closed', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const streaming = await gatewayForTest({
      metrics: false,
      docsPath: false,
      configure: (server) => {
        server.get('/custom/stream', (_request, reply) => {
          reply.hijack();
          reply.raw.writeHead(200, { 'content-type': 'text/plain' });
          reply.raw.write('first part\n');
          void released.then(() => reply.raw.end('last part\n'));
        });
      },
    });
    try {
      const socket = connect(Number(new URL(streaming.url).port), '127.0.0.1');
      let received = '';
      socket.setEncoding('utf8');
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      const firstPart = new Promise<void>((resolve) =>
        socket.on('data', (chunk: string) => {
          received += chunk;
          if (received.includes('first part')) resolve();
        }),
      );
      socket.write('GET /custom/stream HTTP/1.1\r\nHost: x\r\n\r\n');
      await firstPart;
      // The head and the first part are out: broken HTTP now, on the same connection.
      socket.write('NOT HTTP AT ALL\r\n\r\n');
      await closed;
      expect(received).toMatch(/^HTTP\/1\.1 200 /);
      expect(received).not.toContain('400 Bad Request');
      expect(received).not.toContain('MALFORMED_REQUEST');
    } finally {
      release();
    }
    expect((await fetch(`${streaming.url}/healthz`)).status).toBe(200);
  });
});
