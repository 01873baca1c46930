/**
 * What `keel up` and `keel dev` say of a process the supervisor gave up on: why (the failure it
 * reported last) and what to do, read from the failure's code and details, never its text.
 */
import type { NatsConnectFailure } from 'keel/nats';
import type { ProcessFailure } from './supervisor.js';

/** The NATS transport's `details.nats` when the server refused the credentials (keel/nats's `NatsConnectFailure`, whose module is not loaded here). */
export const NATS_CREDENTIALS_REFUSED: NatsConnectFailure = 'credentials-refused';
/** Its `details.nats` when no server could be reached or spoken to. */
const NATS_UNREACHABLE: NatsConnectFailure = 'unreachable';

/**
 * Why the supervisor gave up on a process, for the line that says so: the failure it reported
 * last, when it reported one.
 *
 * @example
 * ```ts
 * gaveUpReason('catalog', { code: 'E_USAGE', message: 'KEEL_HTTP_OPERATIONS "bogus" is not all, hosted or none.', retry: false });
 * // 'catalog cannot start, and a restart would not change that: E_USAGE: KEEL_HTTP_OPERATIONS "bogus" is not all, hosted or none'
 * ```
 */
export function gaveUpReason(name: string, failure: ProcessFailure | undefined): string {
  if (failure === undefined) return `${name} kept exiting before it became ready`;
  const why = `${failure.code}: ${failure.message.replace(/[.\s]+$/, '')}`;
  return failure.retry ? `${name} kept exiting before it became ready, last with ${why}` : `${name} cannot start, and a restart would not change that: ${why}`;
}

/** Where the processes of a local run take what a remedy names. */
export interface RemedyContext {
  /** True when a topology file describes the processes (their HTTP ports are its `http`). */
  readonly topology: boolean;
}

/**
 * What to do about the failure a process was given up on, when something outside its files
 * causes it, read from the failure's code and details (never its text): a port another process
 * holds, NATS unreachable or refusing the credentials. Otherwise its hint, when it gave one.
 *
 * @example
 * ```ts
 * gaveUpRemedy({ code: 'E_HTTP_LISTEN', message: '...', retry: false, details: { errno: 'EADDRINUSE', port: 3000 } }, { topology: true });
 * // 'Free port 3000 (stop the process that listens there), or give the process another http port in the topology (http: 0 picks a free one).'
 * ```
 */
export function gaveUpRemedy(failure: ProcessFailure | undefined, context: RemedyContext): string | undefined {
  const details = failure?.details ?? {};
  if (failure?.code === 'E_HTTP_LISTEN' && details['errno'] === 'EADDRINUSE' && typeof details['port'] === 'number' && context.topology) {
    return `Free port ${details['port']} (stop the process that listens there), or give the process another http port in the topology (http: 0 picks a free one).`;
  }
  if (failure?.code === 'UNAVAILABLE' && Array.isArray(details['servers'])) {
    const servers = details['servers'].join(', ');
    if (details['nats'] === NATS_CREDENTIALS_REFUSED) {
      return `Give it credentials the NATS server at ${servers} accepts: KEEL_NATS_TOKEN, KEEL_NATS_USER and KEEL_NATS_PASSWORD, or KEEL_NATS_CREDS (in the shell, or the topology's env).`;
    }
    if (details['nats'] === NATS_UNREACHABLE) return `Start a NATS server at ${servers}, or give the URL of a running one (--nats, KEEL_NATS_URL or the topology's nats.url).`;
  }
  return failure?.hint;
}

/**
 * True when the failure is one a change to the application's files may fix (a crash, a module or
 * configuration that does not load): `keel dev` then says to fix it and save. Not a port another
 * process holds, a server it cannot reach, nor a bad option or variable of the command line.
 *
 * @example
 * ```ts
 * fixedBySave({ code: 'E_MANIFEST', message: 'Loading modules/index.ts failed: ...', retry: true }); // true
 * fixedBySave({ code: 'UNAVAILABLE', message: 'Could not connect to NATS at ...', retry: true }); // false
 * ```
 */
export function fixedBySave(failure: ProcessFailure | undefined): boolean {
  return failure === undefined || !OUTSIDE_FAILURES.has(failure.code);
}

/** Failures of a process that come from outside the application's files ({@link fixedBySave}). */
const OUTSIDE_FAILURES: ReadonlySet<string> = new Set(['E_HTTP_LISTEN', 'UNAVAILABLE', 'E_USAGE']);
