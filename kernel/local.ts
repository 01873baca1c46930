/**
 * The in-process transport. Calls go straight to the served module's answer pipeline, with one
 * shared deadline timer; events are delegated to {@link LocalEvents} (local-events.ts). Its
 * options, their defaults and their check are in local-options.ts.
 */
import type { Context } from '@opentelemetry/api';
import { callAbandoned } from './call-signal.js';
import { contextStorage } from './otel-context.js';
import { keelTracer } from './tracing.js';
import type { CallContext } from './context.js';
import { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
import { InFlight } from './in-flight.js';
import { LocalEvents } from './local-events.js';
import { unwatchSignal, watchSignal, type AbortableCall } from './signal-watch.js';
import { DEFAULT_LOCAL_TRANSPORT_OPTIONS, LocalTransportOptionsSchema, type LocalTransportOptions } from './local-options.js';
import { silentLogger } from './logger.js';
import { parseOptions } from './options.js';
import { cancelledError, noRespondersError, timeoutError } from './transport-failures.js';
import type {
  Answer,
  EventSubscription,
  OperationAddress,
  PublishedEvent,
  Registration,
  RemoteFailure,
  ServedModule,
  Transport,
  TransportCallOptions,
  TransportStatus,
} from './transport.js';

/**
 * The in-process transport: a {@link Transport} that can also tell when its events have settled.
 *
 * @example
 * ```ts
 * const bus = createLocalTransport();
 * await orders.client(ordersContract).place(order); // emits orders.placed, handled by shipping
 * await bus.settled();
 * expect(shipped).toHaveLength(1);
 * ```
 */
export interface LocalTransport extends Transport {
  /**
   * Resolves once no event is being delivered and no durable event waits for a retry: every
   * event published so far has been handled, or dead-lettered after its last attempt. Durable
   * events kept for a module with no running instance do not count (they wait for it to run
   * again). An event published while it waits (a handler's own, say) is waited for too, and
   * so are the events of a transaction committed meanwhile, once the module's outbox relay has
   * handed them over. Once a publish from an outbox fails (a subscribing module with no running
   * instance), that outbox's events wait for the relay's retry and are not waited for, even those
   * bound for running subscribers.
   */
  settled(): Promise<void>;
}

/**
 * Creates an in-process transport. The kernel makes one for you; create one yourself only to
 * share it between several kernels in one process (tests do, to mimic several processes).
 *
 * @example
 * ```ts
 * const bus = createLocalTransport();
 * const a = createKernel({ modules, topology: { host: ['catalog'], transport: bus } });
 * const b = createKernel({ modules, topology: { host: ['orders'], transport: bus } });
 * ```
 */
export function createLocalTransport(options: LocalTransportOptions = {}): LocalTransport {
  const given = parseOptions('createLocalTransport', LocalTransportOptionsSchema, options);
  return new LocalBus({ ...DEFAULT_LOCAL_TRANSPORT_OPTIONS, ...given });
}

/**
 * Turns a call's failure into what the caller sees: the kernel's client passes its own. It may
 * answer with a promise instead of an error, when it sends the call again (a retry): the call
 * then settles as that promise does.
 */
export type Rebuild = (error: unknown, context: CallContext, input: unknown, signal: AbortSignal | undefined) => unknown;

/** A rejected promise of what `rebuild` made of a failure, or the retry it started. */
function failed(rebuilt: unknown): Promise<unknown> {
  return rebuilt instanceof Promise ? rebuilt : Promise.reject(rebuilt);
}

function asIs(error: unknown): unknown {
  return error;
}

function ignore(): void {}

const RUNNING = 0;
const SUCCEEDED = 1;
const FAILED = 2;

/**
 * One in-process call: the {@link Answer} its served module settles. A synchronous handler
 * settles it before `handle` returns, and the call never makes a promise of its own; an
 * asynchronous one settles it later, racing the deadline and the caller's signal. A class
 * rather than closures: the hot path allocates one object per call and no functions.
 */
class LocalCall implements Answer, DeadlineEntry, AbortableCall {
  deadline: number;
  deadlineSlot = -1;
  state = RUNNING;
  outcome: unknown;
  /** Set once `handle` returned without an outcome: the call now waits for its handler. */
  server: Server | undefined;
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;
  /** The caller's context while tracing is on: a retry made of a failure starts from it (its span notes the attempt). */
  store: Context | undefined;
  /** The handler's signal, once it asked for one (`callSignal()`): aborted when the caller gives up first. */
  watcher: AbortController | undefined;
  /** Why the caller gave up on the call while its handler ran, once it did: a signal asked for later aborts at once. */
  abandoned: unknown;

  constructor(
    readonly deadlines: DeadlineScheduler,
    readonly address: OperationAddress,
    readonly context: CallContext,
    readonly input: unknown,
    readonly signal: AbortSignal | undefined,
    readonly rebuild: Rebuild,
  ) {
    this.deadline = context.deadline;
    this.store = keelTracer() === undefined ? undefined : contextStorage.getStore();
  }

  watch(controller: AbortController): void {
    if (this.abandoned === undefined) this.watcher = controller;
    else controller.abort(this.abandoned);
  }

  ok(output: unknown): void {
    this.#settle(SUCCEEDED, output, true);
  }

  fail(failure: RemoteFailure): void {
    this.#settle(FAILED, failure, true);
  }

  expire(): void {
    this.#settle(FAILED, timeoutError(this.address, this.context), false);
  }

  abort(): void {
    this.#settle(FAILED, cancelledError(this.address, this.context, this.signal?.reason), false);
    // The caller stopped waiting: the handler's signal says so, now or when it asks for it (its deadline's own timer does the rest).
    this.abandoned = callAbandoned(this.address, this.context, 'its caller gave up on the call (its signal aborted)', this.signal?.reason);
    const watcher = this.watcher;
    this.watcher = undefined;
    watcher?.abort(this.abandoned);
  }

  /** Waits for the handler: from now on, the first of answer, deadline and abort settles the call. */
  wait(server: Server): Promise<unknown> {
    this.server = server;
    server.begin();
    const promise = new Promise<unknown>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    this.deadlines.add(this);
    // One listener per signal, not per call (signal-watch.ts); a signal that the handler's
    // synchronous part aborted since callRebuilding checked it aborts the call as it joins.
    if (this.signal !== undefined) watchSignal(this.signal, this);
    return promise;
  }

  #settle(state: number, outcome: unknown, fromHandler: boolean): void {
    const server = this.server;
    if (server === undefined) {
      // Still inside handle(): a synchronous answer, read by call() when handle returns.
      if (this.state === RUNNING) {
        this.state = state;
        this.outcome = outcome;
      }
      return;
    }
    if (fromHandler) server.end();
    if (this.state !== RUNNING) return;
    this.state = state;
    if (fromHandler) this.deadlines.delete(this);
    if (this.signal !== undefined) unwatchSignal(this.signal, this);
    if (state === SUCCEEDED) {
      this.resolve(outcome);
      return;
    }
    // Settled in the callee's (or the deadline timer's) context: a retry goes from the caller's.
    const rebuilt =
      this.store === undefined
        ? this.rebuild(outcome, this.context, this.input, this.signal)
        : contextStorage.run(this.store, this.rebuild, outcome, this.context, this.input, this.signal);
    // A retry the client started: the caller's promise follows it.
    if (rebuilt instanceof Promise) this.resolve(rebuilt);
    else this.reject(rebuilt);
  }
}

/**
 * How an outbox relay publishes on `transport`: over a transport that persists what it accepts
 * (JetStream), `publish`; in this process, a durable event is confirmed only once its
 * subscribers handled it, since the in-process transport keeps nothing across a crash.
 */
export function outboxPublisher(transport: Transport): (event: PublishedEvent) => Promise<void> {
  if (transport instanceof LocalBus) {
    return (event) => (event.delivery === 'durable' ? transport.publishConfirmed(event) : transport.publish(event));
  }
  return (event) => transport.publish(event);
}

/**
 * What an outbox relay publishing on `transport` holds while a round kicked by a commit runs, so
 * that the in-process bus's `settled()` waits for the events the commit wrote; undefined for any
 * other transport (JetStream keeps its own account of what is delivered).
 */
export function outboxHold(transport: Transport): (() => () => void) | undefined {
  return transport instanceof LocalBus ? () => transport.holdSettled() : undefined;
}

/** A call into the in-process transport that rebuilds failures itself (see {@link directCaller}). */
export type DirectCall = (
  address: OperationAddress,
  input: unknown,
  context: CallContext,
  signal: AbortSignal | undefined,
  rebuild: Rebuild,
  fresh: boolean,
) => Promise<unknown>;

/**
 * The kernel's own way into its in-process transport: a call that rejects with the caller-side
 * error directly, one promise fewer per call than `transport.call(...).then(undefined, rebuild)`.
 * Undefined for any other transport, which the client then drives through the port.
 */
export function directCaller(transport: Transport): DirectCall | undefined {
  return transport instanceof LocalBus
    ? (address, input, context, signal, rebuild, fresh) => transport.callRebuilding(address, input, context, signal, rebuild, fresh)
    : undefined;
}

class Server extends InFlight {
  constructor(readonly module: ServedModule) {
    super();
  }
}

class LocalBus implements LocalTransport {
  readonly name = 'local';
  readonly inProcess = true;
  /** A durable event given back is kept at the attempt it was on (local-events.ts). */
  readonly givesBackUncounted = true;
  readonly #servers = new Map<string, { list: Server[]; next: number }>();
  readonly #deadlines = new DeadlineScheduler();
  readonly #events: LocalEvents;

  constructor(options: LocalTransportOptions & { readonly redeliveryDelayMs: number; readonly durableBacklogLimit: number }) {
    this.#events = new LocalEvents(options.logger ?? silentLogger, options.redeliveryDelayMs, options.durableBacklogLimit);
  }

  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown> {
    return this.callRebuilding(address, input, context, options?.signal, asIs, false);
  }

  /**
   * {@link call}, with failures rebuilt by `rebuild` before they reject: the kernel's client
   * passes its own, which saves a promise per call (see {@link directCaller}). `fresh`: the client
   * compared the deadline with the clock just before, after validating the input (see
   * {@link ServedModule.handle}).
   */
  callRebuilding(
    address: OperationAddress,
    input: unknown,
    context: CallContext,
    signal: AbortSignal | undefined,
    rebuild: Rebuild,
    fresh: boolean,
  ): Promise<unknown> {
    const servers = this.#servers.get(address.contract);
    if (servers === undefined || servers.list.length === 0) {
      return failed(rebuild(noRespondersError(address, context, 'in this process'), context, input, signal));
    }
    const server = servers.list[servers.next++ % servers.list.length] as Server;
    if (signal?.aborted) return failed(rebuild(cancelledError(address, context, signal.reason), context, input, signal));
    // A new object per call, a synchronous handler's too: V8 allocates a young object for a few
    // instructions, where reusing one that has aged into the old generation made every store of a
    // young value into it (the context, the outcome) a write barrier's slow path (about 300
    // instructions a call; docs/performance.md, "Fifteenth round").
    const call = new LocalCall(this.#deadlines, address, context, input, signal, rebuild);
    server.module.handle(address, input, context, true, call, fresh);
    const { state, outcome } = call;
    if (state === RUNNING) return call.wait(server);
    if (state === FAILED) return failed(rebuild(outcome, context, input, signal));
    // A synchronous handler: it already finished, so only a blown deadline can change the outcome.
    if (Date.now() > context.deadline) return failed(rebuild(timeoutError(address, context), context, input, signal));
    return Promise.resolve(outcome);
  }

  async serve(module: ServedModule): Promise<Registration> {
    const server = new Server(module);
    let servers = this.#servers.get(module.contract.name);
    if (servers === undefined) {
      servers = { list: [], next: 0 };
      this.#servers.set(module.contract.name, servers);
    }
    servers.list.push(server);
    const entry = servers;
    return {
      stop: async () => {
        entry.list = entry.list.filter((candidate) => candidate !== server);
        await server.idle();
      },
    };
  }

  publish(event: PublishedEvent): Promise<void> {
    return this.#events.publish(event);
  }

  subscribe(subscription: EventSubscription): Promise<Registration> {
    return this.#events.subscribe(subscription);
  }

  /** {@link LocalEvents.publishConfirmed}: for the outbox relay (see {@link outboxPublisher}). */
  publishConfirmed(event: PublishedEvent): Promise<void> {
    return this.#events.publishConfirmed(event);
  }

  settled(): Promise<void> {
    return this.#events.settled();
  }

  /** {@link LocalEvents.hold}: for the outbox relay (see {@link outboxHold}). */
  holdSettled(): () => void {
    return this.#events.hold();
  }

  status(): TransportStatus {
    return { name: this.name, ready: true };
  }

  async close(): Promise<void> {
    this.#deadlines.clear();
    this.#events.close();
  }

}
