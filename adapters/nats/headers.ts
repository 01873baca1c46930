/**
 * Call context and event metadata to and from NATS headers. The receiving side never trusts
 * a header blindly: a foreign client may send anything, so every value is checked and a
 * request the callee cannot understand gets an error envelope, never a crash.
 */
import { KeelError, KeelErrorCode, type CallContext } from 'keel';
import {
  EXTERNAL_CALLER,
  isIdempotencyKey,
  isTraceparent,
  majorOf,
  newCorrelationId,
  type EventMetadata,
  type OperationAddress,
  type PublishedEvent,
} from 'keel/transport';
import { headers, type Match, type MsgHdrs } from '@nats-io/transport-node';
import type { HeaderEntries } from './raw-headers.js';
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
 * line), with exactly the bytes nats' own `headers()` + `set()` would produce. Calls and events
 * send headers on every message, and building them through nats' `MsgHdrs` (key
 * canonicalisation, a scan of every key per `set`, a second pass to encode) costs more than the
 * rest of the adapter's work on a call. nats' `publish` encodes headers with `encode()`, as its
 * own implementation does; every other `MsgHdrs` method works on a nats `headers()` built from
 * the text on first use, so reading or changing these headers behaves exactly as usual.
 */
class WireHeaders implements MsgHdrs, Encodable {
  readonly #text: string;
  #headers: (MsgHdrs & Encodable) | undefined;

  constructor(text: string) {
    this.#text = text;
  }

  encode(): Uint8Array {
    // Buffer.from: the same UTF-8 bytes as TextEncoder, several times faster for a header block.
    return this.#headers === undefined ? Buffer.from(this.#text, 'utf8') : this.#headers.encode();
  }

  get #parsed(): MsgHdrs & Encodable {
    if (this.#headers === undefined) {
      const parsed = headers() as MsgHdrs & Encodable;
      for (const line of this.#text.split('\r\n').slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) parsed.append(line.slice(0, colon), line.slice(colon + 1).trim());
      }
      this.#headers = parsed;
    }
    return this.#headers;
  }

  get hasError(): boolean {
    return this.#parsed.hasError;
  }
  set hasError(value: boolean) {
    this.#parsed.hasError = value;
  }
  get status(): string {
    return this.#parsed.status;
  }
  set status(value: string) {
    this.#parsed.status = value;
  }
  get code(): number {
    return this.#parsed.code;
  }
  set code(value: number) {
    this.#parsed.code = value;
  }
  get description(): string {
    return this.#parsed.description;
  }
  set description(value: string) {
    this.#parsed.description = value;
  }
  get(key: string, match?: Match): string {
    return this.#parsed.get(key, match);
  }
  set(key: string, value: string, match?: Match): void {
    this.#parsed.set(key, value, match);
  }
  append(key: string, value: string, match?: Match): void {
    this.#parsed.append(key, value, match);
  }
  has(key: string, match?: Match): boolean {
    return this.#parsed.has(key, match);
  }
  keys(): string[] {
    return this.#parsed.keys();
  }
  values(key: string, match?: Match): string[] {
    return this.#parsed.values(key, match);
  }
  delete(key: string, match?: Match): void {
    this.#parsed.delete(key, match);
  }
  last(key: string, match?: Match): string {
    return this.#parsed.last(key, match);
  }
  [Symbol.iterator](): Iterator<[string, string[]]> {
    return this.#parsed[Symbol.iterator]();
  }
}

/** The longest `Keel-Principal` header a receiver reads (characters); a longer one is refused. */
export const MAX_PRINCIPAL_HEADER = 8_192;

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

/** The parts of a call's header block that stay the same for every call of one operation by one caller. */
interface CallHeaderParts {
  readonly caller: string;
  /** The status line, the contract version, and the name of the correlation id header. */
  readonly head: string;
  /** From the end of the correlation id to the deadline's value: the caller, the deadline's name. */
  readonly middle: string;
}

// Keyed by the kernel's frozen per-operation address: one entry per operation a process calls.
const callHeaderParts = new WeakMap<OperationAddress, CallHeaderParts>();

function callHeaderPartsOf(address: OperationAddress, caller: string): CallHeaderParts {
  const cached = callHeaderParts.get(address);
  if (cached !== undefined && cached.caller === caller) return cached;
  const parts: CallHeaderParts = {
    caller,
    head: `${HEADER_LINE}${Header.CONTRACT_VERSION}: ${safe(address.version)}\r\n${Header.CORRELATION_ID}: `,
    middle: `\r\n${Header.CALLER}: ${safe(caller)}\r\n${Header.DEADLINE}: `,
  };
  callHeaderParts.set(address, parts);
  return parts;
}

/**
 * Headers of one call. The block's constant parts (status line, version, caller, the header
 * names) are built once per operation and caller; a call adds its correlation id, its deadline
 * and the optional headers. The bytes are those of one `Key: value` line per header, in this order.
 */
export function callHeaders(address: OperationAddress, context: CallContext): MsgHdrs {
  const parts = callHeaderPartsOf(address, context.caller);
  let text = `${parts.head}${safe(context.correlationId)}${parts.middle}${Math.floor(context.deadline)}\r\n`;
  if (context.traceparent !== undefined && context.traceparent !== '') text += `${Header.TRACEPARENT}: ${safe(context.traceparent)}\r\n`;
  if (context.idempotencyKey !== undefined) text += `${Header.IDEMPOTENCY_KEY}: ${safe(context.idempotencyKey)}\r\n`;
  if (context.principal !== undefined) text += `${Header.PRINCIPAL}: ${principalHeader(context.principal)}\r\n`;
  if (context.callAttempt !== undefined) text += `${Header.CALL_ATTEMPT}: ${context.callAttempt}\r\n`;
  return new WireHeaders(`${text}\r\n`);
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
    refuse(target, correlationId, `header ${Header.CONTRACT_VERSION} "${version}" is not a semver version such as 1.0.0.`);
  }
  const now = Date.now();
  let end = now + defaultTimeoutMs;
  if (deadline !== undefined) {
    if (!INTEGER_PATTERN.test(deadline)) refuse(target, correlationId, `header ${Header.DEADLINE} "${deadline}" is not epoch milliseconds.`);
    end = Number(deadline);
  } else if (timeout !== undefined) {
    if (!INTEGER_PATTERN.test(timeout) || Number(timeout) <= 0) {
      refuse(target, correlationId, `header ${Header.TIMEOUT_MS} "${timeout}" is not a positive number of milliseconds.`);
    }
    end = now + Number(timeout);
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

/** The parts of an event's header block that stay the same for every event of one contract version and publisher. */
interface EventHeaderParts {
  readonly version: string;
  readonly publisher: string;
  /** The status line, the contract version, and the name of the event id header. */
  readonly head: string;
  /** From the end of the correlation id to the publication time's value: the publisher, the time's name. */
  readonly middle: string;
}

// A publisher sends the events of a few contract versions, all in its own name: the last parts
// used, then one entry per version (a publisher whose name changes replaces its entry).
let lastEventParts: EventHeaderParts | undefined;
const eventHeaderParts = new Map<string, EventHeaderParts>();

function eventHeaderPartsOf(version: string, publisher: string): EventHeaderParts {
  const last = lastEventParts;
  if (last !== undefined && last.version === version && last.publisher === publisher) return last;
  let parts = eventHeaderParts.get(version);
  if (parts === undefined || parts.publisher !== publisher) {
    parts = {
      version,
      publisher,
      head: `${HEADER_LINE}${Header.CONTRACT_VERSION}: ${safe(version)}\r\n${Header.EVENT_ID}: `,
      middle: `\r\n${Header.PUBLISHER}: ${safe(publisher)}\r\n${Header.PUBLISHED_AT}: `,
    };
    if (eventHeaderParts.size < 256) eventHeaderParts.set(version, parts);
  }
  lastEventParts = parts;
  return parts;
}

/**
 * Headers of one published event. The constant parts (status line, version, publisher, header
 * names) are built once per contract version and publisher; an event adds its id, correlation
 * id, publication time and the optional headers, in the order below.
 */
export function eventHeaders(event: PublishedEvent): MsgHdrs {
  const { metadata } = event;
  const parts = eventHeaderPartsOf(event.version, metadata.publisher);
  let text =
    `${parts.head}${safe(metadata.id)}\r\n${Header.CORRELATION_ID}: ${safe(metadata.correlationId)}` +
    `${parts.middle}${Math.floor(metadata.publishedAt)}\r\n`;
  if (metadata.traceparent !== undefined && metadata.traceparent !== '') text += `${Header.TRACEPARENT}: ${safe(metadata.traceparent)}\r\n`;
  if (metadata.principal !== undefined) text += `${Header.PRINCIPAL}: ${principalHeader(metadata.principal)}\r\n`;
  return new WireHeaders(`${text}\r\n`);
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
  const metadata: EventMetadata = {
    id: id ?? newCorrelationId(),
    correlationId: correlationId ?? newCorrelationId(),
    traceparent: isTraceparent(traceparent) ? traceparent : undefined,
    publisher: publisher ?? owner,
    publishedAt: atValid ? Number(publishedAt) : Date.now(),
    attempt,
  };
  if (principal === undefined) return { version, metadata, refusal };
  const who = readPrincipal(principal, `Event ${metadata.id}`, metadata.correlationId);
  if (who instanceof KeelError) {
    return { version, metadata, refusal, refused: new KeelError(KeelErrorCode.INVALID_EVENT, who.message, { correlationId: metadata.correlationId }) };
  }
  return { version, metadata: { ...metadata, principal: who }, refusal };
}

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
  if (version !== undefined && id !== undefined && correlationId !== undefined && publisher === owner && atValid && isVersion(version)) {
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
function isVersion(version: string): boolean {
  return majorOfVersion(version) >= 0;
}

/** True when `sent` (the version header of an event whose headers were accepted) has the same major as `expected`. */
export function sameMajor(sent: string | undefined, expected: string): boolean {
  if (sent === undefined) return false;
  const major = majorOfVersion(sent);
  return major >= 0 && major === majorOfVersion(expected);
}
