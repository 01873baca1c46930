/**
 * The kernel's clients (kernel/kernel.ts): one per contract object and caller, bound to the local
 * transport when this process hosts the contract's module and to the remote one otherwise, all
 * sharing the kernel's circuit breakers; and the modules hosted elsewhere that they reach, which
 * `kernel.status().remote` lists.
 */
import { isContract, type AnyContract } from './contract.js';
import { DEFAULT_CALL_POLICIES, definedFields } from './call-policy.js';
import { CircuitBreakers, type CircuitStatus } from './circuit-breaker.js';
import { createClient, type Client } from './client.js';
import { topologyError } from './graph.js';
import { describeValue } from './options.js';
import type { KernelOptions } from './kernel-options.js';
import type { Logger } from './logger.js';
import type { AnyModule } from './module.js';
import type { KernelObserver } from './observer.js';
import type { Transport } from './transport.js';

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

/** What the kernel makes its clients from. */
export interface KernelClientsSettings {
  /** The manifest's modules: `kernel.client` takes their contracts. */
  readonly modules: readonly AnyModule[];
  /** The modules hosted here: the clients of their contracts call through `local`. */
  readonly hosted: readonly AnyModule[];
  /** Contracts `kernel.client` takes without their module: the `contracts` option (graph.ts, remoteContracts). */
  readonly contracts: ReadonlyMap<string, AnyContract>;
  readonly local: Transport;
  readonly remote: Transport | undefined;
  readonly logger: Logger;
  /** The kernel's observers (a live array: `kernel.observe` adds to it). */
  readonly observers: readonly KernelObserver[];
  /** The kernel's options the clients read, its deadline defaulted. */
  readonly options: Pick<KernelOptions, 'principal' | 'retry' | 'hedge' | 'circuitBreaker' | 'retryBudget'> & { readonly defaultTimeoutMs: number };
}

/**
 * The clients of a kernel, made on first use and kept: those `kernel.client` gives callers outside
 * any module, and those each hosted module gets for its `dependsOn` contracts.
 */
export class KernelClients {
  readonly #settings: KernelClientsSettings;
  readonly #hostedNames: ReadonlySet<string>;
  /** Modules hosted elsewhere that this process reaches (status().remote). */
  readonly #reached = new Set<string>();
  /** Clients by the contract object they were made from, then by caller: two contracts of one name (another version, other call options) get clients of their own. */
  readonly #clients = new WeakMap<AnyContract, Map<string, Client<AnyContract>>>();
  readonly #breakers: CircuitBreakers;

  constructor(settings: KernelClientsSettings) {
    this.#settings = settings;
    const { hosted, options, logger } = settings;
    this.#hostedNames = new Set(hosted.map((module) => module.name));
    for (const module of hosted) {
      for (const contract of [...module.dependsOn, ...module.subscribesTo] as AnyContract[]) {
        if (!this.#hostedNames.has(contract.name)) this.#reached.add(contract.name);
      }
    }
    const breakerPolicy =
      options.circuitBreaker === false ? undefined : { ...DEFAULT_CALL_POLICIES.circuitBreaker, ...definedFields(options.circuitBreaker ?? {}) };
    const retryBudget =
      options.retryBudget === undefined || options.retryBudget === false ? undefined : { ...DEFAULT_CALL_POLICIES.retryBudget, ...definedFields(options.retryBudget) };
    this.#breakers = new CircuitBreakers(
      breakerPolicy,
      (breaker) => {
        const { dependency, state, attempts, failures } = breaker.status();
        if (state === 'open') logger.warn({ dependency, attempts, failures }, `circuit breaker for ${dependency} opened: calls to it fail at once with UNAVAILABLE for a while`);
        else logger.info({ dependency }, `circuit breaker for ${dependency} is ${state}`);
      },
      retryBudget,
    );
  }

  /** What `kernel.client` answers: the contract checked to be one of the manifest or of the `contracts` option first. */
  client<C extends AnyContract>(contract: C, options: KernelClientOptions = {}): Client<C> {
    if (!isContract(contract)) {
      throw topologyError(
        `kernel.client takes a contract made with defineContract(), such as kernel.client(orders), got ${describeValue(contract)}; ` +
          'an import cycle can leave an imported contract undefined.',
      );
    }
    if (!(this.#settings.modules.some((module) => module.name === contract.name) || this.#settings.contracts.has(contract.name))) {
      throw topologyError(
        `No module in the manifest implements "${String((contract as { name?: unknown })?.name)}", nor is it in the kernel's contracts; ` +
          'a kernel makes clients of the contracts of its manifest, and of those of modules hosted elsewhere that its `contracts` option lists ' +
          '(with a transport to reach them, such as createKernel({ contracts: [books], topology: { transport } })).',
      );
    }
    return this.clientFor(contract, options.caller ?? 'external');
  }

  /** The client of `contract` for `caller`, made on first use and kept. */
  clientFor<C extends AnyContract>(contract: C, caller: string): Client<C> {
    let byCaller = this.#clients.get(contract);
    if (byCaller === undefined) {
      byCaller = new Map();
      this.#clients.set(contract, byCaller);
    }
    let client = byCaller.get(caller);
    if (client === undefined) {
      const { local, remote, observers, options } = this.#settings;
      const transport = this.#hostedNames.has(contract.name) ? local : remote;
      if (transport === undefined) {
        throw topologyError(
          `This process does not host "${contract.name}" and has no transport to reach it elsewhere. ` +
            'Host it here (topology.host), or configure a transport (for example KEEL_NATS_URL).',
        );
      }
      if (transport === remote) this.#reached.add(contract.name);
      client = createClient(contract, transport, {
        caller,
        defaultTimeoutMs: options.defaultTimeoutMs,
        observers,
        principal: options.principal,
        retry: options.retry,
        hedge: options.hedge,
        circuitBreakers: this.#breakers,
      });
      byCaller.set(caller, client);
    }
    return client as Client<C>;
  }

  /**
   * The modules hosted elsewhere that this process reaches, in manifest order, then in the order
   * of the `contracts` option: what `kernel.status().remote` lists.
   */
  remote(): string[] {
    return [...this.#settings.modules.map((module) => module.name), ...this.#settings.contracts.keys()].filter(
      (name, index, names) => this.#reached.has(name) && names.indexOf(name) === index,
    );
  }

  /** The circuit breaker of each dependency called so far. */
  circuits(): CircuitStatus[] {
    return this.#breakers.status();
  }
}
