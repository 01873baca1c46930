/**
 * The callee's fast way to read a request's call context: the header block keel's own callers
 * write (header-text.ts `callHeaders`), matched byte by byte in one pass. That block is
 * `NATS/1.0`, then `Keel-Contract-Version`, `Keel-Correlation-Id`, `Keel-Caller` and
 * `Keel-Deadline`, optionally `traceparent`, in this order, one space after each colon, every value
 * visible ASCII. The version and the caller are the same bytes from one request to the next: their
 * strings (and the version's check) are reused from the last request that sent the same bytes; the
 * deadline is read as a number without a string. This took the header reading, about a tenth of a
 * callee's CPU per request, down by most of it (docs/performance.md, "The callee's header block").
 *
 * Any other block (a foreign client's, a call with an idempotency key, a principal or an attempt
 * number, another order, other spacing, a value this reader does not accept) is left to the general
 * reader (raw-headers.ts and headers.ts `readRequestHeaders`), which reads the blocks matched here
 * the same way: test/nats-request-headers.test.ts holds the two to the same result.
 */
import type { Msg } from '@nats-io/transport-node';
import { isTraceparent } from 'keel/transport';
import { VERSION_PATTERN, type RequestHeaders } from './headers.js';
import { Header } from './wire.js';

interface RawMsg {
  readonly _rdata?: unknown;
  readonly _msg?: { readonly hdr?: unknown };
}

const bytesOf = (text: string): Uint8Array => Buffer.from(text, 'latin1');

const START = bytesOf(`NATS/1.0\r\n${Header.CONTRACT_VERSION}: `);
const CORRELATION_ID = bytesOf(`\r\n${Header.CORRELATION_ID}: `);
const CALLER = bytesOf(`\r\n${Header.CALLER}: `);
const DEADLINE = bytesOf(`\r\n${Header.DEADLINE}: `);
const TRACEPARENT = bytesOf(`\r\n${Header.TRACEPARENT}: `);

const CR = 13;
const LF = 10;
const ZERO = 48;
/** Digits a deadline may have here: epoch milliseconds have 13; 15 keep every value exact. */
const MAX_DEADLINE_DIGITS = 15;

/** A value remembered from the last request that sent it: its bytes and its string. */
class Remembered {
  bytes = new Uint8Array(0);
  text = '';
  /** Whether the last `read` decoded its bytes (false: the remembered string was reused). */
  decoded = false;

  /** The string of `bytes[start, end)`, reused when the bytes are the last ones seen. */
  read(bytes: Uint8Array, start: number, end: number, view: Buffer): string {
    const known = this.bytes;
    this.decoded = false;
    if (known.length === end - start) {
      let same = true;
      for (let index = 0; index < known.length; index += 1) {
        if (known[index] !== bytes[start + index]) {
          same = false;
          break;
        }
      }
      if (same) return this.text;
    }
    this.decoded = true;
    this.text = view.toString('latin1', start, end);
    this.bytes = bytes.slice(start, end);
    return this.text;
  }

  forget(): void {
    this.bytes = new Uint8Array(0);
    this.text = '';
  }
}

// Only versions that passed the semver check are remembered, so a reused one needs no check.
const lastVersion = new Remembered();
const lastCaller = new Remembered();

/**
 * The request headers of `msg` when its block is in the form keel's callers write, or `undefined`
 * for the general reader to read (and refuse, where it must). Never throws.
 */
export function readKnownRequest(msg: Msg): RequestHeaders | undefined {
  const raw = msg as unknown as RawMsg;
  const bytes = raw._rdata;
  const length = raw._msg?.hdr;
  if (!(bytes instanceof Uint8Array) || typeof length !== 'number' || length > bytes.length || length < START.length) return undefined;
  if (!matches(bytes, 0, START, length)) return undefined;
  const versionEnd = valueEnd(bytes, START.length, length);
  if (versionEnd < 0 || !matches(bytes, versionEnd, CORRELATION_ID, length)) return undefined;
  const correlationStart = versionEnd + CORRELATION_ID.length;
  const correlationEnd = valueEnd(bytes, correlationStart, length);
  if (correlationEnd < 0 || !matches(bytes, correlationEnd, CALLER, length)) return undefined;
  const callerStart = correlationEnd + CALLER.length;
  const callerEnd = valueEnd(bytes, callerStart, length);
  if (callerEnd < 0 || !matches(bytes, callerEnd, DEADLINE, length)) return undefined;
  const deadlineStart = callerEnd + DEADLINE.length;
  let deadline = 0;
  let index = deadlineStart;
  for (; index < length && index - deadlineStart <= MAX_DEADLINE_DIGITS; index += 1) {
    const digit = (bytes[index] as number) - ZERO;
    if (digit < 0 || digit > 9) break;
    deadline = deadline * 10 + digit;
  }
  if (index === deadlineStart || index - deadlineStart > MAX_DEADLINE_DIGITS) return undefined;
  let traceStart = -1;
  let traceEnd = -1;
  if (matches(bytes, index, TRACEPARENT, length)) {
    traceStart = index + TRACEPARENT.length;
    traceEnd = valueEnd(bytes, traceStart, length);
    if (traceEnd < 0) return undefined;
    index = traceEnd;
  }
  // The block ends here: the line break, and the blank line, at the block's end.
  if (index + 4 !== length || bytes[index] !== CR || bytes[index + 1] !== LF || bytes[index + 2] !== CR || bytes[index + 3] !== LF) {
    return undefined;
  }

  // Socket data reaches nats' parser as a Buffer, so the message's bytes usually are one already.
  const view = bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, length);
  const version = lastVersion.read(bytes, START.length, versionEnd, view);
  if (lastVersion.decoded && !VERSION_PATTERN.test(version)) {
    lastVersion.forget(); // not a version: never reused
    return undefined;
  }
  const traceparent = traceStart < 0 ? undefined : view.toString('latin1', traceStart, traceEnd);
  return {
    version,
    context: {
      correlationId: view.toString('latin1', correlationStart, correlationEnd),
      traceparent: isTraceparent(traceparent) ? traceparent : undefined,
      caller: lastCaller.read(bytes, callerStart, callerEnd, view),
      deadline,
      idempotencyKey: undefined,
      principal: undefined,
    },
  };
}

/** True when `bytes` hold `expected` from `at`, before `limit`. */
function matches(bytes: Uint8Array, at: number, expected: Uint8Array, limit: number): boolean {
  if (at + expected.length > limit) return false;
  for (let index = 0; index < expected.length; index += 1) if (bytes[at + index] !== expected[index]) return false;
  return true;
}

/** Where a value of visible ASCII characters from `start` ends (at a CR), or -1: empty, another byte, or no CR before `limit`. */
function valueEnd(bytes: Uint8Array, start: number, limit: number): number {
  for (let index = start; index < limit; index += 1) {
    const byte = bytes[index] as number;
    if (byte === CR) return index === start ? -1 : index;
    if (byte < 33 || byte > 126) return -1;
  }
  return -1;
}
