/**
 * The callee (requests) and the subscriber (notifications) read a message's header block from
 * its bytes (adapters/nats/raw-headers.ts) instead of nats' `msg.headers`. Every block below is written to a real nats-server as a raw
 * `HPUB` (so it can be malformed in ways the nats client would never send) and received by a real
 * client: what `messageHeaders` reads must be what nats' own decoder reads (each key's first
 * value), and a block nats refuses must still be refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { headers, type Msg } from '@nats-io/transport-node';
import { callHeaders, eventHeaders, readRequestHeaders, sameMajor } from '../adapters/nats/headers.js';
import { hasNoHeaders, messageHeaders, replyToken } from '../adapters/nats/raw-headers.js';
import { eventHeaderPartsOf } from '../adapters/nats/header-text.js';
import { startRawNats, type RawNats } from './support/raw-nats.js';

let nats: RawNats;

beforeAll(async () => {
  nats = await startRawNats('raw.headers');
});

afterAll(async () => {
  await nats?.close();
});

let sequence = 0;

/** Publishes `block` (then `body`) as the header block of a raw HPUB and resolves the message a nats client received. */
function receive(block: string | Uint8Array, body = '{}'): Promise<Msg> {
  return nats.received((subject) => nats.hpub(subject, block, body));
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
    const msg = await nats.received((subject) => nats.nc.publish(subject, new Uint8Array(0), { headers: sent }));
    const read = messageHeaders(msg);
    // Read from the bytes, not nats' MsgHdrs: if a client upgrade hides the raw bytes, this fails.
    expect(Array.isArray(read)).toBe(true);
    expect([...(read ?? [])]).toEqual(natsReading(msg));
    expect(msg.data.length).toBe(0);
  });

  it('reads no headers from a message without a block', async () => {
    const msg = await nats.received((subject) => nats.nc.publish(subject, Buffer.from('{}')));
    expect(messageHeaders(msg)).toBeUndefined();
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

/** What `readRequestHeaders` answers, or the message it refuses with. */
function outcome(read: () => ReturnType<typeof readRequestHeaders>): unknown {
  try {
    return read();
  } catch (error) {
    return { refused: (error as Error).message };
  }
}

describe('readRequestHeaders over messageHeaders', () => {
  it('reads the same call context from the bytes as from nats\' decoded headers, refusals included', async () => {
    const deadline = Date.now() + 60_000;
    const blocks = [
      `NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: ${deadline}\r\n\r\n`,
      // Spaces around values, a repeated header (the first counts), unknown and odd lines, a status line.
      `NATS/1.0 100 Whatever\r\nKeel-Contract-Version:   2.1.0  \r\nKeel-Correlation-Id: first\r\nKeel-Correlation-Id: second\r\nno colon here\r\nX-Other: y\r\nKeel-Caller: late\r\nKeel-Deadline: ${deadline}\r\n\r\n`,
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
      const msg = await receive(block);
      const read = messageHeaders(msg);
      // Read from the bytes, except a block with a status line: that one nats decodes.
      expect(Array.isArray(read), block).toBe(block.startsWith('NATS/1.0\r\n'));
      const fromBytes = outcome(() => readRequestHeaders(read, 'shop.order', 10_000));
      const fromDecoded = outcome(() => readRequestHeaders(msg.headers, 'shop.order', 10_000));
      expect(fromBytes, block).toEqual(fromDecoded);
    }
  });
});

/** Publishes `{}` on `subject` (raw PUB, no headers) and resolves the message a nats client received on `pattern`. */
function receivePlain(pattern: string, subject: string): Promise<Msg> {
  return nats.receiveOn(pattern, () => nats.pub(subject, '{}'));
}

describe('the caller reads replies from their bytes', () => {
  it('reads the base-36 token of a reply subject, and refuses anything the caller never writes', async () => {
    const inbox = `raw.inbox.${(sequence += 1)}`;
    const cases: [string, number][] = [
      ['0', 0],
      ['z', 35],
      ['10', 36],
      [(123_456_789).toString(36), 123_456_789],
      ['00', -1], // a leading zero: not how the caller writes a number
      ['A1', -1],
      ['1-2', -1],
      ['12345678901', -1], // longer than any token
    ];
    for (const [token, expected] of cases) {
      const msg = await receivePlain(`${inbox}.*`, `${inbox}.${token}`);
      expect(replyToken(msg, inbox.length + 1), token).toBe(expected);
      // The same reading from the decoded subject, when the bytes are not there.
      const decodedOnly = { subject: msg.subject } as Msg;
      expect(replyToken(decodedOnly, inbox.length + 1), token).toBe(expected);
    }
  });

  it('knows a reply without a header block, and never claims one with headers has none', async () => {
    const plain = await receivePlain(`raw.plain.${(sequence += 1)}`, `raw.plain.${sequence}`);
    expect(hasNoHeaders(plain)).toBe(true);
    expect(plain.headers).toBeUndefined();
    const withHeaders = await receive('NATS/1.0\r\nNats-Service-Error-Code: 500\r\n\r\n');
    expect(hasNoHeaders(withHeaders)).toBe(false);
    expect(hasNoHeaders({ subject: 'x' } as Msg)).toBe(false); // internals not there: read msg.headers
  });
});

describe('callHeaders', () => {
  it("writes the bytes nats' headers() would, for every call of an operation, whatever varies", () => {
    const address = Object.freeze({ contract: 'pricing', version: '1.2.0', operation: 'quote' });
    const contexts = [
      { correlationId: 'c-1', caller: 'orders', deadline: 1_700_000_000_000.7 },
      { correlationId: 'c-2', caller: 'orders', deadline: 1_700_000_000_500, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      { correlationId: ' c-3\r\n', caller: 'billing', deadline: 5, idempotencyKey: 'k-1', callAttempt: 2 },
      { correlationId: 'c-4', caller: 'orders', deadline: 6, principal: { sub: 'u-1' } },
      // Written straight into bytes, or (a value safe() changes, or not ASCII) as text: the same bytes.
      { correlationId: 'c-5', caller: 'orders', deadline: 7, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', idempotencyKey: 'k-5', principal: { sub: 'u-5', roles: ['a:b'] }, callAttempt: 3 },
      { correlationId: 'c-6 ', caller: 'orders', deadline: 8 },
      { correlationId: ' c-7', caller: 'orders', deadline: 9, traceparent: '' },
      { correlationId: 'caf\u00e9-8', caller: 'orders', deadline: 10 },
      { correlationId: 'c\r\n9', caller: 'orders', deadline: 11 },
      { correlationId: 'c\t10', caller: 'orders', deadline: 12 },
      { correlationId: 'c-11', caller: 'orders', deadline: 13, traceparent: ' tp ' },
      { correlationId: 'c-12', caller: 'orders', deadline: 14, traceparent: 'tp\n12' },
      { correlationId: 'c-12b', caller: 'orders', deadline: 14, traceparent: 'tp-caf\u00e9' },
      { correlationId: 'c-13', caller: 'orders', deadline: 15, idempotencyKey: ' k-13' },
      { correlationId: 'c-14', caller: 'orders', deadline: 16, idempotencyKey: 'caf\u00e9-14' },
      { correlationId: 'c-15', caller: 'orders', deadline: 17, idempotencyKey: '' },
      { correlationId: 'c-16', caller: 'orders', deadline: 18, principal: { sub: 'caf\u00e9 au lait' } },
      { correlationId: 'c-17', caller: 'orders', deadline: 19, callAttempt: 17 },
      { correlationId: 'c-18 ', caller: 'orders', deadline: 20, traceparent: 'tp-18', idempotencyKey: 'k-18', principal: { sub: 'u-18' }, callAttempt: 1 },
      { correlationId: 'c-19', caller: 'caf\u00e9', deadline: 9_007_199_254_740_993 },
      { correlationId: 'c-20', caller: ' orders ', deadline: -21.5, idempotencyKey: 'k\r\n20' },
      { correlationId: 'c-21', caller: 'orders', deadline: 22 },
      // Deadlines written as digits from the number, at its edges, and those left to the text path.
      { correlationId: 'c-22', caller: 'orders', deadline: 0 },
      { correlationId: 'c-23', caller: 'orders', deadline: 9_007_199_254_740_991 },
      { correlationId: 'c-24', caller: 'orders', deadline: 1_000_000_000_000 },
      { correlationId: 'c-25', caller: 'orders', deadline: Number.NaN },
      { correlationId: 'c-26', caller: 'orders', deadline: -0 },
    ];
    const clean = (value: string): string => value.replace(/[\r\n]+/g, ' ').trim();
    for (const context of contexts) {
      const expected = headers();
      expected.set('Keel-Contract-Version', address.version);
      expected.set('Keel-Correlation-Id', clean(context.correlationId));
      expected.set('Keel-Caller', clean(context.caller));
      expected.set('Keel-Deadline', String(Math.floor(context.deadline)));
      if (context.traceparent !== undefined && context.traceparent !== '') expected.set('traceparent', clean(context.traceparent));
      if (context.idempotencyKey !== undefined) expected.set('Keel-Idempotency-Key', clean(context.idempotencyKey));
      if (context.principal !== undefined) expected.set('Keel-Principal', JSON.stringify(context.principal).replace('\u00e9', '\\u00e9'));
      if (context.callAttempt !== undefined) expected.set('Keel-Call-Attempt', String(context.callAttempt));
      const sent = callHeaders(address, context as Parameters<typeof callHeaders>[1]) as unknown as { encode(): Uint8Array };
      expect(Buffer.from(sent.encode()).toString('latin1'), context.correlationId).toBe(
        Buffer.from((expected as unknown as { encode(): Uint8Array }).encode()).toString('latin1'),
      );
    }
  });

  it('reads back what it wrote, a non-ASCII caller included (the bytes are UTF-8)', () => {
    const address = Object.freeze({ contract: 'pricing', version: '1.2.0', operation: 'quote' });
    const sent = callHeaders(address, { correlationId: 'c-1', caller: 'caf\u00e9', deadline: 5, traceparent: undefined });
    expect(sent.get('Keel-Caller')).toBe('caf\u00e9');
    sent.set('X-Extra', '1');
    expect(Buffer.from((sent as unknown as { encode(): Uint8Array }).encode()).toString('utf8')).toContain('Keel-Caller: caf\u00e9\r\n');
  });
});

describe('eventHeaders', () => {
  it('builds the constant parts once per publisher and version: two modules publishing at 1.0.0 keep theirs', () => {
    const orders = eventHeaderPartsOf('1.0.0', 'orders-parts');
    const payments = eventHeaderPartsOf('1.0.0', 'payments-parts');
    expect(payments.middle).toContain('payments-parts');
    // Alternating between them finds each one's parts again instead of rebuilding them.
    expect(eventHeaderPartsOf('1.0.0', 'orders-parts')).toBe(orders);
    expect(eventHeaderPartsOf('1.0.0', 'payments-parts')).toBe(payments);
    expect(orders.middle).toContain('orders-parts');
  });

  it("writes the bytes nats' headers() would, as versions and publishers change from event to event", () => {
    const events = [
      { version: '1.0.0', publisher: 'orders', id: 'e-1', correlationId: 'c-1', publishedAt: 1_700_000_000_000.4 },
      { version: '1.0.0', publisher: 'orders', id: 'e-2', correlationId: 'c-2', publishedAt: 2, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      { version: '2.1.0', publisher: 'orders', id: 'e-3\n', correlationId: 'c-3', publishedAt: 3 },
      { version: '2.1.0', publisher: 'billing', id: 'e-4', correlationId: 'c-4', publishedAt: 4, principal: { sub: 'u-1' } },
      { version: '1.0.0', publisher: 'orders', id: 'e-5', correlationId: 'c-5', publishedAt: 5 },
      // Written straight into bytes, or (a value safe() changes, or not ASCII) as text: the same bytes.
      { version: '1.0.0', publisher: 'orders', id: 'e-6', correlationId: 'c-6', publishedAt: 0, traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', principal: { sub: 'caf\u00e9 au lait' } },
      { version: '1.0.0', publisher: 'orders', id: ' e-7', correlationId: 'c-7 ', publishedAt: 7 },
      { version: '1.0.0', publisher: 'orders', id: 'e\t8', correlationId: 'caf\u00e9-8', publishedAt: 8 },
      { version: '1.0.0', publisher: 'caf\u00e9', id: 'e-9', correlationId: 'c-9', publishedAt: 9_007_199_254_740_993 },
      { version: '1.0.0', publisher: 'orders', id: 'e-10', correlationId: 'c\r\n10', publishedAt: 10, traceparent: ' tp ' },
      // An event emitted outside any call is its own correlation (kernel/emit.ts): the id's bytes copied.
      { version: '1.0.0', publisher: 'orders', id: 'e-11-own', correlationId: 'e-11-own', publishedAt: 11 },
      { version: '1.0.0', publisher: 'orders', id: ['e-12', 'own'].join('-'), correlationId: 'e-12-own', publishedAt: 12 },
      { version: '1.0.0', publisher: 'orders', id: ' e-13 ', correlationId: ' e-13 ', publishedAt: 13 },
      // A time the digits cannot be written from (not a whole number from 0 to 2^53): its text.
      { version: '1.0.0', publisher: 'orders', id: 'e-14', correlationId: 'c-14', publishedAt: Number.NaN },
      { version: '1.0.0', publisher: 'orders', id: 'e-15', correlationId: 'c-15', publishedAt: -15.5 },
      { version: '1.0.0', publisher: 'orders', id: 'e-16', correlationId: 'c-16', publishedAt: 1e21 },
    ];
    for (const { version, publisher, id, correlationId, publishedAt, traceparent, principal } of events) {
      const expected = headers();
      expected.set('Keel-Contract-Version', version);
      expected.set('Keel-Event-Id', id.trim());
      expected.set('Keel-Correlation-Id', correlationId.replace(/[\r\n]+/g, ' ').trim());
      expected.set('Keel-Publisher', publisher);
      expected.set('Keel-Published-At', String(Math.floor(publishedAt)));
      if (traceparent !== undefined) expected.set('traceparent', traceparent.trim());
      if (principal !== undefined) expected.set('Keel-Principal', JSON.stringify(principal).replace('\u00e9', '\\u00e9'));
      const event = { contract: publisher, event: 'placed', version, payload: {}, metadata: { id, correlationId, publisher, publishedAt, traceparent, principal } };
      const sent = eventHeaders(event as unknown as Parameters<typeof eventHeaders>[0]) as unknown as { encode(): Uint8Array };
      expect(Buffer.from(sent.encode()).toString('latin1'), id).toBe(Buffer.from((expected as unknown as { encode(): Uint8Array }).encode()).toString('latin1'));
    }
  });

  it('compares majors of versions, refusing what is not semver, asked again and again', () => {
    for (let round = 0; round < 2; round += 1) {
      expect(sameMajor('1.4.2', '1.0.0')).toBe(true);
      expect(sameMajor('2.0.0', '1.0.0')).toBe(false);
      expect(sameMajor('1.0', '1.0.0')).toBe(false);
      expect(sameMajor('1.0.0-beta.1', '1.2.0')).toBe(true);
      expect(sameMajor(undefined, '1.0.0')).toBe(false);
    }
  });
});
