/**
 * Whether the modules a `keel start` process hosts can be reached, and whether its gateway can
 * reach what it exposes, when no NATS server was given: the only ways in are then the HTTP
 * gateway, and the only modules it can call are those hosted here.
 */
import type { AnyModule } from 'keel';
import { CLIError, CliErrorCode } from './errors.js';
import { HttpOperations } from './host.js';

/** What a process was asked to run, as far as reaching it goes. */
export interface Reach {
  readonly modules: readonly AnyModule[];
  /** The modules hosted here (undefined: every module). */
  readonly host: readonly string[] | undefined;
  /** A NATS server was given (`--nats`, `KEEL_NATS_URL`). */
  readonly nats: boolean;
  /** The gateway's port, when one is served. */
  readonly httpPort: number | undefined;
  /** What the gateway exposes, and where that came from (`--operations`, `KEEL_HTTP_OPERATIONS`), undefined for the default (all). */
  readonly operations: { readonly value: HttpOperations; readonly source: string } | undefined;
}

/** The hosted modules, when `host` names only modules of the manifest (an unknown one is named later, by the host). */
function hostedOf({ modules, host }: Reach): readonly AnyModule[] | undefined {
  if (host === undefined) return modules;
  const hosted = modules.filter((module) => host.includes(module.name));
  return hosted.length === host.length ? hosted : undefined;
}

/**
 * Refuses a gateway of every operation in a process that hosts only some modules and has no
 * NATS server to reach the others: its gateway could serve none of theirs. Left to the kernel
 * when a hosted module itself needs one that is not hosted (its error names that dependency,
 * which no gateway option mends).
 *
 * @example
 * ```ts
 * assertGatewayReachesItsOperations({ modules, host: ['catalog'], nats: false, httpPort: 8080, operations: undefined });
 * // E_USAGE: The HTTP gateway exposes every module's operations (all, the default), and this process hosts only catalog ...
 * ```
 */
export function assertGatewayReachesItsOperations(reach: Reach): void {
  const { modules, host, nats, httpPort, operations } = reach;
  if (nats || httpPort === undefined || host === undefined || host.length === 0) return;
  if ((operations?.value ?? HttpOperations.ALL) !== HttpOperations.ALL) return;
  const hosted = hostedOf(reach);
  if (hosted === undefined) return;
  const needsElsewhere = hosted.some((module) => [...module.dependsOn, ...module.subscribesTo].some((contract) => !host.includes(contract.name)));
  const elsewhere = modules.filter((module) => !host.includes(module.name)).map((module) => module.name);
  if (needsElsewhere || elsewhere.length === 0) return;
  const source = operations === undefined ? 'all, the default' : `${operations.source} all`;
  throw new CLIError(
    CliErrorCode.E_USAGE,
    `The HTTP gateway exposes every module's operations (${source}), and this process hosts only ${host.join(', ')} and reaches no other module: no NATS server was given.`,
    {
      hint: `Expose ${host.join(', ')} alone with --operations hosted (or KEEL_HTTP_OPERATIONS=hosted), or give a NATS server (--nats <url>, or KEEL_NATS_URL) to reach ${elsewhere.join(', ')}.`,
    },
  );
}

/**
 * What to warn of when nothing outside the process can call the modules it hosts: only some of
 * them hosted, no NATS server, and no gateway exposing an operation. Undefined when something can,
 * or when the process hosts every module (its own work then needs no caller from outside).
 *
 * @example
 * ```ts
 * unreachableWarning({ modules, host: ['catalog'], nats: false, httpPort: undefined, operations: undefined });
 * // 'nothing outside this process can call catalog: no NATS server was given (--nats, KEEL_NATS_URL) and no HTTP gateway exposes an operation ...'
 * ```
 */
export function unreachableWarning(reach: Reach): string | undefined {
  const { modules, host, nats, httpPort, operations } = reach;
  if (nats || host === undefined || host.length === 0 || host.length >= modules.length) return undefined;
  // With some modules hosted, `hosted` exposes theirs: only `none` exposes nothing.
  if (httpPort !== undefined && operations?.value !== HttpOperations.NONE) return undefined;
  return (
    `nothing outside this process can call ${host.join(', ')}: no NATS server was given (--nats, KEEL_NATS_URL) and no HTTP gateway exposes an operation ` +
    '(--http, and --operations other than none). Give one of them if other processes or clients should reach these modules.'
  );
}
