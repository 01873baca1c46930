/**
 * The gateway's close waits for requests in flight at most the bound keel deploy counts for it
 * (`gatewayCloseBoundMs`: the longest deadline it may give a call, plus 1 s), then ends the
 * connections still open: a client stalled in the middle of its body no longer holds the close
 * (and the kernel's stop after it) until `requestTimeoutMs`. Real HTTP on a free port.
 */
import { request as httpRequest, type ClientRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel } from 'keel';
import { gatewayCloseBoundMs, type CallRecord } from 'keel/transport';
import { createHttpGateway } from 'keel/http';
import { STOP_GRACE, stopGraceSecondsOf } from '../cli/deploy/grace.js';
import { linesLogger, type LogLine } from './support/log-lines.js';

/** The smallest deadlines the test can give: the kernel's default and the gateway's cap, 1 s each. */
const DEADLINE_MS = 1_000;

const slow = defineContract({
  name: 'slow',
  version: '1.0.0',
  operations: {
    nearDeadline: operation({
      description: 'Answers 100 ms before its deadline.',
      input: z.object({ name: z.string() }),
      output: z.object({ name: z.string(), ranMs: z.number() }),
    }),
  },
});

let entered: (name: string) => void = () => {};
const slowModule = defineModule({
  contract: slow,
  create: () => ({
    handlers: {
      nearDeadline: async ({ name }, context) => {
        const began = performance.now();
        entered(name);
        await delay(Math.max(0, context.deadline - Date.now() - 100));
        return { name, ranMs: performance.now() - began };
      },
    },
  }),
});

/** The options every gateway here shares: a free port, its lines kept in `lines`, no metrics, 1 s deadlines at most. */
const gatewayBase = (kernel: Kernel, lines: LogLine[]) => ({ kernel, port: 0, logger: linesLogger(lines), metrics: false, maxTimeoutMs: DEADLINE_MS });

/** A request whose headers are sent and whose body is held half sent until `finish()`. */
function halfSent(url: URL, name: string): { request: ClientRequest; answer: Promise<{ status: number; body: string }>; finish(): void } {
  const body = JSON.stringify({ name });
  const request = httpRequest({
    host: url.hostname,
    port: url.port,
    method: 'POST',
    path: '/slow/nearDeadline',
    headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'x-test-name': name },
  });
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    request.once('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.once('end', () => resolve({ status: response.statusCode ?? 0, body: text }));
    });
    request.once('error', reject);
  });
  request.flushHeaders();
  request.write(body.slice(0, 5));
  return { request, answer, finish: () => request.end(body.slice(5)) };
}

describe('http - a bounded close', () => {
  it('http - close() ends a client stalled in the middle of its body once the bound keel deploy counts has passed, with one warn line, and still answers 200 a call that began after it and ran almost its whole deadline', { timeout: 30_000 }, async () => {
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [slowModule], logger: silentLogger, defaultTimeoutMs: DEADLINE_MS });
    await kernel.start();
    // Which requests have arrived (their headers), by the name in their x-test-name header.
    const arrived = new Map<string, () => void>();
    const arrivedOf = (name: string) => new Promise<void>((resolve) => arrived.set(name, resolve));
    const gateway = await createHttpGateway({
      ...gatewayBase(kernel, lines),
      configure: (server) => {
        server.addHook('onRequest', (request, _reply, done) => {
          arrived.get(String(request.headers['x-test-name']))?.();
          done();
        });
      },
    });
    const url = new URL(await gateway.listen());
    let stalled: Socket | undefined;
    onTestFinished(async () => {
      stalled?.destroy();
      await gateway.close();
      await kernel.stop();
    });
    const boundMs = gatewayCloseBoundMs({ contracts: [slow], maxTimeoutMs: DEADLINE_MS, defaultTimeoutMs: DEADLINE_MS });
    expect(boundMs).toBe(2_000);

    // A client that sends its headers and half its body, then nothing: only requestTimeoutMs (30 s) would end it.
    const stalledArrived = arrivedOf('stalled');
    stalled = connect({ host: url.hostname, port: Number(url.port) });
    const stalledClosed = new Promise<string>((resolve) => stalled?.once('close', () => resolve('closed')));
    stalled.on('error', () => {});
    const stalledBody = JSON.stringify({ name: 'stalled' });
    stalled.write(
      `POST /slow/nearDeadline HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\n` +
        `content-length: ${stalledBody.length}\r\nx-test-name: stalled\r\n\r\n${stalledBody.slice(0, 8)}`,
    );
    // A legitimate request, its body not all sent yet either: its call begins after close() did.
    const legitArrived = arrivedOf('legit');
    const legit = halfSent(url, 'legit');
    await Promise.all([stalledArrived, legitArrived]);

    const began = performance.now();
    const closing = gateway.close();
    const legitEntered = new Promise<void>((resolve) => (entered = (name) => name === 'legit' && resolve()));
    legit.finish();
    await legitEntered;
    const calledAfterMs = performance.now() - began;

    // The legitimate call ran almost its whole deadline, and is answered 200.
    const answer = await legit.answer;
    expect(answer.status).toBe(200);
    const { name, ranMs } = JSON.parse(answer.body) as { name: string; ranMs: number };
    expect(name).toBe('legit');
    expect(ranMs).toBeGreaterThan(DEADLINE_MS - 300);
    expect(calledAfterMs).toBeLessThan(boundMs - DEADLINE_MS);

    // close() resolves once the bound has passed, not when requestTimeoutMs would end the stalled client.
    const outcome = await Promise.race([closing.then(() => 'closed'), delay(boundMs + 3_000).then(() => 'still waiting')]);
    expect(outcome).toBe('closed');
    expect(performance.now() - began).toBeGreaterThanOrEqual(boundMs - 50);
    expect(await stalledClosed).toBe('closed');
    expect(kernel.state).toBe('stopped');

    const warnings = lines.filter((line) => line.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.record).toMatchObject({ connections: 1, bound_ms: boundMs, request_timeout_ms: 30_000 });
    expect(warnings[0]?.message).toContain('close() cut 1 request(s) still in flight after 2000 ms');
    expect(warnings[0]?.message).toContain('lower requestTimeoutMs');
    expect(warnings[0]?.message).toContain('raise maxTimeoutMs');
  });

  it("http - close() cuts a request whose authenticate hook still waits when the bound has passed; when the hook answers later, its call is refused before it is made, and no handler runs", { timeout: 30_000 }, async () => {
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [slowModule], logger: silentLogger, defaultTimeoutMs: DEADLINE_MS, principal: z.object({ sub: z.string(), roles: z.array(z.string()) }) });
    const made: CallRecord[] = [];
    kernel.observe({ callMade: (record) => made.push(record) });
    await kernel.start();
    let hookEntered!: () => void;
    const inHook = new Promise<void>((resolve) => (hookEntered = resolve));
    let answerHook!: (principal: { sub: string; roles: string[] }) => void;
    const hookAnswer = new Promise<{ sub: string; roles: string[] }>((resolve) => (answerHook = resolve));
    const gateway = await createHttpGateway({
      ...gatewayBase(kernel, lines),
      // As createJwtAuthenticator does while it fetches a key set (for up to jwksTimeoutMs).
      authenticate: () => {
        hookEntered();
        return hookAnswer;
      },
    });
    const url = await gateway.listen();
    let handled = 0;
    entered = () => (handled += 1);
    onTestFinished(async () => {
      answerHook({ sub: 'late', roles: [] });
      await gateway.close();
      await kernel.stop();
    });
    const answer = fetch(`${url}/slow/nearDeadline`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'waiting' }) }).then(
      (response) => response.status,
      (error: unknown) => (error instanceof Error ? error.message : String(error)),
    );
    await inHook;

    const began = performance.now();
    const closing = gateway.close();
    const outcome = await Promise.race([closing.then(() => 'closed'), delay(2_000 + 3_000).then(() => 'still waiting')]);
    expect(outcome).toBe('closed');
    expect(performance.now() - began).toBeGreaterThanOrEqual(2_000 - 50);
    // The client's connection was ended with no answer.
    expect(await answer).toBe('fetch failed');
    expect(lines.filter((line) => line.level === 'warn').map((line) => line.record['connections'])).toEqual([1]);

    // The hook answers after the close: the call is refused before it is made (nothing is left of
    // the bound), so no handler runs. The hook's continuation runs in microtasks, all done by the next turn.
    answerHook({ sub: 'late', roles: [] });
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(made).toEqual([]);
    expect(handled).toBe(0);
  });

  it('http - a call whose request arrived before the close and starts during it (its authenticate hook answering late) gets a deadline that ends before the close cuts its connection, and is answered; one that would start too late to be answered is refused 503 UNAVAILABLE, its handler never run', { timeout: 30_000 }, async () => {
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [slowModule], logger: silentLogger, defaultTimeoutMs: DEADLINE_MS, principal: z.object({ sub: z.string(), roles: z.array(z.string()) }) });
    await kernel.start();
    // Each request's hook waits until the test answers it, by the name in its x-test-name header.
    const hooks = new Map<string, (principal: { sub: string; roles: string[] }) => void>();
    const inHooks = new Map<string, Promise<void>>();
    const hooked = new Map<string, () => void>();
    for (const name of ['early', 'late']) inHooks.set(name, new Promise<void>((resolve) => hooked.set(name, resolve)));
    const gateway = await createHttpGateway({
      ...gatewayBase(kernel, lines),
      authenticate: (request) => {
        const name = String(request.headers['x-test-name']);
        hooked.get(name)?.();
        return new Promise((resolve) => hooks.set(name, resolve));
      },
    });
    const url = await gateway.listen();
    const ran: string[] = [];
    entered = (name) => ran.push(name);
    onTestFinished(async () => {
      for (const answer of hooks.values()) answer({ sub: 'ada', roles: [] });
      await gateway.close();
      await kernel.stop();
    });
    const post = (name: string) =>
      fetch(`${url}/slow/nearDeadline`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-test-name': name }, body: JSON.stringify({ name }) }).then(
        async (response) => ({ status: response.status, body: (await response.json()) as { name?: string; code?: string; ranMs?: number } }),
        (error: unknown) => (error instanceof Error ? error.message : String(error)),
      );
    const early = post('early');
    const late = post('late');
    await Promise.all(inHooks.values());

    // The bound is 2 s (1 s deadlines, and 1 s): the first call starts 1.1 s into the close, and
    // would answer at 2 s, 100 ms before its 1 s deadline, as the close cuts it; the second starts
    // 1.7 s in, too late to be answered.
    const began = performance.now();
    const closing = gateway.close();
    await delay(1_100);
    hooks.get('early')?.({ sub: 'ada', roles: [] });
    const answered = await early;
    expect(answered).toMatchObject({ status: 200, body: { name: 'early' } });
    // It answered before the close's cut, given what was left of the bound as its deadline (less the time to write its answer).
    expect(performance.now() - began).toBeLessThan(2_000);
    expect(typeof answered === 'string' ? undefined : answered.body.ranMs).toBeLessThan(DEADLINE_MS - 300);
    await delay(Math.max(0, 1_700 - (performance.now() - began)));
    hooks.get('late')?.({ sub: 'ada', roles: [] });
    expect(await late).toMatchObject({ status: 503, body: { code: 'UNAVAILABLE' } });
    await closing;
    expect(ran).toEqual(['early']);
    // Nothing was left to cut: no warn line.
    expect(lines.filter((line) => line.level === 'warn')).toEqual([]);
  });

  it("http - the bound is keel deploy's share of a gateway's grace period: the longest of the default deadline, maxTimeoutMs and an operation's timeoutMs, plus 1 s, in whole seconds", () => {
    const long = defineContract({
      name: 'long',
      version: '1.0.0',
      operations: { report: operation({ description: 'A long report.', input: z.object({}), output: z.object({}), timeoutMs: 45_500 }) },
    });
    expect(gatewayCloseBoundMs({ contracts: [] })).toBe(11_000);
    expect(gatewayCloseBoundMs({ contracts: [slow], maxTimeoutMs: 60_000 })).toBe(61_000);
    expect(gatewayCloseBoundMs({ contracts: [slow, long], maxTimeoutMs: 20_000 })).toBe(47_000);
    expect(gatewayCloseBoundMs({ contracts: [slow], maxTimeoutMs: 1, defaultTimeoutMs: 1 })).toBe(2_000);
    const group = { modules: ['long'], replicas: 1, env: {}, http: 8080 };
    const longModule = defineModule({ contract: long, create: () => ({ handlers: { report: () => ({}) } }) });
    expect(STOP_GRACE.gatewaySeconds * 1000).toBe(gatewayCloseBoundMs({ contracts: [] }));
    expect(stopGraceSecondsOf(group, [longModule], { gateway: { maxTimeoutMs: 20_000 } })).toBe(STOP_GRACE.seconds + 47);
    expect(stopGraceSecondsOf(group, [], {})).toBe(STOP_GRACE.seconds + 11);
  });
});
