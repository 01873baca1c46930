/**
 * The transactional outbox's relay: publishes the events a module's committed transactions
 * wrote to its `keel_outbox`, in the order they were written, with a window of them awaiting
 * confirmation at once, and marks each one sent once the transport accepted it (a JetStream
 * PubAck over NATS). A failed publish stops the round and is retried alone, with a growing
 * delay, before the events behind it (docs/design-notes.md, "A window of publishes"). A crash
 * between publish and mark publishes the event again with the same id, which JetStream's
 * duplicate window and the subscribers' inbox absorb. An event the transport
 * refuses for good (PAYLOAD_TOO_LARGE, INVALID_EVENT: no retry can succeed) is set aside
 * (`failed_at`, `last_error`) and logged as an error naming it, so that it does not hold back
 * every event after it.
 */
import { trace } from './otel-api.js';
import { KEEL_ROOT_CONTEXT, contextStorage, detached } from './otel-context.js';
import { endSpan, keelTracer, startRelaySpan } from './tracing.js';
import type { AnyContract } from './contract.js';
import { KeelErrorCode, isKeelError } from './errors.js';
import type { SchemaConnection } from './database.js';
import type { Logger } from './logger.js';
import type { PublishedEvent } from './transport.js';
import { publishInWindow } from './outbox-window.js';

/** How the relay paces itself. */
export interface OutboxRelayOptions {
  /** Rows claimed and published per round (default 200). */
  readonly batchSize: number;
  /**
   * Publishes of a round awaiting their confirmation at once (default 32). Each is sent in the
   * order written; a window wider than 1 lets the relay send the next event before the last one
   * is confirmed, instead of waiting one round trip per event.
   */
  readonly window: number;
  /** How often the relay looks for rows left behind (a crash, another instance's claim that expired), in ms (default 1 000). */
  readonly pollMs: number;
  /** How long a claimed row is reserved for the instance that claimed it, in seconds (default 30). */
  readonly claimSeconds: number;
  /** First retry delay after a failed publish, doubled up to `maxBackoffMs` (default 100 ms). */
  readonly backoffMs: number;
  readonly maxBackoffMs: number;
  /** Sent rows are deleted after this many seconds (default 3 600). */
  readonly retentionSeconds: number;
  /** Inbox records of handled events are deleted after this many seconds (default 7 days). */
  readonly inboxRetentionSeconds: number;
}

export const DEFAULT_OUTBOX_RELAY_OPTIONS: OutboxRelayOptions = {
  batchSize: 200,
  window: 32,
  pollMs: 1_000,
  claimSeconds: 30,
  backoffMs: 100,
  maxBackoffMs: 5_000,
  retentionSeconds: 3_600,
  inboxRetentionSeconds: 7 * 24 * 3_600,
};

interface OutboxRow {
  readonly seq: string;
  readonly id: string;
  readonly event: string;
  readonly payload: unknown;
  readonly correlation_id: string;
  readonly traceparent: string | null;
  readonly principal: unknown;
  readonly published_at: Date | string;
  readonly attempts: number;
  /** The end of this claim, as text (microseconds kept): a release clears only its own claim. */
  readonly claim: string;
  [column: string]: unknown;
}

/**
 * A claim's end as text that reads back as the same instant whatever the session's DateStyle
 * and TimeZone: UTC, to the microsecond.
 */
const CLAIM_TEXT = `to_char(claimed_until at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')`;

/**
 * Claims the next `$1` unsent rows for `$2` seconds: unclaimed ones, lapsed ones, and those
 * still held by a claim of this relay's own that a failed round could not release (`$3`, the
 * claims' ends as {@link CLAIM_TEXT}), so that they keep their place in the order.
 */
const CLAIM = `
update keel_outbox set claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
where seq in (
  select seq from keel_outbox
  where sent_at is null and failed_at is null
    and (claimed_until is null or claimed_until < now() or claimed_until = any(array(select (unnest($3::text[])::timestamp at time zone 'UTC'))))
  order by seq limit $1
  for update skip locked
)
returning seq, id, event, payload, correlation_id, traceparent, principal, published_at, attempts, ${CLAIM_TEXT} as claim`;

/**
 * Releases claimed rows for a later round. Only the claim this relay made (`$2`, as
 * {@link CLAIM_TEXT}): one that lapsed and that another instance's relay renewed stays with it.
 * `untried` rows (`$3`) were claimed but never sent, and take back the attempt their claim counted.
 */
const RELEASE = `
update keel_outbox set claimed_until = null, attempts = attempts - case when $3 then 1 else 0 end
where seq = any($1::bigint[]) and claimed_until = ($2::timestamp at time zone 'UTC') and sent_at is null`;

/** Refusals no retry can change: the event is set aside instead of holding back those after it. */
const REFUSED_FOR_GOOD: readonly string[] = [KeelErrorCode.PAYLOAD_TOO_LARGE, KeelErrorCode.INVALID_EVENT];

/**
 * Where a crash test (test/data-crash.test.ts) can stop a process: after a transaction that wrote
 * events committed, before the relay publishes them; after the relay published an event, before
 * it marked it sent; after a durable event's handler committed with its inbox record, before the
 * event is acknowledged.
 */
export type CrashPoint = 'outbox:after-commit' | 'outbox:after-publish' | 'inbox:after-commit';

/** Test hook: the {@link CrashPoint} named by `KEEL_TEST_CRASH_AT`, read once when keel loads. Unset, nothing happens. */
const CRASH_AT = process.env['KEEL_TEST_CRASH_AT'];

/** Test hook: kills this process with SIGKILL, as `kill -9` would, when `KEEL_TEST_CRASH_AT` names `point`. */
export function crashPoint(point: CrashPoint): void {
  if (CRASH_AT === point) process.kill(process.pid, 'SIGKILL');
}

export class OutboxRelay {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #again = false;
  /** Until `start()`: a commit's kick before it sends nothing (its rows go in the first round after it). */
  #stopped = true;
  /** Set by `start()`: a relay never started leaves its rows for the next start, even at its stop. */
  #started = false;
  /** Set by `stop()`: a commit after it holds nothing (no round would release it). */
  #ended = false;
  #failures = 0;
  /**
   * The claims (as CLAIM_TEXT) of failed rounds whose release has not completed: the next claims
   * may take their rows, so that a database failure during the release does not leave them
   * behind the events after them for the claim's time. The last few are kept.
   */
  readonly #unreleased = new Set<string>();
  #rounds = 0;
  /** The batch claimed while the last round published, for the next round. */
  #prefetched: Promise<OutboxRow[]> | undefined;
  /** The event whose failed publish holds back the others, for the retry's log line. */
  #heldBack: Record<string, unknown> | undefined;
  /** What the commits since the last round started hold (see the constructor's `hold`), released when a round ends. */
  #holds: (() => void)[] = [];
  /** kick, as a function to run after a commit (one per transaction, however many events). */
  readonly kicker = (): void => {
    crashPoint('outbox:after-commit');
    // Before start() too: the first round releases it (or stop(), if the relay never starts).
    if (this.hold !== undefined && !this.#ended) this.#holds.push(this.hold());
    this.kick();
  };

  constructor(
    readonly contract: AnyContract,
    readonly connection: SchemaConnection,
    /** Publishes one event, resolving once the transport holds it (see outboxPublisher). */
    readonly publish: (event: PublishedEvent) => Promise<void>,
    readonly logger: Logger,
    /**
     * Held from a commit until the round that publishes its events ends (outboxHold: the
     * in-process bus's `settled()` waits for it); the release is called once.
     */
    readonly hold: (() => () => void) | undefined = undefined,
    readonly options: OutboxRelayOptions = DEFAULT_OUTBOX_RELAY_OPTIONS,
  ) {}

  /** Publishes what earlier runs left, then keeps polling. */
  start(): void {
    this.#started = true;
    this.#stopped = false;
    this.#schedule(0);
  }

  /** A transaction with events committed: publish them now. */
  kick(): void {
    if (this.#stopped) return;
    if (this.#running !== undefined) {
      this.#again = true;
      return;
    }
    this.#run();
  }

  /**
   * Stops polling; waits for the round in flight, then, if it ever started, tries once more to
   * publish what is left. One never started (its kernel's start failed or was stopped) leaves
   * its rows for the next start.
   */
  async stop(): Promise<void> {
    this.#ended = true;
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    // Never started: its subscribers here may not have subscribed yet (an event with none counts as delivered).
    if (this.#started) await this.#round().catch(() => undefined);
    this.#release(this.#takeHolds());
  }

  #takeHolds(): (() => void)[] {
    const holds = this.#holds;
    this.#holds = [];
    return holds;
  }

  #release(holds: readonly (() => void)[]): void {
    for (const release of holds) release();
  }

  #schedule(delayMs: number): void {
    clearTimeout(this.#timer);
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.kick(), delayMs);
    this.#timer.unref();
  }

  #run(): void {
    // The commits that kicked so far: this round claims their rows.
    const holds = this.#takeHolds();
    // Outside the context of whoever kicked it (a handler's commit): the relay's rounds, timers and
    // log lines belong to no request, and must not keep one's context alive.
    detached(() => {
      this.#running = this.#round()
        .then(
          (more) => {
            this.#failures = 0;
            return more;
          },
          (error: unknown) => {
            this.#failures += 1;
            const delay = Math.min(this.options.backoffMs * 2 ** (this.#failures - 1), this.options.maxBackoffMs);
            const event = this.#heldBack;
            this.#schedule(delay);
            try {
              if (event !== undefined) {
                this.logger.warn({ err: error, ...event, retryInMs: delay }, 'outbox relay could not publish; it will retry, holding back the events after this one');
              } else {
                this.logger.warn(
                  { err: error, module: this.contract.name, retryInMs: delay },
                  'outbox relay could not read or update keel_outbox; it will retry. Check the database connection',
                );
              }
            } catch {
              // A logger that throws must not stop the relay (nor keep its holds).
            }
            return false;
          },
        )
        .then((more) => {
          this.#running = undefined;
          // A full batch leaves rows for the next round: the commits it held wait for that one too.
          if (more && this.#failures === 0 && !this.#stopped) this.#holds.unshift(...holds);
          else this.#release(holds);
          // A failed publish waits for its retry in the outbox; commits meanwhile wait with it, unheld.
          if (this.#failures > 0) return this.#release(this.#takeHolds());
          if (more || this.#again) {
            this.#again = false;
            this.kick();
          } else {
            this.#schedule(this.options.pollMs);
          }
        });
    });
  }

  /** Remembers a claim a failed round is about to release, the last 16 at most (see #unreleased). */
  #keepUnreleased(claim: string): void {
    this.#unreleased.add(claim);
    for (const oldest of this.#unreleased) {
      if (this.#unreleased.size <= 16) break;
      this.#unreleased.delete(oldest);
    }
  }

  /** Claims the next `limit` unsent rows, in their order. */
  async #claim(limit: number): Promise<OutboxRow[]> {
    const { rows } = await this.connection.query<OutboxRow>(CLAIM, [limit, this.options.claimSeconds, [...this.#unreleased]]);
    return rows.sort((a, b) => Number(a.seq) - Number(b.seq));
  }

  /**
   * One round: claim a batch (or take the one claimed while the last round published), publish
   * it in order, mark what was published. True when another round should follow at once: the
   * batch was full, or it was claimed ahead, before commits that kicked meanwhile (their rows
   * are only seen by a claim made after them). A full batch is likely to have more behind it: the
   * next one is claimed while this one is published, so that the claim's statement does not wait
   * for the publishes nor they for it.
   */
  async #round(): Promise<boolean> {
    this.#heldBack = undefined;
    // After a failed round, the event that failed is claimed and sent alone: the events behind it
    // are claimed once it is confirmed, so that a failure that lasts lets none of them overtake it.
    const limit = this.#failures > 0 ? 1 : this.options.batchSize;
    // Taken before it is awaited: a claim that failed must not be handed to every later round.
    const prefetched = this.#prefetched;
    this.#prefetched = undefined;
    const rows = await (prefetched ?? this.#claim(limit));
    const ahead = rows.length === this.options.batchSize && !this.#stopped ? this.#claim(this.options.batchSize) : undefined;
    ahead?.catch(() => undefined);
    const outcome = await publishInWindow(
      rows,
      this.options.window,
      async (row) => {
        await this.#relayed(row);
        crashPoint('outbox:after-publish');
      },
      (error) => REFUSED_FOR_GOOD.some((code) => isKeelError(error, code as KeelErrorCode)),
    );
    const { setAside, started, failed } = outcome;
    const sent = outcome.sent.map((row) => row.seq);
    if (ahead !== undefined && failed === undefined) this.#prefetched = ahead;
    // After a failed publish: the claims of this round, which the next claims may take back until
    // they are released (a database failure below leaves their rows in their place in the order).
    const claimedAhead = failed !== undefined && ahead !== undefined ? await ahead.catch(() => []) : [];
    const claims = failed === undefined ? [] : [failed.item.claim, ...claimedAhead.slice(0, 1).map((row) => row.claim)];
    for (const claim of claims) this.#keepUnreleased(claim);
    if (failed !== undefined) {
      this.#heldBack = this.#describe(failed.item);
      // Keep the order: the rest of the batch waits for this one. Its claim first: while it
      // holds, a retry would claim the events behind it.
      await this.connection.query(
        "update keel_outbox set claimed_until = null, last_error = $2 where seq = $1 and claimed_until = ($3::timestamp at time zone 'UTC') and sent_at is null",
        [failed.item.seq, String(failed.error), failed.item.claim],
      );
    }
    for (const { item: row, error } of setAside) {
      await this.connection.query('update keel_outbox set failed_at = now(), claimed_until = null, last_error = $2 where seq = $1 and sent_at is null', [row.seq, String(error)]);
      this.logger.error(
        { err: error, ...this.#describe(row) },
        'outbox event refused for good and set aside (failed_at in keel_outbox); the events after it go on. Fix its cause, then set failed_at to null to send it again',
      );
    }
    if (failed !== undefined) {
      // Then the others of the batch (the events already sent behind it, confirmed, are marked
      // sent below), and what was claimed ahead: the failed event goes first in the next round.
      const done = new Set([...sent, ...setAside.map(({ item }) => item.seq), failed.item.seq]);
      const tried = rows.slice(0, started).filter((row) => !done.has(row.seq)).map((row) => row.seq);
      const untried = rows.slice(started).map((row) => row.seq);
      const claim = failed.item.claim;
      if (tried.length > 0) await this.connection.query(RELEASE, [tried, claim, false]);
      if (untried.length > 0) await this.connection.query(RELEASE, [untried, claim, true]);
      if (claimedAhead.length > 0) await this.connection.query(RELEASE, [claimedAhead.map((row) => row.seq), claimedAhead[0]?.claim, true]);
      for (const released of claims) this.#unreleased.delete(released);
    }
    if (sent.length > 0) {
      await this.connection.query('update keel_outbox set sent_at = now(), claimed_until = null where seq = any($1::bigint[])', [sent]);
    }
    this.#rounds += 1;
    if (this.#rounds % 100 === 0) {
      await this.connection.query("delete from keel_outbox where sent_at < now() - make_interval(secs => $1)", [this.options.retentionSeconds]);
      // The inbox only has to outlive redeliveries (JetStream's duplicate window and max deliveries), not forever.
      await this.connection.query("delete from keel_inbox where handled_at < now() - make_interval(secs => $1)", [this.options.inboxRetentionSeconds]);
    }
    if (failed !== undefined) throw failed.error;
    return prefetched !== undefined || rows.length === limit;
  }

  #describe(row: OutboxRow): Record<string, unknown> {
    return { module: this.contract.name, event: row.event, eventId: row.id, seq: Number(row.seq), attempts: Number(row.attempts) };
  }

  /** Publishes one row's event, in a `send` span linked to the span that wrote it when tracing is on. */
  async #relayed(row: OutboxRow): Promise<void> {
    const tracer = keelTracer();
    if (tracer === undefined) return this.publish(this.#eventOf(row));
    const span = startRelaySpan(tracer, this.contract.name, row.event, row.id, row.traceparent ?? undefined, row.correlation_id);
    try {
      await contextStorage.run(trace.setSpan(KEEL_ROOT_CONTEXT, span), () => this.publish(this.#eventOf(row)));
    } catch (error) {
      endSpan(span, error);
      throw error;
    }
    endSpan(span);
  }

  #eventOf(row: OutboxRow): PublishedEvent {
    const definition = this.contract.events[row.event];
    return {
      contract: this.contract.name,
      version: this.contract.version,
      event: row.event,
      // An event the contract no longer declares still goes out, as durable: losing it is worse.
      delivery: definition?.delivery ?? 'durable',
      payload: row.payload,
      metadata: {
        id: row.id,
        correlationId: row.correlation_id,
        traceparent: row.traceparent ?? undefined,
        publisher: this.contract.name,
        publishedAt: new Date(row.published_at).getTime(),
        principal: row.principal ?? undefined,
      },
    };
  }
}
