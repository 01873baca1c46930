/**
 * The header blocks keel sends with calls and events, written as wire text: `NATS/1.0`, one
 * `Key: value` line per header, a blank line; the same bytes nats' `headers()` + `set()` would
 * write (test/nats-raw-headers.test.ts compares them). The parts that stay the same for one
 * operation and caller, or one event version and publisher, are built once. headers.ts reads them.
 */
// Imported, not the global: Node's global `Buffer` is a getter, dear on every use in hot code.
import { Buffer } from 'node:buffer';
import type { CallContext } from 'keel';
import type { OperationAddress, PublishedEvent } from 'keel/transport';
import { headers, type Match, type MsgHdrs } from '@nats-io/transport-node';
import { Header, headerValue } from './wire.js';

const UNSAFE = /[\r\n]/;

/** A header value as nats' `MsgHdrs.set` stores it: line breaks removed, trimmed. */
function safe(value: string): string {
  return UNSAFE.test(value) ? headerValue(value) : value.trim();
}

const HEADER_LINE = 'NATS/1.0\r\n';

/** What nats' `publish` calls on the headers it is given. */
interface Encodable {
  encode(): Uint8Array;
}

/**
 * Outgoing headers held as their wire text (`NATS/1.0`, one `Key: value` line per header, a blank
 * line), or as those bytes already written (`callHeaderBytes`, `eventHeaderBytes`), with exactly the bytes nats' own `headers()` + `set()` would produce. Calls and events
 * send headers on every message, and building them through nats' `MsgHdrs` (key
 * canonicalisation, a scan of every key per `set`, a second pass to encode) costs more than the
 * rest of the adapter's work on a call. nats' `publish` encodes headers with `encode()`, as its
 * own implementation does; every other `MsgHdrs` method works on a nats `headers()` built from
 * the text on first use, so reading or changing these headers behaves exactly as usual.
 */
class WireHeaders implements MsgHdrs, Encodable {
  // Plain properties set in the constructor, not `#` fields nor class fields: one is made per call
  // and per event, and defining a class's fields runs a keyed define per field that optimised code
  // does not always inline (404 instructions an event at the publisher; docs/performance.md, "Tenth round").
  /** The block as text, or `undefined` when it was written as `bytes` (UTF-8: a caller, publisher or version may be non-ASCII). */
  declare private readonly text: string | undefined;
  declare private readonly bytes: Buffer | undefined;
  /** nats' own headers, parsed from the block on the first use of anything but `encode`. */
  declare private parsedHeaders: (MsgHdrs & Encodable) | undefined;

  constructor(text: string | undefined, bytes: Buffer | undefined) {
    this.text = text;
    this.bytes = bytes;
    this.parsedHeaders = undefined;
  }

  encode(): Uint8Array {
    if (this.parsedHeaders !== undefined) return this.parsedHeaders.encode();
    // Buffer.from: the same UTF-8 bytes as TextEncoder, several times faster for a header block.
    return this.bytes ?? Buffer.from(this.text as string, 'utf8');
  }

  private get parsed(): MsgHdrs & Encodable {
    if (this.parsedHeaders === undefined) {
      const parsed = headers() as MsgHdrs & Encodable;
      const text = this.text ?? (this.bytes as Buffer).toString('utf8');
      for (const line of text.split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) parsed.append(line.slice(0, colon), line.slice(colon + 1).trim());
      }
      this.parsedHeaders = parsed;
    }
    return this.parsedHeaders;
  }

  get hasError(): boolean {
    return this.parsed.hasError;
  }
  set hasError(value: boolean) {
    this.parsed.hasError = value;
  }
  get status(): string {
    return this.parsed.status;
  }
  set status(value: string) {
    this.parsed.status = value;
  }
  get code(): number {
    return this.parsed.code;
  }
  set code(value: number) {
    this.parsed.code = value;
  }
  get description(): string {
    return this.parsed.description;
  }
  set description(value: string) {
    this.parsed.description = value;
  }
  get(key: string, match?: Match): string {
    return this.parsed.get(key, match);
  }
  set(key: string, value: string, match?: Match): void {
    this.parsed.set(key, value, match);
  }
  append(key: string, value: string, match?: Match): void {
    this.parsed.append(key, value, match);
  }
  has(key: string, match?: Match): boolean {
    return this.parsed.has(key, match);
  }
  keys(): string[] {
    return this.parsed.keys();
  }
  values(key: string, match?: Match): string[] {
    return this.parsed.values(key, match);
  }
  delete(key: string, match?: Match): void {
    this.parsed.delete(key, match);
  }
  last(key: string, match?: Match): string {
    return this.parsed.last(key, match);
  }
  [Symbol.iterator](): Iterator<[string, string[]]> {
    return this.parsed[Symbol.iterator]();
  }
}

// Nested calls and events share their principal object (frozen): encode each one once.
const encodedPrincipals = new WeakMap<object, string>();

/** A principal as a header value: compact JSON with every non-ASCII character escaped, so that it crosses unchanged. */
function principalHeader(principal: unknown): string {
  const cached = typeof principal === 'object' && principal !== null ? encodedPrincipals.get(principal) : undefined;
  if (cached !== undefined) return cached;
  const text = JSON.stringify(principal).replace(/[\u007f-\uffff]/g, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (typeof principal === 'object' && principal !== null) encodedPrincipals.set(principal, text);
  return text;
}

/** The parts of a call's header block that stay the same for every call of one operation by one caller. */
interface CallHeaderParts {
  readonly caller: string;
  /** The status line, the contract version, and the name of the correlation id header. */
  readonly head: string;
  /** From the end of the correlation id to the deadline's value: the caller, the deadline's name. */
  readonly middle: string;
  /** `head` as its UTF-8 bytes. */
  readonly headBytes: Uint8Array;
  /** `middle` as its UTF-8 bytes. */
  readonly middleBytes: Uint8Array;
}

// Keyed by the kernel's frozen per-operation address: one entry per operation a process calls.
const callHeaderParts = new WeakMap<OperationAddress, CallHeaderParts>();

function callHeaderPartsOf(address: OperationAddress, caller: string): CallHeaderParts {
  const cached = callHeaderParts.get(address);
  if (cached !== undefined && cached.caller === caller) return cached;
  const head = `${HEADER_LINE}${Header.CONTRACT_VERSION}: ${safe(address.version)}\r\n${Header.CORRELATION_ID}: `;
  const middle = `\r\n${Header.CALLER}: ${safe(caller)}\r\n${Header.DEADLINE}: `;
  const parts: CallHeaderParts = { caller, head, middle, headBytes: Buffer.from(head, 'utf8'), middleBytes: Buffer.from(middle, 'utf8') };
  callHeaderParts.set(address, parts);
  return parts;
}

/**
 * Headers of one call. The block's constant parts (status line, version, caller, the header
 * names) are built once per operation and caller; a call adds its correlation id, its deadline
 * and the optional headers. The bytes are those of one `Key: value` line per header, in this order,
 * written straight into bytes when every value is printable ASCII with nothing to trim, else as
 * text (the same bytes).
 */
export function callHeaders(address: OperationAddress, context: CallContext): MsgHdrs {
  const parts = callHeaderPartsOf(address, context.caller);
  const bytes = callHeaderBytes(parts, context);
  if (bytes !== undefined) return new WireHeaders(undefined, bytes);
  let text = `${parts.head}${safe(context.correlationId)}${parts.middle}${Math.floor(context.deadline)}\r\n`;
  if (context.traceparent !== undefined && context.traceparent !== '') text += `${Header.TRACEPARENT}: ${safe(context.traceparent)}\r\n`;
  if (context.idempotencyKey !== undefined) text += `${Header.IDEMPOTENCY_KEY}: ${safe(context.idempotencyKey)}\r\n`;
  if (context.principal !== undefined) text += `${Header.PRINCIPAL}: ${principalHeader(context.principal)}\r\n`;
  if (context.callAttempt !== undefined) text += `${Header.CALL_ATTEMPT}: ${context.callAttempt}\r\n`;
  return new WireHeaders(`${text}\r\n`, undefined);
}

/** The parts of an event's header block that stay the same for every event of one contract version and publisher. */
export interface EventHeaderParts {
  readonly version: string;
  readonly publisher: string;
  /** The status line, the contract version, and the name of the event id header. */
  readonly head: string;
  /** From the end of the correlation id to the publication time's value: the publisher, the time's name. */
  readonly middle: string;
  /** `head` as its UTF-8 bytes. */
  readonly headBytes: Uint8Array;
  /** `middle` as its UTF-8 bytes. */
  readonly middleBytes: Uint8Array;
}

// A process sends the events of a few contract versions, each in the name of the module that
// owns it (several modules of one process may publish at the same version): the last parts
// used, then one entry per publisher and version, bounded.
let lastEventParts: EventHeaderParts | undefined;
const eventHeaderParts = new Map<string, EventHeaderParts>();

/** The constant parts for `version` and `publisher`, built once for each pair (exported for tests). */
export function eventHeaderPartsOf(version: string, publisher: string): EventHeaderParts {
  const last = lastEventParts;
  if (last !== undefined && last.version === version && last.publisher === publisher) return last;
  const key = `${publisher}\0${version}`;
  let parts = eventHeaderParts.get(key);
  if (parts === undefined) {
    const head = `${HEADER_LINE}${Header.CONTRACT_VERSION}: ${safe(version)}\r\n${Header.EVENT_ID}: `;
    const middle = `\r\n${Header.PUBLISHER}: ${safe(publisher)}\r\n${Header.PUBLISHED_AT}: `;
    parts = { version, publisher, head, middle, headBytes: Buffer.from(head, 'utf8'), middleBytes: Buffer.from(middle, 'utf8') };
    if (eventHeaderParts.size < 256) eventHeaderParts.set(key, parts);
  }
  lastEventParts = parts;
  return parts;
}

/**
 * Headers of one published event. The constant parts (status line, version, publisher, header
 * names) are built once per contract version and publisher; an event adds its id, correlation
 * id, publication time and the optional headers, in the order below, written straight into
 * bytes when every value is printable ASCII with nothing to trim, else as text (the same bytes).
 */
export function eventHeaders(event: PublishedEvent): MsgHdrs {
  const { metadata } = event;
  const parts = eventHeaderPartsOf(event.version, metadata.publisher);
  const bytes = eventHeaderBytes(parts, metadata);
  if (bytes !== undefined) return new WireHeaders(undefined, bytes);
  let text =
    `${parts.head}${safe(metadata.id)}\r\n${Header.CORRELATION_ID}: ${safe(metadata.correlationId)}` +
    `${parts.middle}${Math.floor(metadata.publishedAt)}\r\n`;
  if (metadata.traceparent !== undefined && metadata.traceparent !== '') text += `${Header.TRACEPARENT}: ${safe(metadata.traceparent)}\r\n`;
  if (metadata.principal !== undefined) text += `${Header.PRINCIPAL}: ${principalHeader(metadata.principal)}\r\n`;
  return new WireHeaders(`${text}\r\n`, undefined);
}

const CORRELATION_KEY = Buffer.from(`\r\n${Header.CORRELATION_ID}: `, 'latin1');
const TRACEPARENT_KEY = Buffer.from(`${Header.TRACEPARENT}: `, 'latin1');
const PRINCIPAL_KEY = Buffer.from(`${Header.PRINCIPAL}: `, 'latin1');
const IDEMPOTENCY_KEY = Buffer.from(`${Header.IDEMPOTENCY_KEY}: `, 'latin1');
const CALL_ATTEMPT_KEY = Buffer.from(`${Header.CALL_ATTEMPT}: `, 'latin1');
const CR = 13;
const LF = 10;

/**
 * The header block of an event written straight into bytes: the constant parts copied, the
 * per-event values written character by character, each checked on the way (visible ASCII, no
 * space at either end: then `safe()` would return it unchanged and its UTF-8 bytes are its
 * characters). `undefined` for any other value: `eventHeaders` then builds the text as before.
 * The same bytes either way.
 */
function eventHeaderBytes(parts: EventHeaderParts, metadata: PublishedEvent['metadata']): Buffer | undefined {
  const { id, correlationId, traceparent } = metadata;
  const time = Math.floor(metadata.publishedAt);
  // The time's digits written from the number, as a call's deadline is (a NaN or a negative time: the text path).
  const digits = decimalLength(time);
  if (digits === 0) return undefined;
  const traced = traceparent !== undefined && traceparent !== '';
  const principal = metadata.principal === undefined ? undefined : principalHeader(metadata.principal);
  const { headBytes, middleBytes } = parts;
  let length = headBytes.length + id.length + CORRELATION_KEY.length + correlationId.length + middleBytes.length + digits + 4;
  if (traced) length += lineLength(TRACEPARENT_KEY, traceparent);
  if (principal !== undefined) length += lineLength(PRINCIPAL_KEY, principal);
  const bytes = Buffer.allocUnsafe(length);
  bytes.set(headBytes, 0);
  const idEnd = writeValue(bytes, headBytes.length, id, true);
  if (idEnd < 0) return undefined;
  bytes.set(CORRELATION_KEY, idEnd);
  let at = idEnd + CORRELATION_KEY.length;
  // An event emitted outside any call is its own correlation (kernel/emit.ts): its id's bytes, copied.
  if (correlationId === id) {
    for (let from = headBytes.length; from < idEnd; from += 1) bytes[at++] = bytes[from] as number; // a short run: a loop beats copyWithin's C++ call
  } else {
    at = writeValue(bytes, at, correlationId, true);
    if (at < 0) return undefined;
  }
  bytes.set(middleBytes, at);
  at = lineEnd(bytes, writeDecimal(bytes, at + middleBytes.length, time, digits));
  if (traced) at = writeLine(bytes, at, TRACEPARENT_KEY, traceparent, true);
  // Compact JSON, ASCII only (principalHeader), written as it is, as the text path writes it.
  if (principal !== undefined) at = writeLine(bytes, at, PRINCIPAL_KEY, principal, false);
  if (at < 0) return undefined;
  lineEnd(bytes, at);
  return bytes;
}

/**
 * The header block of a call written straight into bytes, as `eventHeaderBytes` writes an
 * event's: the constant parts copied, the correlation id, the deadline and the optional headers
 * written character by character and checked on the way. `undefined` for any value `safe()` would
 * change or that is not ASCII: `callHeaders` then builds the text as before. The same bytes either way.
 */
function callHeaderBytes(parts: CallHeaderParts, context: CallContext): Buffer | undefined {
  const { correlationId, traceparent, idempotencyKey } = context;
  const deadline = Math.floor(context.deadline);
  // A deadline's digits are written from the number: its text would be a heap number's, dear to make.
  const digits = decimalLength(deadline);
  if (digits === 0) return undefined;
  const traced = traceparent !== undefined && traceparent !== '';
  const principal = context.principal === undefined ? undefined : principalHeader(context.principal);
  const attempt = context.callAttempt === undefined ? undefined : `${context.callAttempt}`;
  const { headBytes, middleBytes } = parts;
  let length = headBytes.length + correlationId.length + middleBytes.length + digits + 4;
  if (traced) length += lineLength(TRACEPARENT_KEY, traceparent);
  if (idempotencyKey !== undefined) length += lineLength(IDEMPOTENCY_KEY, idempotencyKey);
  if (principal !== undefined) length += lineLength(PRINCIPAL_KEY, principal);
  if (attempt !== undefined) length += lineLength(CALL_ATTEMPT_KEY, attempt);
  const bytes = Buffer.allocUnsafe(length);
  bytes.set(headBytes, 0);
  let at = writeValue(bytes, headBytes.length, correlationId, true);
  if (at < 0) return undefined;
  bytes.set(middleBytes, at);
  at = lineEnd(bytes, writeDecimal(bytes, at + middleBytes.length, deadline, digits));
  if (traced) at = writeLine(bytes, at, TRACEPARENT_KEY, traceparent, true);
  if (idempotencyKey !== undefined) at = writeLine(bytes, at, IDEMPOTENCY_KEY, idempotencyKey, true);
  // The principal (compact ASCII JSON) and the attempt number are written as they are, as the text path writes them.
  if (principal !== undefined) at = writeLine(bytes, at, PRINCIPAL_KEY, principal, false);
  if (attempt !== undefined) at = writeLine(bytes, at, CALL_ATTEMPT_KEY, attempt, false);
  if (at < 0) return undefined;
  lineEnd(bytes, at);
  return bytes;
}

/**
 * The number of decimal digits of `value`, a whole number; 0 for a negative one or one past
 * 2^53 (or NaN), which `callHeaders` or `eventHeaders` then writes as text (`${value}`), as it always did.
 */
function decimalLength(value: number): number {
  if (!(value >= 0 && value <= Number.MAX_SAFE_INTEGER)) return 0;
  let length = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) length += 1;
  return length;
}

/** Writes the `digits` decimal digits of `value` (a whole number, see {@link decimalLength}) at `at`; answers where they end. */
function writeDecimal(bytes: Buffer, at: number, value: number, digits: number): number {
  let rest = value;
  for (let index = at + digits - 1; index >= at; index -= 1) {
    const next = Math.floor(rest / 10);
    bytes[index] = 48 + (rest - next * 10);
    rest = next;
  }
  return at + digits;
}

/** The bytes of one `key` line holding `value` (ASCII: one byte a character), its line break included. */
function lineLength(key: Uint8Array, value: string): number {
  return key.length + value.length + 2;
}

/**
 * Writes the line `key` + `value` + CR LF at `at` and answers where it ends; -1 when `at` is
 * already -1 (an earlier value was refused) or `value` is refused (see {@link writeValue}).
 */
function writeLine(bytes: Buffer, at: number, key: Uint8Array, value: string, trimmed: boolean): number {
  if (at < 0) return -1;
  bytes.set(key, at);
  const end = writeValue(bytes, at + key.length, value, trimmed);
  return end < 0 ? -1 : lineEnd(bytes, end);
}

/**
 * Writes `value` at `at` and answers where it ends; -1 for a character outside visible ASCII and
 * space, or (when `trimmed`) an empty value or a space at either end.
 */
function writeValue(bytes: Buffer, at: number, value: string, trimmed: boolean): number {
  const length = value.length;
  if (trimmed && (length === 0 || value.charCodeAt(0) === 32 || value.charCodeAt(length - 1) === 32)) return -1;
  for (let index = 0; index < length; index += 1) {
    const code = value.charCodeAt(index);
    if (code < 32 || code > 126) return -1;
    bytes[at + index] = code;
  }
  return at + length;
}

function lineEnd(bytes: Buffer, at: number): number {
  bytes[at] = CR;
  bytes[at + 1] = LF;
  return at + 2;
}
