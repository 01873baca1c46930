/**
 * The callee reads keel's request headers from the header block's bytes (adapters/nats/raw-headers.ts),
 * which it finds in the NATS client's message internals. These tests fail when a client update
 * moves those internals (the adapter would then fall back to `msg.headers`, slower but correct),
 * and check that reading the bytes gives what reading nats' decoded headers gives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MsgHdrsImpl, connect, headers, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { readRequestHeaders } from '../adapters/nats/headers.js';
import { forEachHeader, headerText, rawHeaderBytes } from '../adapters/nats/raw-headers.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const encoder = new TextEncoder();

/** Every header line as nats' decoded headers list them: key and each value. */
function decodedEntries(source: MsgHdrs): [string, string][] {
  return [...source].flatMap(([key, values]) => values.map((value): [string, string] => [key, value]));
}

function rawEntries(bytes: Uint8Array): [string, string][] {
  const entries: [string, string][] = [];
  forEachHeader(headerText(bytes), { take: (key, value) => void entries.push([key, value]) });
  return entries;
}

/** What `readRequestHeaders` answers, or the message it refuses with. */
function outcome(read: () => ReturnType<typeof readRequestHeaders>): unknown {
  try {
    return read();
  } catch (error) {
    return { refused: (error as Error).message };
  }
}

describe('nats - request headers read from the header bytes', () => {
  let server: NatsServer;
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false });
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
  });

  /** Publishes one message and returns it as a subscriber receives it. */
  const roundTrip = async (hdrs: MsgHdrs | undefined): Promise<Msg> => {
    const subscription = nc.subscribe('raw.headers', { max: 1 });
    nc.publish('raw.headers', encoder.encode('{"a":1}'), hdrs === undefined ? {} : { headers: hdrs });
    for await (const msg of subscription) return msg;
    throw new Error('no message');
  };

  it('nats - finds the header block of a received message in the client internals, and none when it has no headers', async () => {
    const sent = headers();
    sent.set('Keel-Contract-Version', '1.2.0');
    sent.append('X-Twice', 'one');
    sent.append('X-Twice', 'two');
    sent.set('Keel-Principal', '{"sub":"u-1","note":"a: b"}');
    const msg = await roundTrip(sent);
    const bytes = rawHeaderBytes(msg);
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(headerText(bytes as Uint8Array)).toBe(new TextDecoder().decode((sent as MsgHdrs & { encode(): Uint8Array }).encode()));
    expect(rawEntries(bytes as Uint8Array)).toEqual(decodedEntries(msg.headers as MsgHdrs));
    expect(new TextDecoder().decode(msg.data)).toBe('{"a":1}'); // the body is untouched

    expect(rawHeaderBytes(await roundTrip(undefined))).toBeNull();
  });

  it('nats - answers undefined, for the decoded headers to be used, when the message object is not the one it knows', () => {
    expect(rawHeaderBytes({ headers: undefined } as unknown as Msg)).toBeUndefined();
    expect(rawHeaderBytes({ _msg: { hdr: 12 }, _rdata: encoder.encode('HTTP/1.1 200 OK\r\n\r\n') } as unknown as Msg)).toBeUndefined();
    expect(rawHeaderBytes({ _msg: { hdr: 400 }, _rdata: encoder.encode('NATS/1.0\r\n\r\n') } as unknown as Msg)).toBeUndefined();
  });

  it('nats - reads the same call context from the bytes as from nats\' decoded headers, refusals included', () => {
    const deadline = Date.now() + 60_000;
    const blocks = [
      `NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: ${deadline}\r\n\r\n`,
      // Spaces around values, a repeated header (the first counts), unknown and odd lines, a status line.
      `NATS/1.0 100 Whatever\r\nKeel-Contract-Version:   2.1.0  \r\nKeel-Correlation-Id: first\r\nKeel-Correlation-Id: second\r\nno colon here\r\nX-Other: y\r\n\r\nKeel-Caller: late\r\nKeel-Deadline: ${deadline}\r\n\r\n`,
      `NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-2\r\nKeel-Deadline: ${deadline}\r\nKeel-Principal: {"sub":"u-1","roles":["a:b"]}\r\nKeel-Call-Attempt: 3\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nKeel-Idempotency-Key: k-1\r\n\r\n`,
      // Refused: no version, a bad version, a bad deadline, a principal that is not JSON.
      `NATS/1.0\r\nKeel-Correlation-Id: c-3\r\n\r\n`,
      `NATS/1.0\r\nKeel-Contract-Version: one\r\nKeel-Correlation-Id: c-4\r\n\r\n`,
      `NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-5\r\nKeel-Deadline: soon\r\n\r\n`,
      `NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-6\r\nKeel-Principal: {nope\r\n\r\n`,
      // Lower-case keys are other headers, for both readers.
      `NATS/1.0\r\nkeel-contract-version: 1.0.0\r\nKeel-Correlation-Id: c-7\r\n\r\n`,
    ];
    for (const block of blocks) {
      const bytes = encoder.encode(block);
      const fromBytes = outcome(() => readRequestHeaders(bytes, 'shop.order', 10_000));
      const fromDecoded = outcome(() => readRequestHeaders(MsgHdrsImpl.decode(bytes), 'shop.order', 10_000));
      expect(fromBytes, block).toEqual(fromDecoded);
    }
  });
});
