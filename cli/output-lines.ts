/**
 * The lines of a supervised process as `keel up` and `keel dev` write them in JSON format: one
 * JSON object a line, each naming its process, so that a log shipper (Loki, Vector, `jq`)
 * reading them parses every line. A line that is a JSON object passes unchanged; any other (a Node warning,
 * a stack trace, a crash message) becomes a record of the same shape as keel's pino records.
 */
import { hostname } from 'node:os';

/** Which of a process's output streams a line came from. */
export type OutputSource = 'stdout' | 'stderr';

/** The process a line came from. */
export interface LineOrigin {
  /** Its name, the `process` of its records, such as `storefront#2`. */
  readonly process: string;
  /** Its pid, when it has one. */
  readonly pid?: number | undefined;
  readonly stream: OutputSource;
}

/** pino's level numbers: what a process writes on stderr is an error (50), on stdout info (30). */
const LEVEL_OF_STREAM: Readonly<Record<OutputSource, number>> = { stdout: 30, stderr: 50 };

const host = hostname();

/** The line as a JSON object, or undefined when it is not one. */
function objectOf(line: string): Record<string, unknown> | undefined {
  const text = line.trim();
  if (!text.startsWith('{') || !text.endsWith('}')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One line of a supervised process as a JSON line (without its newline): the line itself when it
 * is a JSON object with a `process` field; the object with `process` added when it has none;
 * else a record wrapping it, `msg` the line, `level` 50 from stderr and 30 from stdout, and
 * `stream` saying which.
 *
 * @example
 * ```ts
 * jsonLineOf('(node:12) Warning: something', { process: 'storefront#2', pid: 12, stream: 'stderr' });
 * // {"level":50,"time":1796084669104,"pid":12,"hostname":"dev-box","process":"storefront#2","stream":"stderr","msg":"(node:12) Warning: something"}
 * ```
 */
export function jsonLineOf(line: string, origin: LineOrigin): string {
  const record = objectOf(line);
  if (record !== undefined) {
    if (Object.hasOwn(record, 'process')) return line;
    // Added as text, before the closing brace: the rest of the line stays the bytes the process wrote.
    const text = line.trim();
    const field = `"process":${JSON.stringify(origin.process)}`;
    return Object.keys(record).length === 0 ? `{${field}}` : `${text.slice(0, -1)},${field}}`;
  }
  return JSON.stringify({
    level: LEVEL_OF_STREAM[origin.stream],
    time: Date.now(),
    ...(origin.pid === undefined ? {} : { pid: origin.pid }),
    hostname: host,
    process: origin.process,
    stream: origin.stream,
    msg: line,
  });
}
