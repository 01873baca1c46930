/**
 * The calling side of the NATS transport: keel calls as NATS requests over one shared reply
 * subscription, a map of pending calls, one timer for every deadline, and the question asked of
 * `$SRV.INFO` when nothing answers (the same UNKNOWN_OPERATION or VERSION_MISMATCH as in one
 * process).
 */
import { KeelError, KeelErrorCode, type CallContext } from 'keel';
import {
  DeadlineScheduler,
  RemoteFailure,
  cancelledError,
  isErrorEnvelope,
  noRespondersError,
  timeoutError,
  unknownOperationFailure,
  unwatchSignal,
  versionMismatchFailure,
  watchSignal,
  within,
  type AbortableCall,
  type DeadlineEntry,
  type OperationAddress,
  type TransportCallOptions,
} from 'keel/transport';
import { createInbox, type Msg, type MsgHdrs } from '@nats-io/transport-node';
import { reason, type Connection } from './connection.js';
import { messageBody } from './header-bytes.js';
import { ReplySubscription } from './reply-subscription.js';
import { callHeaders, sameMajor } from './headers.js';
import { hasNoHeaders, replyToken } from './raw-headers.js';
import type { ServiceInfo } from './service-api.js';
import { askServices } from './service-client.js';
import { Header, encodeJson } from './wire.js';

/** Longest wait, after a call got no responders, for the module's instances to describe themselves. */
const NO_RESPONDERS_PROBE_MS = 1_000;
/** After an instance described itself, how long to wait for more. */
const NO_RESPONDERS_PROBE_JITTER_MS = 50;

/** Orders service instances by contract version, oldest first. */
function byVersion(a: ServiceInfo, b: ServiceInfo): number {
  return a.version.localeCompare(b.version, 'en', { numeric: true });
}

/** What a pending call needs from its transport when its deadline passes. */
interface CallOwner {
  expired(call: PendingCall): void;
  /** The caller's signal aborted while the call waited. */
  aborted(call: PendingCall): void;
}

/**
 * One outgoing call waiting for its reply. A class rather than an object literal with closures:
 * a call allocates one object and no function (under tsx, esbuild's keepNames would also wrap
 * every named closure made per call).
 */
class PendingCall implements DeadlineEntry, AbortableCall {
  readonly deadline: number;
  readonly startedAt = Date.now();
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;
  deadlineSlot = -1;

  constructor(
    readonly owner: CallOwner,
    readonly token: number,
    readonly address: OperationAddress,
    readonly context: CallContext,
    readonly signal: AbortSignal | undefined,
  ) {
    this.deadline = context.deadline;
  }

  expire(): void {
    this.owner.expired(this);
  }

  abort(): void {
    this.owner.aborted(this);
  }
}

function ignore(): void {}

/** Calls over NATS: one reply subscription, a map of pending calls, one timer for every deadline. */
export class Caller implements CallOwner {
  readonly #connection: Connection;
  readonly #inbox: string;
  readonly #inboxLength: number;
  /** By reply token: the call's number, written in base 36 at the end of its reply subject. */
  readonly #pending = new Map<number, PendingCall>();
  readonly #deadlines = new DeadlineScheduler();
  /**
   * Each operation's subject, by the kernel's frozen per-operation address: built and flattened
   * once, where a string built per call cost two concatenations and, in nats' subject check, a flattening.
   */
  readonly #subjects = new WeakMap<OperationAddress, string>();
  readonly #replies: ReplySubscription;
  #nextToken = 0;
  #allPendingSettled: (() => void) | undefined;

  constructor(connection: Connection) {
    this.#connection = connection;
    // The connection's own prefix: a server may let this process read only replies under it.
    this.#inbox = createInbox(connection.options.inboxPrefix);
    this.#inboxLength = this.#inbox.length + 1;
    this.#replies = new ReplySubscription(
      connection,
      `${this.#inbox}.*`,
      (msg) => this.#onReply(msg),
      // Refused after start (a server's permissions changed): the calls waiting can get no answer.
      (refused) => this.interrupt('its reply subscription was refused by NATS', refused),
    );
  }

  /** Subscribes to the replies of every call this transport makes. */
  listen(): void {
    this.#replies.listen();
  }

  /** Why no call can get its answer while the server refuses the reply subscription (reply-subscription.ts); `undefined` otherwise. */
  get repliesRefused(): KeelError | undefined {
    return this.#replies.refused;
  }

  /**
   * The server refused a publish to `subject` (a permission violation): the oldest call waiting
   * on that subject was never delivered, so it fails now rather than at its deadline as if its
   * outcome were unknown. One call per refusal, oldest first, as nats.js pairs its own requests
   * with refusals: the server answers one connection's publishes in order, and a permission
   * granted meanwhile may have let a later call through. `INVALID_CONFIG`, as for a refused reply
   * subscription: never retried (sent again it would be refused again), not a sign of an unwell
   * callee. (The kernel already refuses a module's call to a module it does not depend on, so a
   * refusal here means the permissions are not the module graph's.)
   */
  refusedPublish(subject: string, cause: Error): void {
    for (const call of this.#pending.values()) {
      if (this.#subjectOf(call.address) !== subject) continue;
      this.#settle(call);
      call.reject(
        new KeelError(
          KeelErrorCode.INVALID_CONFIG,
          `${call.address.contract}.${call.address.operation} was not sent: NATS refused this process's user permission to publish to ${subject}; nothing ran. ` +
            'Its permissions come from the module graph when keel deploy or keel up made them: make them again from the current topology and modules ' +
            '(a module that calls another declares it in dependsOn), or give the user that permission.',
          // sent: false tells the kernel's retry that nothing ran (resilient-failures.ts, refusedUnsent).
          { correlationId: call.context.correlationId, cause, details: { sent: false } },
        ),
      );
      return;
    }
  }

  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown> {
    const connection = this.#connection;
    if (connection.closed) return Promise.reject(connection.unavailable(`Cannot call ${address.contract}.${address.operation}`));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(cancelledError(address, context, signal.reason));
    const data = encodeJson(input);
    const limit = connection.maxPayload;
    if (data.length > limit) {
      return Promise.reject(connection.tooLarge(`The input of ${address.contract}.${address.operation}`, data.length, limit, context.correlationId));
    }
    // The one check connected calls pay for an outage.
    if (!connection.connected) return this.#sendOnceConnected(address, data, context, signal);
    return this.#send(address, data, context, signal);
  }

  /**
   * Publishes a call and waits for its reply, its deadline or its cancellation.
   *
   * Once published, a call that loses the connection stays pending: it may have been delivered,
   * and a reply may still come on the reply subscription, which the client subscribes again on
   * reconnecting. If the connection is not back within the reconnect grace, the transport ends
   * it INTERRUPTED (transport.ts); otherwise it waits for its reply or its deadline (TIMEOUT):
   * outcome unknown either way. nats.js
   * (v2.29, and v3.4 alike) hands a publish to the socket a microtask later, so a call published while
   * `connected` was true was written before a disconnect could be noticed; the bytes a dying
   * socket swallowed, or published in the few microtasks between the client seeing the socket
   * close and its status event reaching `connected`, are lost unseen and end as TIMEOUT too.
   */
  #send(address: OperationAddress, data: Uint8Array, context: CallContext, signal: AbortSignal | undefined): Promise<unknown> {
    // Refused (before this call, or while it waited for the connection): it would wait out its deadline for an answer that cannot come.
    if (this.#replies.refused !== undefined) return this.#refusedForReplies(address, context);
    const connection = this.#connection;
    const token = this.#nextToken++;
    const call = new PendingCall(this, token, address, context, signal);
    const answer = new Promise<unknown>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    try {
      connection.nc.publish(this.#subjectOf(address), data, {
        reply: `${this.#inbox}.${token.toString(36)}`,
        headers: callHeaders(address, context),
      });
    } catch (error) {
      call.reject(connection.publishError(error, `The input of ${address.contract}.${address.operation}`, data.length, context.correlationId));
      return answer;
    }
    this.#pending.set(token, call);
    this.#deadlines.add(call);
    // One listener per signal, not per call (signal-watch.ts in the kernel); call() and
    // #sendOnceConnected checked the signal has not aborted.
    if (signal !== undefined) watchSignal(signal, call);
    return answer;
  }

  #refusedForReplies(address: OperationAddress, context: CallContext): Promise<never> {
    const refused = this.#replies.refused as KeelError;
    return Promise.reject(
      new KeelError(KeelErrorCode.INVALID_CONFIG, `${address.contract}.${address.operation} was not sent: ${refused.message}`, {
        correlationId: context.correlationId,
        cause: refused,
        details: { sent: false },
      }),
    );
  }

  /**
   * Tells the callee's instances that this process gave up on the call sent with reply token
   * `token`, so that its handler's signal aborts (docs/wire-protocol.md, "Cancelling a call").
   * Best effort: a cancel that cannot be published changes nothing for the caller.
   */
  #cancelRemote(address: OperationAddress, token: number): void {
    const connection = this.#connection;
    if (!connection.connected) return;
    try {
      connection.nc.publish(connection.subjects.cancel(address.contract), `${this.#inbox}.${token.toString(36)}`);
    } catch (error) {
      connection.logger.debug({ err: error, module: address.contract }, 'could not send a cancel for a call its caller gave up on');
    }
  }

  #subjectOf(address: OperationAddress): string {
    let subject = this.#subjects.get(address);
    if (subject === undefined) {
      subject = this.#connection.subjects.operation(address.contract, address.operation);
      this.#subjects.set(address, subject);
    }
    return subject;
  }

  /**
   * A call made while the connection is down. It is not published: nats.js (v2.29, and v3.4 alike) would queue it
   * in its outbound buffer, which it empties at every reconnect attempt (`prepare()` →
   * `resetOutbound()`), so a request published during an outage is dropped unseen and its caller
   * would wait its whole deadline for a TIMEOUT. Instead the call waits the reconnect grace
   * (never past its deadline): published once the connection is back, or refused with
   * UNAVAILABLE — never sent, safe to retry — when it is not.
   */
  async #sendOnceConnected(address: OperationAddress, data: Uint8Array, context: CallContext, signal: AbortSignal | undefined): Promise<unknown> {
    const connection = this.#connection;
    const waitFrom = Date.now();
    const giveUpAt = Math.min(waitFrom + connection.options.reconnectGraceMs, context.deadline);
    for (;;) {
      const outcome = await connection.waitForConnection(giveUpAt - Date.now(), signal);
      if (outcome === 'closed') throw connection.unavailable(`Cannot call ${address.contract}.${address.operation}`);
      if (outcome === 'cancelled' || signal?.aborted) throw cancelledError(address, context, signal?.reason);
      if (outcome === 'gave-up' || Date.now() >= context.deadline) break;
      // Back, unless it dropped again before this call's turn came: then wait what is left.
      if (connection.connected) return this.#send(address, data, context, signal);
    }
    const waitedMs = Date.now() - waitFrom;
    throw new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `${address.contract}.${address.operation} was not sent: the NATS connection is down (reconnecting to ${connection.reconnectingTo}; ` +
        `waited ${waitedMs} ms for it). Nothing was delivered, so it is safe to retry.`,
      { correlationId: context.correlationId, details: { waitedMs, reconnectGraceMs: connection.options.reconnectGraceMs } },
    );
  }

  /** The caller's signal aborted first: CANCELLED here, and the callee told (its handler's signal aborts). */
  aborted(call: PendingCall): void {
    if (!this.#pending.has(call.token)) return;
    this.#settle(call);
    call.reject(cancelledError(call.address, call.context, call.signal?.reason));
    this.#cancelRemote(call.address, call.token);
  }

  /** A pending call's deadline passed (the scheduler already forgot it). */
  expired(call: PendingCall): void {
    this.#pending.delete(call.token);
    this.#afterSettle(call);
    call.reject(timeoutError(call.address, call.context, call.context.deadline - call.startedAt));
  }

  /**
   * Rejects every pending call with INTERRUPTED: `ended` says what ended before the answer
   * arrived ("the NATS connection closed", "the NATS transport closed").
   */
  interrupt(ended: string, cause?: unknown): void {
    for (const call of [...this.#pending.values()]) {
      this.#settle(call);
      call.reject(
        new KeelError(
          KeelErrorCode.INTERRUPTED,
          `${call.address.contract}.${call.address.operation}: ${ended} before an answer arrived; its outcome is unknown ` +
            '(retry only idempotent operations, or with an idempotency key).',
          { correlationId: call.context.correlationId, cause },
        ),
      );
    }
  }

  /** On close: waits (within the drain timeout) for the answers still due, then gives up on the rest. */
  async close(): Promise<void> {
    if (this.#pending.size > 0) {
      const settled = new Promise<void>((resolve) => {
        this.#allPendingSettled = resolve;
      });
      await within(settled, this.#connection.options.drainTimeoutMs);
    }
    this.interrupt('the NATS transport closed');
    this.#deadlines.clear();
    this.#replies.close();
  }

  /** Stops listening for replies (when the connection is closed without draining). */
  stopReplies(): void {
    this.#replies.unsubscribe();
  }

  /** Forgets a pending call (it got an answer, was cancelled, or the connection closed). */
  #settle(call: PendingCall): void {
    this.#pending.delete(call.token);
    this.#deadlines.delete(call);
    this.#afterSettle(call);
  }

  #afterSettle(call: PendingCall): void {
    if (call.signal !== undefined) unwatchSignal(call.signal, call);
    if (this.#pending.size === 0 && this.#allPendingSettled !== undefined) this.#allPendingSettled();
  }

  #onReply(msg: Msg): void {
    const call = this.#pending.get(replyToken(msg, this.#inboxLength));
    if (call === undefined) return; // late answer to a call that already timed out or was cancelled
    this.#settle(call);
    const { address, context } = call;
    // The common reply, a success, has no header block: nothing to decode.
    let replyHeaders: MsgHdrs | undefined;
    try {
      replyHeaders = hasNoHeaders(msg) ? undefined : msg.headers;
    } catch (cause) {
      // nats refuses the block (a key with a space, a bare line feed): no keel callee writes one.
      // Thrown from here, it would end the nats client's socket reader, and this call would never settle.
      call.reject(
        new KeelError(
          KeelErrorCode.INTERNAL,
          `${address.contract}.${address.operation} answered with a header block nats cannot decode (${reason(cause)}); the callee does not follow the keel wire protocol.`,
          { correlationId: context.correlationId, cause },
        ),
      );
      return;
    }
    if (replyHeaders !== undefined) {
      const label = `${address.contract}.${address.operation}`;
      if (replyHeaders.code === 503) {
        void this.#noResponders(call).then(call.reject);
        return;
      }
      if (replyHeaders.hasError) {
        call.reject(
          new KeelError(KeelErrorCode.UNAVAILABLE, `${label}: NATS answered with status ${replyHeaders.status}; the call was not processed.`, {
            correlationId: context.correlationId,
          }),
        );
        return;
      }
      const serviceCode = replyHeaders.get(Header.SERVICE_ERROR_CODE);
      if (serviceCode !== '') {
        call.reject(remoteFailure(msg, replyHeaders, label, context));
        return;
      }
    }
    let output: unknown;
    try {
      output = messageBody(msg);
    } catch (cause) {
      call.reject(
        new KeelError(
          KeelErrorCode.INTERNAL,
          `${address.contract}.${address.operation} answered with bytes that are not JSON; the callee does not follow the keel wire protocol.`,
          { correlationId: context.correlationId, cause },
        ),
      );
      return;
    }
    call.resolve(output);
  }

  /**
   * Nothing listens on the operation's subject. Either no instance of the module runs
   * (NO_RESPONDERS), or the running instances lack this operation: then answer what the module
   * itself answers in one process, UNKNOWN_OPERATION or VERSION_MISMATCH. Only failed calls pay
   * for the question, one `$SRV.INFO.{module}` request bounded by the call's remaining deadline.
   */
  async #noResponders(call: PendingCall): Promise<Error> {
    const { address, context } = call;
    const connection = this.#connection;
    const subject = connection.subjects.operation(address.contract, address.operation);
    const notDelivered = (): Error => noRespondersError(address, context, `on NATS (subject ${subject})`);
    const budget = Math.min(NO_RESPONDERS_PROBE_MS, call.deadline - Date.now());
    if (budget < 1 || connection.closing) return notDelivered();
    const instances = (await this.#serviceInfo(address.contract, budget)).filter(
      (instance) => instance.metadata?.['keel.prefix'] === connection.options.prefix,
    );
    if (call.signal?.aborted) return cancelledError(address, context, call.signal.reason);
    // An instance that lists the operation was starting or stopping: the call may be retried.
    if (instances.length === 0 || instances.some((instance) => instance.endpoints.some((endpoint) => endpoint.subject === subject))) {
      return notDelivered();
    }
    const compatible = instances.filter((instance) => sameMajor(instance.version, address.version)).sort(byVersion);
    const newest = compatible.at(-1);
    if (newest !== undefined) {
      return unknownOperationFailure(address, context, newest.version, newest.endpoints.map((endpoint) => endpoint.name));
    }
    return versionMismatchFailure(address, context, [...new Set(instances.sort(byVersion).map((instance) => instance.version))]);
  }

  /** The `$SRV.INFO` answers of a service's instances within `budgetMs`; none when nothing answers. */
  async #serviceInfo(name: string, budgetMs: number): Promise<ServiceInfo[]> {
    const answers = await askServices(this.#connection.nc, 'INFO', name, { maxWaitMs: budgetMs, stallMs: NO_RESPONDERS_PROBE_JITTER_MS });
    return answers.filter((info) => Array.isArray(info.endpoints) && typeof info.version === 'string');
  }
}

/** A service error reply as the caller's failure: the keel envelope it carries, or INTERNAL naming the NATS error. */
function remoteFailure(msg: Msg, replyHeaders: MsgHdrs, label: string, context: CallContext): Error {
  let envelope: unknown;
  try {
    envelope = messageBody(msg);
  } catch {
    envelope = undefined;
  }
  if (isErrorEnvelope(envelope)) return new RemoteFailure(envelope);
  const code = replyHeaders.get(Header.SERVICE_ERROR_CODE);
  const description = replyHeaders.get(Header.SERVICE_ERROR);
  return new KeelError(
    KeelErrorCode.INTERNAL,
    `${label} failed with NATS service error ${code}: ${description || 'no description'} (no keel error envelope in the reply).`,
    { correlationId: context.correlationId, details: { serviceErrorCode: code } },
  );
}
