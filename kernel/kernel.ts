/**
 * The kernel: checks the application's dependency graph, builds one inversify container per
 * hosted module, binds each dependency's client to the right transport, starts hosted modules
 * in dependency order and stops them in reverse, draining work in flight.
 */
import 'reflect-metadata';
import { Container, type ServiceIdentifier } from 'inversify';
import { isContract, majorOf, type AnyContract, type AnyEvent } from './contract.js';
import { createClient, DEFAULT_TIMEOUT_MS, type Client } from './client.js';
import { currentContext, newCorrelationId } from './context.js';
import { KeelError, KeelErrorCode, validationError } from './errors.js';
import { createLocalTransport } from './local.js';
import { parseKernelOptions } from './kernel-options.js';
import { within } from './in-flight.js';
import { createLogger, type Logger } from './logger.js';
import type { AnyModule, EventHandler, EventHandlerFunction, EventHandlerOptions, ModuleInstance, OperationHandler } from './module.js';
import { createEventSubscription, createServedModule, type DeadLetter } from './served.js';
import type { KernelObserver } from './observer.js';
import { Fanout, type Registration, type Transport, type TransportStatus } from './transport.js';
import type { AnyOperation } from './contract.js';

/**
 * Which modules this process hosts, and how it reaches the others.
 *
 * @example
 * ```ts
 * import { createNatsTransport } from 'keel/nats';
 *
 * const topology: Topology = { host: ['orders', 'payments'], transport: await createNatsTransport({ servers: 'nats://127.0.0.1:4222' }) };
 * const kernel = createKernel({ modules, topology });
 * ```
 */
export interface Topology {
  /** Names of the modules to host here. Default: every module of the manifest. */
  readonly host?: readonly string[];
  /**
   * Transport to modules hosted elsewhere (for example NATS). Hosted modules are also served on
   * it, and every event travels through it. Without one, everything stays in this process.
   * The kernel does not close it: close it after `kernel.stop()`.
   */
  readonly transport?: Transport;
}

/**
 * What {@link createKernel} takes.
 *
 * @example
 * ```ts
 * const options: KernelOptions = {
 *   modules,
 *   defaultTimeoutMs: 5_000,
 *   maxDeliveryAttempts: 3,
 *   logger: createLogger({ level: 'warn' }),
 *   onDeadLetter: (letter) => console.error(`${letter.subscriber} gave up on ${letter.contract}.${letter.event}`),
 * };
 * const kernel = createKernel(options);
 * ```
 */
export interface KernelOptions {
  /** The application manifest: every module of the application, hosted here or not. */
  readonly modules: readonly AnyModule[];
  readonly topology?: Topology;
  /** Deadline of calls whose operation and caller set none (default 10 000 ms). */
  readonly defaultTimeoutMs?: number;
  /** Time an event handler gets before its context's deadline (default 30 000 ms). */
  readonly eventTimeoutMs?: number;
  /** Deliveries of a durable event before dead-lettering, unless a handler says otherwise (default 5). */
  readonly maxDeliveryAttempts?: number;
  /** Defaults to pino on stdout, level from `KEEL_LOG_LEVEL`. */
  readonly logger?: Logger;
  /** Called for every durable event given up on. */
  readonly onDeadLetter?: (deadLetter: DeadLetter) => void;
  /**
   * How long stop waits for one module's work in flight before stopping it anyway
   * (default 30 000 ms). Over NATS the transport's own drain timeout applies as well.
   */
  readonly drainTimeoutMs?: number;
}

/**
 * Defaults of {@link KernelOptions}.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, eventTimeoutMs: 2 * DEFAULT_KERNEL_OPTIONS.eventTimeoutMs });
 * ```
 */
export const DEFAULT_KERNEL_OPTIONS = {
  defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
  eventTimeoutMs: 30_000,
  maxDeliveryAttempts: 5,
  drainTimeoutMs: 30_000,
} as const satisfies Partial<KernelOptions>;

/**
 * Lifecycle state of a kernel or of one hosted module.
 *
 * @example
 * ```ts
 * const notStarted = kernel.status().modules.filter((module) => module.state !== LifecycleState.STARTED);
 * if (kernel.state === LifecycleState.STARTED) await kernel.stop();
 * ```
 */
export const LifecycleState = {
  CREATED: 'created',
  STARTING: 'starting',
  STARTED: 'started',
  STOPPING: 'stopping',
  STOPPED: 'stopped',
  FAILED: 'failed',
} as const;

/** A {@link LifecycleState} value. */
export type LifecycleState = (typeof LifecycleState)[keyof typeof LifecycleState];

/**
 * What {@link Kernel.status} reports.
 *
 * @example
 * ```ts
 * const status: KernelStatus = kernel.status();
 * console.log(status.state, status.ready, status.remote); // 'started' true ['payments'] (payments runs elsewhere)
 * for (const module of status.modules) console.log(`${module.name} ${module.version}: ${module.state}`);
 * for (const transport of status.transports) console.log(transport.name, transport.ready ? 'ready' : transport.detail);
 * ```
 */
export interface KernelStatus {
  readonly state: LifecycleState;
  readonly ready: boolean;
  readonly modules: readonly { readonly name: string; readonly version: string; readonly state: LifecycleState }[];
  /** Modules of the manifest reached through the transport. */
  readonly remote: readonly string[];
  readonly transports: readonly TransportStatus[];
}

/**
 * Options of {@link Kernel.client}.
 *
 * @example
 * ```ts
 * const shop = kernel.client(orders, { caller: 'nightly-report' }); // handlers see context.caller === 'nightly-report'
 * ```
 */
export interface KernelClientOptions {
  /** Caller name carried in the call context (default `external`). */
  readonly caller?: string;
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
  /** Current lifecycle state. */
  readonly state: LifecycleState;
  /** Starts hosted modules in dependency order; each serves only once started. */
  start(): Promise<void>;
  /** Stops taking work, lets work in flight finish, stops modules in reverse order. Idempotent. */
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
  /** A client of any contract in the manifest, for callers outside any module. */
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
 */
export function createKernel(options: KernelOptions): Kernel {
  return new KernelImpl(parseKernelOptions(options, DEFAULT_KERNEL_OPTIONS));
}

type ResolvedOptions = KernelOptions & { readonly [K in keyof typeof DEFAULT_KERNEL_OPTIONS]: number };

interface HostedModule {
  readonly module: AnyModule;
  state: LifecycleState;
  instance: ModuleInstance<AnyContract, readonly AnyContract[]> | undefined;
  container: Container | undefined;
  registrations: Registration[];
  /** True once the start hook (if any) completed: only then does the stop hook run. */
  startHookRan: boolean;
}

function topologyError(message: string): KeelError {
  return new KeelError(KeelErrorCode.INVALID_TOPOLOGY, message);
}

/** Checks the manifest; returns every module in dependency order (dependencies first). */
function checkGraph(modules: readonly AnyModule[]): AnyModule[] {
  const byName = new Map<string, AnyModule>();
  for (const module of modules) {
    if (module === undefined || module.kind !== 'module') {
      throw topologyError('Every entry of `modules` must be made with defineModule() (an import cycle can leave one undefined).');
    }
    if (byName.has(module.name)) {
      throw topologyError(`Module "${module.name}" appears twice in the manifest; list each module once.`);
    }
    byName.set(module.name, module);
  }
  const known = () => [...byName.keys()].join(', ');
  for (const module of modules) {
    const references: [string, AnyContract][] = [
      ...module.dependsOn.map((contract: AnyContract): [string, AnyContract] => ['depends on', contract]),
      ...module.subscribesTo.map((contract: AnyContract): [string, AnyContract] => ['subscribes to', contract]),
    ];
    for (const [relation, contract] of references) {
      const provider = byName.get(contract.name);
      if (provider === undefined) {
        throw topologyError(
          `Module "${module.name}" ${relation} "${contract.name}", but no module in the manifest implements that contract ` +
            `(manifest: ${known()}). Add the module to the manifest or remove the dependency.`,
        );
      }
      if (majorOf(provider.contract.version) !== majorOf(contract.version)) {
        throw topologyError(
          `Module "${module.name}" ${relation} "${contract.name}" ${contract.version}, but the manifest's module implements ` +
            `${provider.contract.version}: the major versions differ.`,
        );
      }
    }
  }
  const order: AnyModule[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (module: AnyModule, chain: string[]): void => {
    const mark = state.get(module.name);
    if (mark === 'done') return;
    if (mark === 'visiting') {
      const cycle = [...chain.slice(chain.indexOf(module.name)), module.name];
      throw topologyError(
        `Dependency cycle: ${cycle.join(' → ')}. Break it by replacing one call with an event, ` +
          'or by moving the shared part into its own module.',
      );
    }
    state.set(module.name, 'visiting');
    for (const dependency of module.dependsOn as readonly AnyContract[]) {
      visit(byName.get(dependency.name) as AnyModule, [...chain, module.name]);
    }
    state.set(module.name, 'done');
    order.push(module);
  };
  for (const module of modules) visit(module, []);
  return order;
}

class KernelImpl implements Kernel {
  readonly hosted: readonly string[];
  readonly modules: readonly AnyModule[];
  #state: LifecycleState = LifecycleState.CREATED;
  readonly #options: ResolvedOptions;
  readonly #logger: Logger;
  readonly #local: Transport;
  readonly #remote: Transport | undefined;
  readonly #hosted: HostedModule[];
  readonly #hostedNames: ReadonlySet<string>;
  readonly #root = new Container();
  readonly #clients = new Map<string, Client<AnyContract>>();
  readonly #observers: KernelObserver[] = [];
  #stopping: Promise<void> | undefined;
  #starting: Promise<void> | undefined;

  constructor(options: ResolvedOptions) {
    this.#options = options;
    this.modules = options.modules;
    const order = checkGraph(options.modules);
    const names = new Set(order.map((module) => module.name));
    const requested = options.topology?.host ?? [...names];
    for (const name of requested) {
      if (!names.has(name)) {
        throw topologyError(`The topology hosts "${name}", which is not in the manifest (manifest: ${[...names].join(', ')}).`);
      }
    }
    this.#hostedNames = new Set(requested);
    this.#remote = options.topology?.transport;
    this.#logger = options.logger ?? createLogger();
    this.#local = createLocalTransport({ logger: this.#logger });
    this.#hosted = order
      .filter((module) => this.#hostedNames.has(module.name))
      .map((module) => ({
        module,
        state: LifecycleState.CREATED,
        instance: undefined,
        container: undefined,
        registrations: [],
        startHookRan: false,
      }));
    this.hosted = this.#hosted.map((entry) => entry.module.name);
    if (this.#remote === undefined) {
      for (const entry of this.#hosted) {
        const needed = [...entry.module.dependsOn, ...entry.module.subscribesTo] as AnyContract[];
        for (const contract of needed) {
          if (!this.#hostedNames.has(contract.name)) {
            throw topologyError(
              `Module "${entry.module.name}" needs "${contract.name}", which this process does not host, and no transport ` +
                'reaches other processes. Host it here too, or configure a transport (for example KEEL_NATS_URL).',
            );
          }
        }
      }
    }
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
    this.#starting = this.#startAll();
    return this.#starting;
  }

  async #startAll(): Promise<void> {
    this.#state = LifecycleState.STARTING;
    const started: HostedModule[] = [];
    try {
      for (const entry of this.#hosted) {
        if (this.#stopping !== undefined) break;
        started.push(entry);
        await this.#startModule(entry);
      }
    } catch (error) {
      this.#logger.error({ err: error }, 'start failed; stopping the modules already started');
      for (const entry of started.reverse()) await this.#stopModule(entry);
      this.#state = LifecycleState.FAILED;
      throw error;
    }
    if (this.#stopping !== undefined) {
      throw new KeelError(KeelErrorCode.INVALID_STATE, 'The kernel was stopped while it was starting.');
    }
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
    // Stopping during start: let the module being started finish starting, then stop them all.
    await this.#starting?.catch(() => {});
    if (this.#state === LifecycleState.FAILED) {
      this.#state = LifecycleState.STOPPED;
      return;
    }
    this.#state = LifecycleState.STOPPING;
    for (const entry of [...this.#hosted].reverse()) await this.#stopModule(entry);
    await this.#local.close();
    this.#state = LifecycleState.STOPPED;
    this.#logger.info({ hosted: this.hosted }, 'kernel stopped');
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
      modules: this.#hosted.map((entry) => ({
        name: entry.module.name,
        version: entry.module.contract.version,
        state: entry.state,
      })),
      remote: this.modules.map((module) => module.name).filter((name) => !this.#hostedNames.has(name)),
      transports: [this.#local.status(), ...(this.#remote ? [this.#remote.status()] : [])],
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
    if (!isContract(contract) || !this.modules.some((module) => module.name === contract.name)) {
      throw topologyError(
        `No module in the manifest implements "${String((contract as { name?: unknown })?.name)}"; ` +
          'a kernel only makes clients of contracts in its manifest.',
      );
    }
    return this.#clientFor(contract, options.caller ?? 'external');
  }

  #clientFor<C extends AnyContract>(contract: C, caller: string): Client<C> {
    const key = `${caller}\u0000${contract.name}`;
    let client = this.#clients.get(key);
    if (client === undefined) {
      const transport = this.#hostedNames.has(contract.name) ? this.#local : this.#remote;
      if (transport === undefined) {
        throw topologyError(
          `This process does not host "${contract.name}" and has no transport to reach it elsewhere. ` +
            'Host it here (topology.host), or configure a transport (for example KEEL_NATS_URL).',
        );
      }
      client = createClient(contract, transport, {
        caller,
        defaultTimeoutMs: this.#options.defaultTimeoutMs,
        observers: this.#observers,
      });
      this.#clients.set(key, client);
    }
    return client as Client<C>;
  }

  get #eventTransport(): Transport {
    return this.#remote ?? this.#local;
  }

  async #startModule(entry: HostedModule): Promise<void> {
    const { module } = entry;
    const contract = module.contract as AnyContract;
    const logger = this.#logger.child({ module: module.name });
    entry.state = LifecycleState.STARTING;
    const container = new Container({ parent: this.#root });
    entry.container = container;
    module.providers?.(container.bind.bind(container));
    const declared = new Set<string>();
    for (const dependency of module.dependsOn as readonly AnyContract[]) {
      declared.add(dependency.name);
      container.bind(dependency.token).toConstantValue(this.#clientFor(dependency, module.name));
    }
    const get = (identifier: unknown): unknown => {
      if (isContract(identifier)) {
        if (!declared.has(identifier.name)) {
          throw new KeelError(
            KeelErrorCode.UNDECLARED_DEPENDENCY,
            `Module "${module.name}" asked for the client of "${identifier.name}" but does not declare it. ` +
              `Add it to dependsOn in ${module.name}'s defineModule().`,
          );
        }
        return container.get(identifier.token);
      }
      if (!container.isBound(identifier as ServiceIdentifier)) {
        throw new KeelError(
          KeelErrorCode.INVALID_MODULE,
          `Module "${module.name}" asked for ${describeIdentifier(identifier)}, which nothing in its container provides. ` +
            `A module sees its own providers and the clients of its dependsOn contracts, nothing of other modules: ` +
            `bind it in ${module.name}'s providers, or call the module that owns it through its contract.`,
        );
      }
      return container.get(identifier as ServiceIdentifier);
    };
    const emit = (event: string, payload: unknown): Promise<void> => this.#emit(contract, event, payload);
    const instance = await module.create({ name: module.name, get: get as never, emit: emit as never, logger });
    entry.instance = instance;
    this.#checkInstance(module, instance);
    await instance.start?.();
    entry.startHookRan = true;
    const handlers = instance.handlers as Readonly<Record<string, OperationHandler<AnyOperation>>>;
    const serveOn = (transport: Transport) =>
      transport.serve(createServedModule({ contract, handlers, logger, transport: transport.name, observers: this.#observers }));
    entry.registrations.push(await serveOn(this.#local));
    if (this.#remote) entry.registrations.push(await serveOn(this.#remote));
    for (const source of module.subscribesTo as readonly AnyContract[]) {
      const handlers = (instance.events as Record<string, Record<string, EventHandler<AnyEvent>>> | undefined)?.[source.name];
      if (handlers === undefined) continue;
      for (const [event, handler] of Object.entries(handlers)) {
        const definition = source.events[event] as AnyEvent;
        const options: Partial<EventHandlerOptions<AnyEvent>> = typeof handler === 'function' ? {} : handler;
        const fanout = options.fanout ?? Fanout.BALANCED;
        if (fanout === Fanout.EVERY_INSTANCE && definition.delivery === 'durable') {
          throw new KeelError(
            KeelErrorCode.INVALID_MODULE,
            `Module "${module.name}": every-instance delivery of ${source.name}.${event} is not supported because the event is durable; ` +
              'durable events are delivered once per module. Use a notification event for every-instance fan-out.',
          );
        }
        const subscription = createEventSubscription({
          subscriber: module.name,
          source,
          event,
          definition,
          handler: (typeof handler === 'function' ? handler : handler.handle) as EventHandlerFunction<AnyEvent>,
          fanout,
          maxAttempts: options.maxAttempts ?? this.#options.maxDeliveryAttempts,
          eventTimeoutMs: this.#options.eventTimeoutMs,
          logger,
          onDeadLetter: this.#options.onDeadLetter,
          observers: this.#observers,
        });
        entry.registrations.push(await this.#eventTransport.subscribe(subscription));
      }
    }
    entry.state = LifecycleState.STARTED;
  }

  #checkInstance(module: AnyModule, instance: ModuleInstance<AnyContract, readonly AnyContract[]>): void {
    const fail = (message: string): never => {
      throw new KeelError(KeelErrorCode.INVALID_MODULE, `Module "${module.name}": ${message}`);
    };
    if (typeof instance !== 'object' || instance === null || typeof instance.handlers !== 'object') {
      fail('create() must return an object with `handlers`.');
    }
    const operations = Object.keys((module.contract as AnyContract).operations);
    const handlers = Object.keys(instance.handlers);
    const missing = operations.filter((name) => typeof (instance.handlers as Record<string, unknown>)[name] !== 'function');
    const extra = handlers.filter((name) => !operations.includes(name));
    if (missing.length) fail(`no handler for operation(s) ${missing.join(', ')}.`);
    if (extra.length) fail(`handler(s) ${extra.join(', ')} match no operation of its contract.`);
    const events = (instance.events ?? {}) as Record<string, Record<string, unknown>>;
    const sources = new Map((module.subscribesTo as readonly AnyContract[]).map((contract) => [contract.name, contract]));
    for (const [sourceName, handlers] of Object.entries(events)) {
      const source = sources.get(sourceName);
      if (source === undefined) fail(`handles events of "${sourceName}" but does not list it in subscribesTo.`);
      for (const [event, handler] of Object.entries(handlers ?? {})) {
        if (!(event in (source as AnyContract).events)) fail(`handles ${sourceName}.${event}, which that contract does not declare.`);
        const callable = typeof handler === 'function' ? handler : (handler as { handle?: unknown })?.handle;
        if (typeof callable !== 'function') fail(`the handler of ${sourceName}.${event} is not a function.`);
      }
    }
  }

  async #emit(contract: AnyContract, event: string, payload: unknown): Promise<void> {
    const definition = contract.events[event];
    const context = currentContext();
    if (definition === undefined) {
      throw new KeelError(
        KeelErrorCode.INVALID_EVENT,
        `Module "${contract.name}" emitted "${event}", which its contract does not declare (it declares: ${
          Object.keys(contract.events).join(', ') || 'no events'
        }).`,
      );
    }
    const parsed = definition.payload.safeParse(payload);
    if (!parsed.success) {
      throw validationError(KeelErrorCode.INVALID_EVENT, 'payload', contract.name, event, parsed.error.issues, context?.correlationId);
    }
    if (this.#state === LifecycleState.STOPPED) {
      throw new KeelError(
        KeelErrorCode.INVALID_STATE,
        `Module "${contract.name}" emitted ${event} after the kernel stopped; emit only while the module runs.`,
      );
    }
    await this.#eventTransport.publish({
      contract: contract.name,
      version: contract.version,
      event,
      delivery: definition.delivery,
      payload: parsed.data,
      metadata: {
        id: newCorrelationId(),
        correlationId: context?.correlationId ?? newCorrelationId(),
        traceparent: context?.traceparent,
        publisher: contract.name,
        publishedAt: Date.now(),
      },
    });
  }

  async #stopModule(entry: HostedModule): Promise<void> {
    if (entry.state === LifecycleState.STOPPED || entry.state === LifecycleState.CREATED) return;
    entry.state = LifecycleState.STOPPING;
    const registrations = entry.registrations;
    entry.registrations = [];
    const drained = Promise.allSettled(registrations.map((registration) => registration.stop()));
    if (!(await within(drained, this.#options.drainTimeoutMs))) {
      this.#logger.error(
        { module: entry.module.name, drainTimeoutMs: this.#options.drainTimeoutMs },
        'work in flight did not finish within drainTimeoutMs; stopping the module anyway',
      );
    } else {
      const results = await drained;
      for (const result of results) {
        if (result.status === 'rejected') {
          this.#logger.warn({ err: result.reason, module: entry.module.name }, 'stopping a registration failed');
        }
      }
    }
    if (entry.startHookRan) {
      try {
        await entry.instance?.stop?.();
      } catch (error) {
        this.#logger.error({ err: error, module: entry.module.name }, 'module stop hook failed');
      }
    }
    entry.container?.unbindAll();
    entry.state = LifecycleState.STOPPED;
  }
}

/** A DI token as a person reads it: a symbol's description, a class's name, a string as is. */
function describeIdentifier(identifier: unknown): string {
  if (typeof identifier === 'symbol') return identifier.toString();
  if (typeof identifier === 'function') return identifier.name === '' ? 'an anonymous class' : `class ${identifier.name}`;
  return `"${String(identifier)}"`;
}
