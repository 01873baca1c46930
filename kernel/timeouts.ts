/**
 * The bounds of a call's deadline, shared by every client (in process, over a transport, over
 * HTTP from a browser). No import: a browser bundle takes it as it is.
 */

/**
 * Default deadline of a call, when neither the call nor the operation sets one.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, defaultTimeoutMs: DEFAULT_TIMEOUT_MS / 2 });
 * ```
 */
export const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * The longest deadline a call may ask for: the largest delay a Node.js timer supports (about 24.8 days).
 *
 * @example
 * ```ts
 * await shop.getOrder({ orderId }, { timeoutMs: Math.min(requestedMs, MAX_TIMEOUT_MS) });
 * ```
 */
export const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The longest delay a Node timer holds (2^31 - 1 ms, about 24.8 days); a longer one fires at once. */
export const LONGEST_TIMER_MS = MAX_TIMEOUT_MS;
