/**
 * The in-process transport. Calls go straight to the served module's dispatcher; deadlines are
 * enforced with one shared timer; events are delivered asynchronously, once per subscribing
 * module (balanced across its instances), with durable events retried in memory and kept, in a
 * bounded backlog, for a subscribing module none of whose instances runs at the moment.
 */
import { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
import { KeelError, KeelErrorCode, isKeelError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import {
  Fanout,
  PendingAnswer,
  RemoteFailure,
  cancelledError,
  noRespondersError,
  timeoutError,
  type EventMetadata,
  type EventSubscription,
  type OperationAddress,
  type PublishedEvent,
  type Registration,
  type ServedModule,
  type Transport,
  type TransportCallOptions,
  type TransportStatus,
} from './transport.js';
import type { CallContext } from './context.js';

/**
 * Options of {@link createLocalTransport}.
 *
 * @example
 * ```ts
 * const options: LocalTransportOptions = { logger: createLogger({ level: 'warn' }), redeliveryDelayMs: 10, durableBacklogLimit: 1_000 };
 * const bus = createLocalTransport(options);
 * ```
 */
export interface LocalTransportOptions {
  /** Where dropped events are reported. */
  readonly logger?: Logger;
  /** Delay before redelivering a failed durable event, multiplied by the attempt number (default 50 ms). */
  readonly redeliveryDelayMs?: number;
  /**
   * Durable events kept, per subscribing module and event, while that module has subscribed
   * before but none of its instances runs (default 10 000). They are delivered when an instance
   * subscribes again. Beyond the limit the oldest are dropped, and an error names the module,
   * the event and how many were dropped. The backlog lives in memory: it is gone when the process
   * ends or the transport closes. `0` keeps none.
   */
  readonly durableBacklogLimit?: number;
}

/**
 * Defaults of {@link LocalTransportOptions}.
 *
 * @example
 * ```ts
 * const bus = createLocalTransport({ redeliveryDelayMs: DEFAULT_LOCAL_TRANSPORT_OPTIONS.redeliveryDelayMs / 5 });
 * ```
 */
export const DEFAULT_LOCAL_TRANSPORT_OPTIONS = {
  redeliveryDelayMs: 50,
  durableBacklogLimit: 10_000,
} as const satisfies Partial<LocalTransportOptions>;

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
export function createLocalTransport(options: LocalTransportOptions = {}): Transport {
  const resolved = { ...DEFAULT_LOCAL_TRANSPORT_OPTIONS, ...options } satisfies LocalTransportOptions;
  if (!Number.isSafeInteger(resolved.durableBacklogLimit) || resolved.durableBacklogLimit < 0) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `Local transport: \`durableBacklogLimit\` must be a whole number of events, 0 or more, got ${String(resolved.durableBacklogLimit)}.`,
    );
  }
  return new LocalTransport(resolved);
}

function identity<T>(value: T): T {
  return value;
}

function asRemoteFailure(error: unknown): RemoteFailure {
  return error instanceof RemoteFailure
    ? error
    : new RemoteFailure({ type: 'keel', code: 'INTERNAL', message: `in-process call failed: ${String(error)}` });
}

/**
 * One asynchronous in-process call waiting for its handler. A class rather than closures: the
 * hot path allocates one object per call and no functions.
 */
class PendingCall implements DeadlineEntry {
  readonly deadline: number;
  settled = false;
  resolve: (value: unknown) => void = identity;
  reject: (error: unknown) => void = identity;
  onAbort: (() => void) | undefined;

  constructor(
    readonly deadlines: DeadlineScheduler,
    readonly server: Server,
    readonly answer: PendingAnswer,
    readonly address: OperationAddress,
    readonly context: CallContext,
    readonly signal: AbortSignal | undefined,
    readonly rebuild: (error: unknown) => unknown,
  ) {
    this.deadline = context.deadline;
  }

  expire(): void {
    if (this.#settle(false)) this.reject(this.rebuild(timeoutError(this.address, this.context)));
  }

  abort(): void {
    if (this.#settle(false)) this.reject(this.rebuild(cancelledError(this.address, this.context, this.signal?.reason)));
  }

  succeed(value: unknown): void {
    this.server.done();
    if (!this.#settle(true)) return;
    let output: unknown;
    try {
      output = this.answer.finish(value);
    } catch (error) {
      this.reject(this.rebuild(error));
      return;
    }
    this.resolve(output);
  }

  failWith(error: unknown): void {
    this.server.done();
    if (this.#settle(true)) this.reject(this.rebuild(this.answer.fail(error)));
  }

  #settle(fromHandler: boolean): boolean {
    if (this.settled) return false;
    this.settled = true;
    if (fromHandler) this.deadlines.delete(this);
    if (this.onAbort) this.signal?.removeEventListener('abort', this.onAbort);
    return true;
  }
}

/** Counts work in flight; resolves every waiter when it drops to zero. */
class InFlight {
  inFlight = 0;
  #idle: (() => void)[] = [];

  done(): void {
    this.inFlight -= 1;
    if (this.inFlight === 0 && this.#idle.length > 0) {
      const waiters = this.#idle;
      this.#idle = [];
      for (const waiter of waiters) waiter();
    }
  }

  whenIdle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }
}

class Server extends InFlight {
  constructor(readonly module: ServedModule) {
    super();
  }
}

class Subscriber extends InFlight {
  stopped = false;
  constructor(readonly subscription: EventSubscription) {
    super();
  }
}

/** A durable event waiting for its subscribing module to run again, and the attempt it will be. */
interface Pending {
  readonly event: PublishedEvent;
  readonly attempt: number;
}

/** The instances of one subscribing module for one event. */
interface Group {
  readonly subscriber: string;
  members: Subscriber[];
  next: number;
  /** Durable events that arrived while no member ran, oldest first. */
  backlog: Pending[];
  /** Backlogged events dropped since the backlog last emptied, because it was full. */
  dropped: number;
}

class LocalTransport implements Transport {
  readonly name = 'local';
  readonly inProcess = true;
  readonly #servers = new Map<string, { list: Server[]; next: number }>();
  readonly #groups = new Map<string, Map<string, Group>>();
  readonly #deadlines = new DeadlineScheduler();
  readonly #retries = new Set<NodeJS.Timeout>();
  readonly #logger: Logger;
  readonly #redeliveryDelayMs: number;
  readonly #durableBacklogLimit: number;

  constructor(options: LocalTransportOptions & { readonly redeliveryDelayMs: number; readonly durableBacklogLimit: number }) {
    this.#logger = options.logger ?? silentLogger;
    this.#redeliveryDelayMs = options.redeliveryDelayMs;
    this.#durableBacklogLimit = options.durableBacklogLimit;
  }

  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown> {
    const rebuild = options?.rebuildError ?? identity;
    const servers = this.#servers.get(address.contract);
    if (servers === undefined || servers.list.length === 0) {
      return Promise.reject(rebuild(noRespondersError(address, context, 'in this process')));
    }
    const server = servers.list[servers.next++ % servers.list.length] as Server;
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(rebuild(cancelledError(address, context, signal.reason)));
    let answer: unknown;
    try {
      answer = server.module.invoke(address, input, context, true);
    } catch (error) {
      return Promise.reject(rebuild(error));
    }
    if (answer instanceof PendingAnswer) return this.#await(server, answer, address, context, signal, rebuild);
    if (answer instanceof Promise) {
      return this.#await(server, new PendingAnswer(answer, identity, asRemoteFailure), address, context, signal, rebuild);
    }
    // A synchronous handler: it already finished, so only a blown deadline can change the outcome.
    if (Date.now() > context.deadline) return Promise.reject(rebuild(timeoutError(address, context)));
    return Promise.resolve(answer);
  }

  #await(
    server: Server,
    answer: PendingAnswer,
    address: OperationAddress,
    context: CallContext,
    signal: AbortSignal | undefined,
    rebuild: (error: unknown) => unknown,
  ): Promise<unknown> {
    server.inFlight += 1;
    const call = new PendingCall(this.#deadlines, server, answer, address, context, signal, rebuild);
    const promise = new Promise<unknown>((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    this.#deadlines.add(call);
    if (signal) {
      call.onAbort = () => call.abort();
      signal.addEventListener('abort', call.onAbort, { once: true });
    }
    answer.promise.then(
      (value) => call.succeed(value),
      (error: unknown) => call.failWith(error),
    );
    return promise;
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
        await server.whenIdle();
      },
    };
  }

  publish(event: PublishedEvent): Promise<void> {
    const groups = this.#groups.get(`${event.contract}.${event.event}`);
    if (groups !== undefined) {
      for (const group of groups.values()) {
        if (group.members.length === 0) {
          if (event.delivery === 'durable') this.#keep(group, event, 1);
          continue;
        }
        const first = group.members[0] as Subscriber;
        if (first.subscription.fanout === Fanout.EVERY_INSTANCE) {
          for (const member of group.members) this.#schedule(member, event, 1);
        } else {
          this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, 1);
        }
      }
    }
    return Promise.resolve();
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const key = `${subscription.contract}.${subscription.event}`;
    let groups = this.#groups.get(key);
    if (groups === undefined) {
      groups = new Map();
      this.#groups.set(key, groups);
    }
    let group = groups.get(subscription.subscriber);
    if (group === undefined) {
      group = { subscriber: subscription.subscriber, members: [], next: 0, backlog: [], dropped: 0 };
      groups.set(subscription.subscriber, group);
    }
    const member = new Subscriber(subscription);
    group.members.push(member);
    const owner = group;
    if (group.backlog.length > 0 || group.dropped > 0) this.#deliverBacklog(key, group);
    return {
      stop: async () => {
        member.stopped = true;
        owner.members = owner.members.filter((candidate) => candidate !== member);
        await member.whenIdle();
      },
    };
  }

  status(): TransportStatus {
    return { name: this.name, ready: true };
  }

  async close(): Promise<void> {
    for (const timer of this.#retries) clearTimeout(timer);
    this.#retries.clear();
    this.#deadlines.clear();
    for (const [key, groups] of this.#groups) {
      for (const group of groups.values()) {
        if (group.backlog.length + group.dropped === 0) continue;
        this.#logger.warn(
          { event: key, subscriber: group.subscriber, lost: group.backlog.length + group.dropped },
          `durable events lost: module "${group.subscriber}" did not run again before the transport closed`,
        );
        group.backlog = [];
        group.dropped = 0;
      }
    }
  }

  /** Keeps a durable event for a group that has no running member; drops the oldest when full. */
  #keep(group: Group, event: PublishedEvent, attempt: number): void {
    group.backlog.push({ event, attempt });
    if (group.backlog.length <= this.#durableBacklogLimit) return;
    group.backlog.shift();
    group.dropped += 1;
    // Once per outage, so that a long one does not log once per event; the total is logged on delivery.
    if (group.dropped === 1) this.#reportDropped(group, event);
  }

  #reportDropped(group: Group, event: PublishedEvent): void {
    this.#logger.error(
      { event: `${event.contract}.${event.event}`, subscriber: group.subscriber, dropped: group.dropped, limit: this.#durableBacklogLimit },
      `durable events dropped: module "${group.subscriber}" is not running and its backlog of ${this.#durableBacklogLimit} ` +
        'events in this process is full; the oldest are dropped first',
    );
  }

  /** Hands a group's backlog, in publishing order, to the members it has again. */
  #deliverBacklog(key: string, group: Group): void {
    if (group.dropped > 0) {
      this.#logger.error(
        { event: key, subscriber: group.subscriber, dropped: group.dropped, delivered: group.backlog.length },
        `module "${group.subscriber}" runs again; ${group.dropped} durable events were dropped while it was not running`,
      );
      group.dropped = 0;
    }
    const backlog = group.backlog;
    group.backlog = [];
    for (const { event, attempt } of backlog) {
      this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, attempt);
    }
  }

  #schedule(member: Subscriber, event: PublishedEvent, attempt: number): void {
    member.inFlight += 1;
    setImmediate(() => {
      void this.#deliver(member, event, attempt);
    });
  }

  async #deliver(member: Subscriber, event: PublishedEvent, attempt: number): Promise<void> {
    const subscription = member.subscription;
    const metadata: EventMetadata = { ...event.metadata, attempt };
    try {
      await subscription.handle(event.payload, metadata);
    } catch (error) {
      if (event.delivery === 'durable') this.#redeliver(subscription, event, attempt, error);
    } finally {
      member.done();
    }
  }

  #redeliver(subscription: EventSubscription, event: PublishedEvent, attempt: number, error: unknown): void {
    const metadata: EventMetadata = { ...event.metadata, attempt };
    if (isKeelError(error, KeelErrorCode.INVALID_EVENT) || attempt >= subscription.maxAttempts) {
      subscription.deadLetter(event.payload, metadata, error);
      return;
    }
    const timer = setTimeout(() => {
      this.#retries.delete(timer);
      const group = this.#groups.get(`${event.contract}.${event.event}`)?.get(subscription.subscriber) as Group;
      if (group.members.length === 0) {
        this.#keep(group, event, attempt + 1);
        this.#logger.debug(
          { event: `${event.contract}.${event.event}`, subscriber: subscription.subscriber, attempt: attempt + 1 },
          'durable event kept for its retry: no instance of the subscribing module runs',
        );
        return;
      }
      this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, attempt + 1);
    }, this.#redeliveryDelayMs * attempt);
    this.#retries.add(timer);
  }
}
