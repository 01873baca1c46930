/**
 * The handlers a module gives in `create`: one per operation of its contract, none missing and
 * none extra, and one per event of the contracts it subscribes to, with the context and the
 * delivery options each takes.
 */
import type { AnyContract, AnyEvent, AnyOperation } from './contract.js';
import type { EventPayload, HandlerInput, HandlerOutput } from './contract-inference.js';
import type { CallContext } from './context.js';
import type { EventMetadata, Fanout } from './transport.js';

/**
 * A handler of one operation: validated input in, output (validated after) out. Not in
 * `'keel'`: a handler written in `defineModule` is typed by inference, and one written apart
 * is typed with `HandlerInput` and `HandlerOutput`, its context with `CallContext`.
 *
 * @example
 * ```ts
 * import type { CallContext, HandlerInput, HandlerOutput } from 'keel';
 *
 * type GetProduct = typeof catalog.operations.getProduct;
 * const getProduct = ({ sku }: HandlerInput<GetProduct>, context: CallContext): HandlerOutput<GetProduct> => {
 *   const product = products.get(sku);
 *   if (product === undefined) throw new UnknownProduct({ sku });
 *   return product;
 * };
 * ```
 */
export type OperationHandler<Op extends AnyOperation> = (
  input: HandlerInput<Op>,
  context: CallContext,
) => Promise<HandlerOutput<Op>> | HandlerOutput<Op>;

/**
 * One handler per operation of `C`: a missing or an extra handler does not compile. Not in
 * `'keel'`: `defineModule` holds `create`'s handlers to it.
 *
 * @example
 * ```ts
 * create: () => ({
 *   handlers: {
 *     addProduct: (input) => store.add(input),
 *     getProduct: ({ sku }) => store.get(sku),
 *     listProducts: () => ({ products: store.list() }),
 *   },
 * }),
 * ```
 */
export type Handlers<C extends AnyContract> = {
  readonly [K in keyof C['operations']]: OperationHandler<C['operations'][K]>;
};

/**
 * Metadata an event handler receives besides the payload: the call context and the event's
 * own (id, publisher, attempt). Not in `'keel'`: an event handler gets it typed in
 * `defineModule`.
 *
 * @example
 * ```ts
 * events: {
 *   orders: {
 *     orderPlaced: (_payload, context) =>
 *       logger.info({ eventId: context.id, attempt: context.attempt }, `from ${context.publisher}`), // correlation_id and trace_id are added
 *   },
 * },
 * ```
 */
export interface EventContext extends CallContext, Omit<EventMetadata, 'principal'> {}

/**
 * A handler of one event. Throwing makes a durable event be redelivered. Not in `'keel'`: an
 * event handler is typed in `defineModule`; its payload apart is
 * `z.output<typeof orders.events.orderPlaced.payload>`.
 *
 * @example
 * ```ts
 * events: {
 *   orders: {
 *     orderPlaced: async ({ orderId }, { attempt }) => {
 *       if (attempt > 1) logger.warn({ orderId, attempt }, 'orderPlaced redelivered');
 *       await store.commit(orderId); // throwing here redelivers the event
 *     },
 *   },
 * },
 * ```
 */
export type EventHandlerFunction<Ev extends AnyEvent> = (
  payload: EventPayload<Ev>,
  context: EventContext,
) => Promise<void> | void;

/**
 * An event handler with delivery options.
 *
 * @example
 * ```ts
 * events: {
 *   orders: { orderPlaced: { handle: ({ orderId }) => store.commit(orderId), maxAttempts: 10 } },
 *   catalog: { productAdded: { handle: (product) => { cache.set(product.sku, product); }, fanout: 'every-instance' } },
 * },
 * ```
 */
export interface EventHandlerOptions<Ev extends AnyEvent> {
  /**
   * The handler. Given as an object literal, the object takes no other key than these options: a
   * misspelt one (`timeout` for `timeoutMs`) is refused when its module starts, with the name it
   * is nearest to. An instance of a class may hold other fields; its `handle` is called on it.
   */
  readonly handle: EventHandlerFunction<Ev>;
  /** `every-instance` delivers to every running instance of this module (notification events only). */
  readonly fanout?: Fanout;
  /** Deliveries of a durable event before it is dead-lettered: a whole number, 1 or more (default: the kernel's `maxDeliveryAttempts`, 5). */
  readonly maxAttempts?: number;
  /**
   * How long each delivery of this handler may take, in milliseconds, above 0 and at most
   * 2 147 483 647 (default: the kernel's `eventTimeoutMs`, 30 000): its signal (`callSignal()`)
   * aborts this long after the event's delivery, and in a module that owns data a durable
   * event's handler still running this long after it started is given up on (its work rolled
   * back, its event failed with `TIMEOUT` and delivered again: docs/data.md). For one handler that
   * needs longer, or should take less, than the others.
   *
   * @example
   * ```ts
   * events: {
   *   orders: { orderPlaced: { handle: ({ orderId }) => invoices.render(orderId), timeoutMs: 120_000 } },
   * },
   * ```
   */
  readonly timeoutMs?: number;
  /**
   * In a module that owns data, run each durable event of this handler in a transaction of its
   * own (default false: the events that wait together share one, each in a savepoint). For a
   * handler that changes what lasts to a transaction's end (`set local`, `pg_advisory_xact_lock`),
   * reads `now()` as its own start, or updates hot rows in an order other handlers do not keep
   * (docs/data.md, "Events: the outbox and the inbox"). Refused on a notification event and in a
   * module without data, where it would change nothing.
   *
   * @example
   * ```ts
   * events: {
   *   orders: {
   *     orderPlaced: {
   *       handle: async ({ sku, quantity }) => {
   *         await db.query("set local lock_timeout = '2s'"); // for this event only
   *         await db.query('update stock set reserved = reserved + $2 where sku = $1', [sku, quantity]);
   *       },
   *       ownTransaction: true,
   *     },
   *   },
   * },
   * ```
   */
  readonly ownTransaction?: boolean;
}

/**
 * An event handler: a function, or a function with options. Not in `'keel'`: `defineModule`
 * types both forms.
 *
 * @example
 * ```ts
 * events: {
 *   orders: {
 *     orderPlaced: ({ orderId }) => store.note(orderId),
 *     orderCancelled: { handle: ({ orderId }) => store.cancel(orderId), maxAttempts: 20 },
 *   },
 * },
 * ```
 */
export type EventHandler<Ev extends AnyEvent> = EventHandlerFunction<Ev> | EventHandlerOptions<Ev>;

/**
 * Handlers for the events of the contracts in `Subs`, keyed by contract name then event name.
 * Not in `'keel'`: `defineModule` holds `create`'s events to the contracts in `subscribesTo`.
 *
 * @example
 * ```ts
 * subscribesTo: [orders, payments],
 * create: () => ({
 *   handlers: {},
 *   events: {
 *     orders: { orderCancelled: ({ orderId }) => store.cancel(orderId) },
 *     payments: { paymentRefunded: ({ orderId, amountCents }) => store.noteRefund(orderId, amountCents) },
 *   },
 * }),
 * ```
 */
export type EventHandlers<Subs extends readonly AnyContract[]> = {
  readonly [Name in Subs[number]['name']]?: {
    readonly [E in keyof Extract<Subs[number], { readonly name: Name }>['events']]?: EventHandler<
      Extract<Subs[number], { readonly name: Name }>['events'][E]
    >;
  };
};

/**
 * `H` with every key that is not an operation of `C` turned into `never`, so that an extra
 * handler does not compile.
 *
 * @example
 * ```ts
 * defineModule({
 *   contract: notifications,
 *   create: () => ({
 *     handlers: {
 *       listNotifications: () => ({ notifications: [] }),
 *       // resend: () => ...,  // does not compile: notifications has no operation "resend"
 *     },
 *   }),
 * });
 * ```
 */
export type ExactHandlers<H, C extends AnyContract> = H & {
  readonly [K in Exclude<keyof H, keyof C['operations']>]: never;
};
