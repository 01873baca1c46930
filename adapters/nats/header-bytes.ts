/**
 * Reading a received header block straight from its bytes, for the one-pass readers of the blocks
 * keel itself writes: requests at the callee (request-headers.ts) and notifications at the
 * subscriber (event-block.ts). Each helper answers -1 (or false) for anything but the exact form
 * keel writes, so that the reader can leave the block to the general one (raw-headers.ts).
 */
// Imported, not the global: Node's global `Buffer` is a getter, dear on every use in hot code.
import { Buffer } from 'node:buffer';
import type { Msg } from '@nats-io/transport-node';
import { isVersion } from './headers.js';
import { Header, decodeJson } from './wire.js';

interface RawMsg {
  readonly _rdata?: unknown;
  readonly _msg?: { readonly hdr?: unknown };
}

/** ASCII text as bytes (the header names and the status line, built once). */
export function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (character) => character.charCodeAt(0));
}

/** The status line every block starts with. */
export const STATUS_LINE = bytesOf('NATS/1.0\r\n');
const VERSION_KEY = bytesOf(`${Header.CONTRACT_VERSION}: `);

const CR = 13;
const LF = 10;
const SPACE = 32;
const ZERO = 48;
const NINE = 57;
/** Digits a number may have here: a number read digit by digit is then exactly `Number()` of them. */
const MAX_DIGITS = 15;

/**
 * The message's bytes when its header block can be read from them: `msg._rdata` (the header block
 * first) with `headerLength(msg)` bytes of header, nats.js internals (see raw-headers.ts). Undefined
 * when they are not there or the message has no block.
 */
export function rawBytes(msg: Msg): Uint8Array | undefined {
  const raw = msg as unknown as RawMsg;
  const bytes = raw._rdata;
  const length = raw._msg?.hdr;
  if (!(bytes instanceof Uint8Array) || typeof length !== 'number' || length < 0 || length > bytes.length) return undefined;
  return bytes;
}

/** The length of the message's header block (call after {@link rawBytes} answered). */
export function headerLength(msg: Msg): number {
  return (msg as unknown as RawMsg)._msg?.hdr as number;
}

/** Where `key` ends when the bytes at `start` are `key`, else -1 (also for a `start` of -1). */
export function keyEnd(bytes: Uint8Array, start: number, length: number, key: Uint8Array): number {
  if (start < 0 || start + key.length > length) return -1;
  for (let index = 0; index < key.length; index += 1) {
    if (bytes[start + index] !== key[index]) return -1;
  }
  return start + key.length;
}

/**
 * Where a value that starts at `start` ends (the index of its CR, followed by LF inside the block),
 * or -1: an empty value, a byte outside printable ASCII, a space at either end (nats would trim
 * it), a missing line break.
 */
export function valueEnd(bytes: Uint8Array, start: number, length: number): number {
  if (start < 0 || start >= length) return -1;
  const first = bytes[start] as number;
  if (first <= SPACE || first > 126) return -1;
  let index = start + 1;
  for (; index < length; index += 1) {
    const byte = bytes[index] as number;
    if (byte === CR) break;
    if (byte < SPACE || byte > 126) return -1;
  }
  if (bytes[index - 1] === SPACE || !lineBreak(bytes, index, length)) return -1;
  return index;
}

/**
 * After an optional `key` line at `at`: where the next line starts (`at` itself when the line is
 * not there), or -1 when the key is there with a value {@link valueEnd} does not take. Its value,
 * when there, runs from `at + key.length` to the result minus 2 (the line break).
 */
export function optionalLine(bytes: Uint8Array, at: number, length: number, key: Uint8Array): number {
  const start = keyEnd(bytes, at, length, key);
  if (start < 0) return at;
  const end = valueEnd(bytes, start, length);
  return end < 0 ? -1 : end + 2;
}

/** True when the blank line that ends a block starts at `at`, with nothing after it. */
export function blockEnds(bytes: Uint8Array, at: number, length: number): boolean {
  return at + 2 === length && lineBreak(bytes, at, length);
}

/** Where the decimal digits from `start` end when they are 1 to 15 digits followed by a line break, else -1. */
export function digitsEnd(bytes: Uint8Array, start: number, length: number): number {
  if (start < 0) return -1;
  let index = start;
  while (index < length && index - start <= MAX_DIGITS) {
    const byte = bytes[index] as number;
    if (byte < ZERO || byte > NINE) break;
    index += 1;
  }
  if (index === start || index - start > MAX_DIGITS || !lineBreak(bytes, index, length)) return -1;
  return index;
}

/** The number the digits from `start` to `end` write (see {@link digitsEnd}). */
export function digitsValue(bytes: Uint8Array, start: number, end: number): number {
  let value = 0;
  for (let index = start; index < end; index += 1) value = value * 10 + ((bytes[index] as number) - ZERO);
  return value;
}

/** True when a CR LF pair starts at `index`, inside the block. */
export function lineBreak(bytes: Uint8Array, index: number, length: number): boolean {
  return index + 1 < length && bytes[index] === CR && bytes[index + 1] === LF;
}

/** True when the bytes from `start` to `end` are `text` (ASCII). */
export function sameText(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let index = 0; index < text.length; index += 1) {
    if (bytes[start + index] !== text.charCodeAt(index)) return false;
  }
  return true;
}

/** The bytes from `start` to `end` as a string (only printable ASCII is ever read so). */
export function latin1(bytes: Uint8Array, start: number, end: number): string {
  // nats hands a subarray of the socket's Buffer, or a Uint8Array when a message spans reads.
  if (bytes instanceof Buffer) return bytes.toString('latin1', start, end);
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}

/** Where the value of the `Keel-Contract-Version` line that opens every block keel writes starts, or -1. */
export function versionStart(bytes: Uint8Array, length: number): number {
  return keyEnd(bytes, keyEnd(bytes, 0, length, STATUS_LINE), length, VERSION_KEY);
}

/**
 * The last few blocks a one-pass reader read line by line (request-headers.ts, event-block.ts),
 * for it to compare the next blocks with: a process hears from a handful of callers or
 * publishers (and versions) at once, whose messages may take turns. A block remembered past
 * `size` replaces the oldest.
 */
export class RecentBlocks<T> {
  /** The blocks remembered, to compare with in this order. */
  readonly kept: T[] = [];
  #next = 0;

  constructor(private readonly size: number) {}

  remember(block: T): void {
    if (this.kept.length < this.size) {
      this.kept.push(block);
      return;
    }
    this.kept[this.#next] = block;
    this.#next = (this.#next + 1) % this.size;
  }
}

/**
 * The bytes from `start` to `end` copied into a plain `Uint8Array`: nats hands a view of its read
 * buffer, which later reads overwrite, and {@link keyEnd}'s `key` stays one kind of array.
 */
export function copyOf(bytes: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(bytes.subarray(start, end));
}

/**
 * The contract version of the last block one reader read: almost every request of an endpoint,
 * and event of a subscription, carries the same one. One per reader, so that a process serving
 * one major and subscribing to another does not decode the version on every message.
 */
export class LastVersion {
  #text = '';

  /** The version written from `start` to `end`: the last one's string while the bytes repeat; undefined when not semver. */
  read(bytes: Uint8Array, start: number, end: number): string | undefined {
    if (sameText(bytes, start, end, this.#text)) return this.#text;
    const version = latin1(bytes, start, end);
    if (!isVersion(version)) return undefined;
    this.#text = version;
    return version;
  }
}

const BYTE_ORDER_MARK = 0xfeff;

/**
 * A message's body as JSON, as `decodeJson(msg.data)` reads it (refusing malformed UTF-8), without
 * the view of the body nats makes for a message with a header block and without the strict
 * decoder's second pass: the bytes after the block (all of them when there is none) are decoded in
 * place, and only a body whose text holds a U+FFFD (malformed bytes decode to it; a genuine one is
 * rare in JSON) or starts with a byte order mark (the strict decoder drops it) goes to
 * `decodeJson`, which decides. Requests at the callee, replies at the caller, notifications at the
 * subscriber. test/nats-request-fast-path.test.ts holds it to `decodeJson`.
 */
export function messageBody(msg: Msg): unknown {
  const raw = msg as unknown as RawMsg;
  const bytes = raw._rdata;
  const block = raw._msg?.hdr;
  // nats hands a subarray of the socket's Buffer, or a Uint8Array when a message spans reads.
  if (!(bytes instanceof Buffer) || typeof block !== 'number' || block > bytes.length) return decodeJson(msg.data);
  const start = block < 0 ? 0 : block; // -1: no header block
  if (start === bytes.length) return undefined;
  const text = bytes.toString('utf8', start, bytes.length);
  if (text.charCodeAt(0) === BYTE_ORDER_MARK || text.includes('\uFFFD')) return decodeJson(msg.data);
  return JSON.parse(text);
}
