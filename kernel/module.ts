/**
 * Modules: each implements exactly one contract, declares the contracts it calls, keeps its
 * private providers in its own inversify container, and handles events of the contracts it
 * subscribes to.
 */
import type { Bind, ServiceIdentifier } from 'inversify';
import type { AnyContract } from './contract.js';
import type { EventInput } from './contract-inference.js';
import { checkModuleSpec } from './module-checks.js';
import type { EventHandlers, ExactHandlers, Handlers } from './module-handlers.js';
import type { Logger } from './logger.js';
import type { Client } from './client.js';
import type { Database, ModuleData } from './database.js';

/**
 * Resolves the module's own providers and the clients of its declared dependencies.
 *
 * @example
 * ```ts
 * create: ({ get }) => {
 *   const products = get(catalog); // Client<typeof catalog>; catalog must be in dependsOn
 *   const store = get(OrderStore); // a provider bound in this module's providers
 *   return { handlers: orderHandlers(store, products) };
 * },
 * ```
 */
export interface Resolver<Deps extends readonly AnyContract[]> {
  /**
   * The client of a contract declared in `dependsOn`, or a provider bound in this module's
   * `providers` (`get(OrderStore)`, or `get<Settings>(SETTINGS)` for a token that carries no
   * type). A contract missing from `dependsOn` does not compile, and the error names it and
   * says where to declare it.
   */
  <T = never, K = ServiceIdentifier<T>>(key: Resolvable<K, Deps>): [T] extends [never] ? Resolved<K> : T;
}

/**
 * What `get` accepts for `K`: a declared dependency's contract, or a provider token. For a
 * contract missing from `dependsOn` it is a message no value is assignable to, so the
 * compiler's error quotes it.
 *
 * @example
 * ```ts
 * type Ok = Resolvable<typeof catalog, [typeof catalog]>; // typeof catalog
 * type Refused = Resolvable<typeof catalog, []>; // "catalog is not in dependsOn: add it to defineModule({ dependsOn: [...] })"
 * ```
 */
export type Resolvable<K, Deps extends readonly AnyContract[]> = [K] extends [AnyContract]
  ? [K] extends [Deps[number]]
    ? K
    : NotInDependsOn<K>
  : [K] extends [ServiceIdentifier]
    ? K
    : ServiceIdentifier;

/**
 * What `get(key)` returns: the client of a contract, the instance of a provider class or a
 * typed token, `unknown` for an untyped token.
 *
 * @example
 * ```ts
 * type Products = Resolved<typeof catalog>; // Client<typeof catalog>
 * type Store = Resolved<typeof OrderStore>; // OrderStore
 * ```
 */
export type Resolved<K> = [K] extends [AnyContract] ? Client<K> : [K] extends [ServiceIdentifier<infer Instance>] ? Instance : unknown;

/**
 * The parameter type `get` takes for a contract missing from `dependsOn`: no contract is
 * assignable to it, so the compiler's message quotes it.
 *
 * @example
 * ```ts
 * // defineModule({ contract: loans, create: ({ get }) => ... get(books) ... }) fails to compile with:
 * // Argument of type 'Contract<"books", ...>' is not assignable to parameter of type
 * //   '"books is not in dependsOn: add it to defineModule({ dependsOn: [...] })"'.
 * type Message = NotInDependsOn<typeof books>;
 * ```
 */
export type NotInDependsOn<D extends AnyContract> = `${D['name']} is not in dependsOn: add it to defineModule({ dependsOn: [...] })`;

/**
 * Publishes one of the module's own events. Resolves once the transport accepted it.
 *
 * @example
 * ```ts
 * import type { Emit } from 'keel';
 *
 * const announceLow = (emit: Emit<typeof inventory>, sku: string, available: number): Promise<void> =>
 *   emit('stockLow', { sku, available, threshold: 5 });
 * ```
 */
export type Emit<C extends AnyContract> = <E extends keyof C['events'] & string>(
  event: E,
  payload: EventInput<C['events'][E]>,
) => Promise<void>;

/**
 * What `create` receives.
 *
 * @example
 * ```ts
 * create: ({ name, get, emit, logger }) => {
 *   logger.info({ module: name }, 'creating');
 *   const products = get(catalog);
 *   return { handlers: inventoryHandlers(products, emit) }; // handlers call the catalog and emit stockLow
 * },
 * ```
 */
export interface ModuleTools<C extends AnyContract, Deps extends readonly AnyContract[]> {
  /** This module's name (its contract's name). */
  readonly name: C['name'];
  /** Resolves providers and dependency clients. */
  readonly get: Resolver<Deps>;
  /** Publishes this module's events. */
  readonly emit: Emit<C>;
  /** A logger bound to this module. */
  readonly logger: Logger;
  /**
   * The module's own database (its schema), when it declares `data`; its migrations are
   * applied before `create` runs. Without `data`, using it fails with what to declare.
   */
  readonly db: Database;
}


/**
 * What `create` returns: the module's running parts.
 *
 * @example
 * ```ts
 * create: ({ get }) => {
 *   const outbox = get(Outbox);
 *   return {
 *     handlers: { listNotifications: ({ customerId }) => ({ notifications: outbox.forCustomer(customerId) }) },
 *     events: { orders: { orderPlaced: (placed) => outbox.confirm(placed) } },
 *     start: () => outbox.open(),
 *     stop: () => outbox.flush(),
 *   };
 * },
 * ```
 */
export interface ModuleInstance<
  C extends AnyContract,
  Subs extends readonly AnyContract[],
  H extends Handlers<C> = Handlers<C>,
> {
  /** One handler per operation of the contract: none missing, none extra. */
  readonly handlers: ExactHandlers<H, C>;
  readonly events?: EventHandlers<Subs>;
  /** Runs before the module serves anything. */
  readonly start?: () => Promise<void> | void;
  /**
   * Runs after the module stopped serving and its in-flight work finished (or the drain's
   * `drainTimeoutMs` passed). Waited for within what is left of `drainTimeoutMs`, at least 5 s:
   * past it the stop goes on, with an error line, and the module's database connection closes
   * under a hook still running.
   */
  readonly stop?: () => Promise<void> | void;
}

/**
 * What {@link defineModule} takes.
 *
 * @example
 * ```ts
 * export const ordersModule = defineModule({
 *   contract: orders,
 *   dependsOn: [catalog, inventory, payments],
 *   providers: (bind) => {
 *     bind(OrderStore).toSelf().inSingletonScope();
 *   },
 *   create: ({ get, emit }) => ({ handlers: createOrderHandlers(get(OrderStore), get(catalog), emit) }),
 * });
 * ```
 */
export interface ModuleSpec<
  C extends AnyContract,
  Deps extends readonly AnyContract[],
  Subs extends readonly AnyContract[],
  H extends Handlers<C> = Handlers<C>,
> {
  /** The one contract this module implements. */
  readonly contract: C;
  /** Contracts this module calls. They start before it and stop after it. */
  readonly dependsOn?: Deps;
  /** Contracts whose events this module handles (no start-order constraint). */
  readonly subscribesTo?: Subs;
  /** Binds private providers in the module's own container. Inject with explicit tokens. */
  readonly providers?: (bind: Bind) => void;
  /** Declares that the module owns data: it gets `db`, its own schema, with these migrations. */
  readonly data?: ModuleData;
  /** Builds the module once at start: resolve what handlers need here, never per call. */
  readonly create: (
    tools: ModuleTools<NoInfer<C>, NoInfer<Deps>>,
  ) => ModuleInstance<NoInfer<C>, NoInfer<Subs>, H> | Promise<ModuleInstance<NoInfer<C>, NoInfer<Subs>, H>>;
}

/**
 * A module value, built by {@link defineModule}.
 *
 * @example
 * ```ts
 * import { modules } from './modules/index.js';
 *
 * for (const module of modules) {
 *   console.log(module.name, '→', module.dependsOn.map((contract) => contract.name).join(', '));
 * }
 * ```
 */
export interface Module<
  C extends AnyContract = AnyContract,
  Deps extends readonly AnyContract[] = readonly AnyContract[],
  Subs extends readonly AnyContract[] = readonly AnyContract[],
> {
  readonly kind: 'module';
  readonly name: C['name'];
  readonly contract: C;
  readonly dependsOn: Deps;
  readonly subscribesTo: Subs;
  readonly providers: ((bind: Bind) => void) | undefined;
  readonly data: ModuleData | undefined;
  readonly create: (tools: ModuleTools<C, Deps>) => ModuleInstance<C, Subs> | Promise<ModuleInstance<C, Subs>>;
}

/**
 * Any module, as the kernel sees it: what an application manifest lists and
 * `createKernel({ modules })` takes.
 *
 * @example
 * ```ts
 * import type { AnyModule } from 'keel';
 *
 * export const modules: readonly AnyModule[] = [catalogModule, inventoryModule, paymentsModule, ordersModule, notificationsModule];
 * const kernel = createKernel({ modules });
 * ```
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyModule = Module<AnyContract, readonly AnyContract[], readonly AnyContract[]> | Module<any, any, any>;


/**
 * Defines a module implementing `contract`.
 *
 * @example
 * ```ts
 * export const inventoryModule = defineModule({
 *   contract: inventory,
 *   dependsOn: [catalog],
 *   subscribesTo: [orders],
 *   providers: (bind) => {
 *     bind(StockStore).toSelf().inSingletonScope();
 *   },
 *   create: ({ get }) => {
 *     const store = get(StockStore);
 *     const products = get(catalog);
 *     return {
 *       handlers: {
 *         restock: async ({ sku, quantity }) => {
 *           await products.getProduct({ sku }); // an unknown SKU fails with UnknownProduct
 *           return store.restock(sku, quantity);
 *         },
 *         getStock: ({ sku }) => store.level(sku),
 *         reserve: ({ orderId, lines }) => store.reserve(orderId, lines),
 *         release: ({ orderId }) => store.release(orderId),
 *       },
 *       events: {
 *         orders: { orderCancelled: ({ orderId }) => store.cancel(orderId) },
 *       },
 *     };
 *   },
 * });
 * ```
 */
export function defineModule<
  C extends AnyContract,
  const Deps extends readonly AnyContract[] = readonly [],
  const Subs extends readonly AnyContract[] = readonly [],
  H extends Handlers<C> = Handlers<C>,
>(spec: ModuleSpec<C, Deps, Subs, H>): Module<C, Deps, Subs> {
  checkModuleSpec(spec);
  const dependsOn = (spec.dependsOn ?? []) as Deps;
  const subscribesTo = (spec.subscribesTo ?? []) as Subs;
  return Object.freeze({
    kind: 'module' as const,
    name: spec.contract.name as C['name'],
    contract: spec.contract,
    dependsOn,
    subscribesTo,
    providers: spec.providers,
    data: spec.data,
    create: spec.create as Module<C, Deps, Subs>['create'],
  });
}
