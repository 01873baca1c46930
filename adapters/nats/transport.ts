/**
 * The NATS transport: keel calls as NATS requests over one shared reply subscription, modules
 * served as NATS services (discoverable with `$SRV.PING/INFO/STATS`), notification events on
 * core NATS and durable events on JetStream.
 */
import { KeelError, KeelErrorCode, isKeelError, type CallContext, type Logger } from 'keel';
import {
  DeadlineScheduler,
  InFlight,
  RemoteFailure,
  cancelledError,
  createLogger,
  isErrorEnvelope,
  noRespondersError,
  timeoutError,
  unknownOperationFailure,
  versionMismatchFailure,
  within,
  type DeadlineEntry,
  type ErrorEnvelope,
  type EventMetadata,
  type EventSubscription,
  type OperationAddress,
  type PublishedEvent,
  type Registration,
  type ServedModule,
  type Transport,
  type TransportCallOptions,
  type TransportStatus,
} from 'keel/transport';
import {
  AckPolicy,
  ConsumerEvents,
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  Events,
  RequestStrategy,
  RetentionPolicy,
  StorageType,
  connect,
  createInbox,
  headers as natsHeaders,
  nanos,
  type ConsumerConfig,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type Msg,
  type MsgHdrs,
  type NatsConnection,
  type NatsError,
  type Service,
  type ServiceInfo,
  type ServiceMsg,
  type StreamConfig,
  type Subscription,
} from 'nats';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { EndpointCounters } from './endpoint-stats.js';
import { callHeaders, eventHeaders, readEventHeaders, readRequestHeaders, sameMajor } from './headers.js';
import { connectionOptions, redactUrl, resolveOptions, type NatsTransportOptions, type ResolvedNatsOptions } from './options.js';
import { Header, Subjects, decodeJson, encodeJson, headerValue, serviceErrorCode } from './wire.js';

/**
 * Connects to NATS and returns a {@link Transport} for a kernel's topology. Rejects with a
 * `KeelError` (`INVALID_CONFIG` for bad options, `UNAVAILABLE` when no server answers).
 *
 * @example
 * ```ts
 * const transport = await createNatsTransport({ servers: 'nats://127.0.0.1:4222' });
 * const kernel = createKernel({ modules, topology: { host: ['orders'], transport } });
 * await kernel.start();
 * // ... on shutdown:
 * await kernel.stop();
 * await transport.close();
 * ```
 */
export async function createNatsTransport(options: NatsTransportOptions = {}): Promise<Transport> {
  const resolved = resolveOptions(options);
  const logger = resolved.logger ?? createLogger({ name: 'keel-nats' });
  let connection: NatsConnection;
  try {
    connection = await connect(connectionOptions(resolved));
  } catch (error) {
    throw new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `Could not connect to NATS at ${resolved.servers.map(redactUrl).join(', ')}: ${reason(error)}. ` +
        'Start nats-server there, or fix KEEL_NATS_URL and the NATS credentials.',
      { cause: error },
    );
  }
  const transport = new NatsTransport(connection, resolved, logger);
  await transport.init();
  return transport;
}

function reason(error: unknown): string {
  if (error instanceof Error) return (error as NatsError).code ? `${error.message} (${(error as NatsError).code})` : error.message;
  return String(error);
}

const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

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
}

/**
 * One outgoing call waiting for its reply. A class rather than an object literal with closures:
 * a call allocates one object and no function (under tsx, esbuild's keepNames would also wrap
 * every named closure made per call).
 */
class PendingCall implements DeadlineEntry {
  readonly deadline: number;
  readonly startedAt = Date.now();
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;
  onAbort: (() => void) | undefined;

  constructor(
    readonly owner: CallOwner,
    readonly token: string,
    readonly address: OperationAddress,
    readonly context: CallContext,
    readonly signal: AbortSignal | undefined,
  ) {
    this.deadline = context.deadline;
  }

  expire(): void {
    this.owner.expired(this);
  }
}

function ignore(): void {}

/** A module served on NATS. */
interface Served {
  readonly module: ServedModule;
  readonly label: string;
  readonly inFlight: InFlight;
  service: Service | undefined;
}

/** A durable subscription's running state. */
interface DurableState {
  readonly subscription: EventSubscription;
  readonly stream: string;
  readonly consumer: string;
  readonly label: string;
  readonly inFlight: InFlight;
  readonly handling: Set<JsMsg>;
  messages: ConsumerMessages | undefined;
  stopped: boolean;
}

function natsCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null ? ((error as NatsError).code as string | undefined) : undefined;
}

function jsErrorCode(error: unknown): number | undefined {
  return typeof error === 'object' && error !== null ? (error as NatsError).api_error?.err_code : undefined;
}

/** JetStream API error codes keel handles. */
const JS_STREAM_NOT_FOUND = 10059;
const JS_CONSUMER_NOT_FOUND = 10014;
const JS_STREAM_NAME_IN_USE = 10058;
const JS_CONSUMER_EXISTS = 10013;
const JS_CONSUMER_NAME_EXISTS = 10148;

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): string {
  try {
    return JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: 'any' }));
  } catch {
    return '{}';
  }
}

class NatsTransport implements Transport {
  readonly name = 'nats';
  readonly inProcess = false;
  readonly #nc: NatsConnection;
  readonly #options: ResolvedNatsOptions;
  readonly #logger: Logger;
  readonly #subjects: Subjects;
  readonly #inbox: string;
  readonly #inboxLength: number;
  readonly #pending = new Map<string, PendingCall>();
  readonly #deadlines = new DeadlineScheduler();
  readonly #registrations = new Set<Registration>();
  readonly #streams = new Map<string, Promise<void>>();
  #replies: Subscription | undefined;
  #nextToken = 0;
  #connected = true;
  #closing: Promise<void> | undefined;
  #jsm: Promise<JetStreamManager> | undefined;
  #js: JetStreamClient | undefined;
  #allPendingSettled: (() => void) | undefined;

  constructor(nc: NatsConnection, options: ResolvedNatsOptions, logger: Logger) {
    this.#nc = nc;
    this.#options = options;
    this.#logger = logger;
    this.#subjects = new Subjects(options.prefix);
    this.#inbox = createInbox();
    this.#inboxLength = this.#inbox.length + 1;
  }

  async init(): Promise<void> {
    this.#replies = this.#nc.subscribe(`${this.#inbox}.*`, { callback: (error, msg) => this.#onReply(error, msg) });
    void this.#watchStatus();
    void this.#nc.closed().then((error) => this.#onClosed(error));
    await this.#nc.flush();
    this.#logger.info({ server: this.#nc.getServer(), prefix: this.#options.prefix }, 'connected to NATS');
  }

  // -------------------------------------------------------------------------------------------
  // Connection state

  async #watchStatus(): Promise<void> {
    try {
      for await (const status of this.#nc.status()) {
        switch (status.type) {
          case Events.Disconnect:
            if (this.#connected) this.#logger.warn({ server: String(status.data) }, 'disconnected from NATS; reconnecting');
            this.#connected = false;
            break;
          case Events.Reconnect:
            this.#connected = true;
            this.#logger.info({ server: String(status.data) }, 'reconnected to NATS');
            break;
          case Events.LDM:
            this.#logger.warn({ server: this.#nc.getServer() }, 'NATS server entering lame duck mode; will move to another server');
            break;
          case Events.Error:
            if (/AUTH/i.test(String(status.data))) {
              // The client keeps retrying (credentials may be rotated server-side); say why it is not back.
              this.#logger.error(
                { error: String(status.data), server: this.#nc.getServer() },
                'NATS refused this connection\'s credentials; retrying — check the token, user and password or credentials file (KEEL_NATS_TOKEN, KEEL_NATS_USER/KEEL_NATS_PASSWORD, KEEL_NATS_CREDS)',
              );
            } else {
              this.#logger.warn({ error: String(status.data) }, 'NATS reported an error');
            }
            break;
          default:
            break;
        }
      }
    } catch (error) {
      this.#logger.warn({ err: error }, 'NATS status stream failed');
    }
  }

  #onClosed(error: void | Error): void {
    this.#connected = false;
    if (this.#closing === undefined) {
      this.#logger.error({ err: error }, 'NATS connection closed unexpectedly; this process can no longer reach other modules');
    }
    for (const call of [...this.#pending.values()]) {
      this.#settle(call);
      call.reject(
        new KeelError(
          KeelErrorCode.INTERRUPTED,
          `${call.address.contract}.${call.address.operation}: the NATS connection closed before an answer arrived; its outcome is unknown ` +
            '(retry only idempotent operations).',
          { correlationId: call.context.correlationId, cause: error ?? undefined },
        ),
      );
    }
  }

  status(): TransportStatus {
    const closed = this.#closing !== undefined || this.#nc.isClosed();
    const ready = this.#connected && !closed;
    let detail: string;
    if (ready) detail = `connected to ${this.#nc.getServer()} (prefix ${this.#options.prefix})`;
    else if (closed) detail = 'closed';
    else detail = `disconnected from NATS; reconnecting to ${this.#options.servers.map(redactUrl).join(', ')}`;
    return { name: this.name, ready, detail };
  }

  get #maxPayload(): number {
    return this.#nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  #unavailable(what: string): KeelError {
    return new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `${what}: the NATS transport is closed. Create a new transport (and kernel) to reach other modules again.`,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Calls: one reply subscription, a map of pending calls, one timer for every deadline.

  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown> {
    const label = `${address.contract}.${address.operation}`;
    if (this.#closing !== undefined || this.#nc.isClosed()) return Promise.reject(this.#unavailable(`Cannot call ${label}`));
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(cancelledError(address, context, signal.reason));
    const data = encodeJson(input);
    const limit = this.#maxPayload;
    if (data.length > limit) return Promise.reject(this.#tooLarge(`The input of ${label}`, data.length, limit, context.correlationId));
    const token = (this.#nextToken++).toString(36);
    const call = new PendingCall(this, token, address, context, signal);
    const answer = new Promise<unknown>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    try {
      this.#nc.publish(this.#subjects.operation(address.contract, address.operation), data, {
        reply: `${this.#inbox}.${token}`,
        headers: callHeaders(address, context),
      });
    } catch (error) {
      call.reject(this.#publishError(error, `The input of ${label}`, data.length, context.correlationId));
      return answer;
    }
    this.#pending.set(token, call);
    this.#deadlines.add(call);
    if (signal !== undefined) {
      call.onAbort = () => {
        if (!this.#pending.has(token)) return;
        this.#settle(call);
        call.reject(cancelledError(address, context, signal.reason));
      };
      signal.addEventListener('abort', call.onAbort, { once: true });
    }
    return answer;
  }

  /** A pending call's deadline passed (the scheduler already forgot it). */
  expired(call: PendingCall): void {
    this.#pending.delete(call.token);
    this.#afterSettle(call);
    call.reject(timeoutError(call.address, call.context, call.context.deadline - call.startedAt));
  }

  #tooLarge(what: string, size: number, limit: number, correlationId: string | undefined): KeelError {
    return new KeelError(
      KeelErrorCode.PAYLOAD_TOO_LARGE,
      `${what} is ${size} bytes as JSON, more than the ${limit} bytes the NATS server accepts (max_payload). ` +
        'Nothing was sent. Send less data per message (page it, or pass a reference), or raise max_payload on the server.',
      { correlationId, details: { size, limit } },
    );
  }

  #publishError(error: unknown, what: string, size: number, correlationId: string | undefined): KeelError {
    const code = natsCode(error);
    if (code === ErrorCode.MaxPayloadExceeded) return this.#tooLarge(`${what} (with its headers)`, size, this.#maxPayload, correlationId);
    if (code === ErrorCode.ConnectionClosed || code === ErrorCode.ConnectionDraining) {
      return new KeelError(KeelErrorCode.UNAVAILABLE, `${what} was not sent: the NATS connection is closing.`, {
        correlationId,
        cause: error,
      });
    }
    return new KeelError(KeelErrorCode.UNAVAILABLE, `${what} was not sent: ${reason(error)}.`, { correlationId, cause: error });
  }

  /** Forgets a pending call (it got an answer, was cancelled, or the connection closed). */
  #settle(call: PendingCall): void {
    this.#pending.delete(call.token);
    this.#deadlines.delete(call);
    this.#afterSettle(call);
  }

  #afterSettle(call: PendingCall): void {
    if (call.onAbort !== undefined) call.signal?.removeEventListener('abort', call.onAbort);
    if (this.#pending.size === 0 && this.#allPendingSettled !== undefined) this.#allPendingSettled();
  }

  #onReply(error: NatsError | null, msg: Msg): void {
    if (error !== null) {
      this.#logger.warn({ err: error }, 'reply subscription error');
      return;
    }
    const call = this.#pending.get(msg.subject.slice(this.#inboxLength));
    if (call === undefined) return; // late answer to a call that already timed out or was cancelled
    this.#settle(call);
    const { address, context } = call;
    const replyHeaders = msg.headers;
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
        call.reject(this.#remoteFailure(msg, replyHeaders, label, context));
        return;
      }
    }
    let output: unknown;
    try {
      output = decodeJson(msg.data);
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
    const subject = this.#subjects.operation(address.contract, address.operation);
    const notDelivered = (): Error => noRespondersError(address, context, `on NATS (subject ${subject})`);
    const budget = Math.min(NO_RESPONDERS_PROBE_MS, call.deadline - Date.now());
    if (budget < 1 || this.#closing !== undefined) return notDelivered();
    const instances = (await this.#serviceInfo(address.contract, budget)).filter(
      (instance) => instance.metadata?.['keel.prefix'] === this.#options.prefix,
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
    const found: ServiceInfo[] = [];
    let timer: NodeJS.Timeout | undefined;
    try {
      const answers = await this.#nc.services
        .client({ strategy: RequestStrategy.JitterTimer, maxWait: budgetMs, jitter: NO_RESPONDERS_PROBE_JITTER_MS })
        .info(name);
      // Answers keep the request open for a jitter period each: never past the budget.
      timer = setTimeout(() => answers.stop(), budgetMs);
      for await (const info of answers) {
        if (Array.isArray(info.endpoints) && typeof info.version === 'string') found.push(info);
      }
    } catch {
      // No responders (nothing runs), a closed connection, an answer that is not JSON: what was found so far stands.
    } finally {
      clearTimeout(timer);
    }
    return found;
  }

  #remoteFailure(msg: Msg, replyHeaders: MsgHdrs, label: string, context: CallContext): Error {
    let envelope: unknown;
    try {
      envelope = decodeJson(msg.data);
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

  // -------------------------------------------------------------------------------------------
  // Serving: one NATS service per module, one endpoint per operation, one queue group per module.

  async serve(module: ServedModule): Promise<Registration> {
    const contract = module.contract;
    if (this.#closing !== undefined) throw this.#unavailable(`Cannot serve module "${contract.name}"`);
    const served: Served = { module, label: contract.name, inFlight: new InFlight(), service: undefined };
    // The client's own counters miss asynchronous answers: each endpoint's `data` carries keel's (endpoint-stats.ts).
    const countersBySubject = new Map<string, EndpointCounters>();
    const service = await this.#nc.services.add({
      name: contract.name,
      version: contract.version,
      description: contract.description ?? `keel module ${contract.name}`,
      queue: contract.name,
      metadata: { 'keel.prefix': this.#options.prefix, 'keel.protocol': '1' },
      statsHandler: (endpoint) => Promise.resolve(countersBySubject.get(endpoint.subject)?.report() ?? null),
    });
    served.service = service;
    const group = service.addGroup(this.#subjects.module(contract.name), contract.name);
    for (const [operation, definition] of Object.entries(contract.operations)) {
      const metadata: Record<string, string> = {
        input_schema: jsonSchemaOf(definition.input, 'input'),
        output_schema: jsonSchemaOf(definition.output, 'output'),
        errors: definition.errors.map((error) => error.code).join(','),
        idempotent: String(definition.idempotent),
      };
      if (definition.timeoutMs !== undefined) metadata['timeout_ms'] = String(definition.timeoutMs);
      if (definition.description !== undefined) metadata['description'] = definition.description;
      const counters = new EndpointCounters();
      countersBySubject.set(this.#subjects.operation(contract.name, operation), counters);
      group.addEndpoint(operation, {
        handler: (error, msg) => this.#onRequest(served, operation, counters, error, msg),
        metadata,
        queue: contract.name,
      });
    }
    await this.#nc.flush();
    this.#logger.debug({ module: contract.name, subject: `${this.#subjects.module(contract.name)}.*` }, 'serving module on NATS');
    let stopping: Promise<void> | undefined;
    const registration: Registration = {
      stop: () => {
        stopping ??= (async () => {
          await this.#stopService(service, contract.name);
          if (!(await within(served.inFlight.idle(), this.#options.drainTimeoutMs))) {
            this.#logger.warn(
              { module: contract.name, inFlight: served.inFlight.count },
              `requests still running after ${this.#options.drainTimeoutMs} ms; stopped waiting for them`,
            );
          }
          this.#registrations.delete(registration);
        })();
        return stopping;
      },
    };
    this.#registrations.add(registration);
    return registration;
  }

  async #stopService(service: Service, module: string): Promise<void> {
    // A service stop drains its subscriptions: the server stops routing new requests here and
    // the requests already routed are delivered. While disconnected a drain cannot complete,
    // so do not wait for it then.
    const stopped = service.stop();
    if (!this.#connected || this.#nc.isClosed()) return;
    if (!(await within(stopped, this.#options.drainTimeoutMs))) {
      this.#logger.warn({ module }, 'NATS service did not finish draining in time');
    }
  }

  #onRequest(served: Served, operation: string, counters: EndpointCounters, error: NatsError | null, msg: ServiceMsg): void {
    const startedAt = performance.now();
    const contract = served.module.contract;
    const target = `${contract.name}.${operation}`;
    if (error !== null) {
      this.#logger.warn({ err: error, operation: target }, 'request subscription error');
      return;
    }
    if (msg.reply === '') {
      this.#logger.warn({ operation: target, subject: msg.subject }, 'dropped a request without a reply subject');
      return;
    }
    served.inFlight.begin();
    let request: ReturnType<typeof readRequestHeaders>;
    let input: unknown;
    try {
      request = readRequestHeaders(msg.headers, target, this.#options.defaultTimeoutMs);
      try {
        input = decodeJson(msg.data);
      } catch {
        throw new KeelError(
          KeelErrorCode.INVALID_INPUT,
          `Request to ${target}: the body is not valid UTF-8 JSON. Send the operation's input as a JSON document (see docs/wire-protocol.md).`,
          { correlationId: request.context.correlationId },
        );
      }
    } catch (failure) {
      const keel = failure as KeelError;
      this.#respondError(msg, served, operation, counters, {
        type: 'keel',
        code: keel.code,
        message: keel.message,
        ...(keel.correlationId === undefined ? {} : { correlationId: keel.correlationId }),
      });
      counters.answered(startedAt);
      served.inFlight.end();
      return;
    }
    const { context } = request;
    const address: OperationAddress = { contract: contract.name, version: request.version, operation };
    // The kernel's answer pipeline settles the call: a synchronous handler in this same turn, with
    // no promise (each one is taxed by AsyncLocalStorage's hooks on Node 20), an asynchronous one
    // when it settles.
    served.module.handle(address, input, context, false, {
      ok: (output) => this.#answer(msg, served, operation, counters, output, context, startedAt),
      fail: (failure) => this.#answerFailure(msg, served, operation, counters, failure, target, context, startedAt),
    });
  }

  #answer(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, output: unknown, context: CallContext, startedAt: number): void {
    this.#respond(msg, served, operation, counters, output, context);
    counters.answered(startedAt);
    served.inFlight.end();
  }

  #answerFailure(
    msg: ServiceMsg,
    served: Served,
    operation: string,
    counters: EndpointCounters,
    failure: unknown,
    target: string,
    context: CallContext,
    startedAt: number,
  ): void {
    this.#respondError(msg, served, operation, counters, this.#envelopeOf(failure, target, context));
    counters.answered(startedAt);
    served.inFlight.end();
  }

  #envelopeOf(failure: unknown, target: string, context: CallContext): ErrorEnvelope {
    if (failure instanceof RemoteFailure) return failure.envelope;
    this.#logger.error({ err: failure, operation: target, correlationId: context.correlationId }, 'the answer pipeline failed a call with something other than a RemoteFailure');
    return {
      type: 'keel',
      code: KeelErrorCode.INTERNAL,
      message: `${target} failed with an internal error (correlation id ${context.correlationId}).`,
      correlationId: context.correlationId,
    };
  }

  #respond(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, output: unknown, context: CallContext): void {
    const data = encodeJson(output);
    const limit = this.#maxPayload;
    if (data.length > limit) {
      const error = this.#tooLarge(`The output of ${served.label}.${operation}`, data.length, limit, context.correlationId);
      this.#logger.error({ operation: `${served.label}.${operation}`, size: data.length, limit, correlationId: context.correlationId }, error.message);
      this.#respondError(msg, served, operation, counters, {
        type: 'keel',
        code: error.code,
        message: error.message,
        correlationId: context.correlationId,
        details: { size: data.length, limit },
      });
      return;
    }
    try {
      msg.respond(data);
    } catch (error) {
      counters.failed(headerValue(`reply not sent: ${reason(error)}`));
      this.#logger.warn({ err: error, operation: `${served.label}.${operation}`, correlationId: context.correlationId }, 'could not send a reply');
    }
  }

  #respondError(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, envelope: ErrorEnvelope): void {
    const code = serviceErrorCode(envelope, served.module.contract, operation);
    const description = headerValue(`${envelope.code}: ${envelope.message}`);
    counters.failed(description);
    try {
      try {
        msg.respondError(code, description, encodeJson(envelope));
      } catch (error) {
        if (natsCode(error) !== ErrorCode.MaxPayloadExceeded) throw error;
        // Details (zod issues of a huge input) or data made the envelope too large: send its core.
        const { type, message, correlationId } = envelope;
        msg.respondError(code, description, encodeJson({ type, code: envelope.code, message: headerValue(message, 2048), correlationId }));
      }
    } catch (error) {
      this.#logger.warn({ err: error, operation: `${served.label}.${operation}`, correlationId: envelope.correlationId }, 'could not send an error reply');
    }
  }

  // -------------------------------------------------------------------------------------------
  // Events

  async publish(event: PublishedEvent): Promise<void> {
    const label = `${event.contract}.${event.event}`;
    if (this.#closing !== undefined || this.#nc.isClosed()) throw this.#unavailable(`Cannot publish ${label}`);
    const data = encodeJson(event.payload);
    const limit = this.#maxPayload;
    const correlationId = event.metadata.correlationId;
    if (data.length > limit) throw this.#tooLarge(`The payload of event ${label}`, data.length, limit, correlationId);
    const eventHeaderValues = eventHeaders(event);
    if (event.delivery !== 'durable') {
      try {
        this.#nc.publish(this.#subjects.notification(event.contract, event.event), data, { headers: eventHeaderValues });
      } catch (error) {
        throw this.#publishError(error, `The payload of event ${label}`, data.length, correlationId);
      }
      return;
    }
    await this.#ensureEventStream(event.contract);
    const js = await this.#jetstream();
    try {
      await js.publish(this.#subjects.durable(event.contract, event.event), data, {
        msgID: event.metadata.id,
        headers: eventHeaderValues,
        timeout: this.#options.jetStreamTimeoutMs,
      });
    } catch (error) {
      const code = natsCode(error);
      if (code === ErrorCode.MaxPayloadExceeded) throw this.#publishError(error, `The payload of event ${label}`, data.length, correlationId);
      if (code === ErrorCode.Timeout) {
        throw new KeelError(
          KeelErrorCode.TIMEOUT,
          `Durable event ${label} was sent, but JetStream did not confirm storing it within ${this.#options.jetStreamTimeoutMs} ms; ` +
            'it may or may not have been stored. Check the NATS connection and the JetStream server.',
          { correlationId, cause: error },
        );
      }
      throw new KeelError(
        KeelErrorCode.INTERRUPTED,
        `Durable event ${label} was not confirmed by JetStream (${reason(error)}); it may or may not have been stored. ` +
          'Check that nats-server runs with JetStream enabled (-js) and is reachable.',
        { correlationId, cause: error },
      );
    }
  }

  async #jetstreamManager(): Promise<JetStreamManager> {
    this.#jsm ??= this.#nc.jetstreamManager({ timeout: this.#options.jetStreamTimeoutMs }).catch((error: unknown) => {
      this.#jsm = undefined;
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `JetStream is not available on the NATS server (${reason(error)}); durable events need it. Start nats-server with -js.`,
        { cause: error },
      );
    });
    return this.#jsm;
  }

  async #jetstream(): Promise<JetStreamClient> {
    await this.#jetstreamManager();
    this.#js ??= this.#nc.jetstream({ timeout: this.#options.jetStreamTimeoutMs });
    return this.#js;
  }

  /** Creates (once per process, idempotently) the stream of a module's durable events. */
  #ensureEventStream(module: string): Promise<void> {
    const name = this.#subjects.stream(module);
    const subject = this.#subjects.durableWildcard(module);
    return this.#ensureStream(name, {
      name,
      subjects: [subject],
      description: `keel durable events of module ${module}`,
      retention: RetentionPolicy.Interest,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(2 * 60 * 1000),
    });
  }

  #ensureDeadLetterStream(): Promise<void> {
    const name = this.#subjects.deadLetterStream();
    return this.#ensureStream(name, {
      name,
      subjects: [this.#subjects.deadLetterWildcard()],
      description: 'keel durable events given up on after their last attempt',
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(this.#options.deadLetterMaxAgeMs),
    });
  }

  #ensureStream(name: string, config: Partial<StreamConfig> & { subjects: string[] }): Promise<void> {
    let ensured = this.#streams.get(name);
    if (ensured === undefined) {
      ensured = this.#createStream(name, config).catch((error: unknown) => {
        this.#streams.delete(name);
        throw error;
      });
      this.#streams.set(name, ensured);
    }
    return ensured;
  }

  async #createStream(name: string, config: Partial<StreamConfig> & { subjects: string[] }): Promise<void> {
    const jsm = await this.#jetstreamManager();
    try {
      const info = await jsm.streams.info(name);
      const missing = config.subjects.filter((subject) => !info.config.subjects.includes(subject));
      if (missing.length > 0) {
        await jsm.streams.update(name, { ...info.config, subjects: [...info.config.subjects, ...missing] });
      }
      return;
    } catch (error) {
      if (jsErrorCode(error) !== JS_STREAM_NOT_FOUND) throw this.#jetStreamFailure(`inspect stream ${name}`, error);
    }
    try {
      await jsm.streams.add(config);
      this.#logger.info({ stream: name, subjects: config.subjects }, 'created JetStream stream');
    } catch (error) {
      if (jsErrorCode(error) !== JS_STREAM_NAME_IN_USE) throw this.#jetStreamFailure(`create stream ${name}`, error);
    }
  }

  #jetStreamFailure(what: string, error: unknown): KeelError {
    if (isKeelError(error)) return error;
    return new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `Could not ${what} on JetStream: ${reason(error)}. Check that nats-server runs with JetStream enabled (-js).`,
      { cause: error },
    );
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const label = `${subscription.contract}.${subscription.event}`;
    if (this.#closing !== undefined) throw this.#unavailable(`Cannot subscribe module "${subscription.subscriber}" to ${label}`);
    const registration =
      subscription.delivery === 'durable' ? await this.#subscribeDurable(subscription) : await this.#subscribeNotification(subscription);
    this.#registrations.add(registration);
    return registration;
  }

  async #subscribeNotification(subscription: EventSubscription): Promise<Registration> {
    const inFlight = new InFlight();
    const label = `${subscription.contract}.${subscription.event}`;
    const subject = this.#subjects.notification(subscription.contract, subscription.event);
    const sub = this.#nc.subscribe(subject, {
      ...(subscription.fanout === 'every-instance' ? {} : { queue: subscription.subscriber }),
      callback: (error, msg) => {
        if (error !== null) {
          this.#logger.warn({ err: error, event: label, subscriber: subscription.subscriber }, 'event subscription error');
          return;
        }
        this.#onNotification(subscription, label, inFlight, msg);
      },
    });
    await this.#nc.flush();
    let stopping: Promise<void> | undefined;
    const registration: Registration = {
      stop: () => {
        stopping ??= (async () => {
          await this.#drainSubscription(sub);
          await within(inFlight.idle(), this.#options.drainTimeoutMs);
          this.#registrations.delete(registration);
        })();
        return stopping;
      },
    };
    return registration;
  }

  async #drainSubscription(sub: Subscription): Promise<void> {
    if (sub.isClosed()) return;
    if (!this.#connected) {
      sub.unsubscribe();
      return;
    }
    const drained = sub.drain().catch(() => sub.unsubscribe());
    await within(drained, this.#options.drainTimeoutMs);
  }

  #onNotification(subscription: EventSubscription, label: string, inFlight: InFlight, msg: Msg): void {
    const { version, metadata } = readEventHeaders(msg.headers, 1, subscription.contract);
    if (!sameMajor(version, subscription.version)) {
      this.#logger.error(
        { event: label, eventId: metadata.id, sent: version, expected: subscription.version, subscriber: subscription.subscriber },
        'dropped an event published with another major contract version',
      );
      return;
    }
    let payload: unknown;
    try {
      payload = decodeJson(msg.data);
    } catch {
      this.#logger.error({ event: label, eventId: metadata.id, subscriber: subscription.subscriber }, 'dropped an event whose body is not JSON');
      return;
    }
    inFlight.begin();
    subscription.handle(payload, metadata).then(
      () => inFlight.end(),
      () => inFlight.end(), // the subscription logged it; a notification is not retried
    );
  }

  async #subscribeDurable(subscription: EventSubscription): Promise<Registration> {
    const stream = this.#subjects.stream(subscription.contract);
    const consumer = this.#subjects.consumer(subscription.subscriber, subscription.event);
    const state: DurableState = {
      subscription,
      stream,
      consumer,
      label: `${subscription.contract}.${subscription.event}`,
      inFlight: new InFlight(),
      handling: new Set(),
      messages: undefined,
      stopped: false,
    };
    await this.#ensureEventStream(subscription.contract);
    await this.#ensureDeadLetterStream();
    await this.#ensureConsumer(state);
    const js = await this.#jetstream();
    const source = await js.consumers.get(stream, consumer);
    const messages = await source.consume({
      max_messages: Math.min(this.#options.maxAckPending, 64),
      callback: (msg) => this.#onDurable(state, msg),
    });
    state.messages = messages;
    void this.#watchConsumer(state, messages);
    // Long handlers keep their message: tell JetStream they are still working before ack_wait ends.
    const keepAlive = setInterval(() => {
      for (const msg of state.handling) msg.working();
    }, Math.max(100, Math.floor(this.#options.ackWaitMs / 2)));
    keepAlive.unref();
    let stopping: Promise<void> | undefined;
    const registration: Registration = {
      stop: () => {
        stopping ??= (async () => {
          state.stopped = true;
          await within(messages.close(), this.#options.drainTimeoutMs);
          await within(state.inFlight.idle(), this.#options.drainTimeoutMs);
          clearInterval(keepAlive);
          this.#registrations.delete(registration);
        })();
        return stopping;
      },
    };
    return registration;
  }

  async #ensureConsumer(state: DurableState): Promise<void> {
    const { subscription, stream, consumer } = state;
    const jsm = await this.#jetstreamManager();
    const config: Partial<ConsumerConfig> = {
      durable_name: consumer,
      description: `keel: module ${subscription.subscriber} handles ${state.label}`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      filter_subject: this.#subjects.durable(subscription.contract, subscription.event),
      ack_wait: nanos(this.#options.ackWaitMs),
      max_deliver: -1,
      max_ack_pending: this.#options.maxAckPending,
    };
    try {
      const info = await jsm.consumers.info(stream, consumer);
      if (info.config.ack_wait !== config.ack_wait || info.config.max_ack_pending !== config.max_ack_pending) {
        await jsm.consumers.update(stream, consumer, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending });
      }
      return;
    } catch (error) {
      if (jsErrorCode(error) !== JS_CONSUMER_NOT_FOUND) throw this.#jetStreamFailure(`inspect consumer ${consumer} of ${stream}`, error);
    }
    try {
      await jsm.consumers.add(stream, config);
      this.#logger.info({ stream, consumer }, 'created JetStream consumer');
    } catch (error) {
      const code = jsErrorCode(error);
      if (code !== JS_CONSUMER_EXISTS && code !== JS_CONSUMER_NAME_EXISTS) {
        throw this.#jetStreamFailure(`create consumer ${consumer} of ${stream}`, error);
      }
    }
  }

  /** Recreates stream and consumer if they vanish (a NATS server that lost its store). */
  async #watchConsumer(state: DurableState, messages: ConsumerMessages): Promise<void> {
    let repairing = false;
    try {
      for await (const status of await messages.status()) {
        if (state.stopped) break;
        if (status.type !== ConsumerEvents.ConsumerNotFound && status.type !== ConsumerEvents.StreamNotFound) continue;
        if (repairing) continue;
        repairing = true;
        this.#streams.delete(state.stream);
        this.#ensureEventStream(state.subscription.contract)
          .then(() => this.#ensureConsumer(state))
          .then(
            () => this.#logger.warn({ stream: state.stream, consumer: state.consumer }, 'recreated a missing JetStream stream or consumer'),
            (error: unknown) => this.#logger.warn({ err: error, stream: state.stream }, 'could not recreate a JetStream consumer; will retry'),
          )
          .finally(() => {
            repairing = false;
          });
      }
    } catch (error) {
      if (!state.stopped) this.#logger.warn({ err: error, consumer: state.consumer }, 'JetStream consumer status stream failed');
    }
  }

  #redeliveryDelay(attempt: number): number {
    return Math.min(this.#options.redeliveryDelayMs * attempt, this.#options.maxRedeliveryDelayMs);
  }

  #onDurable(state: DurableState, msg: JsMsg): void {
    state.inFlight.begin();
    state.handling.add(msg);
    void this.#handleDurable(state, msg).finally(() => {
      state.handling.delete(msg);
      state.inFlight.end();
    });
  }

  async #handleDurable(state: DurableState, msg: JsMsg): Promise<void> {
    const { subscription, label } = state;
    const attempt = msg.info.deliveryCount;
    const { version, metadata } = readEventHeaders(msg.headers, attempt, subscription.contract);
    const invalid = (message: string): KeelError =>
      new KeelError(KeelErrorCode.INVALID_EVENT, `Event ${label}: ${message}`, { correlationId: metadata.correlationId });
    let payload: unknown;
    try {
      if (!sameMajor(version, subscription.version)) {
        throw invalid(
          `published with contract version ${String(version)}, but module "${subscription.subscriber}" was built against ${subscription.version}; the major versions differ.`,
        );
      }
      try {
        payload = decodeJson(msg.data);
      } catch {
        throw invalid('the body is not valid UTF-8 JSON.');
      }
    } catch (error) {
      await this.#giveUp(state, msg, undefined, metadata, error);
      return;
    }
    if (attempt > subscription.maxAttempts) {
      // The previous holder died during the last attempt: do not run the handler again.
      await this.#giveUp(
        state,
        msg,
        payload,
        { ...metadata, attempt: subscription.maxAttempts },
        new KeelError(KeelErrorCode.INTERNAL, `Event ${label} was delivered ${attempt - 1} times without an acknowledgement.`),
      );
      return;
    }
    try {
      await subscription.handle(payload, metadata);
    } catch (error) {
      if (isKeelError(error, KeelErrorCode.INVALID_EVENT) || attempt >= subscription.maxAttempts) {
        await this.#giveUp(state, msg, payload, metadata, error);
      } else {
        msg.nak(this.#redeliveryDelay(attempt));
      }
      return;
    }
    msg.ack();
  }

  /** Dead-letters a durable event: tells the kernel, stores it on the dead-letter stream, terminates it. */
  async #giveUp(state: DurableState, msg: JsMsg, payload: unknown, metadata: EventMetadata, error: unknown): Promise<void> {
    const { subscription } = state;
    try {
      subscription.deadLetter(payload, metadata, error);
    } catch (failure) {
      this.#logger.warn({ err: failure, event: state.label }, 'dead-letter hook failed');
    }
    const letterHeaders = natsHeaders();
    if (msg.headers !== undefined) {
      for (const [key, values] of msg.headers) {
        if (key === Header.MESSAGE_ID) continue;
        for (const value of values) letterHeaders.append(key, value);
      }
    }
    letterHeaders.set(Header.SUBSCRIBER, subscription.subscriber);
    letterHeaders.set(Header.ATTEMPTS, String(metadata.attempt));
    const failure = isKeelError(error) ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
    letterHeaders.set(Header.FAILURE, headerValue(failure));
    try {
      await this.#ensureDeadLetterStream();
      const js = await this.#jetstream();
      await js.publish(this.#subjects.deadLetter(subscription.subscriber, subscription.contract, subscription.event), msg.data, {
        headers: letterHeaders,
        timeout: this.#options.jetStreamTimeoutMs,
      });
    } catch (publishError) {
      this.#logger.error(
        { err: publishError, event: state.label, eventId: metadata.id, subscriber: subscription.subscriber },
        'could not store a dead letter on JetStream; the event is only in the logs now',
      );
    }
    msg.term();
  }

  // -------------------------------------------------------------------------------------------
  // Shutdown

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    await Promise.allSettled([...this.#registrations].map((registration) => registration.stop()));
    if (this.#pending.size > 0) {
      const settled = new Promise<void>((resolve) => {
        this.#allPendingSettled = resolve;
      });
      await within(settled, this.#options.drainTimeoutMs);
    }
    for (const call of [...this.#pending.values()]) {
      this.#settle(call);
      call.reject(
        new KeelError(
          KeelErrorCode.INTERRUPTED,
          `${call.address.contract}.${call.address.operation}: the NATS transport closed before an answer arrived; its outcome is unknown ` +
            '(retry only idempotent operations).',
          { correlationId: call.context.correlationId },
        ),
      );
    }
    this.#deadlines.clear();
    if (this.#nc.isClosed()) return;
    if (this.#connected && !this.#nc.isDraining()) {
      const drained = this.#nc.drain().catch(() => undefined);
      if (await within(drained, this.#options.drainTimeoutMs)) {
        this.#logger.info({}, 'NATS connection drained and closed');
        return;
      }
    }
    this.#replies?.unsubscribe();
    await this.#nc.close().catch(() => undefined);
    this.#logger.info({}, 'NATS connection closed');
  }
}
