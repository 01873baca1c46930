/**
 * The bulkhead of a served module: at most `maxConcurrent` handler runs at once in this process,
 * on every transport together; further calls wait their turn in a FIFO queue of at most
 * `maxQueued`; past that a call is refused at once (`RESOURCE_EXHAUSTED`, nothing ran). One
 * module flooded with slow calls then holds its own slots, not the whole process's memory and
 * event loop. The answer pipeline (served.ts) decides what a run is and answers a refused,
 * expired or closed call; this file counts and queues, and words the two refusals it causes.
 *
 * ```text
 * enter() ── a slot free ──▶ true: run now (one comparison, no allocation: the hot path)
 *    └── none ─▶ false ─▶ wait(call) ── room in the queue ─▶ queued: call.start() when a slot frees
 *                           └── full ─▶ false: refused (counted in `rejected`); closed ─▶ false
 * leave() frees a slot and starts the queue's head, skipping calls whose deadline passed
 * a queued call's deadline passes ─▶ out of the queue, call.expired(): never started
 * close() (the module stops) ─▶ each queued call's closed(): never started; nothing starts again
 * ```
 *
 * A refusal says when to come back (`details.retryAfterMs`, {@link Bulkhead.retryAfterMs}): the
 * time until the refused call's turn would have come, had there been room, from what this
 * bulkhead measured of its own overload (see {@link RETRY_AFTER_BOUNDS_MS}). Nothing is measured
 * on a call's fast path: a refusal notes the time, and the first `leave()` after it (one
 * comparison per `leave()`, a clock read only then) how long a slot took to free.
 */
import { performance } from 'node:perf_hooks';
import type { CallContext } from './context.js';
import { DeadlineScheduler, type DeadlineEntry } from './deadline.js';
import { KeelErrorCode } from './errors.js';
import { RemoteFailure } from './transport.js';

/**
 * Limits of one module's bulkhead. `maxConcurrent: Infinity` turns the limit off (the module
 * gets no bulkhead at all); `maxQueued: 0` refuses a call at once when every slot is taken,
 * `maxQueued: Infinity` never refuses.
 */
export interface BulkheadLimits {
  /** Handler runs at once, per module and process, on every transport together (a whole number ≥ 1, or Infinity). */
  readonly maxConcurrent: number;
  /** Calls waiting for a slot, in arrival order (a whole number ≥ 0, or Infinity). */
  readonly maxQueued: number;
}

/**
 * Default limits: high enough that no module of a healthy application meets them (1024 handler
 * runs at once is far more than one event loop serves usefully: a module's database pool is a
 * few dozen connections), low enough that a flood of slow calls is refused before it holds the
 * process's memory (each queued call holds its input and its reply; 4096 queued is the work of
 * several seconds at the throughput of a busy module, well past a caller's deadline).
 */
export const DEFAULT_BULKHEAD_LIMITS = { maxConcurrent: 1024, maxQueued: 4096 } as const satisfies BulkheadLimits;

/**
 * Bounds of the `retryAfterMs` a full bulkhead's refusal carries. The floor: below 10 ms an
 * estimate is the noise of one event-loop turn, and a bulkhead that has measured nothing yet says
 * just that (a caller's own backoff, drawn up to its `maxBackoffMs`, then decides; the gateway
 * says `Retry-After: 1`). The cap: 10 s is the default deadline of a call; a queue that takes
 * longer to drain is only "long", and a caller told to wait longer would find the load changed.
 */
export const RETRY_AFTER_BOUNDS_MS = { floor: 10, cap: 10_000 } as const;

/**
 * Weight of a new measurement in the running estimate of the time a slot takes to free (an
 * exponentially weighted average): a quarter, so that one call that freed its slot at once (or
 * late) moves the estimate without replacing it, and four refusals' worth of measurements mostly do.
 */
const SLOT_WEIGHT = 0.25;

/** {@link Bulkhead}'s "no refusal waits for a slot to free" (a time from `performance.now()` is never negative). */
const NOT_REFUSED = -1;

/**
 * A module's bulkhead, read at scrape time (`kernel.status().bulkheads`): its limits and
 * counters, with no work on the call path.
 */
export interface BulkheadStatus extends BulkheadLimits {
  /** The module's name. */
  readonly module: string;
  /** Handler runs now. */
  readonly running: number;
  /** Calls waiting for a slot now. */
  readonly queued: number;
  /** Calls refused with `RESOURCE_EXHAUSTED` since the kernel was made. */
  readonly rejected: number;
}

/** A call waiting in a {@link Bulkhead}'s queue: told once what became of it. */
export interface WaitingCall {
  /** Its turn: a slot is taken for it; run it, and `leave()` once it finished. */
  start(): void;
  /** Its deadline passed while it waited: it never starts. `lateMs`: by how much. */
  expired(lateMs: number): void;
  /** The bulkhead closed (the module stopped) while it waited: it never starts. */
  closed(): void;
}

/** A node of the queue (a doubly linked list: a call that expires leaves from anywhere). */
/** A call's place in a bulkhead's queue (see {@link Bulkhead.withdraw}). */
export interface QueuedCall {
  /** True while it waits in the queue. */
  readonly linked: boolean;
}

class Waiting implements DeadlineEntry, QueuedCall {
  previous: Waiting | undefined;
  next: Waiting | undefined;
  /** True while in the queue. */
  linked = true;
  deadlineSlot = -1;

  constructor(
    readonly bulkhead: Bulkhead,
    readonly call: WaitingCall,
    readonly deadline: number,
  ) {}

  expire(): void {
    this.bulkhead.expired(this);
  }
}

/** One module's bulkhead; see the file's header. */
export class Bulkhead {
  running = 0;
  queued = 0;
  rejected = 0;
  #head: Waiting | undefined;
  #tail: Waiting | undefined;
  /** True while `leave` starts queued calls: a call that finishes at once only frees its slot. */
  #starting = false;
  #closed = false;
  /** Deadlines of queued calls only: no timer is armed while the queue is empty. */
  readonly #deadlines = new DeadlineScheduler();
  /**
   * When (`performance.now()`) the first call refused since the last slot freed was refused;
   * {@link NOT_REFUSED} when none was. The next `leave()` measures from it.
   */
  #refusedAt = NOT_REFUSED;
  /** The running estimate of the time from a refusal to the next slot freed, in ms; NaN until one was measured. */
  #slotMs = Number.NaN;

  constructor(
    readonly module: string,
    readonly maxConcurrent: number,
    readonly maxQueued: number,
  ) {}

  /** True once {@link close}d: a call refused now is refused because the module stopped. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Takes a slot when one is free and nobody waits: true means run now. */
  enter(): boolean {
    if (this.running < this.maxConcurrent && this.#head === undefined && !this.#closed) {
      this.running += 1;
      return true;
    }
    return false;
  }

  /**
   * Queues `call` until a slot frees, or until `deadline` (epoch ms): its place in the queue,
   * for {@link withdraw}. Undefined when the queue is full or the bulkhead closed: the call is
   * refused, nothing ran.
   */
  wait(call: WaitingCall, deadline: number): QueuedCall | undefined {
    if (this.#closed) return undefined;
    if (this.queued >= this.maxQueued) {
      this.rejected += 1;
      if (this.#refusedAt === NOT_REFUSED) this.#refusedAt = performance.now();
      return undefined;
    }
    const node = new Waiting(this, call, deadline);
    if (this.#tail === undefined) this.#head = node;
    else {
      this.#tail.next = node;
      node.previous = this.#tail;
    }
    this.#tail = node;
    this.queued += 1;
    this.#deadlines.add(node);
    return node;
  }

  /** Takes a call out of the queue (its caller gave up): true when it was still queued, and will never start. */
  withdraw(queued: QueuedCall): boolean {
    const node = queued as Waiting;
    if (!node.linked) return false;
    this.#unlink(node);
    this.#deadlines.delete(node);
    return true;
  }

  /** A run finished: frees its slot and starts queued calls, in order, while slots are free. */
  leave(): void {
    this.running -= 1;
    // A slot frees after a refusal: how long it took. The only cost on the hot path, one comparison.
    if (this.#refusedAt !== NOT_REFUSED) this.#measure();
    if (this.#starting || this.#head === undefined || this.#closed) return;
    this.#starting = true;
    try {
      while (this.running < this.maxConcurrent && this.#head !== undefined) {
        const node = this.#head;
        this.#unlink(node);
        this.#deadlines.delete(node);
        // The shared timer may not have fired yet for a deadline just passed.
        const late = Date.now() - node.deadline;
        if (late >= 0) {
          node.call.expired(late);
          continue;
        }
        this.running += 1;
        try {
          node.call.start();
        } catch {
          // start() settles its own call; a throw escaping it (an observer's bug) must not
          // leave the calls behind it waiting with slots free.
        }
      }
    } finally {
      this.#starting = false;
    }
  }

  /** A queued call's deadline passed (the scheduler's timer): out of the queue, never started. */
  expired(node: Waiting): void {
    if (!node.linked) return;
    this.#unlink(node);
    node.call.expired(Date.now() - node.deadline);
  }

  /**
   * The module stops and its drain is over: queued calls are told `closed()` and never start;
   * calls from now on are refused. Runs in progress finish and `leave()` as usual.
   */
  close(): void {
    this.#closed = true;
    this.#deadlines.clear();
    while (this.#head !== undefined) {
      const node = this.#head;
      this.#unlink(node);
      node.call.closed();
    }
  }

  /**
   * Milliseconds a call refused now should wait before it is sent again: the time until its turn
   * would have come had there been room, `queued + 1` slots freeing, each taking the estimated
   * time from a refusal to the next slot freed (an average of the last measurements, weighted
   * to the recent ones; and never less than the time since the first refusal still waiting for
   * a slot to free, when handlers have become slower than measured). Rounded up, and within
   * {@link RETRY_AFTER_BOUNDS_MS}: the floor when nothing was measured yet.
   */
  retryAfterMs(now = performance.now()): number {
    const waiting = this.#refusedAt === NOT_REFUSED ? 0 : now - this.#refusedAt;
    const slotMs = Number.isNaN(this.#slotMs) ? waiting : Math.max(this.#slotMs, waiting);
    const estimate = Math.ceil((this.queued + 1) * slotMs);
    return Math.min(RETRY_AFTER_BOUNDS_MS.cap, Math.max(RETRY_AFTER_BOUNDS_MS.floor, estimate));
  }

  /** The first slot freed since a refusal: the time it took joins the estimate of {@link retryAfterMs}. */
  #measure(): void {
    const tookMs = performance.now() - this.#refusedAt;
    this.#refusedAt = NOT_REFUSED;
    this.#slotMs = Number.isNaN(this.#slotMs) ? tookMs : this.#slotMs + SLOT_WEIGHT * (tookMs - this.#slotMs);
  }

  /** The limits and counters now. */
  status(): BulkheadStatus {
    const { module, maxConcurrent, maxQueued, running, queued, rejected } = this;
    return { module, maxConcurrent, maxQueued, running, queued, rejected };
  }

  #unlink(node: Waiting): void {
    node.linked = false;
    if (node.previous === undefined) this.#head = node.next;
    else node.previous.next = node.next;
    if (node.next === undefined) this.#tail = node.previous;
    else node.next.previous = node.previous;
    node.previous = undefined;
    node.next = undefined;
    this.queued -= 1;
  }
}

/**
 * What a call refused by a full bulkhead is answered: `RESOURCE_EXHAUSTED`, nothing ran, with
 * `details.retryAfterMs` saying when to come back ({@link Bulkhead.retryAfterMs}): keel's retries
 * and hedges wait at least that long, the gateway turns it into `Retry-After`.
 */
export function exhaustedFailure(contract: string, operation: string, bulkhead: Bulkhead, context: CallContext): RemoteFailure {
  const { module, maxConcurrent, maxQueued } = bulkhead;
  const retryAfterMs = bulkhead.retryAfterMs();
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.RESOURCE_EXHAUSTED,
    message:
      `${contract}.${operation} was not run: module "${module}" is at its concurrency limit (${maxConcurrent} running) ` +
      `and its queue is full (${maxQueued} waiting). Nothing ran: retry after a short backoff, or add instances.`,
    correlationId: context.correlationId,
    details: { module, maxConcurrent, maxQueued, retryAfterMs },
  });
}

/** What a queued call whose caller gave up is answered (nobody reads it, but metrics count it): `CANCELLED`, nothing ran. */
export function withdrawnFailure(contract: string, operation: string, context: CallContext, module: string): RemoteFailure {
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.CANCELLED,
    message: `${contract}.${operation} was not run: its caller gave up while it waited for a free slot of module "${module}". Nothing ran.`,
    correlationId: context.correlationId,
  });
}

/** What a call still queued when its module stopped is answered: `UNAVAILABLE`, nothing ran. */
export function stoppedFailure(contract: string, operation: string, context: CallContext): RemoteFailure {
  return new RemoteFailure({
    type: 'keel',
    code: KeelErrorCode.UNAVAILABLE,
    message:
      `${contract}.${operation} was not run: module "${contract}" stopped while the call waited for a free slot. ` +
      'Nothing ran: retry, another instance may serve it.',
    correlationId: context.correlationId,
  });
}
