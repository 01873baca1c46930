/**
 * What {@link createLocalTransport} takes: the in-process transport's option type, its defaults,
 * and the check of what is given (a bad option is an `INVALID_CONFIG` naming the field).
 */
import { z } from 'zod';
import type { Logger } from './logger.js';
import { loggerOption } from './options.js';

/**
 * Options of {@link createLocalTransport}.
 *
 * @example
 * ```ts
 * const options: LocalTransportOptions = { logger: createLogger({ level: 'warn' }), redeliveryDelayMs: 10, durableBacklogLimit: 1_000 };
 * const bus = createLocalTransport(options);
 * ```
 */
export interface LocalTransportOptions {
  /** Where dropped events are reported. */
  readonly logger?: Logger;
  /** Delay before redelivering a failed durable event, multiplied by the attempt number (default 50 ms). */
  readonly redeliveryDelayMs?: number;
  /**
   * Durable events kept, per subscribing module and event, while that module has subscribed
   * before but none of its instances runs (default 10 000). They are delivered when an instance
   * subscribes again. Beyond the limit the oldest are dropped, and an error names the module,
   * the event and how many were dropped. The backlog lives in memory: it is gone when the process
   * ends or the transport closes. `0` keeps none.
   */
  readonly durableBacklogLimit?: number;
}

/**
 * Defaults of {@link LocalTransportOptions}.
 *
 * @example
 * ```ts
 * const bus = createLocalTransport({ redeliveryDelayMs: DEFAULT_LOCAL_TRANSPORT_OPTIONS.redeliveryDelayMs / 5 });
 * ```
 */
export const DEFAULT_LOCAL_TRANSPORT_OPTIONS = {
  redeliveryDelayMs: 50,
  durableBacklogLimit: 10_000,
} as const satisfies Partial<LocalTransportOptions>;

/** The check of {@link LocalTransportOptions}, read by `parseOptions` in {@link createLocalTransport}. */
export const LocalTransportOptionsSchema = z
  .object({
    logger: loggerOption().optional(),
    redeliveryDelayMs: z
      .number({ error: 'must be a number of milliseconds, 0 to 3600000' })
      .refine((value) => Number.isFinite(value) && value >= 0 && value <= 3_600_000, 'must be a number of milliseconds, 0 to 3600000')
      .optional(),
    durableBacklogLimit: z
      .number({ error: 'must be a whole number of events, 0 or more' })
      .refine((value) => Number.isSafeInteger(value) && value >= 0, 'must be a whole number of events, 0 or more')
      .optional(),
  })
  .strict();
