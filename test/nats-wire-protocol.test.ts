/**
 * A client that is not keel: only the NATS client (`@nats-io/transport-node`), following docs/wire-protocol.md. The keel
 * side (one module served over NATS) is set up in `beforeAll`; every request, reply and check
 * below is plain NATS.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as connectTcp } from 'node:net';
import { once } from 'node:events';
import { RequestError, connect, headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
// keel is used only to serve the module under test:
import { createKernel, currentContext, defineContract, defineError, defineModule, event, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

// --- the keel side ------------------------------------------------------------------------------

const UnknownWord = defineError({
  code: 'UNKNOWN_WORD',
  kind: 'not-found',
  data: z.object({ word: z.string() }),
  message: (data) => `No translation for "${data.word}"`,
});

const dictionary = defineContract({
  name: 'dictionary',
  version: '2.1.0',
  description: 'Translates words',
  operations: {
    translate: operation({
      input: z.object({ word: z.string().min(1), language: z.enum(['fr', 'de']).default('fr') }),
      output: z.object({ word: z.string(), translation: z.string() }),
      errors: [UnknownWord],
      idempotent: true,
      description: 'Translates one English word',
    }),
    whoCalls: operation({
      input: z.object({}),
      output: z.object({ correlationId: z.string(), caller: z.string(), deadline: z.number(), traceparent: z.string().nullable() }),
    }),
  },
  events: { translated: event({ payload: z.object({ word: z.string() }) }) },
});

const words: Record<string, Record<string, string>> = { cat: { fr: 'chat', de: 'Katze' } };

const dictionaryModule = defineModule({
  contract: dictionary,
  create: ({ emit }) => ({
    handlers: {
      translate: async ({ word, language }) => {
        const translation = words[word]?.[language];
        if (translation === undefined) throw new UnknownWord({ word });
        await emit('translated', { word });
        return { word, translation };
      },
      whoCalls: () => {
        const context = currentContext();
        if (context === undefined) throw new Error('no context');
        return { correlationId: context.correlationId, caller: context.caller, deadline: context.deadline, traceparent: context.traceparent ?? null };
      },
    },
  }),
});

// --- the foreign client ---------------------------------------------------------------------------

const encoder = new TextEncoder();

function keelHeaders(extra: Record<string, string> = {}): MsgHdrs {
  const result = headers();
  result.set('Keel-Contract-Version', '2.0.0');
  for (const [key, value] of Object.entries(extra)) result.set(key, value);
  return result;
}

function isError(reply: Msg): boolean {
  return reply.headers?.has('Nats-Service-Error-Code') ?? false;
}

describe('nats - wire protocol, spoken by a plain NATS client', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    kernel = createKernel({ modules: [dictionaryModule], topology: { transport }, logger: silentLogger });
    await kernel.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
  });

  it('nats - calls an operation: JSON in, JSON out, no error header', async () => {
    const reply = await nc.request('keel.dictionary.translate', encoder.encode(JSON.stringify({ word: 'cat', language: 'de' })), {
      headers: keelHeaders({ 'Keel-Timeout-Ms': '5000', 'Keel-Correlation-Id': 'wire-1' }),
      timeout: 5_000,
    });
    expect(isError(reply)).toBe(false);
    expect(reply.json()).toEqual({ word: 'cat', translation: 'Katze' });
  });

  it('nats - applies schema defaults and carries correlation id, caller, deadline and traceparent from headers', async () => {
    const defaulted = await nc.request('keel.dictionary.translate', encoder.encode('{"word":"cat"}'), { headers: keelHeaders(), timeout: 5_000 });
    expect(defaulted.json()).toEqual({ word: 'cat', translation: 'chat' });

    const deadline = Date.now() + 4_000;
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const reply = await nc.request('keel.dictionary.whoCalls', encoder.encode('{}'), {
      headers: keelHeaders({
        'Keel-Correlation-Id': 'wire-2',
        'Keel-Caller': 'billing-in-go',
        'Keel-Deadline': String(deadline),
        traceparent,
      }),
      timeout: 5_000,
    });
    expect(reply.json()).toEqual({ correlationId: 'wire-2', caller: 'billing-in-go', deadline, traceparent });

    // Well-formed but invalid (W3C Trace Context: ignored), lest the handler's log lines carry trace_id 000…0 and pass it on.
    for (const invalid of [
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ]) {
      const ignored = await nc.request('keel.dictionary.whoCalls', encoder.encode('{}'), {
        headers: keelHeaders({ 'Keel-Correlation-Id': 'wire-2', 'Keel-Deadline': String(Date.now() + 4_000), traceparent: invalid }),
        timeout: 5_000,
      });
      expect((ignored.json() as { traceparent: string | null }).traceparent, invalid).toBeNull();
    }
  });

  it('nats - gets a declared error as a "declared" envelope with its data, and the service code of its kind', async () => {
    const reply = await nc.request('keel.dictionary.translate', encoder.encode('{"word":"unicorn"}'), {
      headers: keelHeaders({ 'Keel-Correlation-Id': 'wire-3' }),
      timeout: 5_000,
    });
    expect(isError(reply)).toBe(true);
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(reply.headers?.get('Nats-Service-Error')).toContain('UNKNOWN_WORD');
    expect(reply.json()).toEqual({
      type: 'declared',
      code: 'UNKNOWN_WORD',
      message: 'No translation for "unicorn"',
      data: { word: 'unicorn' },
      correlationId: 'wire-3',
    });
  });

  it('nats - gets invalid input as a "keel" INVALID_INPUT envelope with the validation issues', async () => {
    const reply = await nc.request('keel.dictionary.translate', encoder.encode('{"word":""}'), { headers: keelHeaders(), timeout: 5_000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
    const envelope = reply.json<{ type: string; code: string; message: string; details: { issues: { path: string[] }[] }; correlationId: string }>();
    expect(envelope).toMatchObject({ type: 'keel', code: 'INVALID_INPUT', details: { contract: 'dictionary', operation: 'translate' } });
    expect(envelope.details.issues[0]?.path).toEqual(['word']);
    expect(envelope.correlationId).toEqual(expect.any(String));
  });

  it('nats - gets an INVALID_INPUT envelope for a header block nats cannot read, and the module keeps answering', async () => {
    // Written as a raw HPUB: the nats client would never send a key with a space in it.
    const inbox = `_INBOX.malformed.${Date.now()}`;
    const replied = new Promise<Msg>((resolve) => nc.subscribe(inbox, { max: 1, callback: (_error, msg) => resolve(msg) }));
    await nc.flush();
    const socket = connectTcp(server.port, '127.0.0.1');
    try {
      await once(socket, 'connect');
      const block = Buffer.from('NATS/1.0\r\nKeel-Contract-Version: 2.0.0\r\nBad Key: x\r\n\r\n', 'latin1');
      const body = Buffer.from('{"word":"cat"}');
      socket.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n');
      socket.write(Buffer.concat([
        Buffer.from(`HPUB keel.dictionary.translate ${inbox} ${block.length} ${block.length + body.length}\r\n`),
        block,
        body,
        Buffer.from('\r\nPING\r\n'),
      ]));
      const reply = await replied;
      expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
      expect(reply.json()).toMatchObject({ type: 'keel', code: 'INVALID_INPUT', message: expect.stringContaining('header block is malformed') });
    } finally {
      socket.destroy();
    }
    const next = await nc.request('keel.dictionary.translate', encoder.encode('{"word":"cat"}'), { headers: keelHeaders(), timeout: 5_000 });
    expect(next.json()).toEqual({ word: 'cat', translation: 'chat' });
  });

  it('nats - is refused with VERSION_MISMATCH when its contract major differs', async () => {
    const reply = await nc.request('keel.dictionary.translate', encoder.encode('{"word":"cat"}'), {
      headers: keelHeaders({ 'Keel-Contract-Version': '1.9.0' }),
      timeout: 5_000,
    });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('409');
    expect(reply.json()).toMatchObject({ type: 'keel', code: 'VERSION_MISMATCH' });
  });

  it('nats - discovers the module with $SRV.PING and $SRV.INFO, with JSON Schemas in endpoint metadata', async () => {
    const ping = (await nc.request('$SRV.PING.dictionary', undefined, { timeout: 5_000 })).json<Record<string, unknown>>();
    expect(ping).toMatchObject({ type: 'io.nats.micro.v1.ping_response', name: 'dictionary', version: '2.1.0' });

    const info = (await nc.request('$SRV.INFO.dictionary', undefined, { timeout: 5_000 })).json<{
      name: string;
      version: string;
      description: string;
      metadata: Record<string, string>;
      endpoints: { name: string; subject: string; queue_group: string; metadata: Record<string, string> }[];
    }>();
    expect(info).toMatchObject({ name: 'dictionary', version: '2.1.0', description: 'Translates words' });
    expect(info.metadata).toMatchObject({ 'keel.prefix': 'keel', 'keel.protocol': '1' });
    const translate = info.endpoints.find((endpoint) => endpoint.name === 'translate');
    expect(translate).toMatchObject({ subject: 'keel.dictionary.translate', queue_group: 'dictionary' });
    expect(translate?.metadata).toMatchObject({ errors: 'UNKNOWN_WORD', idempotent: 'true', description: 'Translates one English word' });
    const inputSchema = JSON.parse(translate?.metadata['input_schema'] ?? '{}');
    expect(inputSchema).toMatchObject({ type: 'object', required: ['word'] });
    expect(inputSchema.properties.language).toMatchObject({ enum: ['fr', 'de'], default: 'fr' });
    const outputSchema = JSON.parse(translate?.metadata['output_schema'] ?? '{}');
    expect(outputSchema).toMatchObject({ type: 'object', required: ['word', 'translation'] });

    const stats = (await nc.request('$SRV.STATS.dictionary', undefined, { timeout: 5_000 })).json<{ endpoints: { name: string; num_requests: number }[] }>();
    expect(stats.endpoints.find((endpoint) => endpoint.name === 'translate')?.num_requests).toBeGreaterThan(0);
  });

  it('nats - receives notification events with their headers on the event subject', async () => {
    const subscription = nc.subscribe('keel.dictionary.events.translated', { max: 1 });
    await nc.flush();
    await nc.request('keel.dictionary.translate', encoder.encode('{"word":"cat"}'), {
      headers: keelHeaders({ 'Keel-Correlation-Id': 'wire-event' }),
      timeout: 5_000,
    });
    for await (const message of subscription) {
      expect(message.json()).toEqual({ word: 'cat' });
      expect(message.headers?.get('Keel-Correlation-Id')).toBe('wire-event');
      expect(message.headers?.get('Keel-Publisher')).toBe('dictionary');
      expect(message.headers?.get('Keel-Contract-Version')).toBe('2.1.0');
      expect(message.headers?.get('Keel-Event-Id')).not.toBe('');
      expect(Number(message.headers?.get('Keel-Published-At'))).toBeGreaterThan(0);
    }
  });

  it('nats - gets the NATS no-responders status for an operation nobody serves', async () => {
    // The client (v3) turns the server's `503` status into a RequestError whose cause is NoRespondersError.
    await expect(nc.request('keel.dictionary.fly', encoder.encode('{}'), { headers: keelHeaders(), timeout: 5_000 })).rejects.toSatisfy(
      (error) => error instanceof RequestError && error.isNoResponders(),
    );
  });
});
