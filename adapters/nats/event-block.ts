/**
 * A notification's header block read in one pass when it is exactly what keel's publisher writes
 * (header-text.ts `eventHeaders`): `NATS/1.0`, then `Keel-Contract-Version`, `Keel-Event-Id`,
 * `Keel-Correlation-Id`, `Keel-Publisher`, `Keel-Published-At`, optionally `traceparent` and
 * `Keel-Principal`, in that order, one `Key: value` line each. The keys are matched as bytes, the
 * version and publisher compared with the strings already known (no string made for them), the
 * time read as a number, and only the ids become strings. It was the largest piece of keel's own
 * work at the subscriber (docs/performance.md, "Notification events over NATS").
 *
 * It answers only for a block that raw-headers.ts and `readEventHeaders` would accept as they are:
 * every value visible ASCII, with no space at either end (so that nats' trimming changes nothing),
 * the publisher the event's owner, the version semver, the time at most 15 digits (a number read
 * digit by digit is then exactly `Number()` of it). Anything else, a refusal included, is
 * `undefined`, and the caller reads the block the general way, which gives the same answer.
 */
import type { Msg } from '@nats-io/transport-node';
import { eventHeadersOf, isVersion, type EventHeaders } from './headers.js';
import { Header } from './wire.js';

interface RawMsg {
  readonly _rdata?: unknown;
  readonly _msg?: { readonly hdr?: unknown };
}

function bytesOf(text: string): Uint8Array {
  return Uint8Array.from(text, (character) => character.charCodeAt(0));
}

const STATUS_LINE = bytesOf('NATS/1.0\r\n');
const VERSION_KEY = bytesOf(`${Header.CONTRACT_VERSION}: `);
const ID_KEY = bytesOf(`${Header.EVENT_ID}: `);
const CORRELATION_KEY = bytesOf(`${Header.CORRELATION_ID}: `);
const PUBLISHER_KEY = bytesOf(`${Header.PUBLISHER}: `);
const AT_KEY = bytesOf(`${Header.PUBLISHED_AT}: `);
const TRACEPARENT_KEY = bytesOf(`${Header.TRACEPARENT}: `);
const PRINCIPAL_KEY = bytesOf(`${Header.PRINCIPAL}: `);

const CR = 13;
const LF = 10;
const SPACE = 32;
const ZERO = 48;
const NINE = 57;

// The version of the last event read: almost every event of a subscription has the same one.
let lastVersion = '';

/**
 * The headers of a notification whose block is in the form described above (see the file's
 * header), as `readEventHeaders(messageHeaders(msg), attempt, owner)` would read them; `undefined`
 * for any other block, or a message without one.
 */
export function readEventBlock(msg: Msg, attempt: number, owner: string): EventHeaders | undefined {
  const raw = msg as unknown as RawMsg;
  const bytes = raw._rdata;
  const length = raw._msg?.hdr;
  if (!(bytes instanceof Uint8Array) || typeof length !== 'number' || length < 0 || length > bytes.length) return undefined;
  let at = keyEnd(bytes, 0, length, STATUS_LINE);
  at = keyEnd(bytes, at, length, VERSION_KEY);
  const versionEnd = valueEnd(bytes, at, length);
  if (versionEnd < 0) return undefined;
  let version = lastVersion;
  if (!sameText(bytes, at, versionEnd, version)) {
    version = latin1(bytes, at, versionEnd);
    if (!isVersion(version)) return undefined;
    lastVersion = version;
  }
  const idStart = keyEnd(bytes, versionEnd + 2, length, ID_KEY);
  const idEnd = valueEnd(bytes, idStart, length);
  if (idEnd < 0) return undefined;
  const correlationStart = keyEnd(bytes, idEnd + 2, length, CORRELATION_KEY);
  const correlationEnd = valueEnd(bytes, correlationStart, length);
  if (correlationEnd < 0) return undefined;
  at = keyEnd(bytes, correlationEnd + 2, length, PUBLISHER_KEY);
  const publisherEnd = valueEnd(bytes, at, length);
  if (publisherEnd < 0 || !sameText(bytes, at, publisherEnd, owner)) return undefined;
  at = keyEnd(bytes, publisherEnd + 2, length, AT_KEY);
  if (at < 0) return undefined;
  let publishedAt = 0;
  let digits = 0;
  for (; at < length; at += 1) {
    const byte = bytes[at] as number;
    if (byte < ZERO || byte > NINE) break;
    publishedAt = publishedAt * 10 + (byte - ZERO);
    digits += 1;
  }
  if (digits === 0 || digits > 15 || !lineBreak(bytes, at, length)) return undefined;
  at += 2;
  let traceparent: string | undefined;
  let principal: string | undefined;
  const traceStart = keyEnd(bytes, at, length, TRACEPARENT_KEY);
  if (traceStart >= 0) {
    const traceEnd = valueEnd(bytes, traceStart, length);
    if (traceEnd < 0) return undefined;
    traceparent = latin1(bytes, traceStart, traceEnd);
    at = traceEnd + 2;
  }
  const principalStart = keyEnd(bytes, at, length, PRINCIPAL_KEY);
  if (principalStart >= 0) {
    const principalEnd = valueEnd(bytes, principalStart, length);
    if (principalEnd < 0) return undefined;
    principal = latin1(bytes, principalStart, principalEnd);
    at = principalEnd + 2;
  }
  // The blank line that ends the block, and nothing after it.
  if (at + 2 !== length || !lineBreak(bytes, at, length)) return undefined;
  // One string for both ids (and the key between them), sliced: one decoding call, not two.
  const ids = latin1(bytes, idStart, correlationEnd);
  const id = ids.slice(0, idEnd - idStart);
  const correlationId = ids.slice(correlationStart - idStart);
  return eventHeadersOf(version, undefined, id, correlationId, traceparent, owner, publishedAt, attempt, principal);
}

/** Where `key` ends when the bytes at `start` are `key`, else -1 (also for a `start` of -1). */
function keyEnd(bytes: Uint8Array, start: number, length: number, key: Uint8Array): number {
  if (start < 0 || start + key.length > length) return -1;
  for (let index = 0; index < key.length; index += 1) {
    if (bytes[start + index] !== key[index]) return -1;
  }
  return start + key.length;
}

/**
 * Where a value that starts at `start` ends (the index of its CR, followed by LF inside the block),
 * or -1: an empty value, a byte outside printable ASCII, a space at either end, a missing line break.
 */
function valueEnd(bytes: Uint8Array, start: number, length: number): number {
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

/** True when a CR LF pair starts at `index`, inside the block. */
function lineBreak(bytes: Uint8Array, index: number, length: number): boolean {
  return index + 1 < length && bytes[index] === CR && bytes[index + 1] === LF;
}

/** True when the bytes from `start` to `end` are `text` (ASCII). */
function sameText(bytes: Uint8Array, start: number, end: number, text: string): boolean {
  if (end - start !== text.length) return false;
  for (let index = 0; index < text.length; index += 1) {
    if (bytes[start + index] !== text.charCodeAt(index)) return false;
  }
  return true;
}

/** The bytes from `start` to `end` as a string (only printable ASCII is ever read so). */
function latin1(bytes: Uint8Array, start: number, end: number): string {
  // nats hands a subarray of the socket's Buffer, or a Uint8Array when a message spans reads.
  if (bytes instanceof Buffer) return bytes.toString('latin1', start, end);
  return Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start).toString('latin1');
}
