/**
 * One timer for many deadlines. Arming a `setTimeout` per call costs more than a fast call
 * itself; instead pending entries sit in an array and a single timer, armed for the earliest
 * deadline, expires whatever is due. Adding and completing an entry are O(1) and allocate
 * nothing: each entry remembers its slot, and completing one moves the last entry into it.
 */

import { detached } from './otel-context.js';

// setTimeout's longest delay; a later deadline simply re-arms when this fires.
const MAX_DELAY_MS = 2 ** 31 - 1;
// The slot of an entry taken out of the array as due, not yet expired: deleting it then still counts.
const DUE = -2;

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
  /**
   * The scheduler's bookkeeping: where the entry sits while it is pending. Never set it
   * yourself; declare it (`deadlineSlot = -1`) in a class whose instances are added often, so
   * that their shape does not change on the first add. An entry is pending in one scheduler at a time.
   */
  deadlineSlot?: number;
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
  readonly #pending: DeadlineEntry[] = [];
  /** The entries a firing took out as due, while it expires them. */
  readonly #due: DeadlineEntry[] = [];
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Number.POSITIVE_INFINITY;
  /** True while the timer keeps the process alive (something is pending, or was this turn of the event loop). */
  #refed = false;
  /** True while a check for an empty set is queued for the next turn of the event loop. */
  #idleQueued = false;
  /**
   * Lets the process exit once nothing is pending. Run one turn of the event loop after the set
   * went empty, not at once: calls made back to back empty it after each call, and toggling the
   * timer's ref each time (a call into libuv) was a few per cent of an in-process call.
   */
  readonly #onIdle = (): void => {
    this.#idleQueued = false;
    if (this.#pending.length === 0 && this.#refed) {
      this.#refed = false;
      this.#timer?.unref();
    }
  };

  /** Number of entries still pending. */
  get size(): number {
    return this.#pending.length;
  }

  /** Starts tracking `entry` (an entry already pending here stays so, once). */
  add(entry: DeadlineEntry): void {
    const pending = this.#pending;
    const slot = entry.deadlineSlot;
    if (slot !== undefined && slot >= 0 && pending[slot] === entry) return;
    entry.deadlineSlot = pending.length;
    pending.push(entry);
    if (entry.deadline < this.#armedFor) this.#arm(entry.deadline);
    // While something waits for its deadline, the timer keeps the process alive: a script
    // awaiting a call that never answers gets TIMEOUT instead of exiting early.
    else if (!this.#refed && this.#timer !== undefined) {
      this.#refed = true;
      this.#timer.ref();
    }
  }

  /** Stops tracking `entry` (it finished in time). */
  delete(entry: DeadlineEntry): void {
    const pending = this.#pending;
    const slot = entry.deadlineSlot;
    if (slot === DUE) {
      // Due, but an earlier expiry of the same firing deleted it first: it is not expired.
      entry.deadlineSlot = -1;
      return;
    }
    if (slot === undefined || slot < 0 || pending[slot] !== entry) return;
    entry.deadlineSlot = -1;
    const last = pending.pop() as DeadlineEntry;
    if (last !== entry) {
      pending[slot] = last;
      last.deadlineSlot = slot;
    }
    if (pending.length === 0 && this.#refed && !this.#idleQueued) {
      this.#idleQueued = true;
      setImmediate(this.#onIdle);
    }
  }

  /** Expires nothing, forgets everything, and clears the timer. */
  clear(): void {
    for (const entry of this.#pending) entry.deadlineSlot = -1;
    for (const entry of this.#due) entry.deadlineSlot = -1;
    this.#pending.length = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#refed = false;
    this.#armedFor = Number.POSITIVE_INFINITY;
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = at;
    // Outside any call's context: one timer serves many calls, and must not keep one call's context alive.
    this.#timer = detached(() => setTimeout(() => this.#fire(), Math.min(MAX_DELAY_MS, Math.max(0, at - Date.now()))));
    this.#refed = this.#pending.length > 0;
    if (!this.#refed) this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#refed = false;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    // Take the due entries out first, then expire them: an expiry may add or delete entries,
    // and one it deletes (or that clear() forgets) is skipped, as it is no longer DUE.
    const pending = this.#pending;
    const due = this.#due;
    let kept = 0;
    for (const entry of pending) {
      if (entry.deadline <= now) {
        entry.deadlineSlot = DUE;
        due.push(entry);
      } else {
        if (entry.deadline < next) next = entry.deadline;
        entry.deadlineSlot = kept;
        pending[kept++] = entry;
      }
    }
    pending.length = kept;
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // Earliest deadline first.
    due.sort((a, b) => a.deadline - b.deadline);
    for (const entry of due) {
      if (entry.deadlineSlot !== DUE) continue;
      entry.deadlineSlot = -1;
      entry.expire();
    }
    due.length = 0;
  }
}
