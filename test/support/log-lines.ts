/**
 * A logger that keeps every record as a line, for tests that read what keel logged (its level,
 * message and fields).
 */
import type { Logger } from 'keel';

/** One record a {@link linesLogger} kept. */
export interface LogLine {
  readonly level: string;
  readonly message: string;
  readonly record: Record<string, unknown>;
}

/**
 * A logger pushing each record onto `lines`; its children share them.
 *
 * @example
 * ```ts
 * const lines: LogLine[] = [];
 * const transport = await createNatsTransport({ servers, logger: linesLogger(lines) });
 * ```
 */
export function linesLogger(lines: LogLine[]): Logger {
  const at = (level: string) => (record: Record<string, unknown>, message: string) => {
    lines.push({ level, message, record });
  };
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: () => logger };
  return logger;
}
