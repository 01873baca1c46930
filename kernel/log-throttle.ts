/**
 * A bound on how often one kind of warning is written: anyone who can publish to a subject can
 * make a callee drop messages (a request without a reply subject, an event without keel's
 * headers or whose payload breaks its contract), and one log line per message would let them
 * flood the logs. A request without a reply subject is also counted (`num_no_reply` in
 * `$SRV.STATS`); a refused event is only in these lines, and the count of those left out after
 * the last line is reported by the next one. In the kernel, for the events every transport
 * delivers; exported by `keel/transport` for adapters' own drops.
 */

/** At most one line per this many milliseconds for each kind of dropped message. */
export const DROPPED_LOG_INTERVAL_MS = 10_000;

/**
 * Lets the first occurrence through, then at most one per interval; the one let through after a
 * quiet spell carries the number left out since the previous line.
 *
 * @example
 * ```ts
 * import { LogThrottle } from 'keel/transport';
 *
 * const noReply = new LogThrottle();
 * const suppressed = noReply.take();
 * if (suppressed >= 0) logger.warn({ suppressed }, 'dropped a request without a reply subject (at most one line per 10 s)');
 * ```
 */
export class LogThrottle {
  readonly #intervalMs: number;
  #nextAt = 0;
  #suppressed = 0;

  constructor(intervalMs: number = DROPPED_LOG_INTERVAL_MS) {
    this.#intervalMs = intervalMs;
  }

  /**
   * Records one occurrence: `-1` when it must not be logged, otherwise how many occurrences
   * were left out since the previous line (to be written with it).
   */
  take(now: number = Date.now()): number {
    if (now < this.#nextAt) {
      this.#suppressed += 1;
      return -1;
    }
    const suppressed = this.#suppressed;
    this.#suppressed = 0;
    this.#nextAt = now + this.#intervalMs;
    return suppressed;
  }

  /** True when its interval has passed: its next occurrence would be logged. */
  idle(now: number = Date.now()): boolean {
    return now >= this.#nextAt;
  }

  /** Takes over `count` occurrences left out elsewhere, to be reported with its next line. */
  absorb(count: number): void {
    this.#suppressed += count;
  }

  /** How many occurrences were left out since its last line. */
  get suppressed(): number {
    return this.#suppressed;
  }
}

/** How many keys a {@link KeyedLogThrottle} throttles apart; the rest share one throttle. */
export const MAX_THROTTLED_KEYS = 64;

/**
 * A {@link LogThrottle} per key (a refused subject, say), so that one noisy key does not hide
 * another's first line; bounded: at {@link MAX_THROTTLED_KEYS} keys, those whose interval passed
 * are forgotten (the count they left out goes to the shared throttle's next line), and while all
 * are busy the others share one, so that invented keys (one per reply subject, say) cannot grow
 * it without end nor hold its slots for good.
 */
export class KeyedLogThrottle {
  readonly #byKey = new Map<string, LogThrottle>();
  readonly #rest = new LogThrottle();

  /** As {@link LogThrottle.take}, for the occurrences of `key`. */
  take(key: string, now: number = Date.now()): number {
    let throttle = this.#byKey.get(key);
    if (throttle === undefined) {
      if (this.#byKey.size >= MAX_THROTTLED_KEYS) {
        for (const [idleKey, idle] of this.#byKey) {
          if (!idle.idle(now)) continue;
          // Forgotten, its count left out is not: the shared throttle's next line reports it.
          this.#rest.absorb(idle.suppressed);
          this.#byKey.delete(idleKey);
        }
        if (this.#byKey.size >= MAX_THROTTLED_KEYS) return this.#rest.take(now);
      }
      throttle = new LogThrottle();
      this.#byKey.set(key, throttle);
    }
    return throttle.take(now);
  }
}
