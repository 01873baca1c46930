/**
 * Waiting for work in flight, as every transport and the kernel do on stop: a counter that wakes
 * its waiters when it drops to zero, and a bounded wait.
 */
import { LONGEST_TIMER_MS } from './timeouts.js';

/**
 * Counts work in flight; resolves every waiter of {@link InFlight.idle} when it drops to zero.
 *
 * @example
 * ```ts
 * const inFlight = new InFlight();
 * inFlight.begin();
 * void handle(msg).finally(() => inFlight.end());
 * // on stop: no new work, then
 * await within(inFlight.idle(), drainTimeoutMs);
 * ```
 */
export class InFlight {
  count = 0;
  #waiters: (() => void)[] = [];

  begin(): void {
    this.count += 1;
  }

  end(): void {
    this.count -= 1;
    if (this.count === 0 && this.#waiters.length > 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const waiter of waiters) waiter();
    }
  }

  /** Resolves once nothing is in flight (at once when nothing is). */
  idle(): Promise<void> {
    if (this.count === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
}

/**
 * Waits for `promise` to settle, at most `ms` milliseconds: true when it settled (fulfilled or
 * rejected) in time, false when the time ran out. The timer does not keep the process alive.
 *
 * @example
 * ```ts
 * if (!(await within(registration.stop(), 5_000))) logger.warn('stop did not finish in time');
 * ```
 */
export async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    // A longer delay than a timer holds (2^31 - 1 ms, about 24.8 days) would fire at once: such a bound is waited for as that.
    timer = setTimeout(() => resolve(false), Math.min(ms, LONGEST_TIMER_MS));
    timer.unref();
  });
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
