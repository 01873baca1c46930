/**
 * Helpers for the in-process fuzz tests of the NATS adapter's fast readers
 * (test/nats-request-fast-path.test.ts, test/nats-event-fast-path.test.ts): a small deterministic
 * PRNG, nats' own message class over views of one shared, reused read buffer (as nats' parser
 * hands messages), and byte mutations of a block's text.
 */
import type { Msg } from '@nats-io/transport-node';
import { MsgImpl } from '@nats-io/nats-core/internal';
import { readEventHeaders } from '../../adapters/nats/headers.js';
import { messageHeaders } from '../../adapters/nats/raw-headers.js';

/** A deterministic random number generator (xorshift32) from `seed`. */
export function fuzzRandom(seed = 0x9e3779b9): { random: () => number; pick: <T>(items: readonly T[]) => T } {
  let state = seed;
  const random = (): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 0x1_0000_0000;
  };
  return { random, pick: <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T };
}

/** One read buffer, reused for every message, as nats' socket reads are: scribble over it between messages. */
export const pool = Buffer.alloc(1 << 16);

/**
 * nats' message over `block` and `body`, at a random offset of {@link pool} (or, `plain`, in a
 * Uint8Array of its own, as when a message spans socket reads); `block` undefined: a message with
 * no header block.
 */
export function poolMessage(random: () => number, block: Uint8Array | undefined, body: Uint8Array, plain: boolean, subject = 'keel.pricing.quote'): Msg {
  const headerBytes = block ?? new Uint8Array(0);
  const total = headerBytes.length + body.length;
  let data: Uint8Array;
  if (plain) {
    data = new Uint8Array(total);
  } else {
    const offset = Math.floor(random() * (pool.length - total));
    data = pool.subarray(offset, offset + total);
  }
  data.set(headerBytes, 0);
  data.set(body, headerBytes.length);
  return messageOver(data, block === undefined ? -1 : block.length, subject);
}

/** nats' message over `data`, whose first `hdr` bytes are its header block (-1: none). */
export function messageOver(data: Uint8Array, hdr: number, subject = 'keel.pricing.quote'): Msg {
  return new MsgImpl({ subject: Buffer.from(subject), reply: Buffer.from('_INBOX.x'), sid: 1, hdr, size: data.length } as never, data, {} as never) as unknown as Msg;
}

/** Bytes that matter to a header reader: space, CR, LF, tab, colon, letters, digits, punctuation, non-ASCII, control. */
const INTERESTING = [0x20, 0x0d, 0x0a, 0x09, 0x3a, 0x61, 0x41, 0x30, 0x39, 0x2d, 0x2e, 0x80, 0xff, 0x00, 0x7f, 0x7e, 0x2b];

/** `text`'s bytes with one or two of them replaced, inserted or removed. */
export function mutate(random: () => number, text: string): Uint8Array {
  const bytes = [...Buffer.from(text, 'latin1')];
  const count = 1 + Math.floor(random() * 2);
  for (let index = 0; index < count; index += 1) {
    const at = Math.floor(random() * bytes.length);
    const kind = random();
    const byte = INTERESTING[Math.floor(random() * INTERESTING.length)] as number;
    if (kind < 0.5) bytes[at] = byte;
    else if (kind < 0.75) bytes.splice(at, 0, byte);
    else bytes.splice(at, 1);
  }
  return Uint8Array.from(bytes);
}

/**
 * What the subscriber's general reader makes of an event message's block
 * (`readEventHeaders(messageHeaders(msg))`), or the error it throws (a block nats refuses): the
 * reference the one-pass reader (event-block.ts) is held to.
 */
export function generalEventReading(msg: Msg, owner: string): unknown {
  try {
    return readEventHeaders(messageHeaders(msg), 1, owner);
  } catch (error) {
    return { thrown: (error as Error).message };
  }
}
