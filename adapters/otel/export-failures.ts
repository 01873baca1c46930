/**
 * How `keel/otel` reports the SDK's failures (an export a collector refused or never received):
 * warnings through the process's logger, each distinct failure at most once per interval, with a
 * bounded memory of the failures seen.
 */
import type { Logger } from 'keel';

/**
 * How often one failure of the SDK (an export that failed, with its message) is logged: once
 * per 30 s at most, the repeats in between counted in the next line's `repeated`.
 *
 * @example
 * ```ts
 * // A collector down for a minute gives two or three warnings, not one per batch:
 * const warningsPerMinute = Math.ceil(60_000 / EXPORT_FAILURE_LOG_INTERVAL_MS) + 1;
 * ```
 */
export const EXPORT_FAILURE_LOG_INTERVAL_MS = 30_000;

/**
 * How many distinct export failure messages the rate limit remembers: past that, the one logged
 * longest ago is forgotten (and logged again if it comes back), so failures whose messages vary
 * (a changing address, a count in the text) cannot grow the process's memory without bound.
 *
 * @example
 * ```ts
 * // At most this many distinct failures are held back at once:
 * console.log(`${EXPORT_FAILURE_MESSAGES_KEPT} messages, each for ${EXPORT_FAILURE_LOG_INTERVAL_MS} ms`);
 * ```
 */
export const EXPORT_FAILURE_MESSAGES_KEPT = 256;

/** How much of an export failure's message is remembered and written in the log line's text (a collector's refusal may quote a whole body). */
const EXPORT_FAILURE_MESSAGE_KEY_CHARS = 512;

/**
 * The SDK's error handler (export failures reach it): a warning through `logger`, each distinct
 * message at most once per {@link EXPORT_FAILURE_LOG_INTERVAL_MS}, with how often it repeated since;
 * at most {@link EXPORT_FAILURE_MESSAGES_KEPT} messages remembered.
 */
export function rateLimitedWarnings(logger: Logger): (error: unknown) => void {
  const seen = new Map<string, { at: number; repeated: number }>();
  return (error) => {
    // A message may carry a whole response body: the key kept, and the log line's text, are its
    // start (the line's `err` still carries the whole error).
    const message = String(messageOf(error) ?? '').slice(0, EXPORT_FAILURE_MESSAGE_KEY_CHARS);
    const now = Date.now();
    const last = seen.get(message);
    if (last !== undefined && now - last.at < EXPORT_FAILURE_LOG_INTERVAL_MS) {
      last.repeated += 1;
      return;
    }
    // Deleted first, so that the map's order is the order of logging: its first entry is the oldest.
    seen.delete(message);
    if (seen.size >= EXPORT_FAILURE_MESSAGES_KEPT) seen.delete(seen.keys().next().value as string);
    seen.set(message, { at: now, repeated: 0 });
    logger.warn(
      { err: error, ...(last === undefined || last.repeated === 0 ? {} : { repeated: last.repeated }) },
      `tracing: ${message} (spans are dropped; the same failure is logged at most every ${EXPORT_FAILURE_LOG_INTERVAL_MS / 1000} s)`,
    );
  };
}

/** An error's message, with its cause's (the exporters wrap the network error) when it adds something. */
export function messageOf(error: unknown): string {
  if (!(error instanceof Error)) return typeof error === 'string' ? error : JSON.stringify(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause !== undefined && cause !== '' && !error.message.includes(cause) ? `${error.message}: ${cause}` : error.message || error.name;
}
