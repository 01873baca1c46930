/**
 * Contracts: plain data made of zod schemas. A contract names a module, its semver version,
 * its request/reply operations and its events. Callers are typed by `z.input`, handlers by
 * `z.output`; nothing is generated.
 */
import type { HedgePolicy, RetryPolicy } from './call-policy.js';
import { z } from 'zod';
import { checkContractSpec, checkOperationSpec, specObject } from './contract-checks.js';
import type { AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { OperationAuth } from './principal.js';
import { describeValue } from './options.js';

/**
 * How an event reaches its subscribers.
 *
 * @example
 * ```ts
 * // internal to the kernel: an application writes delivery: 'durable'
 *
 * const orderPlaced = event({ payload: z.object({ orderId: z.string() }), delivery: Delivery.DURABLE });
 * ```
 */
export const Delivery = {
  /** At most once, to instances connected at the time. Cheap; lost if nobody listens. */
  NOTIFICATION: 'notification',
  /** Persisted (JetStream over NATS) and redelivered until a handler acknowledges it. */
  DURABLE: 'durable',
} as const;

/** A {@link Delivery} value. */
export type Delivery = (typeof Delivery)[keyof typeof Delivery];

/**
 * A request/reply operation, built with {@link operation}.
 *
 * @example
 * ```ts
 * import { catalog } from './modules/catalog/contract.js';
 *
 * const getProduct = catalog.operations.getProduct;
 * getProduct.idempotent; // true
 * getProduct.errors.map((error) => error.code); // ['UNKNOWN_PRODUCT']
 * ```
 */
export interface OperationDefinition<
  Input extends z.ZodType = z.ZodType,
  Output extends z.ZodType = z.ZodType,
  Errors extends readonly AnyErrorClass[] = readonly AnyErrorClass[],
  Internal extends boolean = boolean,
> {
  readonly kind: 'operation';
  readonly input: Input;
  readonly output: Output;
  readonly errors: Errors;
  /** Safe to repeat: a caller may retry it after a timeout. */
  readonly idempotent: boolean;
  /**
   * Called by other modules only: the HTTP gateway does not serve it (default false). The literal
   * `true` when the spec says `internal: true`, so `HttpClient` types its method `never`.
   */
  readonly internal: Internal;
  /** Deadline for one call, overriding the kernel default; a caller may still shorten it. */
  readonly timeoutMs: number | undefined;
  readonly description: string | undefined;
  /** Who may call it: `'required'`, a predicate, or `undefined` (anyone, with or without a principal). */
  readonly auth: OperationAuth<z.output<Input>> | undefined;
  /** How its callers retry it, over the kernel's default; `undefined`: the kernel's default. */
  readonly retry: RetryPolicy | false | undefined;
  /** How its callers hedge it (idempotent operations only); `undefined`: the kernel's default, none unless set. */
  readonly hedge: HedgePolicy | false | undefined;
}

/**
 * An event, built with {@link event}.
 *
 * @example
 * ```ts
 * import { orders } from './modules/orders/contract.js';
 *
 * const orderPlaced = orders.events.orderPlaced;
 * orderPlaced.delivery; // 'durable'
 * orderPlaced.payload.parse(message); // the validated payload
 * ```
 */
export interface EventDefinition<Payload extends z.ZodType = z.ZodType> {
  readonly kind: 'event';
  readonly payload: Payload;
  readonly delivery: Delivery;
  readonly description: string | undefined;
}

/**
 * Any operation definition.
 *
 * @example
 * ```ts
 * import type { AnyOperation } from 'keel/transport';
 *
 * const retryable = (operation: AnyOperation): boolean => operation.idempotent;
 * Object.entries(orders.operations).filter(([, operation]) => retryable(operation)); // getOrder, listOrders
 * ```
 */
export type AnyOperation = OperationDefinition<z.ZodType, z.ZodType, readonly AnyErrorClass[]>;
/**
 * Any event definition.
 *
 * @example
 * ```ts
 * // internal to the kernel
 *
 * const isDurable = (definition: AnyEvent): boolean => definition.delivery === Delivery.DURABLE;
 * isDurable(orders.events.orderPlaced); // true
 * ```
 */
export type AnyEvent = EventDefinition<z.ZodType>;

/**
 * A contract, built with {@link defineContract}. Plain data; also the DI token of its client.
 *
 * @example
 * ```ts
 * import type { Contract } from 'keel';
 *
 * const describe = (contract: Contract): string =>
 *   `${contract.name} ${contract.version}: ${Object.keys(contract.operations).join(', ')}`;
 * describe(catalog); // 'catalog 1.0.0: addProduct, getProduct, listProducts'
 * ```
 */
export interface Contract<
  Name extends string = string,
  Operations extends Record<string, AnyOperation> = Record<string, AnyOperation>,
  Events extends Record<string, AnyEvent> = Record<string, AnyEvent>,
> {
  readonly name: Name;
  /** Semver. Callers and callees must share the major version. */
  readonly version: string;
  readonly description: string | undefined;
  readonly operations: Operations;
  readonly events: Events;
  /** The inversify service identifier of this contract's client. */
  readonly token: symbol;
}

/**
 * Any contract.
 *
 * @example
 * ```ts
 * import type { AnyContract } from 'keel';
 *
 * const eventNames = (contract: AnyContract): string[] => Object.keys(contract.events);
 * eventNames(orders); // ['orderPlaced', 'orderCancelled']
 * ```
 */
export type AnyContract = Contract<string, Record<string, AnyOperation>, Record<string, AnyEvent>>;

/**
 * What {@link operation} takes.
 *
 * @example
 * ```ts
 * const getProduct = operation({
 *   input: z.object({ sku: Sku }),
 *   output: Product,
 *   errors: [UnknownProduct],
 *   idempotent: true,
 *   timeoutMs: 2_000,
 *   description: 'Reads one product by SKU.',
 * });
 * ```
 */
export interface OperationSpec<
  Input extends z.ZodType,
  Output extends z.ZodType,
  Errors extends readonly AnyErrorClass[],
  Internal extends boolean = boolean,
> {
  readonly input: Input;
  readonly output: Output;
  /** Errors this operation may fail with, made with `defineError`. */
  readonly errors?: Errors;
  /** Safe to repeat (default false). */
  readonly idempotent?: boolean;
  /**
   * Called by other modules only, never from outside the application (default false): the
   * HTTP gateway does not serve it (a request for it is 404) and the OpenAPI document leaves it
   * out, while modules call it as any other, in one process and over NATS. For the steps of a
   * saga (`inventory.reserve`, `payments.charge`): `auth` cannot keep outside callers off them,
   * since a nested call carries the end user's principal.
   */
  readonly internal?: Internal;
  /** Per-operation deadline in milliseconds. */
  readonly timeoutMs?: number;
  readonly description?: string;
  /**
   * Who may call it (default: anyone). `'required'`: a call without a principal fails with
   * `UNAUTHENTICATED` before the input is read. A predicate `(principal, input) => boolean`
   * also requires one, and a call it does not return `true` for fails with `FORBIDDEN`. Checked
   * by the module serving the call on every transport; the HTTP gateway answers 401 for
   * `'required'` itself, without a call. A contract is shared with its callers, so the rule is
   * part of what they are promised.
   */
  readonly auth?: OperationAuth<z.output<Input>>;
  /**
   * How callers retry a failed call, inside its deadline (default: the kernel's `retry`, which
   * retries only what was certainly not processed). `attemptTimeoutMs` lets a call try again
   * when one attempt hangs; repeating a call whose outcome is unknown needs `idempotent: true`
   * or an idempotency key. `false`: never retry.
   */
  readonly retry?: RetryPolicy | false;
  /**
   * Hedging, for idempotent operations: while no answer has come, callers send another attempt
   * after `delayMs` (or at a `percentile` of the latencies seen), and the first answer wins.
   * It routes around a slow or frozen instance.
   */
  readonly hedge?: HedgePolicy | false;
}

/**
 * Declares a request/reply operation. With `internal: true`, its type says `internal: true` too,
 * and an `HttpClient` of its contract types its method `never` (calling it does not compile).
 *
 * @example
 * ```ts
 * const getProduct = operation({
 *   input: z.object({ sku: z.string() }),
 *   output: Product,
 *   errors: [UnknownProduct],
 *   idempotent: true,
 * });
 * ```
 */
export function operation<
  Input extends z.ZodType,
  Output extends z.ZodType,
  const Errors extends readonly AnyErrorClass[] = readonly [],
  // Taken from the spec alone (NoInfer in the return type): inside defineContract, the expected
  // AnyOperation (internal: boolean) would otherwise widen `internal: true` to boolean. Without
  // `internal`, or with explicit type arguments, it stays boolean: only a literal true is internal.
  Internal extends boolean = boolean,
>(spec: OperationSpec<Input, Output, Errors, Internal>): OperationDefinition<Input, Output, Errors, NoInfer<Internal>> {
  checkOperationSpec(spec);
  return Object.freeze({
    kind: 'operation' as const,
    input: spec.input,
    output: spec.output,
    errors: (spec.errors ?? []) as unknown as Errors,
    idempotent: spec.idempotent ?? false,
    internal: (spec.internal ?? false) as Internal,
    timeoutMs: spec.timeoutMs,
    description: spec.description,
    auth: spec.auth,
    retry: spec.retry,
    hedge: spec.hedge,
  });
}

/**
 * What {@link event} takes.
 *
 * @example
 * ```ts
 * const orderCancelled = event({
 *   payload: z.object({ orderId: z.string(), refundedCents: z.number().int() }),
 *   delivery: 'durable',
 *   description: 'An order was cancelled and its payment refunded.',
 * });
 * ```
 */
export interface EventSpec<Payload extends z.ZodType> {
  readonly payload: Payload;
  /** Default `notification`. */
  readonly delivery?: Delivery;
  readonly description?: string;
}

/**
 * Declares an event a module publishes.
 *
 * @example
 * ```ts
 * const orderPlaced = event({ payload: z.object({ orderId: z.string() }), delivery: 'durable' });
 * ```
 */
export function event<Payload extends z.ZodType>(spec: EventSpec<Payload>): EventDefinition<Payload> {
  specObject(spec, 'event({ payload })');
  if (spec.delivery !== undefined && spec.delivery !== Delivery.NOTIFICATION && spec.delivery !== Delivery.DURABLE) {
    // A misspelt "durable" must not quietly become a notification, lost when nobody listens.
    throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `delivery must be "notification" or "durable", got ${describeValue(spec.delivery)}.`);
  }
  return Object.freeze({
    kind: 'event' as const,
    payload: spec.payload,
    delivery: spec.delivery ?? Delivery.NOTIFICATION,
    description: spec.description,
  });
}

/**
 * What {@link defineContract} takes.
 *
 * @example
 * ```ts
 * export const notifications = defineContract({
 *   name: 'notifications',
 *   version: '1.0.0',
 *   description: 'Customer notifications sent when an order is placed or cancelled.',
 *   operations: {
 *     listNotifications: operation({ input: z.object({ customerId: z.string() }), output: z.object({ notifications: z.array(Notification) }) }),
 *   },
 * });
 * ```
 */
export interface ContractSpec<
  Name extends string,
  Operations extends Record<string, AnyOperation>,
  Events extends Record<string, AnyEvent>,
> {
  /** Module name: lower-kebab-case, unique in the application. */
  readonly name: Name;
  /** Semver such as `1.2.0`. Raise the major on a breaking change. */
  readonly version: string;
  readonly description?: string;
  readonly operations: Operations;
  readonly events?: Events;
}

/**
 * Defines a module's contract. The schemas are checked at once: anything JSON cannot carry
 * faithfully across a process (functions, symbols, bigint, Date, Map, Set, class instances,
 * `undefined`, transforms, `any`/`unknown`) is refused with an error naming the field.
 *
 * @example
 * ```ts
 * export const catalog = defineContract({
 *   name: 'catalog',
 *   version: '1.0.0',
 *   operations: {
 *     getProduct: operation({ input: z.object({ sku: z.string() }), output: Product, errors: [UnknownProduct] }),
 *   },
 *   events: {
 *     priceChanged: event({ payload: z.object({ sku: z.string(), priceCents: z.number().int() }) }),
 *   },
 * });
 * ```
 */
export function defineContract<
  const Name extends string,
  const Operations extends Record<string, AnyOperation>,
  const Events extends Record<string, AnyEvent> = {},
>(spec: ContractSpec<Name, Operations, Events>): Contract<Name, Operations, Events> {
  checkContractSpec(spec);
  const operations = spec.operations ?? ({} as Operations);
  const events = spec.events ?? ({} as Events);
  return Object.freeze({
    name: spec.name,
    version: spec.version,
    description: spec.description,
    operations: Object.freeze({ ...operations }),
    events: Object.freeze({ ...events }),
    token: Symbol.for(`keel.contract.${spec.name}`),
  }) as Contract<Name, Operations, Events>;
}

/**
 * The major version of a semver string.
 *
 * @example
 * ```ts
 * majorOf('2.3.1'); // 2
 * if (majorOf(callerVersion) !== majorOf(orders.version)) console.warn('incompatible contract versions');
 * ```
 */
export function majorOf(version: string): number {
  return Number.parseInt(version, 10);
}

/**
 * True when `value` looks like a contract made by {@link defineContract}.
 *
 * @example
 * ```ts
 * const exported = await import('./modules/catalog/contract.js');
 * const contracts = Object.values(exported).filter(isContract); // [catalog]
 * ```
 */
export function isContract(value: unknown): value is AnyContract {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as AnyContract).name === 'string' &&
    typeof (value as AnyContract).token === 'symbol' &&
    typeof (value as AnyContract).operations === 'object'
  );
}
