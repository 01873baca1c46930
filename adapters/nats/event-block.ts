/**
 * A notification's header block read in one pass when it is exactly what keel's publisher writes
 * (header-text.ts `eventHeaders`): `NATS/1.0`, then `Keel-Contract-Version`, `Keel-Event-Id`,
 * `Keel-Correlation-Id`, `Keel-Publisher`, `Keel-Published-At`, optionally `traceparent` and
 * `Keel-Principal`, in that order, one `Key: value` line each. The keys are matched as bytes, the
 * version and publisher compared with the strings already known (no string made for them), the
 * time read as a number, and only the ids become strings. It was the largest piece of keel's own
 * work at the subscriber (docs/performance.md, "Notification events over NATS"). A block whose
 * bytes around the two ids repeat those of one of the last blocks read line by line (all but the
 * ids' values and the time's digits, in the common case) is read by comparing those bytes, without
 * going over its lines one by one (as request-headers.ts reads a request's; "Tenth round").
 *
 * It answers only for a block that raw-headers.ts and `readEventHeaders` would accept as they are:
 * every value visible ASCII, with no space at either end (so that nats' trimming changes nothing),
 * the publisher the event's owner, the version semver, the event id at most `MAX_EVENT_ID`
 * characters, the time at most 15 digits (a number read digit by digit is then exactly `Number()`
 * of it). Anything else, a refusal included, is `undefined`, and the caller reads the block the
 * general way, which gives the same answer.
 */
import type { Msg } from '@nats-io/transport-node';
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
import { MAX_EVENT_ID, eventHeadersOf, type EventHeaders } from './headers.js';
import { Header } from './wire.js';

const ID_KEY = bytesOf(`${Header.EVENT_ID}: `);
const CORRELATION_KEY = bytesOf(`${Header.CORRELATION_ID}: `);
const PUBLISHER_KEY = bytesOf(`${Header.PUBLISHER}: `);
const AT_KEY = bytesOf(`${Header.PUBLISHED_AT}: `);
const TRACEPARENT_KEY = bytesOf(`${Header.TRACEPARENT}: `);
const PRINCIPAL_KEY = bytesOf(`${Header.PRINCIPAL}: `);

// The version of the last event read the long way (process-wide: most events repeat it).
const lastVersion = new LastVersion();

/**
 * What repeats from one event of a publisher to the next, taken from the last block read the long
 * way: its bytes up to the event id's value (the status line, the version line, the id's name) and
 * from the end of the correlation id's value to the time's digits (the line break, the publisher
 * line, the time's name), and the version and publisher read from them. A block whose bytes repeat
 * both (and the correlation id's name between the ids) is read by comparing them, as the long way
 * would read it.
 */
interface Repeated {
  readonly head: Uint8Array;
  readonly middle: Uint8Array;
  readonly version: string;
  readonly publisher: string;
}

/**
 * The blocks to compare with, the last few read the long way: a process subscribes to the events
 * of a handful of publishers (and versions), whose events may take turns.
 */
const repeated = new RecentBlocks<Repeated>(4);

/** The line break and name between the two ids, as keel writes them. */
const CORRELATION_LINE = bytesOf(`\r\n${Header.CORRELATION_ID}: `);

/**
 * The headers of a notification whose block is in the form described above (see the file's
 * header), as `readEventHeaders(messageHeaders(msg), attempt, owner)` would read them; `undefined`
 * for any other block, or a message without one.
 */
export function readEventBlock(msg: Msg, attempt: number, owner: string): EventHeaders | undefined {
  const bytes = rawBytes(msg);
  if (bytes === undefined) return undefined;
  const length = headerLength(msg);
  const kept = repeated.kept;
  for (let i = 0; i < kept.length; i++) {
    const known = kept[i] as Repeated;
    if (known.publisher !== owner) continue;
    const idStart = keyEnd(bytes, 0, length, known.head);
    const idEnd = valueEnd(bytes, idStart, length);
    const correlationStart = keyEnd(bytes, idEnd, length, CORRELATION_LINE);
    const correlationEnd = valueEnd(bytes, correlationStart, length);
    const atStart = keyEnd(bytes, correlationEnd, length, known.middle);
    if (atStart >= 0) return eventFrom(bytes, length, known.version, idStart, idEnd, correlationStart, correlationEnd, atStart, attempt, owner);
  }
  return readLines(bytes, length, attempt, owner);
}

/** {@link readEventBlock} line by line; a block it takes becomes one of the {@link repeated} ones. */
function readLines(bytes: Uint8Array, length: number, attempt: number, owner: string): EventHeaders | undefined {
  const versionAt = versionStart(bytes, length);
  const versionEnd = valueEnd(bytes, versionAt, length);
  const version = versionEnd < 0 ? undefined : lastVersion.read(bytes, versionAt, versionEnd);
  if (version === undefined) return undefined;
  const idStart = keyEnd(bytes, versionEnd + 2, length, ID_KEY);
  const idEnd = valueEnd(bytes, idStart, length);
  if (idEnd < 0) return undefined;
  const correlationStart = keyEnd(bytes, idEnd + 2, length, CORRELATION_KEY);
  const correlationEnd = valueEnd(bytes, correlationStart, length);
  if (correlationEnd < 0) return undefined;
  const publisherStart = keyEnd(bytes, correlationEnd + 2, length, PUBLISHER_KEY);
  const publisherEnd = valueEnd(bytes, publisherStart, length);
  if (publisherEnd < 0 || !sameText(bytes, publisherStart, publisherEnd, owner)) return undefined;
  const atStart = keyEnd(bytes, publisherEnd + 2, length, AT_KEY);
  const read = eventFrom(bytes, length, version, idStart, idEnd, correlationStart, correlationEnd, atStart, attempt, owner);
  if (read !== undefined) {
    repeated.remember({ head: copyOf(bytes, 0, idStart), middle: copyOf(bytes, correlationEnd, atStart), version, publisher: owner });
  }
  return read;
}

/** The event's headers from the time's digits on, its version and ids found; `undefined` when the rest is not in the form. */
function eventFrom(
  bytes: Uint8Array,
  length: number,
  version: string,
  idStart: number,
  idEnd: number,
  correlationStart: number,
  correlationEnd: number,
  atStart: number,
  attempt: number,
  owner: string,
): EventHeaders | undefined {
  // An id longer than readEventHeaders takes is its refusal to make.
  if (idEnd - idStart > MAX_EVENT_ID) return undefined;
  const atEnd = digitsEnd(bytes, atStart, length);
  if (atEnd < 0) return undefined;
  const publishedAt = digitsValue(bytes, atStart, atEnd);
  const at = atEnd + 2;
  const afterTrace = optionalLine(bytes, at, length, TRACEPARENT_KEY);
  if (afterTrace < 0) return undefined;
  const afterPrincipal = optionalLine(bytes, afterTrace, length, PRINCIPAL_KEY);
  if (afterPrincipal < 0 || !blockEnds(bytes, afterPrincipal, length)) return undefined;
  const traceparent = afterTrace === at ? undefined : latin1(bytes, at + TRACEPARENT_KEY.length, afterTrace - 2);
  const principal = afterPrincipal === afterTrace ? undefined : latin1(bytes, afterTrace + PRINCIPAL_KEY.length, afterPrincipal - 2);
  // One string for both ids (and the key between them), sliced: one decoding call, not two.
  const ids = latin1(bytes, idStart, correlationEnd);
  const id = ids.slice(0, idEnd - idStart);
  const correlationId = ids.slice(correlationStart - idStart);
  return eventHeadersOf(version, undefined, id, correlationId, traceparent, owner, publishedAt, attempt, principal);
}
