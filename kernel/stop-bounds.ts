/**
 * How long a kernel's stop may take: the bound every module's drain, stop hook and outbox relay
 * share, counted from the moment the process's stop began, so that it holds however many modules
 * a process hosts (and `keel deploy` writes its grace periods from it).
 */
import { performance } from 'node:perf_hooks';

/**
 * The time the stop hooks get past `drainTimeoutMs` (at most `drainTimeoutMs` itself), once for
 * the whole process: a drain that used all of its time still leaves the hooks a moment to flush.
 */
export const STOP_HOOK_FLOOR_MS = 5_000;

/**
 * The longest a kernel's stop waits, in milliseconds, however many modules it hosts: the drains of
 * all its modules share `drainTimeoutMs`, counted from the moment the stop began, and the stop
 * hooks and outbox relays end by {@link STOP_HOOK_FLOOR_MS} past it (or `drainTimeoutMs` past it,
 * when shorter). Not counted: a durable event on its last attempt over NATS, which the stop waits
 * for until its handler ends or its time runs out, a statement a handler sent before, and the
 * closing of the database connections. The process's stop adds to it what comes before the
 * kernel's (an HTTP gateway's requests in flight) and after (the NATS transport's own drain).
 *
 * @example
 * ```ts
 * import { DEFAULT_KERNEL_OPTIONS, kernelStopBoundMs } from 'keel/transport';
 *
 * kernelStopBoundMs(DEFAULT_KERNEL_OPTIONS.drainTimeoutMs); // 35 000: 30 s of drain, then 5 s for the stop hooks
 * ```
 */
export function kernelStopBoundMs(drainTimeoutMs: number): number {
  return drainTimeoutMs + Math.min(STOP_HOOK_FLOOR_MS, drainTimeoutMs);
}

/**
 * The drain a module stopped once `drainTimeoutMs` is used up still gets, taken from the stop
 * hooks' time (so the stop's bound holds): what it took while the modules before it drained
 * (requests of a few milliseconds, its NATS subscriptions' drain) ends rather than being cut.
 */
export const LATE_DRAIN_FLOOR_MS = 1_000;

/** What is left of `ms` since `began` (a `performance.now()`), never below 0. */
export function leftOf(ms: number, began: number): number {
  return Math.max(0, ms - (performance.now() - began));
}
