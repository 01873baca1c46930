/**
 * keel/transport — the door for adapter authors: the {@link Transport} port a transport
 * implements, and the pieces every transport shares (the answer of a served module, failures
 * with their codes, error envelopes, one deadline timer). Application authors import from
 * `'keel'` and never need this entry; `keel check` refuses it in application modules.
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
  PendingAnswer,
  RemoteFailure,
  cancelledError,
  noRespondersError,
  timeoutError,
  unknownOperationFailure,
  versionMismatchFailure,
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
export { fromErrorEnvelope, isErrorEnvelope, toErrorEnvelope } from './envelope.js';
export { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
export { definedOnly, describeValue, parseOptions } from './options.js';
export { STATUS_BY_ERROR_KIND } from './error-kind-status.js';
