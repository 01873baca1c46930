/**
 * How long a kernel's stop may take: the bound every module's drain, stop hook and outbox relay
 * share, counted from the moment the process's stop began, so that it holds however many modules
 * a process hosts (and `keel deploy` writes its grace periods from it).
 */
import { performance } from 'node:perf_hooks';
import type { AnyContract } from './contract.js';
import { DEFAULT_TIMEOUT_MS } from './timeouts.js';

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
 * What an HTTP gateway's close adds to the longest deadline it may give a call, before it ends the
 * connections still open: the answer to a call that ran its whole deadline is still written (a
 * `504 TIMEOUT` after the deadline, a 200 just before it), and a loaded node gets a moment.
 */
export const GATEWAY_CLOSE_MARGIN_MS = 1_000;

/** What decides the longest deadline a gateway may give a call, for {@link gatewayCloseBoundMs}. */
export interface GatewayDeadlines {
  /** The contracts whose operations it serves (or may: `keel deploy` counts every module's). */
  readonly contracts: readonly AnyContract[];
  /** Its `maxTimeoutMs`, the cap of the deadline a request asks for with the timeout header (default: `defaultTimeoutMs`). */
  readonly maxTimeoutMs?: number | undefined;
  /** The kernel's deadline for a call that sets none (default {@link DEFAULT_TIMEOUT_MS}, as `keel start` runs it). */
  readonly defaultTimeoutMs?: number | undefined;
}

/**
 * The longest an HTTP gateway's close waits for its requests in flight before it ends their
 * connections, in milliseconds: the longest deadline it may give a call (the kernel's default
 * deadline, which a request without the timeout header gets; the gateway's `maxTimeoutMs`, which
 * caps the header; the longest `timeoutMs` an operation declares, which caps it in place of
 * `maxTimeoutMs`), plus {@link GATEWAY_CLOSE_MARGIN_MS}, rounded up to whole seconds. A request
 * whose handler runs up to its deadline is answered within it; a slow client still sending its
 * body, or an `authenticate` hook still waiting, is cut at it. One rule for the gateway's close
 * (adapters/http/gateway.ts) and the share of the grace periods `keel deploy` writes for it
 * (cli/deploy/grace.ts), so the platform's SIGKILL never comes in the middle of the kernel's stop.
 *
 * @example
 * ```ts
 * import { gatewayCloseBoundMs } from 'keel/transport';
 *
 * gatewayCloseBoundMs({ contracts: [] }); // 11 000: the default deadline, 10 s, and the margin
 * gatewayCloseBoundMs({ contracts, maxTimeoutMs: 60_000 }); // 61 000, unless an operation declares more
 * ```
 */
export function gatewayCloseBoundMs({ contracts, maxTimeoutMs, defaultTimeoutMs = DEFAULT_TIMEOUT_MS }: GatewayDeadlines): number {
  let longestMs = Math.max(defaultTimeoutMs, maxTimeoutMs ?? 0);
  for (const contract of contracts) {
    for (const operation of Object.values(contract.operations)) longestMs = Math.max(longestMs, operation.timeoutMs ?? 0);
  }
  return Math.ceil((longestMs + GATEWAY_CLOSE_MARGIN_MS) / 1000) * 1000;
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
