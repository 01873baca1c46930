/**
 * The callee's one-pass reading of a request's call context, when its header block is exactly what
 * keel's callers write (header-text.ts `callHeaders`): `NATS/1.0`, then `Keel-Contract-Version`,
 * `Keel-Correlation-Id`, `Keel-Caller` and `Keel-Deadline`, optionally `traceparent`, in that
 * order, one `Key: value` line each. The keys are matched as bytes, the version and the caller
 * compared with the strings of the last request (no string made while they repeat, and the
 * version's pattern checked once per distinct version), the deadline read as a number, and only
 * the correlation id (and a traceparent) becomes a string. It took most of the header reading
 * off a callee's CPU (docs/performance.md, "The callee's header block"). A block whose bytes
 * around the correlation id repeat those of one of the last blocks read line by line (all but the
 * correlation id's value and the deadline's digits, in the common case) is read by comparing
 * those bytes, without going over its lines one by one.
 *
 * It answers only for a block that raw-headers.ts and `readRequestHeaders` would read as it is
 * (header-bytes.ts: every value visible ASCII with no space at either end, the deadline at most
 * 15 digits). Any other block (a foreign client's, a call with an idempotency key, a principal or
 * an attempt number, another order or spacing, a value to refuse) is `undefined`, and the callee
 * reads it the general way, which reads the blocks matched here alike
 * (test/nats-request-headers.test.ts holds the two readers to the same result).
 */
import type { Msg } from '@nats-io/transport-node';
import { isTraceparent } from 'keel/transport';
import {
  LastVersion,
  RecentBlocks,
  blockEnds,
  bytesOf,
  copyOf,
  digitsEnd,
  digitsValue,
  headerLength,
  keyEnd,
  latin1,
  optionalLine,
  rawBytes,
  sameText,
  valueEnd,
  versionStart,
} from './header-bytes.js';
import type { RequestHeaders } from './headers.js';
import { Header } from './wire.js';

const CORRELATION_KEY = bytesOf(`${Header.CORRELATION_ID}: `);
const CALLER_KEY = bytesOf(`${Header.CALLER}: `);
const DEADLINE_KEY = bytesOf(`${Header.DEADLINE}: `);
const TRACEPARENT_KEY = bytesOf(`${Header.TRACEPARENT}: `);

// The version and caller of the last request read the long way (process-wide: most requests repeat them).
const lastVersion = new LastVersion();
let lastCaller = '';

/**
 * What repeats from one request of a caller to the next, taken from the last block read the long
 * way: its bytes up to the correlation id's value (the status line, the version line, the
 * correlation id's name) and from the end of that value to the deadline's digits (the line break,
 * the caller line, the deadline's name), and the version and caller read from them. A block whose
 * bytes repeat both is read by comparing them, as the long way would read it.
 */
interface Repeated {
  readonly head: Uint8Array;
  readonly middle: Uint8Array;
  readonly version: string;
  readonly caller: string;
}

/**
 * The blocks to compare with, the last few read the long way: a callee answers a handful of
 * callers (and versions) at once, and with one block kept, requests of two callers taking turns
 * would each miss it and be read the long way, with a new block kept every time.
 */
const repeated = new RecentBlocks<Repeated>(4);

/**
 * The request headers of `msg` when its block is in the form described above (see the file's
 * header), as `readRequestHeaders(messageHeaders(msg), ...)` would read them; `undefined` for any
 * other block, or a message without one. Never throws.
 */
export function readKnownRequest(msg: Msg): RequestHeaders | undefined {
  const bytes = rawBytes(msg);
  if (bytes === undefined) return undefined;
  const length = headerLength(msg);
  const kept = repeated.kept;
  for (let i = 0; i < kept.length; i++) {
    const known = kept[i] as Repeated;
    const correlationStart = keyEnd(bytes, 0, length, known.head);
    const correlationEnd = valueEnd(bytes, correlationStart, length);
    const deadlineStart = keyEnd(bytes, correlationEnd, length, known.middle);
    if (deadlineStart >= 0) return requestFrom(bytes, length, known.version, correlationStart, correlationEnd, known.caller, deadlineStart);
  }
  return readLines(bytes, length);
}

/** {@link readKnownRequest} line by line; a block it takes becomes one of the {@link repeated} ones. */
function readLines(bytes: Uint8Array, length: number): RequestHeaders | undefined {
  const versionAt = versionStart(bytes, length);
  const versionEnd = valueEnd(bytes, versionAt, length);
  const version = versionEnd < 0 ? undefined : lastVersion.read(bytes, versionAt, versionEnd);
  if (version === undefined) return undefined;
  const correlationStart = keyEnd(bytes, versionEnd + 2, length, CORRELATION_KEY);
  const correlationEnd = valueEnd(bytes, correlationStart, length);
  if (correlationEnd < 0) return undefined;
  const callerStart = keyEnd(bytes, correlationEnd + 2, length, CALLER_KEY);
  const callerEnd = valueEnd(bytes, callerStart, length);
  if (callerEnd < 0) return undefined;
  let caller = lastCaller;
  if (!sameText(bytes, callerStart, callerEnd, caller)) {
    caller = latin1(bytes, callerStart, callerEnd);
    lastCaller = caller;
  }
  const deadlineStart = keyEnd(bytes, callerEnd + 2, length, DEADLINE_KEY);
  const request = requestFrom(bytes, length, version, correlationStart, correlationEnd, caller, deadlineStart);
  if (request !== undefined) {
    repeated.remember({ head: copyOf(bytes, 0, correlationStart), middle: copyOf(bytes, correlationEnd, deadlineStart), version, caller });
  }
  return request;
}

/** The request from the deadline's digits on, its version, correlation id and caller found; `undefined` when the rest is not in the form. */
function requestFrom(
  bytes: Uint8Array,
  length: number,
  version: string,
  correlationStart: number,
  correlationEnd: number,
  caller: string,
  deadlineStart: number,
): RequestHeaders | undefined {
  const deadlineEnd = digitsEnd(bytes, deadlineStart, length);
  if (deadlineEnd < 0) return undefined;
  const deadline = digitsValue(bytes, deadlineStart, deadlineEnd);
  const at = deadlineEnd + 2;
  const afterTrace = optionalLine(bytes, at, length, TRACEPARENT_KEY);
  if (afterTrace < 0 || !blockEnds(bytes, afterTrace, length)) return undefined;
  const traceparent = afterTrace === at ? undefined : latin1(bytes, at + TRACEPARENT_KEY.length, afterTrace - 2);
  return {
    version,
    context: {
      correlationId: latin1(bytes, correlationStart, correlationEnd),
      traceparent: isTraceparent(traceparent) ? traceparent : undefined,
      caller,
      deadline,
      idempotencyKey: undefined,
      principal: undefined,
    },
  };
}
