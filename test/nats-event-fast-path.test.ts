/**
 * The subscriber's repeated-block fast path (event-block.ts), fuzzed in process against the
 * general reader (`readEventHeaders(messageHeaders(msg))`): blocks keel's publisher writes, half of
 * them altered by a byte or two, for publishers and versions that change from event to event, in
 * nats' own message class at random offsets of one reused read buffer. Whenever the fast reader
 * answers, its answer must be the general reader's. test/nats-event-block.test.ts sends the named
 * cases through a real server.
 */
import { describe, expect, it } from 'vitest';
import { eventHeaders } from '../adapters/nats/headers.js';
import { readEventBlock } from '../adapters/nats/event-block.js';
import { fuzzRandom, generalEventReading, messageOver, mutate, pool, poolMessage } from './support/fuzz-messages.js';

const { random, pick } = fuzzRandom(0x2545f491);

function block(version: string, id: string, correlationId: string, publisher: string, time: string, extra = ''): string {
  return (
    `NATS/1.0\r\nKeel-Contract-Version: ${version}\r\nKeel-Event-Id: ${id}\r\nKeel-Correlation-Id: ${correlationId}\r\n` +
    `Keel-Publisher: ${publisher}\r\nKeel-Published-At: ${time}\r\n${extra}\r\n`
  );
}

const TRACE = 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n';
const PRINCIPAL = 'Keel-Principal: {"sub":"u-1"}\r\n';

describe('the repeated-block fast path reads what the general reader reads', () => {
  it('fuzz: mutated event blocks after primed ones, publishers and versions taking turns, at random offsets of a reused buffer', () => {
    const versions = ['1.2.0', '1.2.1', '2.0.0-rc.1'];
    const publishers = ['orders', 'billing', 'ordersx', 'o'];
    let version = '1.2.0';
    let publisher = 'orders';
    let checked = 0;
    for (let round = 0; round < 200_000; round += 1) {
      if (random() < 0.15) version = pick(versions);
      if (random() < 0.15) publisher = pick(publishers);
      // The subscription's contract: mostly the publisher, sometimes another one (then never read fast).
      const owner = random() < 0.9 ? publisher : pick(publishers);
      const id = `e-${Math.floor(random() * 1e6).toString(36)}`;
      const correlationId = random() < 0.3 ? id : `c-${Math.floor(random() * 1e6).toString(36)}`;
      const time = `${Math.floor(random() * 1e13)}`;
      const extra = (random() < 0.3 ? TRACE : '') + (random() < 0.1 ? PRINCIPAL : '');
      const text = block(version, id, correlationId, publisher, time, extra);
      const bytes = random() < 0.5 ? Buffer.from(text, 'latin1') : mutate(random, text);
      const msg = poolMessage(random, bytes, Buffer.from('{}'), random() < 0.1, 'keel.orders.placed');
      const read = readEventBlock(msg, 1, owner);
      // The fast reader may leave a block to the general one (the subscriber's fallback); when it answers, it answers alike.
      if (read !== undefined) {
        const expected = generalEventReading(msg, owner);
        if (JSON.stringify(read) !== JSON.stringify(expected)) {
          expect({ block: Buffer.from(bytes).toString('latin1'), owner, read }).toStrictEqual({ block: Buffer.from(bytes).toString('latin1'), owner, read: expected });
        }
        expect(read).toStrictEqual(expected);
        checked += 1;
      }
      // nats reuses its read buffer: scribble over it.
      pool.fill(Math.floor(random() * 256));
    }
    expect(checked).toBeGreaterThan(50_000);
  });

  it('reads a block again after the same buffer was overwritten by another of the same length: another publisher, or another version', () => {
    const first = Buffer.from(block('1.2.0', 'e-1', 'c-1', 'orders', '1796130796236'), 'latin1');
    const second = Buffer.from(block('1.2.0', 'e-2', 'c-2', 'orderz', '1796130796237'), 'latin1');
    const third = Buffer.from(block('1.2.9', 'e-3', 'c-3', 'orders', '1796130796238'), 'latin1');
    const data = pool.subarray(100, 100 + first.length + 2);
    const read = (bytes: Buffer, owner: string) => {
      data.set(bytes, 0);
      data.set(Buffer.from('{}'), bytes.length);
      return readEventBlock(messageOver(data, bytes.length), 1, owner);
    };
    expect(read(first, 'orders')?.metadata.id).toBe('e-1');
    expect(read(second, 'orders')).toBeUndefined(); // another publisher than the subscription's contract
    expect(read(second, 'orderz')?.metadata.publisher).toBe('orderz');
    expect(read(third, 'orders')?.version).toBe('1.2.9');
    expect(read(first, 'orders')?.version).toBe('1.2.0');
  });
});

describe('readEventBlock, repeated blocks, named cases', () => {
  const sent = (publisher: string, id: string, correlationId: string, version = '1.0.0') => {
    const event = { contract: publisher, event: 'placed', version, delivery: 'notification', payload: {}, metadata: { id, correlationId, publisher, publishedAt: 1_796_000_000_000 } };
    const block = (eventHeaders(event as never) as unknown as { encode(): Uint8Array }).encode();
    const data = Buffer.concat([Buffer.from(block), Buffer.from('{}')]);
    return messageOver(data, block.length);
  };

  it("an event that is its own correlation, read again and again, as the general reader reads it", () => {
    for (let n = 0; n < 5; n += 1) {
      const msg = sent('orders', `e-${n}`, `e-${n}`);
      const read = readEventBlock(msg, 1, 'orders');
      expect(read).toBeDefined();
      expect(read).toStrictEqual(generalEventReading(msg, 'orders'));
    }
  });

  it('a primed block of another publisher is never used for another owner', () => {
    expect(readEventBlock(sent('orders', 'e-1', 'c-1'), 1, 'orders')).toBeDefined();
    expect(readEventBlock(sent('billing', 'e-2', 'c-2'), 1, 'billing')).toBeDefined();
    expect(readEventBlock(sent('orders', 'e-3', 'c-3'), 1, 'billing')).toBeUndefined();
    expect(readEventBlock(sent('billing', 'e-4', 'c-4'), 1, 'orders')).toBeUndefined();
    const other = sent('orders', 'e-5', 'c-5', '2.0.0');
    expect(readEventBlock(other, 1, 'orders')?.version).toBe('2.0.0');
  });
});
