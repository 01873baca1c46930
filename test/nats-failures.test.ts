import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  defineContract,
  defineModule,
  event,
  isKeelError,
  operation,
  silentLogger,
  type AnyModule,
  type KeelError,
  type Kernel,
  type Transport,
} from 'keel';
import { createClient } from 'keel/transport';
import { createNatsTransport } from 'keel/nats';
import { connect, errors, headers, type NatsConnection, type ServerInfo } from '@nats-io/transport-node';
import { isPayloadTooLarge } from '../adapters/nats/connection.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const MAX_PAYLOAD = 16 * 1024;

const storeOperations = {
  put: operation({ input: z.object({ text: z.string() }), output: z.object({ length: z.number().int() }) }),
  get: operation({ input: z.object({ size: z.number().int() }), output: z.object({ text: z.string() }) }),
  slow: operation({ input: z.object({ ms: z.number().int() }), output: z.object({ slept: z.number() }) }),
  crash: operation({ input: z.object({}), output: z.object({}) }),
  announce: operation({ input: z.object({ size: z.number().int() }), output: z.object({}) }),
};

const store = defineContract({
  name: 'store',
  version: '1.0.0',
  operations: storeOperations,
  events: { announced: event({ payload: z.object({ text: z.string() }) }) },
});

/** What a caller built against later versions of `store` sees: one operation more. */
const purge = operation({ input: z.object({}), output: z.object({}) });
const storeNewerMinor = defineContract({ name: 'store', version: '1.3.0', operations: { ...storeOperations, purge } });
const storeNextMajor = defineContract({ name: 'store', version: '2.0.0', operations: { ...storeOperations, purge } });

const nobody = defineContract({
  name: 'nobody',
  version: '1.0.0',
  operations: { hello: operation({ input: z.object({}), output: z.object({}) }) },
});

const storeModule = defineModule({
  contract: store,
  create: ({ emit }) => ({
    handlers: {
      put: ({ text }) => ({ length: text.length }),
      get: ({ size }) => ({ text: 'x'.repeat(size) }),
      slow: async ({ ms }) => {
        await sleep(ms);
        return { slept: ms };
      },
      crash: () => {
        throw new Error('the disk is on fire');
      },
      announce: async ({ size }) => {
        await emit('announced', { text: 'y'.repeat(size) });
        return {};
      },
    },
  }),
});

const nobodyModule = defineModule({ contract: nobody, create: () => ({ handlers: { hello: () => ({}) } }) });

const modules: AnyModule[] = [storeModule, nobodyModule];

async function expectRejection(promise: Promise<unknown>): Promise<KeelError> {
  try {
    await promise;
  } catch (error) {
    return error as KeelError;
  }
  throw new Error('expected a rejection');
}

describe('nats - failure behaviour of calls', () => {
  let server: NatsServer;
  let serving: Transport;
  let calling: Transport;
  let host: Kernel;
  let client: Kernel;
  let raw: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer({ maxPayload: MAX_PAYLOAD });
    serving = await createNatsTransport({ servers: server.url, logger: silentLogger });
    calling = await createNatsTransport({ servers: server.url, logger: silentLogger });
    host = createKernel({ modules, topology: { host: ['store'], transport: serving }, logger: silentLogger });
    client = createKernel({ modules, topology: { host: [], transport: calling }, logger: silentLogger });
    await host.start();
    await client.start();
    raw = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await raw?.close();
    await client?.stop();
    await host?.stop();
    await calling?.close();
    await serving?.close();
  });

  it('nats - answers NO_RESPONDERS at once, retryable, when no instance serves the module', async () => {
    // A deadline far beyond the test's own timeout: only an immediate no-responders answer passes.
    const error = await expectRejection(client.client(nobody).hello({}, { timeoutMs: 120_000 }));
    expect(isKeelError(error, 'NO_RESPONDERS')).toBe(true);
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('nobody');
  }, 10_000);

  it('nats - answers UNKNOWN_OPERATION, as in one process, when the running module lacks the operation (a caller built against a newer minor)', async () => {
    const newer = createClient(storeNewerMinor, calling);
    const error = await expectRejection(newer.purge({}, { timeoutMs: 120_000, correlationId: 'corr-purge' }));
    expect(isKeelError(error, 'UNKNOWN_OPERATION'), String(error)).toBe(true);
    expect(error.retryable).toBe(false);
    expect(error.correlationId).toBe('corr-purge');
    expect(error.message).toContain('Module "store" 1.0.0 has no operation "purge"');
    expect(error.message).toContain('put, get, slow, crash, announce');
    expect(await newer.put({ text: 'known' })).toEqual({ length: 5 });
  }, 10_000);

  it('nats - answers VERSION_MISMATCH naming both versions when the running module has another major and lacks the operation', async () => {
    const error = await expectRejection(createClient(storeNextMajor, calling).purge({}, { timeoutMs: 120_000 }));
    expect(isKeelError(error, 'VERSION_MISMATCH'), String(error)).toBe(true);
    expect(error.message).toContain('store 2.0.0');
    expect(error.message).toContain('serves 1.0.0');
    expect(error.message).toContain('share the major version');
  }, 10_000);

  it('nats - answers NO_RESPONDERS when the module runs only under another subject prefix', async () => {
    const elsewhere = await createNatsTransport({ servers: server.url, prefix: 'elsewhere', logger: silentLogger });
    try {
      const error = await expectRejection(createClient(storeNewerMinor, elsewhere).purge({}, { timeoutMs: 120_000 }));
      expect(isKeelError(error, 'NO_RESPONDERS'), String(error)).toBe(true);
      expect(error.message).toContain('elsewhere.store.purge');
    } finally {
      await elsewhere.close();
    }
  }, 10_000);

  it('nats - fails a slow call with TIMEOUT at its deadline, and drops its late answer: seen on the wire, it settles no other call in flight', async () => {
    // A connection of its own watches every reply subject, so that the late answer's arrival is seen, not assumed.
    const watcher = await connect({ servers: server.url });
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      let lateAnswerSeen!: () => void;
      const lateAnswer = new Promise<void>((resolve) => (lateAnswerSeen = resolve));
      watcher.subscribe('_INBOX.>', {
        callback: (_error, msg) => {
          if (msg.data.length > 0 && msg.string().includes('"slept":600')) lateAnswerSeen();
        },
      });
      await watcher.flush();

      const error = await expectRejection(client.client(store).slow({ ms: 600 }, { timeoutMs: 100 }));
      expect(isKeelError(error, 'TIMEOUT')).toBe(true);
      expect(error.retryable).toBe(false);
      // Another call is pending on the same reply inbox when the late answer arrives; it must get its own.
      const inFlight = client.client(store).slow({ ms: 900 }, { timeoutMs: 10_000 });
      await lateAnswer;
      expect(await inFlight).toEqual({ slept: 900 });
      expect(await client.client(store).put({ text: 'after' })).toEqual({ length: 5 });
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      await watcher.close();
    }
  });

  it('nats - refuses an input larger than max_payload with PAYLOAD_TOO_LARGE naming the operation, and the next call works', async () => {
    const error = await expectRejection(client.client(store).put({ text: 'z'.repeat(MAX_PAYLOAD * 2) }));
    expect(isKeelError(error, 'PAYLOAD_TOO_LARGE')).toBe(true);
    expect(error.message).toContain('store.put');
    expect(error.message).toContain(String(MAX_PAYLOAD));
    expect(calling.status().ready).toBe(true);
    expect(await client.client(store).put({ text: 'small' })).toEqual({ length: 5 });
  });

  it('nats - counts the headers: an input that fits alone but not with its headers is PAYLOAD_TOO_LARGE too', async () => {
    const text = 'z'.repeat(MAX_PAYLOAD - 20);
    const error = await expectRejection(client.client(store).put({ text }));
    expect(isKeelError(error, 'PAYLOAD_TOO_LARGE')).toBe(true);
    expect(await client.client(store).put({ text: 'small' })).toEqual({ length: 5 });
  });

  it('nats - answers PAYLOAD_TOO_LARGE when the output does not fit, instead of leaving the caller to time out', async () => {
    const error = await expectRejection(client.client(store).get({ size: MAX_PAYLOAD * 2 }, { timeoutMs: 60_000 }));
    expect(isKeelError(error, 'PAYLOAD_TOO_LARGE')).toBe(true);
    expect(error.message).toContain('store.get');
    expect(await client.client(store).get({ size: 3 })).toEqual({ text: 'xxx' });
  }, 10_000);

  it('nats - refuses an event larger than max_payload with PAYLOAD_TOO_LARGE', async () => {
    const error = await expectRejection(client.client(store).announce({ size: MAX_PAYLOAD * 2 }));
    expect(isKeelError(error, 'PAYLOAD_TOO_LARGE')).toBe(true);
    expect(error.message).toContain('store.announced');
    expect(await client.client(store).announce({ size: 3 })).toEqual({});
  });

  it('nats - turns a throwing handler into INTERNAL with a correlation id, and serves the next call', async () => {
    const error = await expectRejection(client.client(store).crash({}, { correlationId: 'corr-crash' }));
    expect(isKeelError(error, 'INTERNAL')).toBe(true);
    expect(error.correlationId).toBe('corr-crash');
    expect(error.message).not.toContain('disk is on fire');
    expect(await client.client(store).put({ text: 'ok' })).toEqual({ length: 2 });
  });

  it('nats - cancels a call with CANCELLED when its signal aborts', async () => {
    const controller = new AbortController();
    const pending = client.client(store).slow({ ms: 500 }, { signal: controller.signal, timeoutMs: 5_000 });
    controller.abort();
    const error = await expectRejection(pending);
    expect(isKeelError(error, 'CANCELLED')).toBe(true);
  });

  it('nats - answers malformed bytes from a foreign client with an error envelope, and serves the next message', async () => {
    const request = headers();
    request.set('Keel-Contract-Version', '1.0.0');
    const reply = await raw.request('keel.store.put', new Uint8Array([0xff, 0x7b, 0x00]), { headers: request, timeout: 5_000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
    const envelope = reply.json<Record<string, unknown>>();
    expect(envelope).toMatchObject({ type: 'keel', code: 'INVALID_INPUT' });
    expect(String(envelope['message'])).toContain('JSON');
    expect(envelope['correlationId']).toEqual(expect.any(String));

    const notJson = await raw.request('keel.store.put', new TextEncoder().encode('{"text": '), { headers: request, timeout: 5_000 });
    expect(notJson.json<Record<string, unknown>>()).toMatchObject({ code: 'INVALID_INPUT' });

    expect(await client.client(store).put({ text: 'next' })).toEqual({ length: 4 });
  });

  it('nats - reads a body as a strict UTF-8 decoder does: a byte order mark dropped, a genuine U+FFFD kept, malformed sequences refused', async () => {
    const request = headers();
    request.set('Keel-Contract-Version', '1.0.0');
    const put = async (body: Uint8Array): Promise<Record<string, unknown>> =>
      (await raw.request('keel.store.put', body, { headers: request, timeout: 5_000 })).json<Record<string, unknown>>();
    const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
    expect(await put(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), utf8('{"text":"bom"}')]))).toEqual({ length: 3 });
    expect(await put(utf8('{"text":"a\uFFFDb"}'))).toEqual({ length: 3 });
    expect(await put(utf8('{"text":"caf\u00e9 \u{1F600}"}'))).toEqual({ length: 7 });
    for (const malformed of [[0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80]]) {
      const body = Buffer.concat([utf8('{"text":"'), Buffer.from(malformed), utf8('"}')]);
      expect(await put(body)).toMatchObject({ type: 'keel', code: 'INVALID_INPUT' });
    }
  });

  it('nats - answers a request without keel headers with an error envelope naming the missing header', async () => {
    const reply = await raw.request('keel.store.put', new TextEncoder().encode('{"text":"hi"}'), { timeout: 5_000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect(reply.headers?.get('Nats-Service-Error')).toContain('INVALID_INPUT');
    const envelope = reply.json<Record<string, unknown>>();
    expect(envelope).toMatchObject({ type: 'keel', code: 'INVALID_INPUT' });
    expect(String(envelope['message'])).toContain('Keel-Contract-Version');

    const badDeadline = headers();
    badDeadline.set('Keel-Contract-Version', '1.0.0');
    badDeadline.set('Keel-Deadline', 'tomorrow');
    const second = await raw.request('keel.store.put', new TextEncoder().encode('{"text":"hi"}'), { headers: badDeadline, timeout: 5_000 });
    expect(String(second.json<Record<string, unknown>>()['message'])).toContain('Keel-Deadline');

    expect(await client.client(store).put({ text: 'next' })).toEqual({ length: 4 });
  });

  it('nats - refuses a different major contract version with VERSION_MISMATCH (409)', async () => {
    const request = headers();
    request.set('Keel-Contract-Version', '2.0.0');
    const reply = await raw.request('keel.store.put', new TextEncoder().encode('{"text":"hi"}'), { headers: request, timeout: 5_000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('409');
    expect(reply.json<Record<string, unknown>>()).toMatchObject({ type: 'keel', code: 'VERSION_MISMATCH' });
  });

  it('nats - ignores a request without a reply subject and keeps serving', async () => {
    const request = headers();
    request.set('Keel-Contract-Version', '1.0.0');
    raw.publish('keel.store.put', new TextEncoder().encode('{"text":"fire and forget"}'), { headers: request });
    await raw.flush();
    expect(await client.client(store).put({ text: 'still here' })).toEqual({ length: 10 });
  });
});

describe('nats - what counts as PAYLOAD_TOO_LARGE', () => {
  // The client (v3) makes the same InvalidArgumentError for "'headers' are not available on this
  // server" as for max_payload (nats-core protocol.js publish; 3.x builds it without throwing it,
  // a later release may throw it). Read against the real client's error class and server info.
  const headersError = errors.InvalidArgumentError.format('headers', 'are not available on this server');
  const sizeError = errors.InvalidArgumentError.format('payload', 'max_payload size exceeded');

  it('nats - the headers refusal of a server without headers is not PAYLOAD_TOO_LARGE; the max_payload one is, on any server', () => {
    expect(isPayloadTooLarge(headersError, { info: { headers: false } as ServerInfo })).toBe(false);
    expect(isPayloadTooLarge(sizeError, { info: { headers: false } as ServerInfo })).toBe(true);
    expect(isPayloadTooLarge(sizeError, { info: { headers: true } as ServerInfo })).toBe(true);
    expect(isPayloadTooLarge(new errors.TimeoutError(), { info: { headers: true } as ServerInfo })).toBe(false);
  });
});
