/**
 * Call context and event metadata to and from NATS headers. The receiving side never trusts
 * a header blindly: a foreign client may send anything, so every value is checked and a
 * request the callee cannot understand gets an error envelope, never a crash.
 */
import {
  EXTERNAL_CALLER,
  KeelError,
  KeelErrorCode,
  isTraceparent,
  majorOf,
  newCorrelationId,
  type CallContext,
  type EventMetadata,
  type OperationAddress,
  type PublishedEvent,
} from 'keel';
import { headers, type MsgHdrs } from 'nats';
import { Header, headerValue } from './wire.js';

const UNSAFE = /[\r\n]/;

function safe(value: string): string {
  return UNSAFE.test(value) ? headerValue(value) : value;
}

/** Headers of one call. */
export function callHeaders(address: OperationAddress, context: CallContext): MsgHdrs {
  const result = headers();
  result.set(Header.CONTRACT_VERSION, safe(address.version));
  result.set(Header.CORRELATION_ID, safe(context.correlationId));
  result.set(Header.CALLER, safe(context.caller));
  result.set(Header.DEADLINE, String(Math.floor(context.deadline)));
  if (context.traceparent !== undefined && context.traceparent !== '') result.set(Header.TRACEPARENT, safe(context.traceparent));
  return result;
}

/** What the callee reads from a request's headers. */
export interface RequestHeaders {
  readonly version: string;
  readonly context: CallContext;
}

const VERSION_PATTERN = /^\d+\.\d+\.\d+([-+].*)?$/;
const INTEGER_PATTERN = /^\d+$/;

/**
 * Reads a request's headers. Missing optional headers get defaults (a new correlation id,
 * caller `external`, the default deadline); a missing or malformed contract version or deadline
 * is refused with `INVALID_INPUT`, naming the header and pointing at the wire protocol.
 */
export function readRequestHeaders(
  source: MsgHdrs | undefined,
  target: string,
  defaultTimeoutMs: number,
): RequestHeaders {
  let version: string | undefined;
  let correlationId: string | undefined;
  let traceparent: string | undefined;
  let caller: string | undefined;
  let deadline: string | undefined;
  let timeout: string | undefined;
  if (source !== undefined) {
    for (const [key, values] of source) {
      const value = values[0];
      if (value === undefined) continue;
      switch (key) {
        case Header.CONTRACT_VERSION:
          version = value;
          break;
        case Header.CORRELATION_ID:
          correlationId = value;
          break;
        case Header.TRACEPARENT:
          traceparent = value;
          break;
        case Header.CALLER:
          caller = value;
          break;
        case Header.DEADLINE:
          deadline = value;
          break;
        case Header.TIMEOUT_MS:
          timeout = value;
          break;
        default:
          break;
      }
    }
  }
  correlationId = correlationId === undefined || correlationId === '' ? newCorrelationId() : correlationId;
  const refuse = (message: string): never => {
    throw new KeelError(KeelErrorCode.INVALID_INPUT, `Request to ${target}: ${message} See docs/wire-protocol.md.`, {
      correlationId,
    });
  };
  if (version === undefined) refuse(`header ${Header.CONTRACT_VERSION} is missing; send the semver of the contract you were built against.`);
  if (!VERSION_PATTERN.test(version as string)) refuse(`header ${Header.CONTRACT_VERSION} "${version}" is not a semver version such as 1.0.0.`);
  const now = Date.now();
  let end = now + defaultTimeoutMs;
  if (deadline !== undefined) {
    if (!INTEGER_PATTERN.test(deadline)) refuse(`header ${Header.DEADLINE} "${deadline}" is not epoch milliseconds.`);
    end = Number(deadline);
  } else if (timeout !== undefined) {
    if (!INTEGER_PATTERN.test(timeout) || Number(timeout) <= 0) {
      refuse(`header ${Header.TIMEOUT_MS} "${timeout}" is not a positive number of milliseconds.`);
    }
    end = now + Number(timeout);
  }
  return {
    version: version as string,
    context: {
      correlationId,
      traceparent: isTraceparent(traceparent) ? traceparent : undefined,
      caller: caller === undefined || caller === '' ? EXTERNAL_CALLER : caller,
      deadline: end,
    },
  };
}

/** Headers of one published event. */
export function eventHeaders(event: PublishedEvent): MsgHdrs {
  const result = headers();
  const { metadata } = event;
  result.set(Header.CONTRACT_VERSION, safe(event.version));
  result.set(Header.EVENT_ID, safe(metadata.id));
  result.set(Header.CORRELATION_ID, safe(metadata.correlationId));
  result.set(Header.PUBLISHER, safe(metadata.publisher));
  result.set(Header.PUBLISHED_AT, String(Math.floor(metadata.publishedAt)));
  if (metadata.traceparent !== undefined && metadata.traceparent !== '') result.set(Header.TRACEPARENT, safe(metadata.traceparent));
  return result;
}

/** What a subscriber reads from an event's headers. */
export interface EventHeaders {
  readonly version: string | undefined;
  readonly metadata: EventMetadata;
}

/** Reads an event's headers; anything missing gets a default so the event can still be handled or dead-lettered. */
export function readEventHeaders(source: MsgHdrs | undefined, attempt: number, fallbackPublisher: string): EventHeaders {
  let version: string | undefined;
  let id: string | undefined;
  let correlationId: string | undefined;
  let traceparent: string | undefined;
  let publisher: string | undefined;
  let publishedAt: string | undefined;
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
        case Header.MESSAGE_ID:
          id ??= value;
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
        default:
          break;
      }
    }
  }
  const at = publishedAt !== undefined && INTEGER_PATTERN.test(publishedAt) ? Number(publishedAt) : Date.now();
  return {
    version,
    metadata: {
      id: id ?? newCorrelationId(),
      correlationId: correlationId ?? newCorrelationId(),
      traceparent: isTraceparent(traceparent) ? traceparent : undefined,
      publisher: publisher ?? fallbackPublisher,
      publishedAt: at,
      attempt,
    },
  };
}

/** True when `sent` (a version header, possibly absent) has the same major as `expected`. */
export function sameMajor(sent: string | undefined, expected: string): boolean {
  return sent === undefined || (VERSION_PATTERN.test(sent) && majorOf(sent) === majorOf(expected));
}
