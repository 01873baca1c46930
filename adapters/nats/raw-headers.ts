/**
 * A received message's header block as bytes, for the callee's fast read of keel's request
 * headers (headers.ts, `readRequestHeaders`). The NATS client (v3) decodes headers only through
 * `msg.headers`, which builds a `MsgHdrs` (a `TextDecoder`, a split, and per header key
 * validation and canonicalisation): about a fifth of the callee's CPU per call in the profile
 * (docs/performance.md). The raw bytes sit in the client's message object (`MsgImpl`): its
 * `_rdata` (header block then body) and `_msg.hdr` (the header block's length, `-1` without one).
 * Those are internals, so every access is checked, and anything unexpected answers `undefined`,
 * for the caller to use `msg.headers` as before. test/nats-raw-headers.test.ts fails if a client
 * update moves them.
 */
import type { Msg } from '@nats-io/transport-node';

/** `NATS/1.0`: how every header block starts. */
const HEADER_START = [0x4e, 0x41, 0x54, 0x53, 0x2f, 0x31, 0x2e, 0x30];

interface MsgInternals {
  readonly _msg?: { readonly hdr?: unknown };
  readonly _rdata?: unknown;
}

/**
 * The header block of `msg` (`NATS/1.0…\r\n\r\n`), `null` when the message has none, or
 * `undefined` when the client's message object is not what this reader knows (then read
 * `msg.headers`).
 */
export function rawHeaderBytes(msg: Msg): Uint8Array | null | undefined {
  const internals = msg as unknown as MsgInternals;
  const length = internals._msg?.hdr;
  const data = internals._rdata;
  if (typeof length !== 'number') return undefined;
  if (length === -1) return null;
  if (!(data instanceof Uint8Array) || length < HEADER_START.length || length > data.length) return undefined;
  for (let index = 0; index < HEADER_START.length; index += 1) {
    if (data[index] !== HEADER_START[index]) return undefined;
  }
  return data.subarray(0, length);
}

/** The header block as text (UTF-8, as the client decodes it). */
export function headerText(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
}

/** Where {@link forEachHeader} hands each header: an object, so a read allocates no closure. */
export interface HeaderSink {
  take(key: string, value: string): void;
}

/**
 * Hands `sink` each header line's key and trimmed value, in order, as the client's own decoding
 * reads them: the status line skipped, empty lines and lines without `:` ignored, the key
 * everything before the first `:`.
 */
export function forEachHeader(text: string, sink: HeaderSink): void {
  let start = text.indexOf('\r\n');
  if (start === -1) return;
  start += 2;
  while (start < text.length) {
    let end = text.indexOf('\r\n', start);
    if (end === -1) end = text.length;
    if (end > start) {
      const colon = text.indexOf(':', start);
      if (colon !== -1 && colon < end) sink.take(text.slice(start, colon), text.slice(colon + 1, end).trim());
    }
    start = end + 2;
  }
}
