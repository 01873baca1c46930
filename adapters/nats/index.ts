/**
 * keel/nats — the NATS transport. Carries keel calls and events between processes over NATS:
 * request/reply with one queue group per module, modules answering the NATS service API
 * (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`) as services, notification events on core NATS and durable events
 * on JetStream. The wire protocol is documented in docs/wire-protocol.md.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
 *
 * const transport = await createNatsTransport(natsOptionsFromEnv(process.env) ?? {});
 * const kernel = createKernel({ modules, topology: { host: ['orders'], transport } });
 * await kernel.start();
 * ```
 *
 * @module
 */

export { createNatsTransport } from './transport.js';
export { DEFAULT_NATS_TRANSPORT_OPTIONS, type NatsStreamOptions, type NatsTlsOptions, type NatsTransportOptions } from './options.js';
export { natsAuthOptions, type NatsAuthOptions } from './connection-options.js';
export { NatsConnectFailure } from './connection.js';
export { NATS_ENV, natsOptionsFromEnv } from './options-from-env.js';
export { removeEventStreams } from './remove-streams.js';
export { DECLARED_ERROR_CODES, Header, SERVICE_ERROR_CODES, Subjects } from './wire.js';
export { ENDPOINT_STATS_TYPE, isEndpointStatsData, type EndpointStatsData } from './endpoint-stats.js';
export {
  SERVICE_API_PREFIX,
  ServiceResponseType,
  type ServiceEndpointInfo,
  type ServiceEndpointStats,
  type ServiceIdentity,
  type ServiceInfo,
  type ServiceStats,
} from './service-api.js';
export { askServices, type ServiceQuestionOptions, type ServiceVerb } from './service-client.js';
