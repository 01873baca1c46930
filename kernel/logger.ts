/**
 * Logging. keel logs structured records through a small {@link Logger} interface that pino
 * (the default) satisfies, so an application can pass its own pino instance or any adapter.
 */
import { hostname } from 'node:os';
import { pino, type DestinationStream } from 'pino';
import { createRequire } from 'node:module';
import { KeelError, KeelErrorCode } from './errors.js';
import { logFields } from './log-fields.js';

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
 * How the default logger writes: `json` (one JSON object a line, for log stores) or `pretty`
 * (pino-pretty's human lines, for a terminal).
 *
 * @example
 * ```ts
 * const logger = createLogger({ format: LogFormat.PRETTY });
 * ```
 */
export const LogFormat = {
  JSON: 'json',
  PRETTY: 'pretty',
} as const;

/** A {@link LogFormat} value. */
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/**
 * Where the default logger writes: `process.stdout` satisfies it, so does a collector in a test.
 *
 * @example
 * ```ts
 * let output = '';
 * const logger = createLogger({ destination: { write: (text) => (output += text) } });
 * ```
 */
export interface LogDestination {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

/**
 * What {@link createLogger} takes; every field has a default from the environment.
 *
 * @example
 * ```ts
 * const options: LoggerOptions = { level: 'debug', format: 'json', destination: process.stdout };
 * ```
 */
export interface LoggerOptions {
  /** pino level (default `KEEL_LOG_LEVEL`, else `info`; `silent` turns it off). */
  readonly level?: string | undefined;
  /** The `name` field of every record (default `keel`). */
  readonly name?: string | undefined;
  /** Default: {@link logFormatOf} the environment and the destination. */
  readonly format?: LogFormat | undefined;
  /** Where lines go (default: file descriptor 1, stdout). Written to synchronously: no line is lost at exit. */
  readonly destination?: LogDestination | undefined;
  /** Where `KEEL_LOG_LEVEL`, `KEEL_LOG_FORMAT`, `KEEL_PROCESS_NAME` and `CI` are read (default `process.env`). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined;
}

/**
 * The log format a process uses: `KEEL_LOG_FORMAT` (`json` or `pretty`) when set, else `pretty`
 * on a terminal (`destination.isTTY`, and `CI` unset), else `json`. Throws `INVALID_CONFIG`,
 * naming the variable and the allowed values, for any other value.
 *
 * @example
 * ```ts
 * logFormatOf(process.env, process.stdout); // 'pretty' in a terminal, 'json' under Docker or a pipe
 * ```
 */
export function logFormatOf(env: Readonly<Record<string, string | undefined>>, destination: LogDestination = process.stdout): LogFormat {
  const value = env['KEEL_LOG_FORMAT']?.trim();
  if (value) {
    if (value === LogFormat.JSON || value === LogFormat.PRETTY) return value;
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `KEEL_LOG_FORMAT "${value}" is not a log format: set it to json (one JSON object a line) or pretty (human lines), or unset it (pretty on a terminal, else json).`,
    );
  }
  return destination.isTTY === true && !env['CI'] ? LogFormat.PRETTY : LogFormat.JSON;
}

/** The levels `KEEL_LOG_LEVEL` and {@link LoggerOptions.level} take. */
const LOG_LEVELS: readonly string[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The level to log at: `level` when given, else `KEEL_LOG_LEVEL`, else `info`; `INVALID_CONFIG` naming the source for any other value. */
function logLevelOf(level: string | undefined, env: Readonly<Record<string, string | undefined>>): string {
  const source = level !== undefined ? 'the logger option level' : 'KEEL_LOG_LEVEL';
  const value = level ?? (env['KEEL_LOG_LEVEL']?.trim() || 'info');
  if (LOG_LEVELS.includes(value)) return value;
  throw new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    `${source} "${value}" is not a log level: set it to one of ${LOG_LEVELS.join(', ')}, or unset it (info).`,
  );
}

/**
 * The default logger: pino, level from `KEEL_LOG_LEVEL` (default `info`; `silent` turns it off),
 * in the format {@link logFormatOf} picks (`KEEL_LOG_FORMAT`, else pretty on a terminal, else
 * JSON lines). Every record written while a handler runs carries `trace_id`, `span_id`,
 * `correlation_id`, `module` and `operation` (or `event`) of the call or event being handled
 * (see docs/observability.md). A level or format that is not one throws `INVALID_CONFIG` naming
 * it. Where
 * `KEEL_PROCESS_NAME` is set (by `keel up` and the files `keel deploy` writes: the process
 * group's name), every record carries it as `process`, so that the lines of many processes in
 * one log store say where they come from.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, logger: createLogger({ level: 'debug' }) });
 * ```
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const env = options.env ?? process.env;
  const destination = options.destination;
  const format = options.format ?? logFormatOf(env, destination ?? process.stdout);
  const processName = env['KEEL_PROCESS_NAME']?.trim();
  const logger = pino(
    {
      name: options.name ?? 'keel',
      level: logLevelOf(options.level, env),
      mixin: fieldsOfContext,
      // An error's cause as an object of its own under `cause`, not its message glued to the error's
      // ("… beforehand.: connect ECONNREFUSED"): keel's messages end in what to do, and the cause has its own.
      serializers: { err: pino.stdSerializers.errWithCause },
      ...(processName ? { base: { pid: process.pid, hostname: hostname(), process: processName } } : {}),
    },
    format === LogFormat.PRETTY ? prettyStream(destination ?? process.stdout) : jsonStream(destination),
  );
  return logger as unknown as Logger;
}

/**
 * JSON lines: to the destination given (`keel start` gives `process.stdout`, whose EPIPE tells it
 * that the reader went away), else pino's own synchronous writer on file descriptor 1.
 */
function jsonStream(destination: LogDestination | undefined): DestinationStream {
  return destination === undefined ? pino.destination({ dest: 1, sync: true }) : { write: (line) => void destination.write(line) };
}

/** Whether a pino logger (a module's child) already binds `module`, by logger. */
const bindsModule = new WeakMap<object, boolean>();

/**
 * {@link logFields} for pino's `mixin`, without `module` on a logger that binds it already (every
 * module's logger does): pino would write the key twice.
 */
function fieldsOfContext(_record: object, _level: number, logger: pino.Logger): Record<string, unknown> {
  const fields = logFields();
  if (fields['module'] === undefined) return fields;
  let binds = bindsModule.get(logger);
  if (binds === undefined) {
    binds = Object.hasOwn(logger.bindings(), 'module');
    bindsModule.set(logger, binds);
  }
  if (binds) delete fields['module'];
  return fields;
}

/** pino-pretty, loaded only by a process that writes pretty lines. */
const requirePretty = (): typeof import('pino-pretty') => createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');

/** pino-pretty's formatter, run in this thread as each line is written (no worker, nothing buffered). */
function prettyStream(destination: LogDestination): DestinationStream {
  const { isColorSupported, prettyFactory } = requirePretty();
  const pretty = prettyFactory({
    colorize: destination.isTTY === true && isColorSupported,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    // A record's fields beside its message: a terminal shows one line a record, as JSON does.
    singleLine: true,
  });
  return { write: (line) => void destination.write(pretty(line)) };
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
