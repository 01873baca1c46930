/**
 * The gateway's close, bounded: fastify's `close()` waits for every request in flight, and a
 * request can outlast every deadline without a handler running (a client still sending its body,
 * which only `requestTimeoutMs` ends; an `authenticate` hook waiting for a key set). The grace
 * period `keel deploy` writes counts the gateway's close as `gatewayCloseBoundMs` (the longest
 * deadline it may give a call, plus 1 s): past it, the connections still open are ended, so the
 * kernel's stop that follows is not cut by the platform's SIGKILL.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'keel';
import { MAX_TIMEOUT_MS } from 'keel/transport';

/**
 * Closes `server` (no new connection, idle ones ended, requests in flight answered) and, if
 * requests are still in flight `boundMs` after, ends their connections with Node's
 * `closeAllConnections()` and logs one warn line saying how many and what to do
 * (`requestTimeoutMs`, the gateway's, is named in it). Resolves once
 * the server is closed. No handler runs then: a call that starts during the close gets at most
 * what is left of `boundMs` (less the time to write its answer) as its deadline, or is refused
 * `UNAVAILABLE` before it is made (gateway-routes.ts, `closingTimeoutMs`); the calls of the
 * requests cut are cancelled through their connection's abort signal and end by their deadline
 * in the kernel, whose stop waits for them.
 *
 * @example
 * ```ts
 * await closeWithin(server, gatewayCloseBoundMs({ contracts, maxTimeoutMs }), 30_000, logger);
 * ```
 */
export async function closeWithin(server: FastifyInstance, boundMs: number, requestTimeoutMs: number, logger: Logger): Promise<void> {
  const closed = server.close();
  let timer: NodeJS.Timeout | undefined;
  // A bound past the longest timer (an operation's timeoutMs of MAX_TIMEOUT_MS) is held to it: Node fires a longer one at once.
  const cut = new Promise<'cut'>((resolve) => (timer = setTimeout(() => resolve('cut'), Math.min(boundMs, MAX_TIMEOUT_MS))));
  try {
    if ((await Promise.race([closed.then(() => 'closed' as const), cut])) === 'closed') return;
  } finally {
    clearTimeout(timer);
  }
  // Every connection left is one whose request is in flight: close() ended the idle ones, and
  // every answer written while closing ends its own.
  const open = await new Promise<number>((resolve) => server.server.getConnections((error, count) => resolve(error === null ? count : 0)));
  server.server.closeAllConnections();
  logger.warn(
    { connections: open, bound_ms: boundMs, request_timeout_ms: requestTimeoutMs },
    `HTTP gateway: close() cut ${open} request(s) still in flight after ${boundMs} ms (the longest deadline the gateway gives a call, plus 1 s: ` +
      "the grace periods keel deploy writes count no more) and ended their connections, so that the kernel's stop is not killed. " +
      `An operation's call ends by its deadline: these were clients still sending their body (lower requestTimeoutMs, now ${requestTimeoutMs} ms, to refuse them sooner), ` +
      'an authenticate hook still waiting for its key set, or a route added in configure that takes longer (give it a deadline of its own). ' +
      'To let such requests finish, raise maxTimeoutMs: the grace periods grow with it',
  );
  await closed;
}
