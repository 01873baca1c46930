/**
 * keel — the door for application authors: what a contract, a module, a kernel and a test of
 * an application need, and nothing more. Adapter and tooling authors (transports, gateways,
 * observers, the CLI) import the rest from `'keel/transport'` (kernel/transport-entry.ts).
 *
 * Contracts ({@link defineContract}, {@link operation}, {@link event}, {@link defineError}) are
 * plain data, and a contract file imports them from `'keel/contract'` (the very same values,
 * with no server dependency, so a contract bundles for a browser); modules ({@link defineModule})
 * implement one contract each; the kernel ({@link createKernel}) wires them in one process or,
 * given a {@link Transport}, across many.
 *
 * Types flow from the contract's zod schemas. A handler written outside `defineModule` is typed
 * with {@link HandlerInput} and {@link HandlerOutput}; the other shapes are one `z.input` or
 * `z.output` away, with no keel name to import:
 *
 * | what | type |
 * |---|---|
 * | what a caller passes | `z.input<typeof orders.operations.placeOrder.input>` |
 * | what a caller gets back | `z.output<typeof orders.operations.placeOrder.output>` |
 * | an event's payload, as a handler receives it | `z.output<typeof orders.events.orderPlaced.payload>` |
 * | an event's payload, as `emit` takes it | `z.input<typeof orders.events.orderPlaced.payload>` |
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { modules } from './modules/index.js';
 *
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * ```
 *
 * @module
 */

// Contracts. Contract, OperationDefinition and EventDefinition are what defineContract, operation
// and event return: a project that emits declarations (a contract shared as a package) must be
// able to name them, or its contract.ts does not compile (TS2883).
export {
  defineContract,
  event,
  operation,
  type AnyContract,
  type Contract,
  type EventDefinition,
  type OperationDefinition,
} from './contract.js';
export type { HandlerInput, HandlerOutput } from './contract-inference.js';
export { text } from './text-schema.js';

// Errors. ErrorClass and AnyErrorClass name what defineError returns and what an operation's
// `errors` holds, for the same reason.
export { ErrorKind, defineError, type AnyErrorClass, type ErrorClass } from './declared-errors.js';
export { KeelError, KeelErrorCode, isKeelError } from './errors.js';

// Modules: Module is what defineModule returns.
export { defineModule, type AnyModule, type Emit, type Module } from './module.js';

// Clients and call context
export type { Client } from './client.js';
export { currentContext, runWithContext, type CallContext } from './context.js';
export { callSignal } from './call-signal.js';

// Caller identity: the application registers its principal's type in Register (module
// augmentation); OperationAuth names what an operation's auth takes (TS2883, as above).
export type { OperationAuth, Principal, Register } from './principal.js';

// Kernel
export { createKernel, type Kernel, type KernelOptions } from './kernel.js';

// How callers recover: what an operation's retry and hedge, and the kernel's retry, hedge and
// circuitBreaker and retryBudget options take (named for TS2883, as above).
export type { CircuitBreakerPolicy, HedgePolicy, RetryBudgetPolicy, RetryPolicy } from './call-policy.js';

// Logging: a module gets a Logger in its tools; tests pass silentLogger to keep output quiet.
export { silentLogger, type Logger } from './logger.js';

// Module-owned data: the db a module gets when it declares data, and what a kernel's database
// option takes. Engines come from 'keel/pglite' and 'keel/postgres'.
export type { Database, DatabaseEngine } from './database.js';

// The transport a topology takes. Adapter authors implement it from 'keel/transport'.
export type { Transport } from './transport.js';
