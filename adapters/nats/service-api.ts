/**
 * The NATS service API (the "micro" protocol), answered by keel itself for one served module:
 * `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS`, each for all services, for `.{name}` and for
 * `.{name}.{id}`, with the JSON documents the NATS clients' service frameworks (nats.js, Go
 * micro) produce, so `nats micro ls`, a `ServiceClient` and keel's own tooling discover keel
 * modules as before. keel serves its operations on plain queue subscriptions (responder.ts):
 * no service framework wraps every request, and the statistics are keel's own counters of
 * whole calls (endpoint-stats.ts). docs/wire-protocol.md, "Discovery".
 */
import { nuid, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { EndpointCounters, EndpointStatsData } from './endpoint-stats.js';

/** The prefix of the service API's subjects. */
export const SERVICE_API_PREFIX = '$SRV';

/** The `type` of each service API answer, as the NATS service frameworks name them. */
export const ServiceResponseType = {
  PING: 'io.nats.micro.v1.ping_response',
  INFO: 'io.nats.micro.v1.info_response',
  STATS: 'io.nats.micro.v1.stats_response',
} as const;

/** What `$SRV.PING` answers; the first fields of every answer. */
export interface ServiceIdentity {
  readonly type: string;
  readonly name: string;
  readonly id: string;
  readonly version: string;
  readonly metadata: Readonly<Record<string, string>>;
}

/** One endpoint in `$SRV.INFO`. */
export interface ServiceEndpointInfo {
  readonly subject: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly name: string;
  readonly queue_group: string;
}

/** What `$SRV.INFO` answers. */
export interface ServiceInfo extends ServiceIdentity {
  readonly description: string;
  readonly endpoints: readonly ServiceEndpointInfo[];
}

/** One endpoint in `$SRV.STATS`: the standard fields, and `data` (keel's {@link EndpointStatsData} for keel modules). */
export interface ServiceEndpointStats {
  readonly name: string;
  readonly subject: string;
  readonly average_processing_time: number;
  readonly num_errors: number;
  readonly num_requests: number;
  readonly processing_time: number;
  readonly last_error?: string;
  readonly data?: unknown;
  readonly queue_group: string;
}

/** What `$SRV.STATS` answers. */
export interface ServiceStats extends ServiceIdentity {
  /** When the service started, ISO 8601. */
  readonly started: string;
  readonly endpoints: readonly ServiceEndpointStats[];
}

/** One endpoint of a served module, as the service API describes and counts it. */
export interface ServiceEndpoint extends ServiceEndpointInfo {
  readonly counters: EndpointCounters;
}

/** What a {@link ServiceApi} describes. */
export interface ServiceDescription {
  readonly name: string;
  readonly version: string;
  readonly description: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly endpoints: readonly ServiceEndpoint[];
  /** The endpoints' `data` extras at the time of the `$SRV.STATS` question: the open circuits, a database down. */
  readonly circuits: () => EndpointStatsData['circuits'];
  readonly database: () => EndpointStatsData['database'];
}

/** The service API subjects of one service: each verb for all, for the name, for the instance. */
export function serviceApiSubjects(name: string, id: string): string[] {
  return ['PING', 'INFO', 'STATS'].flatMap((verb) => [
    `${SERVICE_API_PREFIX}.${verb}`,
    `${SERVICE_API_PREFIX}.${verb}.${name}`,
    `${SERVICE_API_PREFIX}.${verb}.${name}.${id}`,
  ]);
}

/**
 * Answers the service API for one served module, on subscriptions without a queue group (every
 * instance answers). `started` and `id` are this instance's.
 */
export class ServiceApi {
  readonly id = nuid.next();
  readonly started = new Date().toISOString();
  readonly #nc: NatsConnection;
  readonly #service: ServiceDescription;
  readonly #subscriptions: Subscription[] = [];
  readonly #ping: string;
  readonly #info: string;

  /**
   * @param isNoInbox whether a reply subject can be no caller's inbox (`Subjects.isNoInbox`): a
   *   question asking for its answer there is ignored.
   */
  constructor(nc: NatsConnection, service: ServiceDescription, onError: (error: Error, subject: string) => void, isNoInbox: (reply: string) => boolean) {
    this.#nc = nc;
    this.#service = service;
    this.#ping = JSON.stringify(this.ping());
    this.#info = JSON.stringify(this.info());
    for (const subject of serviceApiSubjects(service.name, this.id)) {
      const verb = subject.split('.')[1];
      this.#subscriptions.push(
        nc.subscribe(subject, {
          callback: (error: Error | null, msg: Msg) => {
            if (error !== null) {
              onError(error, subject);
              return;
            }
            // A reply subject among NATS's reserved ones ($JS.API…) or keel's own is no inbox:
            // answering there would publish with this process's right to answer (responder.ts).
            if (msg.reply === undefined || msg.reply === '' || isNoInbox(msg.reply)) return;
            try {
              msg.respond(verb === 'PING' ? this.#ping : verb === 'INFO' ? this.#info : JSON.stringify(this.stats()));
            } catch (failure) {
              onError(failure as Error, subject);
            }
          },
        }),
      );
    }
  }

  ping(): ServiceIdentity {
    const { name, version, metadata } = this.#service;
    return { type: ServiceResponseType.PING, name, id: this.id, version, metadata };
  }

  info(): ServiceInfo {
    const { name, version, description, metadata, endpoints } = this.#service;
    return {
      type: ServiceResponseType.INFO,
      name,
      id: this.id,
      version,
      description,
      metadata,
      endpoints: endpoints.map(({ subject, metadata: endpointMetadata, name: endpointName, queue_group }) => ({
        subject,
        metadata: endpointMetadata,
        name: endpointName,
        queue_group,
      })),
    };
  }

  /** The statistics: the standard fields and `data` are both keel's counters of whole calls. */
  stats(): ServiceStats {
    const { name, version, metadata, endpoints } = this.#service;
    const circuits = this.#service.circuits();
    const database = this.#service.database();
    return {
      type: ServiceResponseType.STATS,
      name,
      id: this.id,
      version,
      started: this.started,
      metadata,
      endpoints: endpoints.map((endpoint) => {
        const data = endpoint.counters.report(circuits, database);
        return {
          name: endpoint.name,
          subject: endpoint.subject,
          average_processing_time: data.average_processing_time,
          num_errors: data.num_errors,
          num_requests: data.num_requests,
          processing_time: data.processing_time,
          ...(data.last_error === undefined ? {} : { last_error: data.last_error }),
          data,
          queue_group: endpoint.queue_group,
        };
      }),
    };
  }

  /** Stops answering: drains the subscriptions (questions already routed here are answered). */
  async drain(): Promise<void> {
    if (this.#nc.isClosed()) return;
    await Promise.allSettled(this.#subscriptions.map((subscription) => subscription.drain()));
  }
}
