/**
 * Observation hooks: how metrics, tracing or audit logs learn about calls and events without
 * the kernel knowing any of them. Hooks run synchronously on the hot path: keep them cheap.
 */

/**
 * Outcome recorded for a successful call or handled event.
 *
 * @example
 * ```ts
 * kernel.observe({
 *   callServed: (record) => {
 *     if (record.outcome !== OK_OUTCOME) console.warn(`${record.contract}.${record.operation} failed: ${record.outcome}`);
 *   },
 * });
 * ```
 */
export const OK_OUTCOME = 'ok';

/**
 * Outcome recorded for an event attempt its module's stop gave back before the handler ended
 * (`isGivenBack` accepts its error): not a failure, since the event is delivered again later and
 * never dead-lettered for it. Its own outcome, so that a rolling deploy does not show up as
 * `UNAVAILABLE` failures on a dashboard or an alert.
 *
 * @example
 * ```ts
 * import { GIVEN_BACK_OUTCOME, OK_OUTCOME } from 'keel/transport';
 *
 * kernel.observe({
 *   eventHandled: ({ outcome, subscriber }) => {
 *     if (outcome !== OK_OUTCOME && outcome !== GIVEN_BACK_OUTCOME) failures.inc({ subscriber });
 *   },
 * });
 * ```
 */
export const GIVEN_BACK_OUTCOME = 'given_back';

/**
 * One finished call, as seen by the caller (`callMade`) or the callee (`callServed`).
 *
 * @example
 * ```ts
 * import type { CallRecord } from 'keel/transport';
 *
 * const describe = (record: CallRecord): string =>
 *   `${record.caller} → ${record.contract}.${record.operation} over ${record.transport}: ${record.outcome} in ${record.durationMs.toFixed(1)} ms`;
 * kernel.observe({ callMade: (record) => console.log(describe(record)) });
 * ```
 */
export interface CallRecord {
  readonly contract: string;
  readonly operation: string;
  /** Transport the call went through: `local`, `nats`, ... */
  readonly transport: string;
  /** Calling module, or `external`. */
  readonly caller: string;
  readonly durationMs: number;
  /** `ok`, or the error's code (a KeelErrorCode or a declared error's code). */
  readonly outcome: string;
}

/**
 * One event handled (or failed) by a subscribing module.
 *
 * @example
 * ```ts
 * kernel.observe({
 *   eventHandled: (record) => {
 *     if (record.attempt > 1) console.warn(`${record.subscriber} handled ${record.contract}.${record.event} on attempt ${record.attempt}: ${record.outcome}`);
 *   },
 * });
 * ```
 */
export interface EventRecord {
  readonly contract: string;
  readonly event: string;
  readonly subscriber: string;
  readonly attempt: number;
  readonly durationMs: number;
  /** `ok`, {@link GIVEN_BACK_OUTCOME} (given back at its module's stop), or the error's code. */
  readonly outcome: string;
}

/**
 * A request a transport dropped before it became a call: a NATS request without a reply
 * subject (nobody could get the answer, so it is never handled).
 *
 * @example
 * ```ts
 * kernel.observe({ requestDropped: ({ contract, operation, reason }) => dropped.inc({ op: `${contract}.${operation}`, reason }) });
 * ```
 */
export interface DroppedRecord {
  readonly contract: string;
  readonly operation: string;
  readonly transport: string;
  /** Why: `no-reply` (a request without a reply subject). */
  readonly reason: 'no-reply';
}

/**
 * Receives call and event records from a kernel. Register with `kernel.observe(observer)`.
 *
 * @example
 * ```ts
 * const stop = kernel.observe({
 *   callServed: (record) => histogram.observe({ op: `${record.contract}.${record.operation}` }, record.durationMs),
 * });
 * ```
 */
/**
 * A call sent once more by its caller: a retry after a failure, or a hedge while an earlier
 * attempt is still out.
 *
 * @example
 * ```ts
 * const observer: KernelObserver = {
 *   callRetried: (record: RetryRecord) => console.log(`${record.contract}.${record.operation} attempt ${record.attempt} (${record.reason})`),
 * };
 * ```
 */
export interface RetryRecord {
  readonly contract: string;
  readonly operation: string;
  readonly transport: string;
  readonly caller: string;
  /** The attempt being sent, 2 and up. */
  readonly attempt: number;
  readonly reason: 'retry' | 'hedge';
}

export interface KernelObserver {
  callMade?(record: CallRecord): void;
  callServed?(record: CallRecord): void;
  eventHandled?(record: EventRecord): void;
  requestDropped?(record: DroppedRecord): void;
  /** A call was sent once more (retry or hedge): see {@link RetryRecord}. */
  callRetried?(record: RetryRecord): void;
}

/** The code of an error for a record: its `code` when it has one, else `INTERNAL`. */
export function outcomeOf(error: unknown): string {
  const envelope = (error as { envelope?: { code?: unknown } } | undefined)?.envelope;
  if (typeof envelope?.code === 'string') return envelope.code;
  const code = (error as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : 'INTERNAL';
}
