/**
 * How a `keel start` process decides its HTTP gateway port, in one place: `keel start` listens
 * on it, and `keel dev` (cli/local-run.ts) asks, for the one process it starts as keel start
 * would, whether that process serves HTTP at all (a gateway's stop takes longer). Two copies of
 * the rule would drift, and keel dev would then wait for the wrong process.
 */
import { CLIError, CliErrorCode } from './errors.js';

/** The port of a process hosting the whole application when nothing else names one, as the shop's `npm start`. */
export const DEFAULT_HTTP_PORT = 3000;

/** The variables naming the port when `--http` is not given, the first set winning. */
const HTTP_PORT_VARIABLES = ['KEEL_HTTP_PORT', 'PORT'] as const;

/** The port a process was given, as written, and where: `--http`, `KEEL_HTTP_PORT` or `PORT`. */
export interface HttpPortSetting {
  readonly source: string;
  /** Trimmed; not checked to be a port (see {@link httpPortOf}). */
  readonly value: string;
}

/**
 * The setting a process takes its port from: `--http` when given (even blank: a value to
 * refuse, not one left out), else the first of `KEEL_HTTP_PORT` and `PORT` set and not blank.
 * Undefined when none is.
 *
 * @example
 * ```ts
 * httpPortSetting(undefined, { PORT: '8080' }); // { source: 'PORT', value: '8080' }
 * httpPortSetting(' off ', { PORT: '8080' }); // { source: '--http', value: 'off' }
 * ```
 */
export function httpPortSetting(flag: string | undefined, env: Readonly<Record<string, string | undefined>>): HttpPortSetting | undefined {
  if (flag !== undefined) return { source: '--http', value: flag.trim() };
  for (const source of HTTP_PORT_VARIABLES) {
    const value = env[source]?.trim();
    if (value) return { source, value };
  }
  return undefined;
}

/**
 * Whether a process serves an HTTP gateway, without checking the port: a setting other than
 * `off`, else when it hosts every module (`hostsAll`: neither `--modules` nor `KEEL_MODULES`),
 * on {@link DEFAULT_HTTP_PORT}. A module process of a split topology, given none, serves none, so
 * that they do not all claim one port.
 *
 * @example
 * ```ts
 * servesHttp(undefined, {}, true); // true: on 3000
 * servesHttp(undefined, { PORT: 'off' }, true); // false
 * servesHttp(undefined, {}, false); // false
 * ```
 */
export function servesHttp(flag: string | undefined, env: Readonly<Record<string, string | undefined>>, hostsAll: boolean): boolean {
  const setting = httpPortSetting(flag, env);
  return setting === undefined ? hostsAll : setting.value !== 'off';
}

/**
 * The gateway port, when {@link servesHttp}: the setting's, else {@link DEFAULT_HTTP_PORT}.
 * Throws `E_USAGE`, naming where it came from, for a setting that is neither a port (0 to
 * 65535; 0 picks a free one) nor `off`.
 *
 * @example
 * ```ts
 * httpPortOf('8080', {}, false); // 8080
 * httpPortOf(undefined, { KEEL_HTTP_PORT: 'off', PORT: '8080' }, true); // undefined
 * httpPortOf(undefined, { PORT: 'http' }, true); // throws E_USAGE: HTTP port "http" (from PORT) is not a port number ...
 * ```
 */
export function httpPortOf(flag: string | undefined, env: Readonly<Record<string, string | undefined>>, hostsAll: boolean): number | undefined {
  if (!servesHttp(flag, env, hostsAll)) return undefined;
  const setting = httpPortSetting(flag, env);
  if (setting === undefined) return DEFAULT_HTTP_PORT;
  const port = Number(setting.value);
  if (!(/^\d+$/.test(setting.value) && port <= 65_535)) {
    throw new CLIError(CliErrorCode.E_USAGE, `HTTP port "${setting.value}" (from ${setting.source}) is not a port number (0 to 65535), nor "off".`);
  }
  return port;
}
