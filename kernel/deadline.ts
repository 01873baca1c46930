/**
 * One timer for many deadlines. Arming a `setTimeout` per call costs more than a fast call
 * itself; instead pending entries sit in a set and a single timer, armed for the earliest
 * deadline, expires whatever is due. Completing an entry is a `Set.delete`.
 */

import { contextStorage } from './otel-context.js';

// setTimeout's longest delay; a later deadline simply re-arms when this fires.
const MAX_DELAY_MS = 2 ** 31 - 1;

/**
 * A pending deadline; `expire` runs once if the entry is still pending at its deadline.
 *
 * @example
 * ```ts
 * const entry: DeadlineEntry = { deadline: context.deadline, expire: () => reject(timeoutError(address, context)) };
 * deadlines.add(entry);
 * ```
 */
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
    // While something waits for its deadline, the timer keeps the process alive: a script
    // awaiting a call that never answers gets TIMEOUT instead of exiting early.
    else if (this.#pending.size === 1) this.#timer?.ref();
  }

  /** Stops tracking `entry` (it finished in time). */
  delete(entry: DeadlineEntry): void {
    if (this.#pending.delete(entry) && this.#pending.size === 0) this.#timer?.unref();
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
    // Outside any call's context: one timer serves many calls, and must not keep one call's context alive.
    this.#timer = contextStorage.exit(() => setTimeout(() => this.#fire(), Math.min(MAX_DELAY_MS, Math.max(0, at - Date.now()))));
    if (this.#pending.size === 0) this.#timer.unref();
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
