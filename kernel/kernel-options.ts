/**
 * The kernel's options: what {@link createKernel} takes, its defaults, and the bulkhead limits
 * of a module they give. Their checks ({@link parseKernelOptions}: types and ranges, unknown keys
 * refused, each an `INVALID_CONFIG` naming the field) are in kernel-option-checks.ts.
 */
import { DEFAULT_TIMEOUT_MS } from './timeouts.js';
import type { Logger } from './logger.js';
import type { AnyModule } from './module.js';
import type { AnyContract } from './contract.js';
import type { DeadLetter } from './subscription.js';
import type { DatabaseEngine } from './database.js';
import type { PrincipalSchema } from './principal.js';
import type { Transport } from './transport.js';
import type { CircuitBreakerPolicy, HedgePolicy, RetryBudgetPolicy, RetryPolicy } from './call-policy.js';
import { definedOnly } from './options.js';
import { DEFAULT_BULKHEAD_LIMITS, type BulkheadLimits } from './bulkhead.js';

/**
 * Which modules this process hosts, and how it reaches the others.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createNatsTransport } from 'keel/nats';
 *
 * // the type is KernelOptions['topology'] outside the kernel
 * const kernel = createKernel({
 *   modules,
 *   topology: { host: ['orders', 'payments'], transport: await createNatsTransport({ servers: 'nats://127.0.0.1:4222' }) },
 * });
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
 * import { createKernel, type KernelOptions } from 'keel';
 * import { createLogger } from 'keel/transport';
 *
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
  /**
   * The application manifest: every module of the application, hosted here or not. Default:
   * none, for a process that only calls modules hosted elsewhere (see `contracts`).
   */
  readonly modules?: readonly AnyModule[];
  readonly topology?: Topology;
  /**
   * Contracts of modules hosted elsewhere that this process calls knowing only their contracts,
   * without their modules in `modules` (a script, a tool, a gateway in front of other
   * processes): `kernel.client(contract)` reaches them over `topology.transport`, which they
   * need, with the same deadlines, retries, circuit breakers, declared errors and tracing as
   * any other client. A contract whose module is in `modules` may be listed too, on the same
   * major version.
   *
   * ```ts
   * import { createKernel } from 'keel';
   * import { createNatsTransport } from 'keel/nats';
   * import { orders } from '../modules/orders/contract.js';
   *
   * const transport = await createNatsTransport({ servers: 'nats://127.0.0.1:4222' });
   * const kernel = createKernel({ contracts: [orders], topology: { transport } });
   * const order = await kernel.client(orders).getOrder({ orderId: 'o-1' });
   * await kernel.stop();
   * await transport.close();
   * ```
   */
  readonly contracts?: readonly AnyContract[];
  /** Deadline of calls whose operation and caller set none (default 10 000 ms). */
  readonly defaultTimeoutMs?: number;
  /**
   * Time an event handler gets before its context's deadline, counted from the event's delivery:
   * its signal (`callSignal()`) aborts then (default 30 000 ms). A handler that gives its own
   * (`{ handle, timeoutMs }`) has that instead. A durable event handler of a module that owns
   * data still running its time after it started in its inbox transaction is given up on: its
   * work is rolled back and its event fails with `TIMEOUT`, to be delivered again (docs/data.md,
   * "Events: the outbox and the inbox").
   */
  readonly eventTimeoutMs?: number;
  /** Deliveries of a durable event before dead-lettering, unless a handler says otherwise (default 5). */
  readonly maxDeliveryAttempts?: number;
  /**
   * Durable events a module's outbox relay sends before the first of them is confirmed
   * (default 32). They are sent in the order they were written; a publish that fails and is
   * sent again, by the relay or by the transport on its own (a JetStream leader being elected, a
   * PubAck late), can then be stored after events written behind it, at most
   * `outboxWindow - 1` of them. `1` sends one at a time: with one instance of the module, the
   * stream keeps the written order exactly (short of a crash), at about a third of the rate over NATS
   * (docs/data.md).
   */
  readonly outboxWindow?: number;
  /**
   * Durable events a module's inbox handles in one database transaction at most (default 32, at
   * most 64). Events that wait together run one after another in one transaction, each in a
   * savepoint of its own, and commit together: on PostgreSQL about 2× the events per second of a
   * transaction each. `1` gives every event a transaction of its own, as `ownTransaction: true`
   * does for one handler (docs/data.md, "Durable events that wait together share a transaction").
   * At 64, a handler's own savepoints (a nested `db.transaction`) go past what PostgreSQL keeps
   * in memory per transaction.
   *
   * @example
   * ```ts
   * // Handlers that hold hot rows: no event waits on another's commit.
   * const kernel = createKernel({ modules, database, inboxBatch: 1 });
   * ```
   */
  readonly inboxBatch?: number;
  /**
   * Milliseconds after which an inbox transaction takes no further event (default 20): the events
   * it handled wait for its commit at most about this long plus the last handler's time.
   */
  readonly inboxBatchMs?: number;
  /** Defaults to pino on stdout, level from `KEEL_LOG_LEVEL`. */
  readonly logger?: Logger;
  /** Called for every durable event given up on. */
  readonly onDeadLetter?: (deadLetter: DeadLetter) => void;
  /**
   * Where modules that declare `data` keep it: one engine for all (each module in its own
   * schema), or a function choosing one per module (a database per module). Needed as soon as
   * a hosted module declares `data`; `keel start` makes one from `DATABASE_URL`, or an embedded
   * PGlite. The kernel does not close it: close it after `kernel.stop()`.
   */
  readonly database?: DatabaseEngine | ((module: string) => DatabaseEngine);
  /**
   * How often each hosted module's database is checked, in ms, 100 to 600 000 (default 5 000): one
   * `select 1` on its connection, off the path of calls; a check that fails, or gets no answer in
   * that time, marks it `down` until one answers. `kernel.status().databases`, the gateway's
   * `/readyz` body and `/metrics` (`keel_database_up`) report it (docs/observability.md). An
   * embedded PGlite is not checked.
   */
  readonly databaseCheckMs?: number;
  /**
   * How long stop waits for the work in flight of the modules hosted here before stopping them
   * anyway (default 30 000 ms): one time for the whole process, counted from the start of
   * `kernel.stop()` and shared by its modules, which stop one after another (each waits for what
   * is left of it; once it is used up, up to 1 s of the hooks' 5 s, so that the short work a module
   * took while the others drained ends). Their stop hooks and outbox relays get what is left of it and 5 s more (or
   * `drainTimeoutMs` more, when shorter), so that a drain that used all of it still leaves them a
   * moment: a stop waits at most `drainTimeoutMs` + 5 s, however many modules it stops
   * (`kernelStopBoundMs` of `keel/transport`), but for a durable event on its last attempt over
   * NATS, a statement a handler sent before and the closing of the database connections
   * (docs/data.md). A hook that never ends takes the time of the hooks of the modules stopped
   * after it. Over NATS the transport's own drain timeout applies as well, and its `close()` after
   * the kernel's stop has one of its own.
   */
  readonly drainTimeoutMs?: number;
  /**
   * The application's principal: a zod schema of the caller identity that travels with every
   * call and event (`context.principal`). A principal given as a call option, or arriving from
   * another process, is checked against it once; one that does not match is `UNAUTHENTICATED`.
   * Register its type once (`declare module 'keel' { interface Register { principal: ... } }`)
   * to type handlers and `auth` predicates. Without it, a call or event carrying a principal is
   * refused. Give every process of the application the same schema.
   */
  readonly principal?: PrincipalSchema;
  /**
   * How calls made from this process retry (default `DEFAULT_CALL_POLICIES.retry`: 3 attempts,
   * for failures that prove the request was not processed; `false`: one attempt). An operation's
   * own `retry` is laid over it field by field: the fields it leaves out come from here. Retries
   * stay inside each call's deadline.
   */
  readonly retry?: RetryPolicy | false;
  /** Hedging of every idempotent operation (default: none), with the operation's own `hedge` laid over it field by field. */
  readonly hedge?: HedgePolicy | false;
  /**
   * The circuit breaker of each dependency (each contract called from this process; default
   * `DEFAULT_CALL_POLICIES.circuitBreaker`; `false`: none). Its state is in `kernel.status()`,
   * `keel status` and the gateway's `/metrics`.
   */
  readonly circuitBreaker?: CircuitBreakerPolicy | false;
  /**
   * A retry budget per dependency, counted in its circuit breaker's window: retries and hedges
   * at most `ratio` of the attempts to it, plus `minRetries` (`{}`:
   * `DEFAULT_CALL_POLICIES.retryBudget`, a fifth plus 10). Default: none (`false`). It needs the
   * circuit breaker. See docs/resilience.md ("Retry budget").
   */
  readonly retryBudget?: RetryBudgetPolicy | false;
  /**
   * Each hosted module's bulkhead: at most `maxConcurrent` handler runs at once per module in
   * this process (on every transport together), then a FIFO queue of at most `maxQueued` calls;
   * a call past that is refused at once with `RESOURCE_EXHAUSTED` (nothing ran; `details.retryAfterMs`
   * says when to come back, HTTP 429 with `Retry-After`). A queued call whose deadline passes is never started (`TIMEOUT`). Default
   * `{ maxConcurrent: 1024, maxQueued: 4096 }`, far above what a healthy module meets; a field
   * left out keeps its default. `false` (or `maxConcurrent: Infinity`) turns it off. See
   * docs/resilience.md ("Bulkhead").
   */
  readonly bulkhead?: Partial<BulkheadLimits> | false;
  /**
   * Per-module overrides of {@link KernelOptions.bulkhead}, by module name: a field left out
   * takes the kernel-wide value, `false` turns that module's bulkhead off. Every name must be a
   * module of the manifest (a module hosted elsewhere is allowed, so that every process can
   * share one configuration).
   *
   * ```ts
   * createKernel({ modules, bulkhead: { maxQueued: 256 }, bulkheads: { payments: { maxConcurrent: 16 }, catalog: false } });
   * ```
   */
  readonly bulkheads?: Readonly<Record<string, Partial<BulkheadLimits> | false>>;
}

/**
 * Defaults of {@link KernelOptions}.
 *
 * @example
 * ```ts
 * import { DEFAULT_KERNEL_OPTIONS } from 'keel/transport';
 *
 * const kernel = createKernel({ modules, eventTimeoutMs: 2 * DEFAULT_KERNEL_OPTIONS.eventTimeoutMs });
 * ```
 */
export const DEFAULT_KERNEL_OPTIONS = {
  defaultTimeoutMs: DEFAULT_TIMEOUT_MS,
  eventTimeoutMs: 30_000,
  maxDeliveryAttempts: 5,
  outboxWindow: 32,
  inboxBatch: 32,
  inboxBatchMs: 20,
  drainTimeoutMs: 30_000,
  databaseCheckMs: 5_000,
  bulkhead: DEFAULT_BULKHEAD_LIMITS,
} as const satisfies Partial<KernelOptions>;

/**
 * The bulkhead limits of `module`: its entry in `bulkheads` over the kernel-wide `bulkhead` over
 * the defaults, field by field; undefined when its bulkhead is off (`false`, or
 * `maxConcurrent: Infinity`).
 *
 * @example
 * ```ts
 * bulkheadLimitsOf({ modules, bulkheads: { payments: { maxConcurrent: 16 } } }, 'payments'); // { maxConcurrent: 16, maxQueued: 4096 }
 * ```
 */
export function bulkheadLimitsOf(options: Pick<KernelOptions, 'bulkhead' | 'bulkheads'>, module: string): BulkheadLimits | undefined {
  const wide = options.bulkhead;
  const own = options.bulkheads?.[module];
  if (wide === false && own === undefined) return undefined;
  if (own === false) return undefined;
  const limits = { ...DEFAULT_BULKHEAD_LIMITS, ...definedOnly(wide === false ? {} : (wide ?? {})), ...definedOnly(own ?? {}) };
  return limits.maxConcurrent === Number.POSITIVE_INFINITY ? undefined : limits;
}
