/**
 * The Transport port: the one interface every adapter implements. The kernel does validation,
 * context, error mapping and lifecycle; a transport only moves already-validated plain data
 * and reports failures with {@link KeelError} codes or a {@link RemoteFailure} envelope.
 *
 * Both the in-process transport and the NATS adapter pass one conformance suite
 * (`test/support/conformance.ts`). The failures every transport raises alike (timeout, no
 * responders, cancelled, unknown operation, version mismatch) are made in transport-failures.ts.
 */
import type { CircuitStatus } from './circuit-breaker.js';
import type { AnyContract, Delivery } from './contract.js';
import type { CallContext } from './context.js';
import type { KeelError } from './errors.js';

/**
 * Which operation a call targets.
 *
 * @example
 * ```ts
 * const address: OperationAddress = { contract: catalog.name, version: catalog.version, operation: 'getProduct' };
 * const product = await transport.call(address, { sku: 'KB-001' }, context);
 * ```
 */
export interface OperationAddress {
  /** Contract (module) name. */
  readonly contract: string;
  /** The caller's contract version; the callee refuses a different major. */
  readonly version: string;
  readonly operation: string;
}

/**
 * Options of one call, as seen by a transport.
 *
 * @example
 * ```ts
 * const options: TransportCallOptions = { signal: AbortSignal.timeout(1_000) };
 * await transport.call(address, input, context, options); // rejects with CANCELLED once the signal aborts
 * ```
 */
export interface TransportCallOptions {
  /**
   * Aborts the call early with `CANCELLED`. A transport listens to it only while the call waits
   * (`watchSignal` and `unwatchSignal` do that with one listener for every call on the signal):
   * the kernel hands a signal nothing listens to any more on to a later call.
   */
  readonly signal?: AbortSignal | undefined;
}

/**
 * An error as it crosses a boundary: plain JSON. `type: 'declared'` is a contract error
 * (rebuilt on the caller as its declared class); `type: 'keel'` a {@link KeelError}.
 *
 * @example
 * ```ts
 * const envelope: ErrorEnvelope = {
 *   type: 'declared',
 *   code: 'OUT_OF_STOCK',
 *   message: 'Only 1 unit(s) of "KB-001" are available, 3 requested. Order fewer, or restock with inventory.restock.',
 *   data: { sku: 'KB-001', requested: 3, available: 1 },
 *   correlationId: context.correlationId,
 * };
 * ```
 */
export interface ErrorEnvelope {
  readonly type: 'declared' | 'keel';
  readonly code: string;
  readonly message: string;
  readonly data?: unknown;
  readonly details?: Readonly<Record<string, unknown>>;
  readonly correlationId?: string;
}

/**
 * A failure the callee's side reported, carried as its {@link ErrorEnvelope}. Transports reject
 * with it; the kernel's client rebuilds the caller-side error from the envelope, so no error
 * object (and no reference) ever crosses a module boundary.
 *
 * @example
 * ```ts
 * // in a transport's call(), decoding the reply
 * const body: unknown = JSON.parse(replyText);
 * if (isErrorEnvelope(body)) throw new RemoteFailure(body); // the caller then sees e.g. an OutOfStock
 * return body;
 * ```
 */
export class RemoteFailure extends Error {
  override readonly name = 'RemoteFailure';
  constructor(readonly envelope: ErrorEnvelope) {
    super(envelope.message);
  }
}

/**
 * Where a served call's outcome goes: {@link ServedModule.handle} calls exactly one of these,
 * exactly once, with the validated output or with a {@link RemoteFailure}. For a synchronous
 * handler it does so before `handle` returns (no promise is made); for an asynchronous one when
 * the handler settles. Neither method may throw.
 *
 * A transport usually implements it with one small object per call (a class, so the hot path
 * allocates no closures).
 *
 * @example
 * ```ts
 * // a sketch of adapters/nats/responder.ts's NatsReply
 * class Reply implements Answer {
 *   constructor(readonly msg: Msg) {}
 *   ok(output: unknown): void { this.msg.respond(JSON.stringify(output)); }
 *   fail(failure: RemoteFailure): void { this.msg.respond(JSON.stringify(failure.envelope)); }
 * }
 * ```
 */
export interface Answer {
  ok(output: unknown): void;
  fail(failure: RemoteFailure): void;
  /**
   * Optional: the handler asked for its cancellation signal (`callSignal()`). A transport that can
   * tell when the call's caller gives up on it (cancels it, or stops waiting) aborts `controller`
   * then, with {@link callAbandoned}'s error as the reason; at once when that already happened.
   * Called while the call waits in its module's bulkhead queue (to take it out), and again when
   * its handler asks: the last controller given is the one to abort. The deadline needs nothing
   * from the transport (the kernel times it). A transport without it leaves handlers the
   * deadline alone, and queued calls in the queue.
   */
  watch?(controller: AbortController): void;
}

/**
 * The served side of one module, handed to {@link Transport.serve}: the one place a served call
 * is settled, on every transport. `handle` checks the version and the operation, validates the
 * input, runs the handler in the call context, validates the output, maps errors to
 * envelopes, reports the call to the kernel's observers, and settles `answer`.
 *
 * @example
 * ```ts
 * // in a wire transport's serve(served), for one request
 * served.handle(address, JSON.parse(body), context, false, new Reply(msg));
 * ```
 */
export interface ServedModule {
  readonly contract: AnyContract;
  /**
   * Settles `answer` exactly once (see {@link Answer}); never throws.
   *
   * @param trusted true when `input` was already validated and copied by a kernel client in
   * this process (the in-process transport), so it need not be parsed again.
   * @param fresh true when the caller checked `context.deadline` against the clock in this
   * process just before, after validating the input (the in-process transport, for a kernel
   * client's first attempt): the
   * served module then does not read the clock again before starting the handler. Wire
   * transports leave it out.
   */
  handle(address: OperationAddress, input: unknown, context: CallContext, trusted: boolean, answer: Answer, fresh?: boolean): void;
  /**
   * Reports a request the transport dropped before it became a call (a NATS request without a
   * reply subject), so that the kernel's observers count it (`keel_requests_dropped_total`).
   */
  dropped(operation: string, reason: 'no-reply'): void;
  /**
   * The circuit breakers of the process serving this module (one per dependency it calls), so
   * that a transport can show them to discovery tools: the NATS adapter puts the ones not
   * closed in its `$SRV.STATS` data, and `keel status` lists them.
   */
  circuits?(): readonly CircuitStatus[];
  /**
   * The state of the served module's own database (kernel/database-health.ts: `down` when its
   * last check failed), undefined when it owns none, so that a transport can show it to discovery
   * tools: the NATS adapter puts a `down` in its `$SRV.STATS` data, and `keel status` says so.
   */
  database?(): 'up' | 'down' | undefined;
}

/**
 * Handle returned by {@link Transport.serve} and {@link Transport.subscribe}.
 *
 * @example
 * ```ts
 * const registration: Registration = await transport.serve(served);
 * // ... on shutdown: no new calls, then wait for the ones in flight
 * await registration.stop();
 * ```
 */
export interface Registration {
  /** Stops taking new work, waits for work in flight, then resolves. */
  stop(): Promise<void>;
}

/**
 * Metadata of one published event.
 *
 * @example
 * ```ts
 * // a transport delivering a published event for the first time
 * const metadata: EventMetadata = { ...published.metadata, attempt: 1 };
 * await subscription.handle(published.payload, metadata);
 * ```
 */
export interface EventMetadata {
  /** Unique id of this publication (used for de-duplication by durable transports). */
  readonly id: string;
  readonly correlationId: string;
  readonly traceparent: string | undefined;
  /** Name of the publishing module. */
  readonly publisher: string;
  /** Epoch milliseconds. */
  readonly publishedAt: number;
  /** 1 on first delivery, more on redeliveries of durable events. */
  readonly attempt: number;
  /**
   * The principal of the context the event was emitted in (`undefined`: none), as plain JSON
   * data: the subscribing kernel checks it against the application's principal schema.
   */
  readonly principal?: unknown;
}

/**
 * One event as the kernel publishes it: payload already validated.
 *
 * @example
 * ```ts
 * // in a transport's publish(): never wait for the subscribers
 * publish(event: PublishedEvent): Promise<void> {
 *   for (const subscription of subscribers.get(`${event.contract}.${event.event}`) ?? []) {
 *     void subscription.handle(event.payload, { ...event.metadata, attempt: 1 }).catch(() => {});
 *   }
 *   return Promise.resolve();
 * }
 * ```
 */
export interface PublishedEvent {
  readonly contract: string;
  readonly version: string;
  readonly event: string;
  readonly delivery: Delivery;
  readonly payload: unknown;
  readonly metadata: Omit<EventMetadata, 'attempt'>;
}

/**
 * How many instances of a subscribing module get each event.
 *
 * @example
 * ```ts
 * events: {
 *   catalog: { productAdded: { handle: (product) => { cache.set(product.sku, product); }, fanout: Fanout.EVERY_INSTANCE } },
 * },
 * ```
 */
export const Fanout = {
  /** One instance of the subscribing module (load balanced). The default. */
  BALANCED: 'balanced',
  /** Every running instance of the subscribing module. Opt-in; notification events only. */
  EVERY_INSTANCE: 'every-instance',
} as const;

/** A {@link Fanout} value. */
export type Fanout = (typeof Fanout)[keyof typeof Fanout];

/**
 * A module's subscription to one event, handed to {@link Transport.subscribe}.
 *
 * @example
 * ```ts
 * async subscribe(subscription: EventSubscription): Promise<Registration> {
 *   const key = `${subscription.contract}.${subscription.event}`;
 *   subscribers.set(key, [...(subscribers.get(key) ?? []), subscription]);
 *   return { stop: async () => void subscribers.set(key, (subscribers.get(key) ?? []).filter((s) => s !== subscription)) };
 * }
 * ```
 */
export interface EventSubscription {
  /** Subscribing module name (the balancing group). */
  readonly subscriber: string;
  readonly contract: string;
  readonly version: string;
  readonly event: string;
  readonly delivery: Delivery;
  readonly fanout: Fanout;
  /** Most deliveries of one durable event before it is dead-lettered. */
  readonly maxAttempts: number;
  /**
   * Validates the payload and runs the handler in the event's context. Resolves when handled;
   * rejects when the handler failed (retry a durable event) or with `INVALID_EVENT` when the
   * payload can never be handled (do not retry).
   */
  handle(payload: unknown, metadata: EventMetadata): Promise<void>;
  /** Called when a durable event is given up on after `maxAttempts`. */
  deadLetter(payload: unknown, metadata: EventMetadata, error: unknown): void;
}

/**
 * Transport health, as the kernel reports it.
 *
 * @example
 * ```ts
 * for (const { name, ready, detail } of kernel.status().transports) {
 *   console.log(`${name}: ${ready ? 'ready' : `not ready (${detail ?? 'no detail'})`}`);
 * }
 * ```
 */
export interface TransportStatus {
  readonly name: string;
  readonly ready: boolean;
  readonly detail?: string;
}

/**
 * The port between the kernel and the world. Implement it to carry keel over another medium.
 *
 * @example
 * ```ts
 * const kernel = createKernel({
 *   modules,
 *   topology: { host: ['orders'], transport: await createNatsTransport({ servers: 'nats://127.0.0.1:4222' }) },
 * });
 * ```
 */
export interface Transport {
  /** Short name for logs and status: `local`, `nats`. */
  readonly name: string;
  /** True when values never leave this process (the kernel then skips redundant copies). */
  readonly inProcess: boolean;
  /**
   * True when a durable event a subscription gave back (its `handle` rejected with an error
   * `isGivenBack` accepts: the module stopped while its handler ran) reaches the subscriber
   * again without counting as an attempt, as on the in-process bus. Absent or false, as over
   * NATS (JetStream counts every delivery), the kernel never gives back an event on its last
   * attempt: it waits for the handler, whose next delivery would be past `maxAttempts`.
   */
  readonly givesBackUncounted?: boolean;
  /** Sends one call; resolves with the callee's (validated) output. */
  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown>;
  /** Starts serving a module's operations. */
  serve(module: ServedModule): Promise<Registration>;
  /**
   * Publishes an event. Never waits for subscribers; resolves once the transport accepted it.
   * A module's outbox relay calls it for several durable events before the first resolves (the
   * kernel's `outboxWindow`), in the order they were written: a transport that takes them in the
   * order of its calls (each one handed to its connection at the same await depth, or queued in
   * call order) keeps that order.
   */
  publish(event: PublishedEvent): Promise<void>;
  /** Subscribes a module to an event. */
  subscribe(subscription: EventSubscription): Promise<Registration>;
  /** Current health. */
  status(): TransportStatus;
  /** Finishes in-flight work, releases every resource. Idempotent. */
  close(): Promise<void>;
}
