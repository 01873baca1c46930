/**
 * The keel wire protocol over NATS, as data: subject names, header names, the JSON codec and
 * the explicit table from error codes to NATS service error codes. docs/wire-protocol.md
 * describes the same thing for people; keep the two in step.
 */
// Imported, not the global: Node's global `Buffer` is a getter, dear on every use in hot code.
import { Buffer } from 'node:buffer';
import { KeelErrorCode, type AnyContract } from 'keel';
import { STATUS_BY_ERROR_KIND, type ErrorEnvelope } from 'keel/transport';

/**
 * Header names keel sets and reads (docs/wire-protocol.md). Names are case-sensitive on the wire.
 *
 * @example
 * ```ts
 * const request = headers(); // from '@nats-io/transport-node'
 * request.set(Header.CONTRACT_VERSION, '1.0.0');
 * request.set(Header.TIMEOUT_MS, '5000');
 * const reply = await nc.request('keel.catalog.getProduct', JSON.stringify({ sku: 'KB-001' }), { headers: request });
 * if (reply.headers?.has(Header.SERVICE_ERROR_CODE)) console.error(reply.json());
 * ```
 */
export const Header = {
  /** Semver of the contract the sender was built against (calls and events). Required on both. */
  CONTRACT_VERSION: 'Keel-Contract-Version',
  /** Correlation id of the call or event. Required on events. */
  CORRELATION_ID: 'Keel-Correlation-Id',
  /** W3C trace context, propagated unchanged. */
  TRACEPARENT: 'traceparent',
  /** Calling module name, or `external`. */
  CALLER: 'Keel-Caller',
  /** Absolute deadline of a call, in epoch milliseconds; a request arriving after it is answered TIMEOUT, not run. */
  DEADLINE: 'Keel-Deadline',
  /** The caller's idempotency key for this call (1 to 255 visible ASCII characters). */
  IDEMPOTENCY_KEY: 'Keel-Idempotency-Key',
  /** Which attempt of its call a request is, when the caller sent it more than once (a retry or a hedge): 2 and up. */
  CALL_ATTEMPT: 'Keel-Call-Attempt',
  /** Relative deadline of a call in milliseconds, for senders without a synchronised clock. */
  TIMEOUT_MS: 'Keel-Timeout-Ms',
  /** Unique id of an event publication. Required on events. */
  EVENT_ID: 'Keel-Event-Id',
  /** Publishing module of an event: the module that owns it. Required on events. */
  PUBLISHER: 'Keel-Publisher',
  /** Epoch milliseconds when an event was published. Required on events. */
  PUBLISHED_AT: 'Keel-Published-At',
  /** On a dead letter: the subscribing module that gave up. */
  SUBSCRIBER: 'Keel-Subscriber',
  /** On a dead letter: how many deliveries were attempted. */
  ATTEMPTS: 'Keel-Attempts',
  /** On a dead letter: why the last attempt failed (error code or message). */
  FAILURE: 'Keel-Failure',
  /** NATS service API error description (set on error replies). */
  SERVICE_ERROR: 'Nats-Service-Error',
  /** NATS service API error code (set on error replies). */
  SERVICE_ERROR_CODE: 'Nats-Service-Error-Code',
  /**
   * The caller's identity (calls and events): the principal as compact JSON, ASCII only. Checked
   * against the application's principal schema on receipt; only processes allowed to publish on
   * keel's subjects can send one (docs/security.md, "Caller identity").
   */
  PRINCIPAL: 'Keel-Principal',
  /** JetStream de-duplication id (durable events). */
  MESSAGE_ID: 'Nats-Msg-Id',
} as const;

/** A {@link Header} value. */
export type Header = (typeof Header)[keyof typeof Header];

/** `$`, the first byte of NATS's reserved subjects. */
const DOLLAR = 36;

/**
 * Subject and JetStream names for one prefix, as docs/wire-protocol.md lists them.
 *
 * @example
 * ```ts
 * const subjects = new Subjects('keel');
 * subjects.operation('catalog', 'getProduct'); // 'keel.catalog.getProduct'
 * subjects.durable('orders', 'orderPlaced');   // 'keel.orders.durable.orderPlaced'
 * subjects.stream('orders');                   // 'keel_orders'
 * ```
 */
export class Subjects {
  /** Prefix as a stream-name-safe token (`keel.prod` → `keel_prod`). */
  readonly #token: string;

  /** `{prefix}.`: keel's own subject space. */
  readonly #space: string;

  constructor(readonly prefix: string) {
    this.#token = prefix.replaceAll('.', '_');
    this.#space = `${prefix}.`;
  }

  /**
   * Whether `reply` can be no caller's inbox, so that nothing is ever sent there: a subject among
   * NATS's reserved ones (`$JS.API.…`, `$SRV.…`, `$SYS.…`), or one in keel's own subject space
   * (`{prefix}.…`), where an answer would be stored as a durable event or a dead letter. nats-server
   * lets a responder publish to any reply subject it receives (`allow_responses`), whatever its
   * allow lists say, so a caller naming such a subject would publish there with the responder's right.
   */
  isNoInbox(reply: string): boolean {
    return reply.charCodeAt(0) === DOLLAR || reply.startsWith(this.#space);
  }

  /** `{prefix}.{module}.{operation}` */
  operation(module: string, operation: string): string {
    return `${this.prefix}.${module}.${operation}`;
  }

  /** `{prefix}.{module}` — the service group of a module's operations. */
  module(module: string): string {
    return `${this.prefix}.${module}`;
  }

  /** `{prefix}.{module}.events.{event}` — a notification event. */
  notification(module: string, event: string): string {
    return `${this.prefix}.${module}.events.${event}`;
  }

  /** `{prefix}.{module}.durable.{event}` — a durable event, stored in {@link Subjects.stream}. */
  durable(module: string, event: string): string {
    return `${this.prefix}.${module}.durable.${event}`;
  }

  /** Every durable event subject of a module. */
  durableWildcard(module: string): string {
    return `${this.prefix}.${module}.durable.>`;
  }

  /** JetStream stream holding a module's durable events: `{prefix_}_{module}`. */
  stream(module: string): string {
    return `${this.#token}_${module}`;
  }

  /** Durable consumer of one subscribing module for one event: `{subscriber}__{event}`. */
  consumer(subscriber: string, event: string): string {
    return `${subscriber}__${event}`;
  }

  /**
   * `{prefix}._cancel.{module}` — where a caller says it gave up on a request to a module (the
   * body: the request's reply subject); every instance of the module listens (no queue group).
   */
  cancel(module: string): string {
    return `${this.prefix}._cancel.${module}`;
  }

  /** `{prefix}._dead-letter.{subscriber}.{module}.{event}` */
  deadLetter(subscriber: string, module: string, event: string): string {
    return `${this.prefix}._dead-letter.${subscriber}.${module}.${event}`;
  }

  /** Every dead-letter subject. */
  deadLetterWildcard(): string {
    return `${this.prefix}._dead-letter.>`;
  }

  /** JetStream stream keeping dead letters: `{prefix_}__dead-letters`. */
  deadLetterStream(): string {
    return `${this.#token}__dead-letters`;
  }
}

const PREFIX_PATTERN = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

/** True when `prefix` is one or more plain subject tokens (`keel`, `acme.shop`). */
export function isValidPrefix(prefix: string): boolean {
  return PREFIX_PATTERN.test(prefix);
}

/**
 * NATS service error code (`Nats-Service-Error-Code`) of each keel error code. HTTP-like
 * numbers, as the NATS service API recommends.
 *
 * @example
 * ```ts
 * SERVICE_ERROR_CODES.NO_RESPONDERS; // 503
 * SERVICE_ERROR_CODES.VERSION_MISMATCH; // 409
 * ```
 */
export const SERVICE_ERROR_CODES = {
  INVALID_INPUT: 400,
  INVALID_OUTPUT: 500,
  INVALID_EVENT: 400,
  TIMEOUT: 504,
  NO_RESPONDERS: 503,
  UNAVAILABLE: 503,
  CANCELLED: 499,
  INTERNAL: 500,
  UNKNOWN_OPERATION: 404,
  VERSION_MISMATCH: 409,
  PAYLOAD_TOO_LARGE: 413,
  INVALID_CONTRACT: 500,
  INVALID_MODULE: 500,
  INVALID_TOPOLOGY: 500,
  UNDECLARED_DEPENDENCY: 500,
  INVALID_CONFIG: 500,
  INVALID_STATE: 500,
  IDEMPOTENCY_KEY_REUSED: 422,
  IDEMPOTENCY_KEY_IN_USE: 409,
  INTERRUPTED: 502,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  RESOURCE_EXHAUSTED: 429,
} as const satisfies Record<KeelErrorCode, number>;

/**
 * NATS service error code of a declared contract error, by its kind: the kernel's
 * `STATUS_BY_ERROR_KIND` ('keel/transport'), the same table the HTTP gateway answers with, so a
 * kind has one status on every wire.
 *
 * @example
 * ```ts
 * DECLARED_ERROR_CODES['not-found']; // 404
 * DECLARED_ERROR_CODES[OutOfStock.kind]; // 409 for a 'conflict'
 * ```
 */
export const DECLARED_ERROR_CODES = STATUS_BY_ERROR_KIND;

/** The service error code for an envelope: by kind for a declared error, by code otherwise. */
export function serviceErrorCode(envelope: ErrorEnvelope, contract: AnyContract, operation: string): number {
  if (envelope.type === 'declared') {
    const declared = contract.operations[operation]?.errors.find((error) => error.code === envelope.code);
    return declared === undefined ? 500 : DECLARED_ERROR_CODES[declared.kind];
  }
  return SERVICE_ERROR_CODES[envelope.code as KeelErrorCode] ?? 500;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON to bytes. `Buffer.from` (a `Uint8Array`) rather than `TextEncoder.encode`: the same UTF-8
 * bytes, several times faster for the short strings of a call (docs/performance.md).
 */
export function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value ?? null), 'utf8');
}

/** Bytes to JSON; an empty body is `undefined`. Throws on malformed UTF-8 or JSON. */
export function decodeJson(data: Uint8Array): unknown {
  if (data.length === 0) return undefined;
  return JSON.parse(decoder.decode(data));
}

/** A header value with the characters NATS headers cannot carry removed. */
export function headerValue(value: string, max = 1024): string {
  const clean = value.replace(/[\r\n]+/g, ' ').trim();
  return clean.length > max ? `${clean.slice(0, max - 1)}…` : clean;
}
