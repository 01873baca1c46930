/**
 * The body decoded in place (header-bytes.ts `messageBody`) at the edges the fuzz in
 * test/nats-request-fast-path.test.ts does not build: a block length of 0, past the end or below
 * -1, nats' read as a plain Uint8Array, no data at all, byte order marks, a genuine U+FFFD and
 * malformed sequences without a block. Each must come out as `decodeJson(msg.data)` does.
 */
import { describe, expect, it } from 'vitest';
import { messageBody } from '../adapters/nats/header-bytes.js';
import { decodeJson } from '../adapters/nats/wire.js';
import { messageOver } from './support/fuzz-messages.js';

function outcome(read: () => unknown): string {
  try {
    return JSON.stringify({ value: read() });
  } catch (error) {
    return `refused: ${(error as Error).name}`;
  }
}

describe('messageBody reads what decodeJson(msg.data) reads, at the edges', () => {
  const header = Buffer.from('NATS/1.0\r\nA: b\r\n\r\n', 'latin1');
  const cases: [string, Uint8Array | undefined, number][] = [
    ['hdr 0', Buffer.from('{"a":1}'), 0],
    ['hdr past the end', Buffer.from('{"a":1}'), 99],
    ['hdr -2', Buffer.from('{"a":1}'), -2],
    ['plain Uint8Array, no block', Uint8Array.from(Buffer.from('{"a":1}')), -1],
    ['plain Uint8Array, block', Uint8Array.from(Buffer.concat([header, Buffer.from('[1]')])), header.length],
    ['no data at all', undefined, -1],
    ['BOM only', Buffer.from([0xef, 0xbb, 0xbf]), -1],
    ['BOM then JSON', Buffer.from([0xef, 0xbb, 0xbf, 0x31]), -1],
    ['genuine U+FFFD', Buffer.from('"\uFFFD"', 'utf8'), -1],
    ['lone surrogate (CESU)', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), -1],
    ['overlong', Buffer.from([0x22, 0xc0, 0xaf, 0x22]), -1],
    ['block then empty body', header, header.length],
  ];
  for (const [name, data, hdr] of cases) {
    it(`${name}: the same value or the same refusal`, () => {
      const msg = messageOver(data ?? Buffer.alloc(0), hdr);
      if (data === undefined) (msg as unknown as { _rdata: unknown })._rdata = undefined;
      expect(outcome(() => messageBody(msg))).toBe(outcome(() => decodeJson(msg.data)));
    });
  }
});

