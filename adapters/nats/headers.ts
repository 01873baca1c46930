/**
 * Call context and event metadata from NATS headers (header-text.ts writes them). The receiving side never trusts
 * a header blindly: a foreign client may send anything, so every value is checked and a
 * request the callee cannot understand gets an error envelope, never a crash.
 */
import { KeelError, KeelErrorCode, type CallContext } from 'keel';
import {
  EXTERNAL_CALLER,
  MAX_TIMEOUT_MS,
  isIdempotencyKey,
  isTraceparent,
  majorOf,
  newCorrelationId,
  type EventMetadata,
} from 'keel/transport';
import type { HeaderEntries } from './raw-headers.js';
import { Header, headerValue } from './wire.js';

export { callHeaders, eventHeaders } from './header-text.js';

/** The longest `Keel-Principal` header a receiver reads (characters); a longer one is refused. */
export const MAX_PRINCIPAL_HEADER = 8_192;

/**
 * The principal a `Keel-Principal` header carries, as plain JSON data (the kernel then checks it
 * against the application's schema), or a KeelError `UNAUTHENTICATED` for a header that is not
 * JSON or is too long.
 */
function readPrincipal(value: string, where: string, correlationId: string): unknown {
  if (value.length <= MAX_PRINCIPAL_HEADER) {
    try {
      return JSON.parse(value) as unknown;
    } catch {
      // answered below
    }
  }
  return new KeelError(
    KeelErrorCode.UNAUTHENTICATED,
    `${where}: header ${Header.PRINCIPAL} is not JSON of at most ${MAX_PRINCIPAL_HEADER} characters. See docs/wire-protocol.md.`,
    { correlationId },
  );
}

/** What the callee reads from a request's headers. */
export interface RequestHeaders {
  readonly version: string;
  readonly context: CallContext;
}

const VERSION_PATTERN = /^\d+\.\d+\.\d+([-+].*)?$/;
const INTEGER_PATTERN = /^\d+$/;

/** keel's request headers as found, before any check: the first value of each, as `MsgHdrs` gives it. */
class RequestHeaderValues {
  version: string | undefined = undefined;
  correlationId: string | undefined = undefined;
  traceparent: string | undefined = undefined;
  caller: string | undefined = undefined;
  deadline: string | undefined = undefined;
  timeout: string | undefined = undefined;
  idempotencyKey: string | undefined = undefined;
  principal: string | undefined = undefined;
  callAttempt: string | undefined = undefined;

  take(key: string, value: string): void {
    switch (key) {
      case Header.CONTRACT_VERSION:
        this.version ??= value;
        break;
      case Header.CORRELATION_ID:
        this.correlationId ??= value;
        break;
      case Header.TRACEPARENT:
        this.traceparent ??= value;
        break;
      case Header.CALLER:
        this.caller ??= value;
        break;
      case Header.DEADLINE:
        this.deadline ??= value;
        break;
      case Header.TIMEOUT_MS:
        this.timeout ??= value;
        break;
      case Header.IDEMPOTENCY_KEY:
        this.idempotencyKey ??= value;
        break;
      case Header.PRINCIPAL:
        this.principal ??= value;
        break;
      case Header.CALL_ATTEMPT:
        this.callAttempt ??= value;
        break;
      default:
        break;
    }
  }
}

/**
 * Reads a request's headers: the entries raw-headers.ts read from the header block's bytes, or
 * nats' decoded `MsgHdrs`, read alike. Missing optional headers get defaults (a new correlation id,
 * caller `external`, the default deadline); a missing or malformed contract version or deadline
 * is refused with `INVALID_INPUT`, naming the header and pointing at the wire protocol.
 */
export function readRequestHeaders(
  source: HeaderEntries | undefined,
  target: string,
  defaultTimeoutMs: number,
): RequestHeaders {
  const found = new RequestHeaderValues();
  if (source !== undefined) {
    for (const [key, values] of source) {
      const value = values[0];
      if (value !== undefined) found.take(key, value);
    }
  }
  const { version, traceparent, caller, deadline, timeout, idempotencyKey, principal, callAttempt } = found;
  let { correlationId } = found;
  correlationId = correlationId === undefined || correlationId === '' ? newCorrelationId() : correlationId;
  if (version === undefined) {
    refuse(target, correlationId, `header ${Header.CONTRACT_VERSION} is missing; send the semver of the contract you were built against.`);
  }
  if (!VERSION_PATTERN.test(version)) {
    refuse(target, correlationId, `header ${Header.CONTRACT_VERSION} "${headerValue(version, 64)}" is not a semver version such as 1.0.0.`);
  }
  // The clock is read only for a deadline relative to now: keel's callers send an absolute one.
  let end: number;
  // Bounded: a deadline past Number.MAX_SAFE_INTEGER (16 digits and more; Infinity for 309) is
  // beyond what a database stores as a timestamp, and the idempotency key or row that records it
  // failed INTERNAL; a timeout, as the kernel's own timeoutMs, fits a timer.
  if (deadline !== undefined) {
    if (!INTEGER_PATTERN.test(deadline) || Number(deadline) > Number.MAX_SAFE_INTEGER) {
      refuse(target, correlationId, `header ${Header.DEADLINE} "${headerValue(deadline, 64)}" is not epoch milliseconds.`);
    }
    end = Number(deadline);
  } else if (timeout !== undefined) {
    if (!INTEGER_PATTERN.test(timeout) || Number(timeout) <= 0 || Number(timeout) > MAX_TIMEOUT_MS) {
      refuse(target, correlationId, `header ${Header.TIMEOUT_MS} "${headerValue(timeout, 64)}" is not a positive number of milliseconds of at most ${MAX_TIMEOUT_MS}.`);
    }
    end = Date.now() + Number(timeout);
  } else {
    end = Date.now() + defaultTimeoutMs;
  }
  if (idempotencyKey !== undefined && !isIdempotencyKey(idempotencyKey)) {
    refuse(target, correlationId, `header ${Header.IDEMPOTENCY_KEY} is not 1 to 255 visible ASCII characters.`);
  }
  let who: unknown;
  if (principal !== undefined) {
    who = readPrincipal(principal, `Request to ${target}`, correlationId);
    if (who instanceof KeelError) throw who;
  }
  return {
    version,
    context: {
      correlationId,
      traceparent: isTraceparent(traceparent) ? traceparent : undefined,
      caller: caller === undefined || caller === '' ? EXTERNAL_CALLER : caller,
      deadline: end,
      idempotencyKey,
      // Plain JSON here: the kernel's answer pipeline checks it against the application's schema.
      principal: who as CallContext['principal'],
      // Informational: a value that is not a whole number from 2 is ignored rather than refused.
      ...(callAttempt !== undefined && INTEGER_PATTERN.test(callAttempt) && Number(callAttempt) >= 2 && callAttempt.length < 4
        ? { callAttempt: Number(callAttempt) }
        : {}),
    },
  };
}

/** Refuses a request whose headers the callee cannot understand (a module-level function: no closure per request). */
function refuse(target: string, correlationId: string, message: string): never {
  throw new KeelError(KeelErrorCode.INVALID_INPUT, `Request to ${target}: ${message} See docs/wire-protocol.md.`, { correlationId });
}

/** What a subscriber reads from an event's headers. */
export interface EventHeaders {
  readonly version: string | undefined;
  readonly metadata: EventMetadata;
  /**
   * Why the event must be refused before its payload is looked at: a header keel always sends
   * is missing or malformed, or it names another publisher than the module that owns the
   * event. `undefined` when the headers are keel's.
   */
  readonly refusal: string | undefined;
  /** Why the event can never be handled, read from its headers (a `Keel-Principal` that is not JSON). */
  readonly refused?: KeelError;
}

/**
 * Reads an event's headers. keel sends `Keel-Contract-Version`, `Keel-Event-Id`,
 * `Keel-Correlation-Id`, `Keel-Publisher` and `Keel-Published-At` on every event; a message
 * without one of them, with a malformed one, or published in the name of another module than
 * `owner` (the module whose contract declares the event) was not sent by keel and gets a
 * `refusal`. Metadata is filled in anyway, for the logs.
 */
export function readEventHeaders(source: HeaderEntries | undefined, attempt: number, owner: string): EventHeaders {
  let version: string | undefined;
  let id: string | undefined;
  let correlationId: string | undefined;
  let traceparent: string | undefined;
  let publisher: string | undefined;
  let publishedAt: string | undefined;
  let principal: string | undefined;
  if (source !== undefined) {
    for (const [key, values] of source) {
      const value = values[0];
      if (value === undefined || value === '') continue;
      switch (key) {
        case Header.CONTRACT_VERSION:
          version = value;
          break;
        case Header.EVENT_ID:
          id = value;
          break;
        case Header.CORRELATION_ID:
          correlationId = value;
          break;
        case Header.TRACEPARENT:
          traceparent = value;
          break;
        case Header.PUBLISHER:
          publisher = value;
          break;
        case Header.PUBLISHED_AT:
          publishedAt = value;
          break;
        case Header.PRINCIPAL:
          principal = value;
          break;
        default:
          break;
      }
    }
  }
  const atValid = publishedAt !== undefined && INTEGER_PATTERN.test(publishedAt);
  const refusal = eventRefusal(version, id, correlationId, publisher, publishedAt, atValid, owner);
  return eventHeadersOf(
    version,
    refusal,
    id ?? newCorrelationId(),
    correlationId ?? newCorrelationId(),
    traceparent,
    publisher ?? owner,
    atValid ? Number(publishedAt) : Date.now(),
    attempt,
    principal,
  );
}

/**
 * {@link readEventHeaders} of the headers `source` gives: nats' `msg.headers` (or raw-headers.ts's
 * `messageHeaders`, which falls back on it). nats' decoding throws on a header block it refuses (a
 * key with a space, a bare line feed), which no keel publisher writes, so such an event gets a
 * `refusal`, as one without keel's headers does. Thrown from a subscription's callback instead,
 * the error would end the nats client's socket reader (the connection hears nothing more until it
 * is found stale), and from a durable event's handling it would be an unhandled rejection that
 * ends the process, at every redelivery.
 */
export function readEventHeadersFrom(source: () => HeaderEntries | undefined, attempt: number, owner: string): EventHeaders {
  let entries: HeaderEntries | undefined;
  try {
    entries = source();
  } catch (error) {
    const problem = error instanceof Error ? error.message : String(error);
    return {
      ...readEventHeaders(undefined, attempt, owner),
      refusal: `a header block nats cannot decode (${headerValue(problem, 200)}). keel sends its headers as \`Key: value\` lines (docs/wire-protocol.md, "Events").`,
    };
  }
  return readEventHeaders(entries, attempt, owner);
}

/**
 * An event's {@link EventHeaders} from the values read: `readEventHeaders` above, and
 * event-block.ts for a block in the exact form keel writes (there `refusal` is `undefined`: the
 * block passed every check `eventRefusal` makes). The traceparent is kept when well-formed; the
 * principal, when sent, is parsed as JSON.
 */
export function eventHeadersOf(
  version: string | undefined,
  refusal: string | undefined,
  id: string,
  correlationId: string,
  traceparent: string | undefined,
  publisher: string,
  publishedAt: number,
  attempt: number,
  principal: string | undefined,
): EventHeaders {
  const metadata: EventMetadata = {
    id,
    correlationId,
    traceparent: isTraceparent(traceparent) ? traceparent : undefined,
    publisher,
    publishedAt,
    attempt,
  };
  if (principal === undefined) return { version, metadata, refusal };
  const who = readPrincipal(principal, `Event ${metadata.id}`, metadata.correlationId);
  if (who instanceof KeelError) {
    return { version, metadata, refusal, refused: new KeelError(KeelErrorCode.INVALID_EVENT, who.message, { correlationId: metadata.correlationId }) };
  }
  return { version, metadata: { ...metadata, principal: who }, refusal };
}

/**
 * The longest `Keel-Event-Id` taken (keel writes a UUID, 36): a subscriber that owns data keys its
 * inbox by it, and PostgreSQL's btree index refuses an entry past about 2.7 kB, so a longer id
 * failed every attempt to handle the event before it was dead-lettered.
 */
export const MAX_EVENT_ID = 255;

/** The problems of an event's keel headers, in one sentence, or `undefined` when there are none. */
function eventRefusal(
  version: string | undefined,
  id: string | undefined,
  correlationId: string | undefined,
  publisher: string | undefined,
  publishedAt: string | undefined,
  atValid: boolean,
  owner: string,
): string | undefined {
  if (
    version !== undefined &&
    id !== undefined &&
    id.length <= MAX_EVENT_ID &&
    correlationId !== undefined &&
    publisher === owner &&
    atValid &&
    isVersion(version)
  ) {
    return undefined;
  }
  const missing = (
    [
      [Header.CONTRACT_VERSION, version],
      [Header.EVENT_ID, id],
      [Header.CORRELATION_ID, correlationId],
      [Header.PUBLISHER, publisher],
      [Header.PUBLISHED_AT, publishedAt],
    ] as const
  )
    .filter(([, value]) => value === undefined)
    .map(([name]) => name);
  const problems: string[] = [];
  if (missing.length > 0) problems.push(`missing ${missing.join(', ')}`);
  if (version !== undefined && !VERSION_PATTERN.test(version)) problems.push(`${Header.CONTRACT_VERSION} "${headerValue(version, 64)}" is not a semver version`);
  if (id !== undefined && id.length > MAX_EVENT_ID) problems.push(`${Header.EVENT_ID} is longer than ${MAX_EVENT_ID} characters`);
  if (publishedAt !== undefined && !atValid) problems.push(`${Header.PUBLISHED_AT} "${headerValue(publishedAt, 64)}" is not epoch milliseconds`);
  if (publisher !== undefined && publisher !== owner) {
    problems.push(`${Header.PUBLISHER} "${headerValue(publisher, 64)}" is not "${owner}", the module that owns the event`);
  }
  return `${problems.join('; ')}. keel sends these headers on every event (docs/wire-protocol.md, "Events").`;
}

// The major of each version string seen (-1: not a semver version), so that an event's version is
// matched once per distinct string, not per event. Bounded: a foreign sender may send any number.
const majors = new Map<string, number>();

/** The major of `version`, or -1 when it is not a semver version. */
function majorOfVersion(version: string): number {
  let major = majors.get(version);
  if (major === undefined) {
    major = VERSION_PATTERN.test(version) ? majorOf(version) : -1;
    if (majors.size < 1024) majors.set(version, major);
  }
  return major;
}

/** True when `version` is a semver version (cached). */
export function isVersion(version: string): boolean {
  return majorOfVersion(version) >= 0;
}

// The last pair compared and its answer: a subscription's events repeat one version (the same
// string, from the reader's last version), so most comparisons end at two identity checks. (The
// caller's check of its instances' versions goes through it too, rarely: it only adds writes there.)
let lastSent = '';
let lastExpected = '';
let lastSame = false;

/** True when `sent` (the version header of an event whose headers were accepted) has the same major as `expected`. */
export function sameMajor(sent: string | undefined, expected: string): boolean {
  if (sent === undefined) return false;
  if (sent === lastSent && expected === lastExpected) return lastSame;
  const major = majorOfVersion(sent);
  const same = major >= 0 && major === majorOfVersion(expected);
  lastSent = sent;
  lastExpected = expected;
  lastSame = same;
  return same;
}
