/**
 * Asking the NATS service API (`$SRV.PING/INFO/STATS`) from keel: the caller's question when
 * nothing answers an operation (caller.ts) and `keel status` (cli/tooling/status.ts). Every
 * instance of every matching service answers, so the answers are collected on one inbox until
 * they stop coming (`stallMs` after the latest, once those expected have come: `complete`) or
 * `maxWaitMs` has passed, whichever is first.
 * keel's own, like the serving side (service-api.ts): the NATS service client is not needed at
 * run time.
 */
import { Empty, errors, type NatsConnection } from '@nats-io/transport-node';
import { SERVICE_API_PREFIX, type ServiceIdentity, type ServiceInfo, type ServiceStats } from './service-api.js';

/** The longest delay Node's timers take (2^31 - 1 ms, about 24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A service API question. */
export type ServiceVerb = 'PING' | 'INFO' | 'STATS';

/** How long to collect answers. */
export interface ServiceQuestionOptions {
  /** Stop at the latest after this many milliseconds. */
  readonly maxWaitMs: number;
  /** Stop this many milliseconds after the latest answer, when no other follows. */
  readonly stallMs: number;
  /**
   * Reject with the client's error when the question fails for any reason but no responders
   * (a permission violation on `$SRV`, a closed connection), instead of resolving with what was
   * found so far. No responders always resolves: nothing runs. Default false.
   */
  readonly rejectOnError?: boolean;
  /**
   * Whether the answers so far are all that are expected (every instance a topology names, say).
   * While it says false, a stall does not end the question: only an answer that makes it true, or
   * `maxWaitMs`. Once it says true, the stall counts again, so late instances are still heard.
   * Default: always true.
   */
  readonly complete?: (answers: readonly ServiceIdentity[]) => boolean;
}

interface AnswerOf {
  PING: ServiceIdentity;
  INFO: ServiceInfo;
  STATS: ServiceStats;
}

/**
 * The answers to `$SRV.{verb}` (`.{name}` when given) within the options' time, parsed as JSON;
 * none when no service answers (the server's no-responders status). Answers that are not JSON
 * objects are left out. The question is a request on the connection's own inbox (its
 * `inboxPrefix`). Rejects only with `rejectOnError`; without it a failed question (a closed
 * connection, a permission violation) finds what it found so far.
 *
 * @example
 * ```ts
 * const infos = await askServices(nc, 'INFO', 'catalog', { maxWaitMs: 1_000, stallMs: 100 });
 * ```
 */
export async function askServices<V extends ServiceVerb>(
  nc: NatsConnection,
  verb: V,
  name: string | undefined,
  options: ServiceQuestionOptions,
): Promise<AnswerOf[V][]> {
  const subject = name === undefined ? `${SERVICE_API_PREFIX}.${verb}` : `${SERVICE_API_PREFIX}.${verb}.${name}`;
  // Node runs a timer longer than 2^31 - 1 ms at once: that would end the question before any answer.
  const maxWaitMs = Math.min(options.maxWaitMs, MAX_TIMER_MS);
  const found: AnswerOf[V][] = [];
  let stall: NodeJS.Timeout | undefined;
  let bound: NodeJS.Timeout | undefined;
  try {
    // Without `complete`, the client's stall strategy ends the question; it waits `stall` after
    // each answer without a total bound, so maxWait is kept here. With `complete`, which may hold
    // the stall off, the client's timer strategy bounds the question and the stall is timed here.
    // The iterator is the client's QueuedIterator, typed as a plain AsyncIterable: its stop() ends
    // the iteration and cancels the client's request (its timer, its entry on the inbox).
    const { complete } = options;
    const answers = await nc.requestMany(
      subject,
      Empty,
      complete === undefined ? { strategy: 'stall', maxWait: maxWaitMs, stall: options.stallMs } : { strategy: 'timer', maxWait: maxWaitMs },
    );
    const stop = (): void => (answers as Partial<{ stop(): void }>).stop?.();
    if (complete === undefined) bound = setTimeout(stop, maxWaitMs);
    for await (const msg of answers) {
      try {
        const answer: unknown = msg.json();
        if (typeof answer === 'object' && answer !== null) found.push(answer as AnswerOf[V]);
      } catch {
        // not JSON: not a service API answer
      }
      if (complete !== undefined) {
        clearTimeout(stall);
        stall = complete(found) ? setTimeout(stop, options.stallMs) : undefined;
      }
    }
  } catch (error) {
    // No responders: nothing runs, what was found so far stands. Anything else (a permission
    // violation, a closed connection) too, unless the caller asked to hear of it.
    if (options.rejectOnError === true && !isNoResponders(error)) throw error;
  } finally {
    clearTimeout(stall);
    clearTimeout(bound);
  }
  return found;
}

/** True for the client's "no responders" (v3: a NoRespondersError, or a RequestError caused by one). */
function isNoResponders(error: unknown): boolean {
  return error instanceof errors.NoRespondersError || (error instanceof errors.RequestError && error.isNoResponders());
}
