/**
 * Node's refusals of a port or address the gateway cannot listen on (taken, not allowed, no such
 * host), turned into a typed `INVALID_CONFIG` KeelError that names the address and what to do.
 */
import { KeelError, KeelErrorCode } from 'keel';

/** What each of Node's listen errors means for the person who chose the address. */
const LISTEN_REASONS: Readonly<Record<string, string>> = {
  EADDRINUSE: 'another process listens there',
  EACCES: 'not allowed for this user',
  EADDRNOTAVAIL: 'no such local address',
  // A host option (or KEEL_HTTP_HOST) that names no host: the user's input, not a bug.
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'its host name could not be resolved now',
};

/** The details of a listen failure's KeelError: the address tried, Node's code and what it means. */
export interface ListenFailureDetails {
  readonly address: string;
  readonly errno: string;
  readonly reason: string;
}

/**
 * The error `listen()` rejects with when Node refuses the address: a KeelError `INVALID_CONFIG`
 * whose `details` are {@link ListenFailureDetails} and whose `cause` is Node's error; any other
 * error is returned as it is.
 *
 * @example
 * ```ts
 * await server.listen({ port, host }).catch((error: unknown) => { throw listenFailure(error, host, port); });
 * ```
 */
export function listenFailure(error: unknown, host: string, port: number): unknown {
  const errno = (error as NodeJS.ErrnoException | undefined)?.code;
  const reason = errno !== undefined && Object.hasOwn(LISTEN_REASONS, errno) ? LISTEN_REASONS[errno] : undefined;
  if (errno === undefined || reason === undefined) return error;
  // An IPv6 host in brackets, as in a URL: `::1:8080` would not say where the port starts.
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const details: ListenFailureDetails = { address, errno, reason };
  return new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    `HTTP gateway: cannot listen on ${address}: ${reason} (${errno}). Pick another port (0 picks a free one) or address, or stop what holds it.`,
    { cause: error, details: { ...details } },
  );
}
