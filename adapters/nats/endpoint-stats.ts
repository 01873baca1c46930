/**
 * keel's own counters for each endpoint (operation) of a module served on NATS, reported in
 * `$SRV.STATS` (service-api.ts): as the endpoint's standard fields, and again as its `data`.
 *
 * keel answers the service API itself, so the standard fields are keel's true counters of whole
 * calls: a request is counted when it is answered, its time runs until the reply was handed to
 * the NATS client, and every error reply counts as an error. (Earlier keel versions served
 * through the `nats` client's service framework, whose standard fields saw only the synchronous
 * part of the handler; `data` carried the true counters then, and still does, for readers written
 * against those versions and for the fields the standard set lacks: `num_no_reply`, `circuits`.)
 * docs/wire-protocol.md ("Statistics") describes both.
 */
import { performance } from 'node:perf_hooks';

/**
 * The `type` of keel's endpoint statistics, so readers can tell them from other `data`.
 *
 * @example
 * ```ts
 * const stats = (await nc.request('$SRV.STATS.catalog')).json<ServiceStats>(); // ServiceStats from 'keel/nats'
 * const keel = stats.endpoints?.filter((endpoint) => isEndpointStatsData(endpoint.data));
 * ENDPOINT_STATS_TYPE; // 'io.keel.endpoint_stats.v1'
 * ```
 */
export const ENDPOINT_STATS_TYPE = 'io.keel.endpoint_stats.v1';

/**
 * The `data` of one endpoint in `$SRV.STATS` for a keel module: the standard field names,
 * measured over the whole call, from the moment the request reaches keel's endpoint handler
 * until its reply (success or error) has been handed to the NATS client.
 *
 * @example
 * ```ts
 * const stats = (await nc.request('$SRV.STATS.catalog')).json<ServiceStats>(); // ServiceStats from 'keel/nats'
 * const getProduct = stats.endpoints?.find((endpoint) => endpoint.name === 'getProduct');
 * if (isEndpointStatsData(getProduct?.data)) {
 *   console.log(getProduct.data.num_errors, getProduct.data.average_processing_time / 1e6, 'ms');
 * }
 * ```
 */
export interface EndpointStatsData {
  readonly type: typeof ENDPOINT_STATS_TYPE;
  /** Requests answered (with an output or an error reply). Requests still running are not counted yet. */
  readonly num_requests: number;
  /** Answers that were error replies (`Nats-Service-Error-Code` set): declared errors included. */
  readonly num_errors: number;
  /** `Nats-Service-Error` of the last error reply (`CODE: message`), when there was one. */
  readonly last_error?: string;
  /** Total time of the answered requests, in nanoseconds. */
  readonly processing_time: number;
  /** `processing_time / num_requests`, rounded, in nanoseconds (0 before the first answer). */
  readonly average_processing_time: number;
  /**
   * Requests dropped unanswered because they had no reply subject (not in `num_requests`).
   * Absent in the statistics of a keel older than this field.
   */
  readonly num_no_reply?: number;
  /**
   * The serving process's circuit breakers that are not closed, by dependency (`open` or
   * `half-open`): the process's calls to those modules fail fast. Absent when every breaker is
   * closed, and in the statistics of a keel older than this field.
   */
  readonly circuits?: Readonly<Record<string, 'open' | 'half-open'>>;
  /**
   * `down` while the serving module's own database does not answer its checks (`select 1` every
   * `databaseCheckMs`): its calls and durable events fail or wait. Absent while it answers, for a
   * module that owns no data, and in the statistics of a keel older than this field.
   */
  readonly database?: 'down';
}

/**
 * True when `value` is keel's {@link EndpointStatsData} (the `data` of an endpoint in `$SRV.STATS`).
 *
 * @example
 * ```ts
 * for (const endpoint of stats.endpoints ?? []) {
 *   const errors = isEndpointStatsData(endpoint.data) ? endpoint.data.num_errors : endpoint.num_errors;
 * }
 * ```
 */
export function isEndpointStatsData(value: unknown): value is EndpointStatsData {
  if (typeof value !== 'object' || value === null) return false;
  const data = value as Record<string, unknown>;
  return (
    data['type'] === ENDPOINT_STATS_TYPE &&
    typeof data['num_requests'] === 'number' &&
    typeof data['num_errors'] === 'number' &&
    typeof data['processing_time'] === 'number' &&
    typeof data['average_processing_time'] === 'number'
  );
}

/**
 * The counters of one endpoint. Updated once per answered request with plain numbers (no
 * allocation); {@link EndpointCounters.report} builds the `data` object only when asked.
 */
export class EndpointCounters {
  requests = 0;
  errors = 0;
  /** Total processing time in milliseconds (fractional, from `performance.now()`). */
  processingMs = 0;
  lastError: string | undefined = undefined;
  /** Requests dropped because they had no reply subject. */
  noReply = 0;

  /** A request was answered; `startedAt` is the `performance.now()` of its arrival. */
  answered(startedAt: number): void {
    this.requests += 1;
    this.processingMs += performance.now() - startedAt;
  }

  /** The answer is an error reply (or the reply could not be sent), described by `description`. */
  failed(description: string): void {
    this.errors += 1;
    this.lastError = description;
  }

  report(circuits?: EndpointStatsData['circuits'], database?: EndpointStatsData['database']): EndpointStatsData {
    const processing = Math.round(this.processingMs * 1e6);
    return {
      type: ENDPOINT_STATS_TYPE,
      num_requests: this.requests,
      num_errors: this.errors,
      ...(this.lastError === undefined ? {} : { last_error: this.lastError }),
      processing_time: processing,
      average_processing_time: this.requests > 0 ? Math.round(processing / this.requests) : 0,
      num_no_reply: this.noReply,
      ...(circuits === undefined ? {} : { circuits }),
      ...(database === undefined ? {} : { database }),
    };
  }
}
