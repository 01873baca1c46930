/**
 * keel/config — the application's configuration file, `keel.config.ts` at the project root:
 * what every process of the application shares, whichever modules it hosts. `keel start` reads
 * it (and so each process of `keel up` and of a `keel deploy` image), `keel up` and `keel deploy`
 * check it first. This entry is light: types and one identity function, so a configuration file
 * loads nothing but itself. See docs/cli.md ("The configuration file").
 *
 * @example
 * ```ts
 * // keel.config.ts
 * import { defineConfig } from 'keel/config';
 *
 * export default defineConfig({
 *   gateway: {
 *     cors: { origins: ['https://shop.example.com'] },
 *     rateLimit: { max: 600, windowMs: 60_000 },
 *     trustProxy: 1, // one load balancer in front
 *   },
 * });
 * ```
 *
 * @module
 */
import type { KernelOptions } from 'keel';
import type { HttpGatewayConfig } from 'keel/http';
import type { LogFormat } from 'keel/transport';

export type { HttpCorsOptions, HttpGatewayConfig, HttpRateLimitOptions } from 'keel/http';

/**
 * The application's configuration, the default export of `keel.config.ts`. Each section is
 * checked when the file is read, and a wrong field is named with the file.
 *
 * @example
 * ```ts
 * const config: KeelConfig = { gateway: { requestTimeoutMs: 10_000, securityHeaders: true } };
 * ```
 */
export interface KeelConfig {
  /**
   * The HTTP gateway of every process that serves one: the options of `createHttpGateway`
   * ('keel/http') but those each process decides itself (its kernel, the contracts it exposes,
   * port, host, logger). Timeouts, connection limit, CORS, rate limit, security headers,
   * trustProxy, body limit, and any other gateway option, given to the gateway as they are.
   */
  readonly gateway?: HttpGatewayConfig;
  /**
   * The application's principal: the zod schema of the caller identity that travels with every
   * call and event (`createKernel({ principal })`; docs/security.md, "Caller identity"). Every
   * process `keel start` runs gets it, so that each can check the principal its calls carry. The
   * gateway's `authenticate` hook (in `gateway`) makes it from each request.
   */
  readonly principal?: KernelOptions['principal'];
  /**
   * How every process's calls recover and how much work each module takes at once, given to
   * each kernel as they are: `retry`, `hedge`, `circuitBreaker` and `retryBudget` (the caller's side), and
   * `bulkhead` and `bulkheads` (the served side). docs/resilience.md says what each does; the
   * kernel checks them, and a bad value stops the start naming the field.
   */
  readonly resilience?: Pick<KernelOptions, 'retry' | 'hedge' | 'circuitBreaker' | 'retryBudget' | 'bulkhead' | 'bulkheads'>;
  /**
   * How every process's modules that own data publish and handle durable events, given to each
   * kernel as it is: `outboxWindow`, the durable events an outbox relay sends before the first is
   * confirmed (default 32; `1` keeps the written order exactly), and `inboxBatch` and
   * `inboxBatchMs`, how many events a module's inbox handles in one transaction (default 32;
   * `1`, a transaction each) and for how long it takes more (default 20 ms), and
   * `databaseCheckMs`, how often each module's database is checked (default 5 000 ms;
   * docs/observability.md): docs/data.md.
   */
  readonly data?: Pick<KernelOptions, 'outboxWindow' | 'inboxBatch' | 'inboxBatchMs' | 'databaseCheckMs'>;
  /**
   * The level and format of every process's log (`keel start`, each process of `keel up` and
   * `keel dev`, the images of `keel deploy`). `KEEL_LOG_LEVEL` and `KEEL_LOG_FORMAT`, where
   * set, win over them.
   */
  readonly logging?: LoggingConfig;
}

/**
 * The levels of the default logger (pino's), lowest first; `silent` writes nothing.
 *
 * @example
 * ```ts
 * const level: LogLevel = 'debug';
 * ```
 */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/** A {@link LOG_LEVELS} value. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * How every process of the application logs, unless its environment says otherwise:
 * `KEEL_LOG_LEVEL` and `KEEL_LOG_FORMAT` override these fields one by one.
 *
 * @example
 * ```ts
 * const logging: LoggingConfig = { level: 'debug', format: 'pretty' };
 * ```
 */
export interface LoggingConfig {
  /** The lowest level written (default `info`). */
  readonly level?: LogLevel;
  /** `json` (one JSON object a line) or `pretty` (human lines); default pretty on a terminal (without `CI`), else json. */
  readonly format?: LogFormat;
}

/**
 * Types the application's configuration: write `export default defineConfig({ ... })` in
 * `keel.config.ts`. It returns the configuration as given; the file's reader checks it.
 *
 * @example
 * ```ts
 * import { defineConfig } from 'keel/config';
 *
 * export default defineConfig({ gateway: { cors: { origins: ['http://localhost:5173'] } } });
 * ```
 */
export function defineConfig(config: KeelConfig): KeelConfig {
  return config;
}
