/**
 * Circuit breakers, one per dependency (a contract this process calls). Attempts and failures
 * are counted in a sliding window of ten buckets; the breaker opens on a failure ratio, stays
 * open for a while, then lets one probe through. Counting an attempt is one array increment, so a
 * breaker that does not fire costs next to nothing; the ratio is judged only when one fails.
 * The same window holds the dependency's retry budget, when the kernel has one: the retries and
 * hedges sent to it, judged only when a call would send one.
 */
import type { ResolvedBreaker, ResolvedRetryBudget } from './call-policy.js';

/** A breaker's state, as `/metrics` and `keel status` show it. */
export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * One dependency's breaker, as {@link Kernel.status} reports it.
 *
 * @example
 * ```ts
 * for (const circuit of kernel.status().circuits) {
 *   if (circuit.state !== 'closed') console.warn(`${circuit.dependency} is ${circuit.state} (${circuit.failures}/${circuit.attempts} failed)`);
 * }
 * ```
 */
export interface CircuitStatus {
  /** The contract called. */
  readonly dependency: string;
  readonly state: CircuitState;
  /** Attempts in the current window. */
  readonly attempts: number;
  /** Failed attempts in the current window. */
  readonly failures: number;
  /** Times the breaker opened since the process started. */
  readonly opened: number;
  /** Retries and hedges sent in the current window. */
  readonly retries: number;
  /** Retries and hedges not sent since the process started, because the retry budget was spent (0 without a budget). */
  readonly retriesRefused: number;
}

const BUCKETS = 10;

/** The window's total of one count: its ten buckets added up. */
function total(buckets: readonly number[]): number {
  let sum = 0;
  for (let index = 0; index < BUCKETS; index++) sum += buckets[index]!;
  return sum;
}

/** What {@link CircuitBreaker.admit} answers. */
export const Admission = { CLOSED: 0, PROBE: 1, REFUSED: 2 } as const;
export type Admission = (typeof Admission)[keyof typeof Admission];

/** One dependency's breaker. */
export class CircuitBreaker {
  state: CircuitState = 'closed';
  opened = 0;
  readonly #policy: ResolvedBreaker;
  readonly #bucketMs: number;
  readonly #attempts = new Array<number>(BUCKETS).fill(0);
  readonly #failures = new Array<number>(BUCKETS).fill(0);
  readonly #retries = new Array<number>(BUCKETS).fill(0);
  readonly #budget: ResolvedRetryBudget | undefined;
  #retriesRefused = 0;
  /** The current bucket: its absolute number (time / bucket length), its slot, and when it ends. */
  #bucket = 0;
  #slot = 0;
  #bucketEnd = 0;
  #openedAt = 0;
  #probing = false;

  constructor(
    readonly dependency: string,
    policy: ResolvedBreaker,
    private readonly onChange: (breaker: CircuitBreaker) => void,
    budget?: ResolvedRetryBudget,
  ) {
    this.#policy = policy;
    this.#budget = budget;
    this.#bucketMs = Math.max(1, Math.ceil(policy.windowMs / BUCKETS));
  }

  /**
   * Asks to send one attempt at `now`: `CLOSED` (send it, counted), `PROBE` (send it and report
   * its outcome with {@link probed}), or `REFUSED` (the breaker is open: do not send).
   */
  admit(now: number): Admission {
    if (this.state === 'closed') {
      // The hot path: a comparison and an increment (no division while the bucket lasts).
      if (now >= this.#bucketEnd) this.#roll(now);
      this.#attempts[this.#slot]! += 1;
      return Admission.CLOSED;
    }
    if (this.#probing || now - this.#openedAt < this.#policy.openMs) return Admission.REFUSED;
    this.#probing = true;
    this.#change('half-open');
    return Admission.PROBE;
  }

  /** An attempt admitted `CLOSED` failed in a way that says the dependency is unwell. */
  failed(now: number): void {
    if (this.state !== 'closed') return;
    if (now >= this.#bucketEnd) this.#roll(now);
    this.#failures[this.#slot]! += 1;
    const attempts = total(this.#attempts);
    if (attempts >= this.#policy.minimumAttempts && total(this.#failures) >= this.#policy.failureRatio * attempts) this.#open(now);
  }

  /**
   * An attempt admitted `CLOSED` at `sentAt` ended proving nothing about the dependency (its
   * caller cut it short): it leaves the window's count of attempts, so that it dilutes the
   * failure ratio no more than it adds to it. Nothing when its bucket has left the window.
   */
  uncounted(sentAt: number, now: number): void {
    if (this.state !== 'closed') return;
    if (now >= this.#bucketEnd) this.#roll(now);
    const bucket = Math.floor(sentAt / this.#bucketMs);
    if (bucket > this.#bucket || bucket <= this.#bucket - BUCKETS) return;
    const slot = bucket % BUCKETS;
    if (this.#attempts[slot]! > 0) this.#attempts[slot]! -= 1;
  }

  /**
   * Asks to send a call's next attempt (a retry or a hedge) at `now`: true, counted, while the
   * retry budget allows it (always, without a budget); false when it is spent. While the breaker
   * is not closed, true and not counted: {@link admit} refuses the attempt, or sends it as the
   * one probe, which a budget need not bound (and must not count as sent when it is refused).
   */
  spendRetry(now: number): boolean {
    const budget = this.#budget;
    if (budget === undefined || this.state !== 'closed') return true;
    if (now >= this.#bucketEnd) this.#roll(now);
    if (total(this.#retries) >= budget.minRetries + budget.ratio * total(this.#attempts)) {
      this.#retriesRefused += 1;
      return false;
    }
    this.#retries[this.#slot]! += 1;
    return true;
  }

  /** What the budget allows, for a refused retry's message; undefined without one. */
  get budget(): (ResolvedRetryBudget & { readonly windowMs: number }) | undefined {
    return this.#budget === undefined ? undefined : { ...this.#budget, windowMs: this.#policy.windowMs };
  }

  /** The probe admitted with `PROBE` finished: healthy closes the breaker, unhealthy opens it again. */
  probed(healthy: boolean, now: number): void {
    this.#probing = false;
    if (healthy) {
      this.#attempts.fill(0);
      this.#failures.fill(0);
      this.#retries.fill(0);
      this.#change('closed');
    } else {
      this.#open(now);
    }
  }

  /** The probe admitted with `PROBE` ended proving nothing (its caller cancelled it): the next call probes again. */
  released(): void {
    this.#probing = false;
  }

  /** How long until a probe may go, for a refused call's message. */
  retryAfterMs(now: number): number {
    return Math.max(0, this.#openedAt + this.#policy.openMs - now);
  }

  status(): CircuitStatus {
    const now = Date.now();
    if (now >= this.#bucketEnd) this.#roll(now);
    return {
      dependency: this.dependency,
      state: this.state,
      attempts: total(this.#attempts),
      failures: total(this.#failures),
      opened: this.opened,
      retries: total(this.#retries),
      retriesRefused: this.#retriesRefused,
    };
  }

  #open(now: number): void {
    this.#openedAt = now;
    this.opened += 1;
    this.#change('open');
  }

  #change(state: CircuitState): void {
    if (this.state === state) return;
    this.state = state;
    this.onChange(this);
  }

  /** Moves the window to the bucket of `now`, emptying the buckets it passed. */
  #roll(now: number): void {
    const bucket = Math.floor(now / this.#bucketMs);
    if (bucket <= this.#bucket) return;
    const passed = Math.min(BUCKETS, bucket - this.#bucket);
    for (let step = 1; step <= passed; step++) {
      const index = (this.#bucket + step) % BUCKETS;
      this.#attempts[index] = 0;
      this.#failures[index] = 0;
      this.#retries[index] = 0;
    }
    this.#bucket = bucket;
    this.#slot = bucket % BUCKETS;
    this.#bucketEnd = (bucket + 1) * this.#bucketMs;
  }
}

/** The breakers of one kernel, made on first use, one per dependency. */
export class CircuitBreakers {
  readonly #breakers = new Map<string, CircuitBreaker>();

  constructor(
    private readonly policy: ResolvedBreaker | undefined,
    private readonly onChange: (breaker: CircuitBreaker) => void = () => {},
    /** The retry budget of each dependency, counted in its breaker's window; none when undefined. */
    private readonly budget?: ResolvedRetryBudget,
  ) {}

  /** The breaker of `dependency`, or undefined when breakers are off. */
  of(dependency: string): CircuitBreaker | undefined {
    if (this.policy === undefined) return undefined;
    let breaker = this.#breakers.get(dependency);
    if (breaker === undefined) {
      breaker = new CircuitBreaker(dependency, this.policy, this.onChange, this.budget);
      this.#breakers.set(dependency, breaker);
    }
    return breaker;
  }

  status(): CircuitStatus[] {
    return [...this.#breakers.values()].map((breaker) => breaker.status());
  }
}
