/**
 * The callee's repeated-block fast path (request-headers.ts), the in-place body decoding
 * (header-bytes.ts `messageBody`) and the caller's deadline digits (header-text.ts), fuzzed in process
 * against the general readers and writers. The messages are nats' own MsgImpl over views of a
 * shared, reused buffer, as nats' parser hands them (test/support/fuzz-messages.ts).
 */
import { describe, expect, it } from 'vitest';
import type { Msg } from '@nats-io/transport-node';
import { readRequestHeaders, type RequestHeaders } from '../adapters/nats/headers.js';
import { readKnownRequest } from '../adapters/nats/request-headers.js';
import { messageBody } from '../adapters/nats/header-bytes.js';
import { decodeJson } from '../adapters/nats/wire.js';
import { fuzzRandom, messageOver, mutate, pool, poolMessage } from './support/fuzz-messages.js';

const TARGET = 'pricing.quote';

const { random, pick } = fuzzRandom();

function message(block: Uint8Array | undefined, body: Uint8Array, plain: boolean): Msg {
  return poolMessage(random, block, body, plain);
}

function general(msg: Msg): RequestHeaders | string {
  try {
    return readRequestHeaders(msg.headers, TARGET, 5_000);
  } catch (error) {
    return `error: ${(error as Error).message}`;
  }
}

function block(version: string, correlationId: string, caller: string, deadline: string, extra = ''): string {
  return `NATS/1.0\r\nKeel-Contract-Version: ${version}\r\nKeel-Correlation-Id: ${correlationId}\r\nKeel-Caller: ${caller}\r\nKeel-Deadline: ${deadline}\r\n${extra}\r\n`;
}

const TRACE = 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n';
describe('the repeated-block fast path reads what the general reader reads', () => {
  it('fuzz: mutated blocks after a primed one, at random offsets of a reused buffer', () => {
    const versions = ['1.2.0', '1.2.1', '2.0.0-rc.1'];
    const callers = ['orders', 'billing', 'ordersx', 'o'];
    let version = '1.2.0';
    let caller = 'orders';
    let checked = 0;
    for (let round = 0; round < 200_000; round += 1) {
      if (random() < 0.15) version = pick(versions);
      if (random() < 0.15) caller = pick(callers);
      const id = `c-${Math.floor(random() * 1e6).toString(36)}`;
      const deadline = `${Math.floor(random() * 1e13)}`;
      const extra = random() < 0.3 ? TRACE : '';
      const text = block(version, id, caller, deadline, extra);
      const bytes = random() < 0.5 ? Buffer.from(text, 'latin1') : mutate(random, text);
      const msg = message(bytes, Buffer.from('{}'), random() < 0.1);
      const read = readKnownRequest(msg);
      // The fast reader may leave a block to the general one (the callee's fallback); when it answers, it answers alike.
      if (read !== undefined) {
        const expected = general(msg);
        if (JSON.stringify(read) !== JSON.stringify(expected)) {
          expect({ block: Buffer.from(bytes).toString('latin1'), read }).toStrictEqual({ block: Buffer.from(bytes).toString('latin1'), read: expected });
        }
        expect(read).toStrictEqual(expected);
        checked += 1;
      }
      // nats reuses its read buffer: scribble over it.
      pool.fill(Math.floor(random() * 256));
    }
    expect(checked).toBeGreaterThan(50_000);
  });

  it('a primed block, then the same buffer overwritten by a different block of the same length', () => {
    const first = Buffer.from(block('1.2.0', 'c-1', 'orders', '1796130796236'), 'latin1');
    const second = Buffer.from(block('1.2.0', 'c-2', 'orderz', '1796130796237'), 'latin1');
    const data = pool.subarray(100, 100 + first.length + 2);
    data.set(first, 0);
    data.set(Buffer.from('{}'), first.length);
    const msg1 = messageOver(data, first.length);
    expect(readKnownRequest(msg1)?.context.caller).toBe('orders');
    data.set(second, 0);
    const msg2 = messageOver(data, second.length);
    expect(readKnownRequest(msg2)?.context.caller).toBe('orderz');
  });
});

describe('a call deadline written as digits from the number', () => {
  it('fuzz: the same bytes as the text of Math.floor(deadline), over the whole range and its edges', async () => {
    const { callHeaders } = await import('../adapters/nats/headers.js');
    const address = Object.freeze({ contract: 'pricing', version: '1.2.0', operation: 'quote' });
    const values: number[] = [0, -0, 0.5, 9.99, 10, 99, 100, 2 ** 53 - 1, 2 ** 53 - 1.5, 2 ** 53, 2 ** 53 + 2, 1e21, 1e300, Infinity, -Infinity, NaN, -1, -0.5, Number.MIN_VALUE, 4.5e15, 999_999_999_999_999.9];
    for (let power = 0; power < 54; power += 1) values.push(2 ** power, 2 ** power - 1, 2 ** power + 1, 10 ** Math.min(power, 22), 10 ** Math.min(power, 22) - 1);
    for (let index = 0; index < 100_000; index += 1) values.push(Math.floor(random() * 2 ** (1 + Math.floor(random() * 53))) + (random() < 0.3 ? random() : 0));
    for (const deadline of values) {
      const sent = callHeaders(address, { correlationId: 'c-1', caller: 'orders', deadline, traceparent: undefined }) as unknown as { encode(): Uint8Array };
      const text = `NATS/1.0\r\nKeel-Contract-Version: 1.2.0\r\nKeel-Correlation-Id: c-1\r\nKeel-Caller: orders\r\nKeel-Deadline: ${Math.floor(deadline)}\r\n\r\n`;
      const got = Buffer.from(sent.encode()).toString('latin1');
      if (got !== text) expect({ deadline, got }).toStrictEqual({ deadline, got: text });
    }
  });
});

/** What reading a body gives: the value as JSON text, or that it was refused. */
function outcome(read: () => unknown): string {
  try {
    return `value ${JSON.stringify(read())}`;
  } catch {
    return 'refused';
  }
}

// Byte runs that decode to U+FFFD or to real characters: overlongs, surrogates, truncations, bytes never valid in UTF-8.
const UTF8_PIECES = [
  [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xc3], [0xe2, 0x82], [0xf0, 0x9f, 0x98],
  [0xf5], [0xff], [0x80], [0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xef, 0xbf, 0xbd], [0xef, 0xbb, 0xbf], [0x61], [0x7a],
];

describe('the body decoded in place', () => {
  it('fuzz: accepts and refuses exactly what decodeJson(msg.data) does, with the same value, after a header block or with none, at random offsets of a reused buffer', () => {
    const header = Buffer.from(block('1.2.0', 'c-1', 'orders', '1796130796236'), 'latin1');
    let refused = 0;
    let accepted = 0;
    for (let round = 0; round < 100_000; round += 1) {
      const inner: number[] = [];
      const pieces = Math.floor(random() * 6);
      for (let index = 0; index < pieces; index += 1) inner.push(...pick(UTF8_PIECES));
      const body = [...(random() < 0.1 ? [0xef, 0xbb, 0xbf] : []), 0x22, ...inner, 0x22];
      const bytes = Uint8Array.from(random() < 0.05 ? [] : body);
      const msg = message(random() < 0.3 ? undefined : header, bytes, random() < 0.1);
      const expected = outcome(() => decodeJson(msg.data));
      expect(outcome(() => messageBody(msg))).toBe(expected);
      if (expected === 'refused') refused += 1;
      else accepted += 1;
      pool.fill(Math.floor(random() * 256));
    }
    expect(refused).toBeGreaterThan(10_000);
    expect(accepted).toBeGreaterThan(10_000);
  });
});
