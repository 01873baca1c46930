/**
 * Logging. keel logs structured records through a small {@link Logger} interface that pino
 * (the default) satisfies, so an application can pass its own pino instance or any adapter.
 */
import { hostname } from 'node:os';
import { pino } from 'pino';

/**
 * A structured log function, each method of a {@link Logger}: a record, then a message.
 *
 * @example
 * ```ts
 * logger.info({ sku: 'KB-001', quantity: 2 }, 'restocked');
 * ```
 */
export type LogFunction = (record: Record<string, unknown>, message: string) => void;

/**
 * The logger keel writes to. A pino logger satisfies it.
 *
 * @example
 * ```ts
 * import type { Logger } from 'keel';
 *
 * const consoleLogger = (bindings: Record<string, unknown> = {}): Logger => ({
 *   debug: (record, message) => console.debug(message, { ...bindings, ...record }),
 *   info: (record, message) => console.info(message, { ...bindings, ...record }),
 *   warn: (record, message) => console.warn(message, { ...bindings, ...record }),
 *   error: (record, message) => console.error(message, { ...bindings, ...record }),
 *   child: (more) => consoleLogger({ ...bindings, ...more }),
 * });
 * const kernel = createKernel({ modules, logger: consoleLogger() });
 * ```
 */
export interface Logger {
  debug: LogFunction;
  info: LogFunction;
  warn: LogFunction;
  error: LogFunction;
  /** A logger whose records all carry `bindings`. */
  child(bindings: Record<string, unknown>): Logger;
}

/**
 * The default logger: pino writing JSON lines to stdout, level from `KEEL_LOG_LEVEL`
 * (default `info`; `silent` turns it off). Where `KEEL_PROCESS_NAME` is set (by `keel up` and
 * the files `keel deploy` writes: the process group's name), every record carries it as
 * `process`, so that the lines of many processes in one log store say where they come from.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, logger: createLogger({ level: 'debug' }) });
 * ```
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  const processName = process.env['KEEL_PROCESS_NAME']?.trim();
  return pino({
    name: options.name ?? 'keel',
    level: options.level ?? process.env['KEEL_LOG_LEVEL'] ?? 'info',
    ...(processName ? { base: { pid: process.pid, hostname: hostname(), process: processName } } : {}),
  }) as unknown as Logger;
}

/**
 * A logger that drops everything.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, logger: silentLogger }); // a quiet test
 * ```
 */
export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
