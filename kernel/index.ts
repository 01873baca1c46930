/**
 * keel — the kernel's public API.
 *
 * Contracts ({@link defineContract}, {@link operation}, {@link event}, {@link defineError}) are
 * plain data; modules ({@link defineModule}) implement one contract each; the kernel
 * ({@link createKernel}) wires them in one process or, given a {@link Transport}, across many.
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

// Contracts
export {
  Delivery,
  defineContract,
  event,
  isContract,
  majorOf,
  operation,
  type AnyContract,
  type AnyEvent,
  type AnyOperation,
  type Contract,
  type ContractSpec,
  type DeclaredErrorOf,
  type EventDefinition,
  type EventInput,
  type EventPayload,
  type EventSpec,
  type HandlerInput,
  type HandlerOutput,
  type OperationDefinition,
  type OperationInput,
  type OperationOutput,
  type OperationSpec,
} from './contract.js';

// Errors
export {
  ContractError,
  ErrorKind,
  KeelError,
  KeelErrorCode,
  defineError,
  isKeelError,
  validationError,
  type AnyErrorClass,
  type ErrorClass,
  type ErrorSpec,
  type KeelErrorOptions,
  type ValidationIssue,
} from './errors.js';

// Modules
export {
  defineModule,
  type AnyModule,
  type Emit,
  type EventContext,
  type EventHandler,
  type EventHandlerFunction,
  type EventHandlerOptions,
  type EventHandlers,
  type ExactHandlers,
  type Handlers,
  type Module,
  type ModuleInstance,
  type ModuleSpec,
  type ModuleTools,
  type OperationHandler,
  type Resolver,
} from './module.js';

// Clients and call context
export { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, createClient, type CallOptions, type Client, type ClientOptions } from './client.js';
export {
  EXTERNAL_CALLER,
  currentContext,
  isCorrelationId,
  isTraceparent,
  newCorrelationId,
  newTraceparent,
  remainingMs,
  runWithContext,
  type CallContext,
} from './context.js';

// Kernel
export {
  DEFAULT_KERNEL_OPTIONS,
  LifecycleState,
  createKernel,
  type Kernel,
  type KernelClientOptions,
  type KernelOptions,
  type KernelStatus,
  type Topology,
} from './kernel.js';
export type { DeadLetter } from './served.js';

// Observation
export { OK_OUTCOME, type CallRecord, type EventRecord, type KernelObserver } from './observer.js';

// Logging
export { createLogger, silentLogger, type LogFunction, type Logger } from './logger.js';

// Transports: the one a topology takes, and the in-process one. Adapter authors implement the
// port from 'keel/transport' (kernel/transport-entry.ts).
export type { EventMetadata, Transport } from './transport.js';
export { DEFAULT_LOCAL_TRANSPORT_OPTIONS, createLocalTransport, type LocalTransportOptions } from './local.js';
