/**
 * Publishing one durable event to JetStream until it is acknowledged: an attempt that gets no
 * PubAck in time, or no responder (a stream leader being elected, a connection that moved to
 * another server), is sent again with the same `Nats-Msg-Id`, so that JetStream's duplicate
 * window stores it once whichever attempts reached it. Bounded: `publishAttempts` attempts,
 * a growing delay with jitter between them, and every attempt within the duplicate window.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeelError, KeelErrorCode } from 'keel';
import { JetStreamApiError, type JetStreamClient, type PubAck } from '@nats-io/jetstream';
import { RequestError, errors, type MsgHdrs } from '@nats-io/transport-node';
import { reason, type Connection } from './connection.js';

/** Longest delay between two attempts. */
const MAX_RETRY_DELAY_MS = 3_000;

/** JetStream API error codes that say JetStream is off for good, not busy: not retried. */
const JS_NOT_ENABLED = new Set([10039, 10076]);

/** What one failed attempt says about the event. */
type Outcome = 'not-stored' | 'unknown' | 'final';

/**
 * True when the server refused the publish (a permission violation, an authorization error),
 * itself or as the cause of the request's error: it never reached JetStream and never will.
 */
export function isRefusal(error: unknown): boolean {
  const refused = (e: unknown) => e instanceof errors.PermissionViolationError || e instanceof errors.AuthorizationError;
  return refused(error) || (error instanceof Error && refused(error.cause));
}

function outcomeOf(error: unknown): Outcome {
  if (error instanceof errors.TimeoutError) return 'unknown';
  // A permission violation on the publish subject (v3 rejects the request with a RequestError
  // whose cause is the PermissionViolationError): refused, final, as it was in v2.
  if (isRefusal(error)) return 'final';
  // The client (v3) reports "no responders" to a publish as JetStreamNotEnabled, the request's
  // RequestError (no responders) as its cause: nothing took the message (a leader being elected).
  const request = error instanceof RequestError ? error : error instanceof Error && error.cause instanceof RequestError ? error.cause : undefined;
  if (request?.isNoResponders()) return 'not-stored';
  // A request cut short by a disconnect or a closed connection: it may have reached JetStream.
  if (request !== undefined) return 'unknown';
  const api = error instanceof JetStreamApiError ? error : error instanceof Error && error.cause instanceof JetStreamApiError ? error.cause : undefined;
  // A 503 answer from JetStream itself: temporarily unavailable (no quorum, a leader change).
  if (api?.status === 503 && !JS_NOT_ENABLED.has(api.code)) return 'not-stored';
  return 'final';
}

/** The delay before attempt `attempt + 1`: exponential, capped, with half to all of it as jitter. */
export function retryDelay(baseMs: number, attempt: number): number {
  const full = Math.min(baseMs * 2 ** (attempt - 1), MAX_RETRY_DELAY_MS);
  return full / 2 + Math.random() * (full / 2);
}

/** One durable event on its way to JetStream. */
export interface PublishAttempt {
  readonly subject: string;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs;
  /** The event id, sent as `Nats-Msg-Id`. */
  readonly msgId: string;
  /** `contract.event`, for messages and logs. */
  readonly label: string;
  readonly correlationId: string | undefined;
  /** The stream's duplicate window: no attempt may start later than this after the first. */
  readonly duplicateWindowMs: number;
}

/**
 * Publishes `event` with retries; resolves with the acknowledgement of the attempt JetStream
 * confirmed (`duplicate` when an earlier attempt had been stored). Rejects with `TIMEOUT` when
 * an attempt may have been stored, `UNAVAILABLE` when none was, after the last attempt.
 */
export async function publishWithRetry(connection: Connection, js: JetStreamClient, event: PublishAttempt): Promise<PubAck> {
  const { options, logger } = connection;
  const timeout = options.jetStreamTimeoutMs;
  const started = performance.now();
  let maybeStored = false;
  for (let attempt = 1; ; attempt++) {
    try {
      const ack = await js.publish(event.subject, event.data, { msgID: event.msgId, headers: event.headers, timeout });
      if (attempt > 1) {
        logger.info(
          { event: event.label, eventId: event.msgId, attempt, duplicate: ack.duplicate, elapsedMs: Math.round(performance.now() - started) },
          ack.duplicate
            ? 'JetStream confirmed a durable event sent again: an earlier attempt had been stored, and the duplicate window dropped this one'
            : 'JetStream confirmed a durable event sent again after an unconfirmed attempt',
        );
      }
      return ack;
    } catch (error) {
      const outcome = outcomeOf(error);
      if (outcome === 'final') throw error;
      if (outcome === 'unknown') maybeStored = true;
      const delay = retryDelay(options.publishRetryDelayMs, attempt);
      const elapsed = performance.now() - started;
      // The next attempt must reach JetStream within the duplicate window, counted from the first.
      const inWindow = elapsed + delay + timeout <= event.duplicateWindowMs;
      if (attempt >= options.publishAttempts || !inWindow || connection.closed) {
        throw gaveUp(event, error, { attempts: attempt, elapsedMs: elapsed, maybeStored, timeout, closed: connection.closed });
      }
      logger.debug({ event: event.label, eventId: event.msgId, attempt, retryInMs: Math.round(delay), err: error }, 'durable event not confirmed; sending it again');
      await sleep(delay);
    }
  }
}

function gaveUp(
  event: PublishAttempt,
  error: unknown,
  tries: { attempts: number; elapsedMs: number; maybeStored: boolean; timeout: number; closed: boolean },
): KeelError {
  const { label, correlationId } = event;
  const sent = `${tries.attempts} attempt${tries.attempts === 1 ? '' : 's'} over ${Math.round(tries.elapsedMs)} ms`;
  const details = { attempts: tries.attempts, elapsedMs: Math.round(tries.elapsedMs) };
  if (tries.maybeStored) {
    return new KeelError(
      KeelErrorCode.TIMEOUT,
      `Durable event ${label} was sent, but JetStream did not confirm storing it (${sent}, each waiting up to ${tries.timeout} ms; last: ${reason(error)}); ` +
        'it may or may not have been stored. Sending it again with the same event id stores it at most once within the stream\'s duplicate window. ' +
        'Check the NATS connection and the JetStream servers.',
      { correlationId, cause: error, details },
    );
  }
  return new KeelError(
    KeelErrorCode.UNAVAILABLE,
    `Durable event ${label} was not stored: no JetStream stream took it (${sent}; last: ${reason(error)}${tries.closed ? '; the transport is closed' : ''}). ` +
      'Check that nats-server runs with JetStream enabled (-js) and, in a cluster, that most of the stream\'s replicas are up to elect a leader.',
    { correlationId, cause: error, details },
  );
}
