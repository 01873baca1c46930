/**
 * keel/transport — the door for adapter and tooling authors: the {@link Transport} port a
 * transport implements, and the pieces every transport shares (the answer of a served module,
 * failures with their codes, error envelopes, one deadline timer); what a gateway, an observer
 * and the CLI's tools use (the contract's parts, the call context's rules, observer records,
 * the `DEFAULT_*` options, clients and the in-process transport made by hand). Adapters import
 * the application's names (`createKernel`, `KeelError`, `CallContext`, ...) from `'keel'`; no
 * name is in both doors but `type Transport`. Application authors import from `'keel'` and never
 * need this entry; `keel check` refuses it in application modules.
 *
 * @example
 * ```ts
 * import { RemoteFailure, noRespondersError, type Transport, type ServedModule } from 'keel/transport';
 *
 * class MyTransport implements Transport {
 *   // call, serve, publish, subscribe, status, close
 * }
 * ```
 *
 * @module
 */
export {
  Fanout,
  RemoteFailure,
  type Answer,
  type ErrorEnvelope,
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
export {
  cancelledError,
  isDatabaseUnreachable,
  isGivenBack,
  noRespondersError,
  timeoutError,
  unknownOperationFailure,
  versionMismatchFailure,
} from './transport-failures.js';
export { callAbandoned } from './call-signal.js';
export { fromErrorEnvelope, isErrorEnvelope, toErrorEnvelope } from './envelope.js';
export { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
export { unwatchSignal, watchSignal, type AbortableCall } from './signal-watch.js';
export { definedOnly, describeValue, loggerOption, parseOptions } from './options.js';
export { nearestName } from './nearest-name.js';
export { STATUS_BY_ERROR_KIND } from './error-kind-status.js';
// Moved from 'keel': used by adapters, the CLI's tools and tests, never by an application.
export { isContract, majorOf, type AnyOperation } from './contract.js';
export { ContractError } from './declared-errors.js';
export { createClient, type CallOptions, type ClientOptions } from './client.js';
export { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS } from './timeouts.js';
export { EXTERNAL_CALLER, newCorrelationId, newTraceparent } from './context.js';
export { isCorrelationId, isIdempotencyKey, isTraceparent } from './call-ids.js';
export { DEFAULT_KERNEL_OPTIONS } from './kernel.js';
export { GATEWAY_CLOSE_MARGIN_MS, gatewayCloseBoundMs, kernelStopBoundMs, type GatewayDeadlines } from './stop-bounds.js';
export { DataOptionsSchema, ResilienceOptionsSchema } from './kernel-option-checks.js';
export type { DeadLetter } from './subscription.js';
export { GIVEN_BACK_OUTCOME, OK_OUTCOME, type CallRecord, type DroppedRecord, type EventRecord, type KernelObserver, type RetryRecord } from './observer.js';
export { DEFAULT_CALL_POLICIES } from './call-policy.js';
export type { CircuitStatus } from './circuit-breaker.js';
export { LogFormat, createLogger, logFormatOf, type LogDestination, type LoggerOptions } from './logger.js';
export { callLogFields, logFields } from './log-fields.js';
export { KEEL_ROOT_CONTEXT, KeelContextManager } from './otel-context.js';
export { disableTracing, enableTracing, keelTracer, startSpanWith, tracingRequested, type TracingOptions } from './tracing.js';
export { spanContextOf, traceparentOf } from './traceparent.js';
export { createLocalTransport, type LocalTransport } from './local.js';
export { DEFAULT_LOCAL_TRANSPORT_OPTIONS, type LocalTransportOptions } from './local-options.js';
export { InFlight, within } from './in-flight.js';
export { KeyedLogThrottle, LogThrottle } from './log-throttle.js';
export { quoteIdentifier, roleOf, schemaOf, schemaSetup, type DatabaseEngine, type QueryResult, type Row, type SchemaConnection, type SqlRunner } from './database.js';
export { migrate, migrationStatus, readMigrations, type MigrateOptions, type Migration, type MigrationState } from './migrations.js';
