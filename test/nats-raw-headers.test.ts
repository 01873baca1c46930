/**
 * The event path reads a message's header block from its bytes (adapters/nats/raw-headers.ts)
 * instead of nats' `msg.headers`. Every block below is written to a real nats-server as a raw
 * `HPUB` (so it can be malformed in ways the nats client would never send) and received by a real
 * client: what `messageHeaders` reads must be what nats' own decoder reads (each key's first
 * value), and a block nats refuses must still be refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect as connectTcp, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect, headers, type Msg, type NatsConnection } from 'nats';
import { messageHeaders } from '../adapters/nats/raw-headers.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let server: NatsServer;
let nc: NatsConnection;
let raw: Socket;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connect({ servers: server.url });
  raw = connectTcp(server.port, '127.0.0.1');
  await once(raw, 'connect');
  raw.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n');
});

afterAll(async () => {
  raw?.destroy();
  await nc?.close();
});

let sequence = 0;

/** Publishes `block` (then `body`) as the header block of a raw HPUB and resolves the message a nats client received. */
async function receive(block: string | Uint8Array, body = '{}'): Promise<Msg> {
  const subject = `raw.headers.${(sequence += 1)}`;
  const received = new Promise<Msg>((resolve) => nc.subscribe(subject, { max: 1, callback: (_error, msg) => resolve(msg) }));
  await nc.flush();
  const header = typeof block === 'string' ? Buffer.from(block, 'latin1') : Buffer.from(block);
  const payload = Buffer.from(body);
  raw.write(Buffer.concat([Buffer.from(`HPUB ${subject} ${header.length} ${header.length + payload.length}\r\n`), header, payload, Buffer.from('\r\n')]));
  return received;
}

/** What nats' decoder reads, as keel's readers take it: each key's first value. */
function natsReading(msg: Msg): [string, string[]][] {
  return [...(msg.headers ?? [])].map(([key, values]) => [key, [values[0] as string]]);
}

describe('messageHeaders', () => {
  it('reads a header block keel sends from its bytes, as nats reads it', async () => {
    const sent = headers();
    sent.set('Keel-Contract-Version', '1.0.0');
    sent.set('Keel-Event-Id', 'e-1');
    sent.set('Keel-Principal', '{"sub":"u-1","roles":["a"]}');
    const subject = `raw.headers.${(sequence += 1)}`;
    const received = new Promise<Msg>((resolve) => nc.subscribe(subject, { max: 1, callback: (_error, msg) => resolve(msg) }));
    await nc.flush();
    nc.publish(subject, new Uint8Array(0), { headers: sent });
    const msg = await received;
    const read = messageHeaders(msg);
    // Read from the bytes, not nats' MsgHdrs: if a client upgrade hides the raw bytes, this fails.
    expect(Array.isArray(read)).toBe(true);
    expect([...(read ?? [])]).toEqual(natsReading(msg));
    expect(msg.data.length).toBe(0);
  });

  it('reads no headers from a message without a block', async () => {
    const subject = `raw.headers.${(sequence += 1)}`;
    const received = new Promise<Msg>((resolve) => nc.subscribe(subject, { max: 1, callback: (_error, msg) => resolve(msg) }));
    await nc.flush();
    nc.publish(subject, Buffer.from('{}'));
    expect(messageHeaders(await received)).toBeUndefined();
  });

  const blocks: [string, string | Uint8Array][] = [
    ['plain keys and values', 'NATS/1.0\r\nKeel-Event-Id: e-1\r\nKeel-Publisher: ticker\r\n\r\n'],
    ['a repeated key: the first value', 'NATS/1.0\r\nKeel-Event-Id: first\r\nKeel-Event-Id: second\r\n\r\n'],
    ['an empty first value', 'NATS/1.0\r\nKeel-Event-Id:\r\nKeel-Event-Id: later\r\n\r\n'],
    ['keys as sent, not canonicalised', 'NATS/1.0\r\nkeel-event-id: lower\r\nKEEL-PUBLISHER: upper\r\n\r\n'],
    ['values trimmed, tabs and spaces', 'NATS/1.0\r\nKeel-Event-Id: \t spaced \t\r\nKeel-Publisher:tight\r\n\r\n'],
    ['a line without a colon is skipped', 'NATS/1.0\r\nnot a header\r\nKeel-Event-Id: e-2\r\n\r\n'],
    ['a colon in the value', 'NATS/1.0\r\nKeel-Traceparent: a:b:c\r\n\r\n'],
    ['an empty key', 'NATS/1.0\r\n: nothing\r\nKeel-Event-Id: e-3\r\n\r\n'],
    ['a status line with a code', 'NATS/1.0 503\r\nKeel-Event-Id: e-4\r\n\r\n'],
    ['UTF-8 in a value', Buffer.from('NATS/1.0\r\nKeel-Publisher: caf\u00e9\r\n\r\n', 'utf8')],
    ['a bare LF in a line without a colon', 'NATS/1.0\r\nodd\nline\r\nKeel-Event-Id: e-5\r\n\r\n'],
  ];

  for (const [name, block] of blocks) {
    it(`reads ${name} as nats does`, async () => {
      const msg = await receive(block);
      const read = messageHeaders(msg);
      expect([...(read ?? [])]).toEqual(natsReading(msg));
    });
  }

  it('refuses what nats refuses: a key with a space, a value with a bare LF', async () => {
    for (const block of ['NATS/1.0\r\nKeel Event: e-6\r\n\r\n', 'NATS/1.0\r\nKeel-Event-Id: a\nb\r\n\r\n']) {
      const msg = await receive(block);
      expect(() => msg.headers).toThrow();
      expect(() => messageHeaders(msg)).toThrow();
    }
  });
});
