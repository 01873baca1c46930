/**
 * How long a group's processes get between SIGTERM and SIGKILL in the files keel deploy writes:
 * longer than the worst stop keel allows itself, step by step (docs/deploy.md, "How long a stop
 * takes"), with the application's configuration as `keel start` reads it. keel up and keel dev
 * wait as long for each process they run (cli/local-run.ts).
 */
import type { AnyContract, AnyModule } from 'keel';
import { DEFAULT_KERNEL_OPTIONS, gatewayCloseBoundMs, kernelStopBoundMs } from 'keel/transport';
import { DEFAULT_NATS_TRANSPORT_OPTIONS } from 'keel/nats';
import type { KeelConfig } from '../config.js';
import type { ProcessGroup } from '../topology.js';

/**
 * The grace periods' parts, in seconds.
 *
 * @example
 * ```ts
 * STOP_GRACE.seconds; // 75: a group without a gateway
 * ```
 */
export const STOP_GRACE = {
  /**
   * The grace period of a group without a gateway: longer than the worst stop keel allows itself,
   * so a stopping process finishes its work before it is killed. That is the kernel's stop (its
   * modules' drains share `drainTimeoutMs`, then 5 s for their stop hooks and outbox relays:
   * `kernelStopBoundMs`, 35 s, however many modules the group hosts), then the NATS transport's
   * drain (its own `drainTimeoutMs`, 30 s), plus a margin of 10 s (the databases' close, a
   * loaded node). {@link stopGraceSecondsOf} adds a gateway's share.
   */
  seconds: Math.ceil((kernelStopBoundMs(DEFAULT_KERNEL_OPTIONS.drainTimeoutMs) + DEFAULT_NATS_TRANSPORT_OPTIONS.drainTimeoutMs) / 1000) + 10,
  /**
   * What a gateway adds to its group's stop, before the kernel's, by default: it answers its
   * requests in flight first, each bounded by its deadline (the gateway's `maxTimeoutMs`, by
   * default the kernel's default deadline, 10 s), and ends the connections of those still open
   * 1 s after it (`gatewayCloseBoundMs` of `keel/transport`, the very bound its close keeps):
   * 11 s. {@link stopGraceSecondsOf} counts a longer `maxTimeoutMs` of `keel.config.ts` in its place.
   */
  gatewaySeconds: gatewayCloseBoundMs({ contracts: [] }) / 1000,
  /**
   * A gateway pod's preStop pause: Kubernetes takes a terminating pod out of its Service's
   * endpoints while it signals it, so for a moment requests still arrive after SIGTERM, which the
   * gateway refuses once it stops accepting. The pause keeps it serving until they stop coming.
   */
  preStopSeconds: 5,
} as const;

/**
 * What of the application's configuration (`keel.config.ts`) lengthens a stop: the `gateway`
 * section's `maxTimeoutMs`. The kernel's and the NATS transport's `drainTimeoutMs` are no
 * fields of the file: `keel start` runs both with their defaults, which {@link STOP_GRACE} counts.
 *
 * @example
 * ```ts
 * const config: StopGraceConfig = { gateway: { maxTimeoutMs: 60_000 } };
 * ```
 */
export type StopGraceConfig = Pick<KeelConfig, 'gateway'>;

/**
 * The seconds between SIGTERM and SIGKILL a group's processes get (compose's `stop_grace_period`;
 * Kubernetes adds a gateway's preStop pause): {@link STOP_GRACE}'s `seconds`, and for a gateway,
 * which answers its requests in flight before its kernel stops, the bound its close keeps
 * (`gatewayCloseBoundMs`): the longest deadline one may have (the kernel's default deadline,
 * which a request without the timeout header gets; the gateway's `maxTimeoutMs` of `config`,
 * `keel.config.ts`, which caps the deadline a request asks for with the header; the longest
 * `timeoutMs` an operation of `modules` declares, which caps it in place of `maxTimeoutMs`),
 * plus 1 s. The one place keel deploy (compose and Kubernetes) and keel up and keel dev (their
 * kill delay) take it from.
 *
 * @example
 * ```ts
 * stopGraceSecondsOf({ modules: ['catalog'], replicas: 1, env: {}, http: 8080 }); // 86: 11 s of requests, 35 s of kernel, 30 s of NATS, 10 s of margin
 * stopGraceSecondsOf({ modules: ['catalog'], replicas: 1, env: {}, http: 8080 }, [], { gateway: { maxTimeoutMs: 60_000 } }); // 136: 61 s of requests
 * stopGraceSecondsOf({ modules: ['orders', 'payments'], replicas: 1, env: {} }); // 75
 * ```
 */
export function stopGraceSecondsOf(group: ProcessGroup, modules: readonly AnyModule[] = [], config: StopGraceConfig = {}): number {
  if (group.http === undefined) return STOP_GRACE.seconds;
  // Every module's: a gateway serves the operations of the whole application unless told otherwise (KEEL_HTTP_OPERATIONS).
  const contracts = modules.map((module) => module.contract as AnyContract);
  const requestsSeconds = gatewayCloseBoundMs({ contracts, maxTimeoutMs: config.gateway?.maxTimeoutMs }) / 1000;
  return STOP_GRACE.seconds + requestsSeconds;
}
