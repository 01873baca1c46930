/**
 * One timer for many deadlines. Arming a `setTimeout` per call costs more than a fast call
 * itself; instead pending entries sit in a set and a single timer, armed for the earliest
 * deadline, expires whatever is due. Completing an entry is a `Set.delete`.
 */

/** A pending deadline; `expire` runs once if the entry is still pending at its deadline. */
export interface DeadlineEntry {
  readonly deadline: number;
  expire(): void;
}

/**
 * Tracks deadlines with one shared timer.
 *
 * @example
 * ```ts
 * const deadlines = new DeadlineScheduler();
 * const entry = { deadline: Date.now() + 1000, expire: () => reject(new Error('late')) };
 * deadlines.add(entry);
 * // ... when the work finishes first:
 * deadlines.delete(entry);
 * ```
 */
export class DeadlineScheduler {
  readonly #pending = new Set<DeadlineEntry>();
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Number.POSITIVE_INFINITY;

  /** Number of entries still pending. */
  get size(): number {
    return this.#pending.size;
  }

  /** Starts tracking `entry`. */
  add(entry: DeadlineEntry): void {
    this.#pending.add(entry);
    if (entry.deadline < this.#armedFor) this.#arm(entry.deadline);
  }

  /** Stops tracking `entry` (it finished in time). */
  delete(entry: DeadlineEntry): void {
    this.#pending.delete(entry);
  }

  /** Expires nothing, forgets everything, and clears the timer. */
  clear(): void {
    this.#pending.clear();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, at - Date.now()));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const entry of this.#pending) {
      if (entry.deadline <= now) {
        this.#pending.delete(entry);
        entry.expire();
      } else if (entry.deadline < next) {
        next = entry.deadline;
      }
    }
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
  }
}
