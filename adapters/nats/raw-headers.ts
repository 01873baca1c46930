/**
 * A received message's header block read straight from its bytes, for requests at the callee and
 * notifications at the subscriber whose block is not the exact form keel writes (those the
 * one-pass readers take: request-headers.ts, event-block.ts; this is their general fallback and
 * the reference they are tested against): nats' `msg.headers` parses every block into a `MsgHdrs` (a
 * `TextDecoder`, per header a key validation and canonicalisation, a scan of the keys so far and
 * a value check), which was a fifth of a callee's and a quarter of a subscriber's CPU
 * (docs/performance.md). keel's readers only iterate the headers once, so a list of the headers'
 * first values does.
 *
 * nats.js exposes a message's raw bytes only privately (`_rdata`, and `_msg.hdr`, the header
 * block's length), the same in `nats` v2 and `@nats-io/nats-core` v3 (test/nats-raw-headers.test.ts fails if an update moves them). When they are not there, or
 * the block is anything but plain ASCII in the form nats itself writes, this returns nats' own
 * decoded `msg.headers`, so a block nats would read differently, or refuse, is still read by nats.
 */
import { Buffer } from 'node:buffer';
import type { Msg } from '@nats-io/transport-node';

/** A header and its values, as iterating nats' `MsgHdrs` yields them (here: the first value only). */
export type HeaderEntry = readonly [string, readonly string[]];

/** What `readEventHeaders` iterates: nats' `MsgHdrs`, or the entries read here. */
export type HeaderEntries = Iterable<HeaderEntry>;

interface RawMsg {
  readonly _rdata?: unknown;
  readonly _msg?: { readonly hdr?: unknown; readonly subject?: unknown };
}

const STATUS_LINE = 'NATS/1.0\r\n';

/** The message's headers (`undefined`: it has none), read from the raw bytes when that is safe. */
export function messageHeaders(msg: Msg): HeaderEntries | undefined {
  const raw = msg as unknown as RawMsg;
  const bytes = raw._rdata;
  const length = raw._msg?.hdr;
  if (!(bytes instanceof Uint8Array) || typeof length !== 'number' || length > bytes.length) return msg.headers;
  if (length < 0) return undefined;
  return parse(bytes, length) ?? msg.headers;
}

/**
 * The entries of a header block, or `undefined` when nats' decoder must read it: a byte outside
 * printable ASCII (other than tab and the CRLF line breaks), a status line other than `NATS/1.0`,
 * a lone CR or LF, or a key nats refuses (a space or tab before the colon). Same reading as nats'
 * `MsgHdrsImpl.decode`: `Key: value` lines, the key exactly as sent, the value trimmed, lines
 * without a colon skipped; only a key's first value is kept. One pass over the bytes.
 */
function parse(bytes: Uint8Array, length: number): HeaderEntry[] | undefined {
  if (length < STATUS_LINE.length) return undefined;
  for (let index = 0; index < STATUS_LINE.length; index += 1) {
    if (bytes[index] !== STATUS_LINE.charCodeAt(index)) return undefined;
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, length).toString('latin1'); // only ASCII is kept below
  const entries: HeaderEntry[] = [];
  let lineStart = STATUS_LINE.length;
  let colon = -1;
  let keyValid = true;
  for (let index = lineStart; index < length; index += 1) {
    const byte = bytes[index] as number;
    if (byte === CR) {
      if (bytes[index + 1] !== LF || index + 1 >= length) return undefined;
      if (colon >= 0 && !add(entries, text, lineStart, colon, index, keyValid)) return undefined;
      index += 1;
      lineStart = index + 1;
      colon = -1;
      keyValid = true;
    } else if (byte > 126 || (byte < 32 && byte !== TAB)) {
      return undefined; // a lone LF, a control character or a byte that is not ASCII
    } else if (colon < 0) {
      if (byte === COLON) colon = index;
      else if (byte < 33) keyValid = false;
    }
  }
  if (colon >= 0 && !add(entries, text, lineStart, colon, length, keyValid)) return undefined;
  return entries;
}

const CR = 13;
const LF = 10;
const TAB = 9;
const COLON = 58;

/** Adds a `Key: value` line unless its key came before; false for a key nats refuses. */
function add(entries: HeaderEntry[], text: string, start: number, colon: number, end: number, keyValid: boolean): boolean {
  if (!keyValid) return false;
  const key = text.slice(start, colon);
  for (let index = 0; index < entries.length; index += 1) if ((entries[index] as HeaderEntry)[0] === key) return true;
  entries.push([key, [text.slice(colon + 1, end).trim()]]);
  return true;
}

/**
 * True when the message certainly has no header block (nats' `_msg.hdr` is -1): a reply that
 * needs no header read at all. False when it has one, or when the internals are not there.
 */
export function hasNoHeaders(msg: Msg): boolean {
  const length = (msg as unknown as RawMsg)._msg?.hdr;
  return typeof length === 'number' && length < 0;
}

/**
 * The number a reply subject ends with, `inbox.{token}` with the token in base 36 (0-9, a-z) as
 * the caller writes it, read from the subject's bytes (no string decoded), or from `msg.subject`
 * when the bytes are not there. -1 when the part after the inbox is not such a token.
 */
export function replyToken(msg: Msg, inboxLength: number): number {
  const bytes = (msg as unknown as RawMsg)._msg?.subject;
  if (bytes instanceof Uint8Array) {
    const end = bytes.length;
    // One way to write each number: no leading zero, at most 10 digits (36^10 > 2^53 is not reached).
    if (end <= inboxLength || end - inboxLength > 10 || (bytes[inboxLength] === ZERO && end - inboxLength > 1)) return -1;
    let value = 0;
    for (let index = inboxLength; index < end; index += 1) {
      const digit = base36Digit(bytes[index] as number);
      if (digit < 0) return -1;
      value = value * 36 + digit;
    }
    return value;
  }
  const subject = msg.subject;
  const end = subject.length;
  if (end <= inboxLength || end - inboxLength > 10 || (subject.charCodeAt(inboxLength) === ZERO && end - inboxLength > 1)) return -1;
  let value = 0;
  for (let index = inboxLength; index < end; index += 1) {
    const digit = base36Digit(subject.charCodeAt(index));
    if (digit < 0) return -1;
    value = value * 36 + digit;
  }
  return value;
}

const ZERO = 48;

function base36Digit(code: number): number {
  if (code >= ZERO && code <= 57) return code - ZERO;
  if (code >= 97 && code <= 122) return code - 87;
  return -1;
}
