/**
 * A served call with an idempotency key to an operation that is not idempotent: it runs once
 * per key, and a later request with the same key replays the first outcome. Off the hot path:
 * served.ts comes here only for such calls.
 */
import type { CallContext } from './context.js';
import { KeelErrorCode } from './errors.js';
import { inputHash, type Claim, type IdempotencyStore, type StoredOutcome } from './idempotency.js';
import { databaseUnreachable } from './inbox-failures.js';
import type { Logger } from './logger.js';
import { TracedAnswer, expiredFailure } from './served-answers.js';
import { RemoteFailure, type Answer, type OperationAddress } from './transport.js';
import { callLogFields } from './log-fields.js';
import { InFlight } from './in-flight.js';
import { LONGEST_TIMER_MS } from './timeouts.js';

/**
 * A key still running this long after its first request's deadline, or after its run's last
 * renewal, is taken over by a retry: its process died (or stopped renewing), and nothing else
 * will record or free it.
 */
export const IDEMPOTENCY_TAKEOVER_GRACE_MS = 5_000;

/**
 * Holds a claimed key while its run lasts. A handler that does not stop at its signal runs on
 * past its deadline, and its key must stay `in-use` to a retry until it finished: taken over at
 * the claim's first expiry (its deadline plus the grace), the retry would run the operation a
 * second time beside the first (a second charge). Renewed every half grace once the deadline
 * passed, so that only a key whose process died (or cannot reach its store) is taken over. One
 * timer per keyed call, cleared once the run settled and its outcome is recorded.
 */
class KeyLease {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #ended = false;
  /** Until when the store holds the key for this run (epoch ms): the claim's expiry, then each renewal's. */
  #heldUntil: number;

  constructor(
    readonly store: IdempotencyStore,
    readonly operation: string,
    readonly key: string,
    readonly token: string,
    readonly onError: (error: unknown) => void,
    expiresAt: number,
  ) {
    this.#heldUntil = expiresAt;
    this.#schedule(expiresAt - IDEMPOTENCY_TAKEOVER_GRACE_MS / 2 - Date.now());
  }

  /** Until when the store holds the key for this run (epoch ms), as far as this run knows. */
  get heldUntil(): number {
    return this.#heldUntil;
  }

  /** True once the lease ended: recorded, let go, no longer this run's, or its module stopped. */
  get ended(): boolean {
    return this.#ended;
  }

  /** The run settled and its outcome is recorded, or its key let go: no renewal after it. */
  end(): void {
    this.#ended = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(delayMs: number): void {
    // A deadline as far off as timeoutMs allows puts the first renewal past the longest delay a
    // timer holds, which would fire at once (and cut the claim short): waited for in steps.
    const step = Math.min(Math.max(0, delayMs), LONGEST_TIMER_MS);
    this.#timer = setTimeout(() => (step < delayMs ? this.#schedule(delayMs - step) : this.#renew()), step);
    this.#timer.unref?.();
  }

  #renew(): void {
    this.#timer = undefined;
    if (this.#ended) return;
    const expiresAt = Date.now() + IDEMPOTENCY_TAKEOVER_GRACE_MS;
    this.store.extend(this.operation, this.key, this.token, expiresAt).then(
      (held) => {
        // Not held: the claim is no longer this run's (recorded, let go, taken over), or the module stopped.
        if (!held) return this.end();
        this.#heldUntil = expiresAt;
        if (!this.#ended) this.#schedule(IDEMPOTENCY_TAKEOVER_GRACE_MS / 2);
      },
      (error: unknown) => {
        // Tried again while the key is still held; once it lapsed, a retry may have taken it over
        // (as from a process that died): renewing then would hold nothing, and a module stopped
        // under a handler that never ends would log this for good.
        if (this.#ended) return;
        this.onError(error);
        if (Date.now() < this.#heldUntil) this.#schedule(Math.min(500, this.#heldUntil - Date.now()));
      },
    );
  }
}

/** The wait between two tries of an outcome write that failed (ms). */
const RECORD_RETRY_MS = 250;

/** The outcome writes still being tried of each store's module: its stop waits for them (module-host.ts). */
const recording = new WeakMap<IdempotencyStore, InFlight>();

/**
 * Settles once no outcome write of `store`'s runs is being tried: a module's stop waits for it,
 * within its drain, before it closes the store; a write still failing then gives up.
 */
export function recordsSettled(store: IdempotencyStore): Promise<void> {
  return recording.get(store)?.idle() ?? Promise.resolve();
}

/** How an outcome write went, for its log lines: each once. */
export type RecordNews = 'failed' | 'recorded-late' | 'lapsed' | 'stopped';

/**
 * Writes a finished run's outcome (or lets its key go), tried again every {@link RECORD_RETRY_MS}
 * while the run still holds its key: given up at once (the database away for a moment), the key
 * would stay `running` until its claim lapsed, and a retry would then take it over and run the
 * operation again. Once the key is no longer held, a retry may have taken it over: the write is
 * given up (it would change nothing: it holds only for this run's token); so it is once the
 * store is closed (its module stopped, after waiting for these writes within its drain).
 * `answered` is called after the first try, written or not: the caller's answer waits for no
 * further try. `news` is told of a first failure, and of how a failed write ended.
 */
function recordWhileHeld(
  store: IdempotencyStore,
  write: () => Promise<void>,
  lease: KeyLease,
  answered: () => void,
  news: (what: RecordNews, error?: unknown) => void,
): void {
  let inFlight = recording.get(store);
  if (inFlight === undefined) recording.set(store, (inFlight = new InFlight()));
  const pending = inFlight;
  pending.begin();
  let tries = 0;
  const attempt = (): void => {
    tries += 1;
    write().then(
      () => {
        lease.end();
        if (tries === 1) answered();
        else news('recorded-late');
        pending.end();
      },
      (error: unknown) => {
        const stopped = store.closed;
        const givenUp = stopped || lease.ended || Date.now() + RECORD_RETRY_MS >= lease.heldUntil;
        // Logged once when the first try fails, and once more when the write ends: not every 250 ms.
        if (tries === 1) news('failed', error);
        if (givenUp) news(stopped ? 'stopped' : 'lapsed', error);
        if (tries === 1) answered();
        if (!givenUp) {
          setTimeout(attempt, RECORD_RETRY_MS).unref?.();
          return;
        }
        lease.end();
        pending.end();
      },
    );
  };
  attempt();
}

/** The error lines of an outcome write that failed. */
const UNRECORDED = {
  failed: 'could not record the outcome of an idempotency key; trying again while the key is held',
  lapsed: 'could not record the outcome of an idempotency key, and its claim has lapsed: a retry with this key may run it again',
  stopped:
    'could not record the outcome of an idempotency key before its module stopped: the key stays running until its claim lapses, ' +
    'then a retry with this key may run it again',
} as const;

/** What the keyed run needs of its served module's pipeline (served.ts). */
export interface KeyedPipeline<Entry extends { readonly name: string }> {
  /** The contract's name, for messages and log lines. */
  readonly contract: string;
  readonly logger: Logger;
  /** Outcomes a handler reached after its call was answered TIMEOUT: a key records them. */
  readonly lateOutcomes: WeakMap<RemoteFailure, StoredOutcome>;
  /** Checks a handler's result against the output schema and settles `answer`. */
  readonly finish: (entry: Entry, result: unknown, context: CallContext, answer: Answer) => void;
  /** The failure an error becomes on the wire. */
  readonly failure: (error: unknown, address: OperationAddress, entry: Entry, context: CallContext) => RemoteFailure;
  /** Runs the handler (deadline, bulkhead) and settles `answer`. */
  readonly execute: (entry: Entry, address: OperationAddress, value: unknown, context: CallContext, answer: Answer, fresh: boolean) => void;
}

/**
 * The keyed run of a served module: claims the call's key in `store`, then runs the handler
 * and records its outcome, or replays the outcome recorded, or refuses a key in use or reused.
 *
 * @example
 * ```ts
 * const once = keyedRun({ contract: 'orders', logger, lateOutcomes, finish, failure, execute });
 * if (context.idempotencyKey !== undefined && !definition.idempotent) void once(store, entry, address, value, context, answer);
 * ```
 */
export function keyedRun<Entry extends { readonly name: string }>(pipeline: KeyedPipeline<Entry>) {
  const { contract, logger, lateOutcomes, finish, failure, execute } = pipeline;
  return async (
    store: IdempotencyStore,
    entry: Entry,
    address: OperationAddress,
    value: unknown,
    context: CallContext,
    answer: Answer,
  ): Promise<void> => {
    const key = context.idempotencyKey as string;
    const label = `${contract}.${entry.name}`;
    // A call already late claims nothing: it would only write a key to abandon it.
    const late = Date.now() - context.deadline;
    if (late >= 0) {
      answer.fail(expiredFailure(contract, entry.name, late, context));
      return;
    }
    let claim: Claim;
    try {
      // A key is one principal's: another's request with the same key and input is a reuse, never a replay of someone else's answer.
      const hashed = context.principal === undefined ? value : { input: value, principal: context.principal };
      claim = await store.claim(entry.name, key, inputHash(hashed), context.deadline + IDEMPOTENCY_TAKEOVER_GRACE_MS);
    } catch (error) {
      logger.error({ err: error, ...callLogFields(context, { operation: entry.name }) }, 'could not claim an idempotency key');
      // The key's store is the module's database: away, nothing ran, and a retry with the same key is safe.
      // The database's own error (its address, its host name) stays in the line above: this answer may reach an HTTP client.
      answer.fail(
        databaseUnreachable(error)
          ? new RemoteFailure({
              type: 'keel',
              code: KeelErrorCode.UNAVAILABLE,
              message: `${label}: the module could not reach its database to claim idempotency key ${JSON.stringify(key)} (its logs have the error, correlation id ${context.correlationId}). Nothing ran; retry later with the same key.`,
              correlationId: context.correlationId,
            })
          : failure(error, address, entry, context),
      );
      return;
    }
    if (claim.kind === 'replay') {
      if (answer instanceof TracedAnswer) answer.span.setAttribute('keel.idempotency.replayed', true);
      // The stored output goes through the output schema again: the same value in the same key
      // order as the first answer (the database may have reordered an object's keys).
      if ('output' in claim.outcome) finish(entry, claim.outcome.output, context, answer);
      else answer.fail(new RemoteFailure({ ...claim.outcome.failure, correlationId: context.correlationId }));
      return;
    }
    if (claim.kind !== 'run') {
      const reused = claim.kind === 'reused';
      answer.fail(
        new RemoteFailure({
          type: 'keel',
          code: reused ? KeelErrorCode.IDEMPOTENCY_KEY_REUSED : KeelErrorCode.IDEMPOTENCY_KEY_IN_USE,
          message: reused
            ? `${label}: idempotency key ${JSON.stringify(key)} was used before with another input, or by another principal (another caller, or the same one with other roles). Nothing ran; use a new key for a new request.`
            : `${label}: a request with idempotency key ${JSON.stringify(key)} is still running. Nothing ran; retry later with the same key to get its outcome.`,
          correlationId: context.correlationId,
        }),
      );
      return;
    }
    const lease = new KeyLease(
      store,
      entry.name,
      key,
      claim.token,
      (error) => logger.error({ err: error, ...callLogFields(context, { operation: entry.name }) }, 'could not hold the idempotency key of a run past its deadline'),
      context.deadline + IDEMPOTENCY_TAKEOVER_GRACE_MS,
    );
    const unrecorded = (what: RecordNews, error?: unknown) => {
      const fields = { ...(error === undefined ? {} : { err: error }), ...callLogFields(context, { operation: entry.name }) };
      if (what === 'recorded-late') logger.info(fields, 'recorded the outcome of an idempotency key once its database answered again');
      else logger.error(fields, UNRECORDED[what]);
    };
    execute(entry, address, value, context, {
      watch: (controller) => answer.watch?.(controller),
      // The lease ends once the outcome is recorded (or the key let go), not before: a slow write
      // would otherwise let the key lapse, and a retry take it over and run again. A renewal racing
      // the write changes nothing: extend holds only a claim still running under this token.
      ok: (output) => {
        recordWhileHeld(store, () => store.complete(entry.name, key, claim.token, { output }), lease, () => answer.ok(output), unrecorded);
      },
      fail: (remote) => {
        // A declared error is the request's final answer; any other failure may be retried with the
        // same key, but for a TIMEOUT whose handler reached an outcome after all (lateOutcomes).
        const late = lateOutcomes.get(remote);
        const record = () =>
          late !== undefined
            ? store.complete(entry.name, key, claim.token, late)
            : remote.envelope.type === 'declared'
              ? store.complete(entry.name, key, claim.token, { failure: remote.envelope })
              : store.abandon(entry.name, key, claim.token);
        recordWhileHeld(store, record, lease, () => answer.fail(remote), unrecorded);
      },
    }, false);
  };
}
