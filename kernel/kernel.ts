/**
 * The kernel: one per process. Orchestrates the application: the dependency graph and the
 * `contracts` option checked once (graph.ts), hosted modules started in dependency order and
 * stopped in reverse (each in its ModuleHost, module-host.ts), and one client per caller and
 * contract bound to the right transport (kernel-clients.ts).
 */
import 'reflect-metadata';
import { Container } from 'inversify';
import type { AnyContract } from './contract.js';
import type { CircuitStatus } from './circuit-breaker.js';
import type { Client } from './client.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { checkGraph, hostedModules, remoteContracts } from './graph.js';
import { KernelClients, type KernelClientOptions } from './kernel-clients.js';
import { DEFAULT_KERNEL_OPTIONS, bulkheadLimitsOf, type KernelOptions } from './kernel-options.js';
import { parseKernelOptions } from './kernel-option-checks.js';
import type { BulkheadStatus } from './bulkhead.js';
import type { DatabaseStatus } from './database-health.js';
import { LifecycleState, stoppedWhileStarting } from './lifecycle.js';
import { createLocalTransport } from './local.js';
import { createLogger, type Logger } from './logger.js';
import type { AnyModule } from './module.js';
import { ModuleHost } from './module-host.js';
import { within } from './in-flight.js';
import { leftOf } from './stop-bounds.js';
import { detached } from './otel-context.js';
import type { KernelObserver } from './observer.js';
import type { PrincipalSchema } from './principal.js';
import type { Transport, TransportStatus } from './transport.js';

export { DEFAULT_KERNEL_OPTIONS, LifecycleState, type KernelClientOptions, type KernelOptions };
export type { Topology } from './kernel-options.js';

/**
 * What {@link Kernel.status} reports.
 *
 * @example
 * ```ts
 * const status: KernelStatus = kernel.status();
 * console.log(status.state, status.ready, status.remote); // 'started' true ['payments'] (payments runs elsewhere, and a module here calls it)
 * for (const module of status.modules) console.log(`${module.name} ${module.version}: ${module.state}`);
 * for (const transport of status.transports) console.log(transport.name, transport.ready ? 'ready' : transport.detail);
 * for (const bulkhead of status.bulkheads) console.log(`${bulkhead.module}: ${bulkhead.running} running, ${bulkhead.queued} queued`);
 * for (const database of status.databases) console.log(`${database.module}'s database: ${database.state} since ${database.since}`);
 * ```
 */
export interface KernelStatus {
  readonly state: LifecycleState;
  readonly ready: boolean;
  readonly modules: readonly { readonly name: string; readonly version: string; readonly state: LifecycleState }[];
  /**
   * Modules hosted elsewhere that this process reaches through the transport: those its hosted
   * modules depend on or subscribe to, and those it has made a client of
   * ({@link Kernel.client}, as a gateway or a script does), in manifest order, then in the
   * order of the `contracts` option. A module of the manifest this process never calls is not
   * listed.
   */
  readonly remote: readonly string[];
  readonly transports: readonly TransportStatus[];
  /** The circuit breaker of each dependency this process has called. */
  readonly circuits: readonly CircuitStatus[];
  /**
   * The bulkhead of each hosted module that has one (the `bulkhead` option): its limits, and
   * the calls running, queued and refused so far. Read at scrape time by the gateway's
   * `/metrics` (`keel_bulkhead_running`, `keel_bulkhead_queued`, `keel_bulkhead_rejected_total`).
   */
  readonly bulkheads: readonly BulkheadStatus[];
  /**
   * The database of each hosted module that owns data, from the moment its migrations ran (a
   * module whose start failed after them stays listed): `up` or `down` by the last of the checks
   * run every `databaseCheckMs`. The gateway's `/readyz` body
   * lists them, and `/metrics` reads them at scrape time (`keel_database_up`,
   * `keel_database_down_total`). A database `down` does not make {@link Kernel.ready} false.
   */
  readonly databases: readonly DatabaseStatus[];
}

/**
 * A running application, or the part of it this process hosts.
 *
 * @example
 * ```ts
 * const kernel: Kernel = createKernel({ modules });
 * await kernel.start();
 * console.log(kernel.hosted, kernel.ready()); // every module of the manifest, dependencies first; true
 * const { products } = await kernel.client(catalog).listProducts({});
 * await kernel.stop();
 * ```
 */
export interface Kernel {
  /** Names of the modules hosted here, in start order. */
  readonly hosted: readonly string[];
  /**
   * The deadline of calls whose operation and caller set none: the `defaultTimeoutMs` option
   * (default 10 000 ms). The HTTP gateway caps a client's timeout header with it.
   */
  readonly defaultTimeoutMs: number;
  /**
   * The application's principal schema (the `principal` option), `undefined` when none was
   * given: a call or event carrying a principal is then refused. The HTTP gateway refuses an
   * `authenticate` hook without it.
   */
  readonly principalSchema?: PrincipalSchema | undefined;
  /** Current lifecycle state. */
  readonly state: LifecycleState;
  /** Starts hosted modules in dependency order; each serves only once started. */
  start(): Promise<void>;
  /**
   * Stops taking work, lets work in flight finish, stops modules in reverse order. Idempotent.
   * Waits at most `drainTimeoutMs` for work in flight, shared by all the modules hosted here,
   * and 5 s more (or `drainTimeoutMs`, when shorter) for their stop hooks and outbox relays,
   * however many modules there are: the `drainTimeoutMs` option says what else it waits for.
   * Called during {@link Kernel.start}, its clock starts all the same: the modules not started yet
   * never start, the one starting gives up a wait for its migration lock at once and gets what
   * is left of `drainTimeoutMs` for the rest of its start, and `start()` rejects with `INVALID_STATE`
   * (once that step ends: a start hook that never ends leaves `start()` pending after `stop()` resolved).
   */
  stop(): Promise<void>;
  /** True when every hosted module is started and every transport is connected. */
  ready(): boolean;
  /** Detailed state, for health endpoints and the CLI. */
  status(): KernelStatus;
  /**
   * Registers an observer of calls made, calls served and events handled (metrics, tracing).
   * Returns a function that removes it.
   */
  observe(observer: KernelObserver): () => void;
  /**
   * A client of a contract of the manifest or of the `contracts` option, for callers outside
   * any module (a gateway, a script, a test). Made once per contract object and caller and kept:
   * ask again rather than holding on to it. Another object of the same contract name (another
   * version, other call options) gets a client of its own, built from that object.
   */
  client<C extends AnyContract>(contract: C, options?: KernelClientOptions): Client<C>;
  /** The manifest's modules. */
  readonly modules: readonly AnyModule[];
}

/**
 * Creates a kernel for an application manifest and a topology. Checks the dependency graph at
 * once: an unknown dependency, a duplicate module, a cycle or a module that cannot be reached
 * is refused with a {@link KeelError} (`INVALID_TOPOLOGY`) naming the problem. Its options are
 * checked once, first: a wrong value or an unknown key is `INVALID_CONFIG` naming the field and
 * what it takes, and an option given as `undefined` takes its default.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { modules } from './modules/index.js';
 * import { orders } from './modules/orders/contract.js';
 *
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * const shop = kernel.client(orders);
 * await shop.placeOrder({ customerId: 'c-42', lines: [{ sku: 'KB-001', quantity: 1 }], card: { token: 'tok_visa' } });
 * await kernel.stop();
 * ```
 *
 * @example
 * A script that calls a shop running elsewhere, knowing only its contracts: no module code,
 * no manifest, no database. Clients keep their deadlines, retries, declared errors and tracing.
 * ```ts
 * import { createKernel } from 'keel';
 * import { createNatsTransport } from 'keel/nats';
 * import { orders } from './modules/orders/contract.js';
 *
 * const transport = await createNatsTransport({ servers: 'nats://127.0.0.1:4222' });
 * const kernel = createKernel({ contracts: [orders], topology: { transport } });
 * const order = await kernel.client(orders).getOrder({ orderId: 'o-1' });
 * await kernel.stop();
 * await transport.close();
 * ```
 */
export function createKernel(options: KernelOptions): Kernel {
  return new KernelImpl(parseKernelOptions(options, { modules: [], contracts: [], ...DEFAULT_KERNEL_OPTIONS }));
}

type ResolvedOptions = KernelOptions & { readonly modules: readonly AnyModule[]; readonly contracts: readonly AnyContract[] } & { readonly [K in Exclude<keyof typeof DEFAULT_KERNEL_OPTIONS, 'bulkhead'>]: number };

/**
 * Orchestration: the graph checked once, hosted modules started in dependency order and stopped
 * in reverse, one client per caller and contract bound to the right transport. Each hosted
 * module lives in its {@link ModuleHost}, and the clients in {@link KernelClients}.
 */
class KernelImpl implements Kernel {
  readonly hosted: readonly string[];
  readonly modules: readonly AnyModule[];
  #state: LifecycleState = LifecycleState.CREATED;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #local: Transport;
  readonly #remote: Transport | undefined;
  readonly #hosted: ModuleHost[];
  readonly #clients: KernelClients;
  readonly #observers: KernelObserver[] = [];
  #stopping: Promise<void> | undefined;
  #starting: Promise<void> | undefined;
  /** Aborted by a stop during the start: the module being started gives up what it waits for (kernel/migrations.ts, the lock). */
  readonly #startAborted = new AbortController();
  /** True once a stop during the start waited for it as long as it may, and went on without it. */
  #startGivenUp = false;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.modules = options.modules;
    this.#remote = options.topology?.transport;
    const hosted = hostedModules(checkGraph(options.modules), options.topology?.host, this.#remote !== undefined);
    const contracts = remoteContracts(options.modules, options.contracts, this.#remote !== undefined);
    this.#logger = options.logger ?? createLogger();
    this.#local = createLocalTransport({ logger: this.#logger });
    this.#clients = new KernelClients({
      modules: options.modules,
      hosted,
      contracts,
      local: this.#local,
      remote: this.#remote,
      logger: this.#logger,
      observers: this.#observers,
      options,
    });
    const services = {
      root: new Container(),
      local: this.#local,
      remote: this.#remote,
      logger: this.#logger,
      observers: this.#observers,
      maxDeliveryAttempts: options.maxDeliveryAttempts,
      outboxWindow: options.outboxWindow,
      inboxBatch: options.inboxBatch,
      inboxBatchMs: options.inboxBatchMs,
      eventTimeoutMs: options.eventTimeoutMs,
      drainTimeoutMs: options.drainTimeoutMs,
      databaseCheckMs: options.databaseCheckMs,
      onDeadLetter: options.onDeadLetter,
      principal: options.principal,
      bulkheadOf: (module: string) => bulkheadLimitsOf(options, module),
      circuits: () => this.#clients.circuits(),
      databaseFor: (module: string) => (typeof options.database === 'function' ? options.database(module) : options.database),
      clientFor: (contract: AnyContract, caller: string) => this.#clients.clientFor(contract, caller),
      stopped: () => this.#state === LifecycleState.STOPPED,
    };
    this.#hosted = hosted.map((module) => new ModuleHost(module, services));
    this.hosted = hosted.map((module) => module.name);
  }

  get state(): LifecycleState {
    return this.#state;
  }

  start(): Promise<void> {
    if (this.#state !== LifecycleState.CREATED) {
      return Promise.reject(
        new KeelError(KeelErrorCode.INVALID_STATE, `The kernel is ${this.#state}; a kernel starts once. Create a new one.`),
      );
    }
    // Connections, consumers and timers started here outlive the caller: they carry no request's context.
    this.#starting = detached(() => this.#startAll());
    return this.#starting;
  }

  async #startAll(): Promise<void> {
    this.#state = LifecycleState.STARTING;
    const started: ModuleHost[] = [];
    try {
      for (const host of this.#hosted) {
        if (this.#stopping !== undefined) break;
        started.push(host);
        await host.start(this.#startAborted.signal);
      }
    } catch (error) {
      // Stopped during the start: the stop stops the modules. What the stop made the start give up
      // is the stop's doing; a failure of the start's own (a start hook that threw, a migration
      // that failed) is not, and is logged: start() answers INVALID_STATE, and a caller reading
      // its code (a supervisor, a deploy) would otherwise never see what is broken.
      if (this.#stopping !== undefined) {
        if (error === this.#startAborted.signal.reason) throw error;
        // Once the stop went on without the start (closing its connection), a failure is likely its doing: module-host.ts logs the late end.
        if (!this.#startGivenUp) this.#logger.error({ err: error }, 'start failed while the kernel was stopping; the stop stops the modules already started');
        throw stoppedWhileStarting(error);
      }
      this.#logger.error({ err: error }, 'start failed; stopping the modules already started');
      const began = performance.now();
      for (const host of started.reverse()) await host.stop(began);
      // A stop called meanwhile may have outlasted its wait for this and gone on: a stopped kernel stays so.
      if (this.#state === LifecycleState.STARTING) this.#state = LifecycleState.FAILED;
      throw error;
    }
    if (this.#stopping !== undefined) throw stoppedWhileStarting();
    // Every hosted module has subscribed: only now may the relays send (module-host.ts, startRelay).
    for (const host of started) host.startRelay();
    this.#state = LifecycleState.STARTED;
    this.#logger.info({ hosted: this.hosted, transport: this.#remote?.name ?? 'local' }, 'kernel started');
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stopAll();
    return this.#stopping;
  }

  async #stopAll(): Promise<void> {
    if (this.#state === LifecycleState.CREATED) {
      this.#state = LifecycleState.STOPPED;
      return;
    }
    // One clock for every module, from now, during a start too: the whole stop waits at most
    // kernelStopBoundMs(drainTimeoutMs), however many modules this process hosts.
    const began = performance.now();
    if (this.#state === LifecycleState.STARTING) await this.#abortStart(began);
    if (this.#state === LifecycleState.FAILED) {
      this.#state = LifecycleState.STOPPED;
      return;
    }
    this.#state = LifecycleState.STOPPING;
    for (const host of [...this.#hosted].reverse()) await host.stop(began);
    await this.#local.close();
    this.#state = LifecycleState.STOPPED;
    this.#logger.info({ hosted: this.hosted }, 'kernel stopped');
  }

  /**
   * A stop during the start: modules not started yet never start, the one starting gives up a
   * wait for the migration lock at once, and what else it does (its migrations once the lock is
   * taken, its start hook, its subscriptions) gets what is left of `drainTimeoutMs`, as work in
   * flight does. Past that the stop goes on without it: it is stopped as it stands (its database
   * connection closed, which rolls its migrations back), and what its start makes later is undone.
   */
  async #abortStart(began: number): Promise<void> {
    this.#startAborted.abort(stoppedWhileStarting());
    const { drainTimeoutMs } = this.#options;
    if (await within((this.#starting as Promise<void>).catch(() => {}), leftOf(drainTimeoutMs, began))) return;
    this.#startGivenUp = true;
    const starting = this.#hosted.filter((host) => host.state === LifecycleState.STARTING).map((host) => host.module.name);
    // None: the start failed on its own and is stopping the modules it started, whose stops log their own overruns.
    if (starting.length === 0) return;
    this.#logger.error(
      { modules: starting, drainTimeoutMs },
      `module ${starting.join(', ')} still starting when drainTimeoutMs was over (the kernel was stopped during its start); stopping it anyway: ` +
        'it never serves, and what its start makes later is undone. Make its start hook end in time (bound what it waits for), or raise drainTimeoutMs',
    );
  }

  get defaultTimeoutMs(): number {
    return this.#options.defaultTimeoutMs;
  }

  get principalSchema(): PrincipalSchema | undefined {
    return this.#options.principal;
  }

  ready(): boolean {
    return (
      this.#state === LifecycleState.STARTED &&
      this.#stopping === undefined &&
      (this.#remote === undefined || this.#remote.status().ready)
    );
  }

  status(): KernelStatus {
    return {
      state: this.#state,
      ready: this.ready(),
      modules: this.#hosted.map((host) => ({
        name: host.module.name,
        version: host.module.contract.version,
        state: host.state,
      })),
      remote: this.#clients.remote(),
      transports: [this.#local.status(), ...(this.#remote ? [this.#remote.status()] : [])],
      circuits: this.#clients.circuits(),
      bulkheads: this.#hosted.flatMap((host) => (host.bulkhead === undefined ? [] : [host.bulkhead.status()])),
      databases: this.#hosted.flatMap((host) => (host.database === undefined ? [] : [host.database.status()])),
    };
  }

  observe(observer: KernelObserver): () => void {
    this.#observers.push(observer);
    return () => {
      const index = this.#observers.indexOf(observer);
      if (index >= 0) this.#observers.splice(index, 1);
    };
  }

  client<C extends AnyContract>(contract: C, options: KernelClientOptions = {}): Client<C> {
    return this.#clients.client(contract, options);
  }
}
