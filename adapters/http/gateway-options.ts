/**
 * The HTTP gateway's options, checked once by {@link resolveHttpGatewayOptions}: a strict zod
 * schema for types and ranges (an explicit `undefined` means the default, an unknown key is
 * refused), then the checks that need the exposed contracts (paths that would clash, GET
 * operations). Every wrong option is one `INVALID_CONFIG` naming the field.
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { KeelError, KeelErrorCode, type AnyContract, type Kernel, type Logger } from 'keel';
import { DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, isContract, loggerOption, parseOptions } from 'keel/transport';
import type { Authenticate } from './authenticate.js';
import {
  CorsOptionsSchema,
  RateLimitOptionsSchema,
  TRUST_PROXY_RULE,
  flag,
  milliseconds,
  proxyList,
  text,
  wholeNumber,
  type HttpCorsOptions,
  type HttpRateLimitOptions,
} from './gateway-option-rules.js';
import { kernelOfMetrics, type KernelMetrics, type KernelMetricsOptions } from './metrics.js';

/**
 * What {@link createHttpGateway} takes. Only `kernel` is required; see
 * {@link DEFAULT_HTTP_GATEWAY_OPTIONS} for the defaults.
 *
 * @example
 * ```ts
 * const options: HttpGatewayOptions = {
 *   kernel,
 *   port: Number(process.env.PORT ?? 3000),
 *   bodyLimit: 256 * 1024,
 *   getOperations: ['catalog.getProduct', 'orders.getOrder'],
 *   openapi: { title: 'Shop API' },
 * };
 * const gateway = await createHttpGateway(options);
 * ```
 */
export interface HttpGatewayOptions {
  /** The kernel whose contracts are exposed. It may host every module, some, or none (reaching them over NATS). */
  readonly kernel: Kernel;
  /**
   * Contracts to expose (default: every contract of the kernel's manifest). `[]` exposes no
   * operation: the gateway then serves health, readiness, metrics and an OpenAPI document
   * without paths, for a process that only needs probing and scraping.
   */
  readonly contracts?: readonly AnyContract[];
  /** Port to listen on; 0 picks a free one (default 3000). */
  readonly port?: number;
  /** Address to listen on (default `127.0.0.1`; `0.0.0.0` to accept connections from other hosts). */
  readonly host?: string;
  /** Largest request body in bytes (default 1 MiB); larger bodies get 413. */
  readonly bodyLimit?: number;
  /**
   * Milliseconds a client has to send a whole request, headers and body (default 30 000). A
   * slower one gets 408 and its connection is closed, within about a second after the limit:
   * a client trickling its body cannot hold a connection open.
   */
  readonly requestTimeoutMs?: number;
  /** Milliseconds a client has to send the request's headers (default 10 000); at most `requestTimeoutMs`. */
  readonly headersTimeoutMs?: number;
  /**
   * Milliseconds an idle keep-alive connection stays open after its last answer (default
   * 72 000: longer than the 60 s idle timeout of common load balancers, so that they never
   * reuse a connection the gateway is closing).
   */
  readonly keepAliveTimeoutMs?: number;
  /**
   * Most connections open at once (default 10 000); a connection above it is closed as soon as
   * it is accepted. Keep it below the process's file-descriptor limit (`ulimit -n`).
   */
  readonly maxConnections?: number;
  /**
   * Cross-origin requests from browsers (default `false`: no CORS header is sent, and a
   * preflight `OPTIONS` is refused with 405). Give the origins allowed to call the API.
   */
  readonly cors?: false | HttpCorsOptions;
  /**
   * Requests each client may make per window (default 1000 a minute, per client address); one
   * more gets 429 `RATE_LIMITED` with `Retry-After`. `/healthz`, `/readyz` and `/metrics` are
   * never limited. `false` turns it off (for a gateway behind a proxy that limits already).
   */
  readonly rateLimit?: false | HttpRateLimitOptions;
  /**
   * Security headers on every answer (helmet's: `Content-Security-Policy`,
   * `Strict-Transport-Security`, `X-Content-Type-Options: nosniff`, `X-Frame-Options`, ...),
   * and `Cache-Control: no-store` on the JSON routes' answers. Default true. Off, problems still
   * carry `Cache-Control: no-store`.
   */
  readonly securityHeaders?: boolean;
  /**
   * Which proxies to believe about the client's address (`X-Forwarded-For`), which the rate
   * limit counts by (default `false`: the address of the TCP peer, which a client cannot forge).
   * `true` trusts every proxy, a number that many hops, a string or array the proxies' addresses
   * or CIDR ranges (`'10.0.0.0/8'`). Set it behind a load balancer, or every client shares its address.
   */
  readonly trustProxy?: boolean | number | string | readonly string[];
  /** Development mode: error bodies carry stack traces and internal messages (default false). */
  readonly development?: boolean;
  /**
   * Cap of the deadline a client may ask for with the timeout header, for operations without
   * their own `timeoutMs` (which caps it otherwise). Default: the kernel's default deadline.
   */
  readonly maxTimeoutMs?: number;
  /** Header carrying the deadline in milliseconds (default `x-keel-timeout-ms`). */
  readonly timeoutHeader?: string;
  /** Header carrying the correlation id, read and echoed (default `x-correlation-id`). */
  readonly correlationHeader?: string;
  /**
   * Operations, named `module.operation`, also served as `GET /<module>/<operation>?input=<json>`
   * (default none). Each must be declared idempotent, and should be a pure read: browsers,
   * crawlers and proxies repeat and prefetch GETs, while a contract's `idempotent` only says
   * that repeating is safe (a charge per order id is idempotent, and no read).
   */
  readonly getOperations?: readonly string[];
  /** Path of the API reference page (default `/docs`); `false` serves none. */
  readonly docsPath?: string | false;
  /** `info` of the OpenAPI document. */
  readonly openapi?: { readonly title?: string; readonly version?: string; readonly description?: string };
  /**
   * Prometheus metrics at `/metrics` (default true); options pick the registry and default
   * metrics. Or metrics made by `createKernelMetrics(kernel)` before `kernel.start()`, for a
   * gateway made after it: the gateway serves them and does not close them.
   */
  readonly metrics?: boolean | KernelMetricsOptions | KernelMetrics;
  /**
   * `/readyz` answers 503 while a database of a module hosted here is `down` (default false: its
   * body says so, and it stays 200, so that a database shared by every replica taking a blip does
   * not take them all out of rotation; docs/observability.md). Set it where an instance without
   * its database should be taken out of rotation: one with a database of its own, or a replica
   * whose connection alone is lost.
   */
  readonly readyNeedsDatabases?: boolean;
  /** Caller name the gateway's calls carry (default `http`). */
  readonly caller?: string;
  /** `close()` also stops the kernel, after the last request is answered (default true). */
  readonly stopKernelOnClose?: boolean;
  /**
   * Logger (default pino, level from `KEEL_LOG_LEVEL`). A 5xx is logged at error; a 401 at debug,
   * with why the credentials were refused (never the credentials); a failure of the
   * `authenticate` hook (an unreachable key set) at most once per 10 s, with how many were left out.
   */
  readonly logger?: Logger;
  /**
   * Builds the caller's principal from each request to an operation (for example
   * `createJwtAuthenticator`, a bearer JWT): it travels with the call, its nested calls and the
   * events they emit (`context.principal`). Returning `undefined` makes the call anonymous;
   * throwing `UNAUTHENTICATED` answers 401. An operation whose contract declares `auth` is
   * answered 401 without a call when there is no principal. Default: every call is anonymous.
   * The kernel needs the application's principal schema (`createKernel({ principal })`): without it, `INVALID_CONFIG`.
   */
  readonly authenticate?: Authenticate;
  /**
   * The `WWW-Authenticate` header of every 401 answer (default `Bearer realm="keel"`); for
   * credentials the hook refused, a Bearer challenge gets `error="invalid_token"` (RFC 6750).
   */
  readonly challenge?: string;
  /**
   * Called with the fastify instance before any route is added: register authentication hooks,
   * CORS or extra routes here.
   */
  readonly configure?: (server: FastifyInstance) => void | Promise<void>;
}


/**
 * Defaults of {@link HttpGatewayOptions}, merged once when the gateway is created.
 *
 * @example
 * ```ts
 * const gateway = await createHttpGateway({ kernel, bodyLimit: 4 * DEFAULT_HTTP_GATEWAY_OPTIONS.bodyLimit });
 * ```
 */
export const DEFAULT_HTTP_GATEWAY_OPTIONS = {
  port: 3000,
  host: '127.0.0.1',
  bodyLimit: 1024 * 1024,
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 72_000,
  maxConnections: 10_000,
  cors: false,
  rateLimit: { max: 1000, windowMs: 60_000 },
  securityHeaders: true,
  trustProxy: false,
  development: false,
  timeoutHeader: 'x-keel-timeout-ms',
  correlationHeader: 'x-correlation-id',
  getOperations: [],
  docsPath: '/docs',
  readyNeedsDatabases: false,
  caller: 'http',
  stopKernelOnClose: true,
  challenge: 'Bearer realm="keel"',
} as const satisfies Partial<HttpGatewayOptions>;

/** Paths the gateway serves besides operations. */
export const GATEWAY_PATHS = { health: '/healthz', ready: '/readyz', metrics: '/metrics', openapi: '/openapi.json' } as const;

/** The options with every default filled in and the exposed contracts decided. */
export type ResolvedHttpGatewayOptions = Omit<HttpGatewayOptions, 'contracts'> &
  Required<Pick<HttpGatewayOptions, keyof typeof DEFAULT_HTTP_GATEWAY_OPTIONS>> & {
    readonly contracts: readonly AnyContract[];
    /** The given cap, else the kernel's default deadline. */
    readonly maxTimeoutMs: number;
    /** The kernel's deadline for a call that sets none: a request's without the timeout header, unless its operation declares one. */
    readonly defaultTimeoutMs: number;
  };

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const DOCS_PATH = /^\/[a-z0-9-/]*[a-z0-9]$/i;
const DOCS_PATH_RULE = 'must be false (no page) or a path like "/docs"';
const TIMEOUT_RULE = `must be a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;
const FACTORY = 'createHttpGateway';
const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

const OpenApiInfoSchema = z
  .object({ title: z.string().optional(), version: z.string().optional(), description: z.string().optional() })
  .strict();

const MetricsOptionsSchema = z
  .object({
    registry: z.custom((value) => isObject(value) && typeof value['registerMetric'] === 'function').optional(),
    defaultMetrics: z.boolean().optional(),
    buckets: z.array(z.number().positive()).optional(),
  })
  .strict();

const HttpGatewayFieldsSchema = z
  .object({
    kernel: z.custom((value) => isObject(value) && typeof value['client'] === 'function' && Array.isArray(value['modules']), {
      error: 'must be a Kernel made with createKernel()',
    }),
    contracts: z
      .array(
        z.custom((value) => isContract(value), { error: 'must be a contract made with defineContract()' }),
        { error: 'must be an array of contracts made with defineContract()' },
      )
      .optional(),
    port: wholeNumber('a whole number from 0 (any free port) to 65535', (value) => value >= 0 && value <= 65_535).optional(),
    host: text('a host name or address, such as 127.0.0.1 or 0.0.0.0').optional(),
    bodyLimit: wholeNumber('a whole number of bytes above 0', (value) => value > 0).optional(),
    requestTimeoutMs: milliseconds().optional(),
    headersTimeoutMs: milliseconds().optional(),
    keepAliveTimeoutMs: milliseconds().optional(),
    maxConnections: wholeNumber('a whole number of connections above 0', (value) => value > 0).optional(),
    cors: z.union([z.literal(false), CorsOptionsSchema], { error: 'must be false or an object of origins, credentials and maxAgeSeconds' }).optional(),
    rateLimit: z.union([z.literal(false), RateLimitOptionsSchema], { error: 'must be false or an object of max, windowMs and allowList' }).optional(),
    securityHeaders: flag().optional(),
    trustProxy: z
      .union([z.boolean(), wholeNumber('a whole number of proxy hops', (value) => value >= 0), proxyList(), z.array(proxyList())], {
        error: TRUST_PROXY_RULE,
      })
      .optional(),
    development: flag().optional(),
    maxTimeoutMs: z
      .number({ error: TIMEOUT_RULE })
      .refine((value) => value > 0 && value <= MAX_TIMEOUT_MS, TIMEOUT_RULE)
      .optional(),
    timeoutHeader: text('an HTTP header name, such as x-keel-timeout-ms', HEADER_NAME).optional(),
    correlationHeader: text('an HTTP header name, such as x-correlation-id', HEADER_NAME).optional(),
    getOperations: z.array(z.string(), { error: 'must be an array of "module.operation" names' }).optional(),
    docsPath: z
      .union([z.literal(false), z.string().regex(DOCS_PATH, DOCS_PATH_RULE)], { error: DOCS_PATH_RULE })
      .optional(),
    openapi: z
      .custom((value) => OpenApiInfoSchema.safeParse(value).success, { error: 'must be an object of title, version and description, each a string' })
      .optional(),
    metrics: z
      .custom((value) => typeof value === 'boolean' || kernelOfMetrics(value) !== undefined || MetricsOptionsSchema.safeParse(value).success, {
        error:
          'must be true, false, an object of registry (a prom-client Registry), defaultMetrics (true or false) and buckets (seconds above 0), ' +
          'or metrics made by createKernelMetrics(kernel)',
      })
      .optional(),
    readyNeedsDatabases: flag().optional(),
    caller: text('a caller name that is not empty, such as http').optional(),
    stopKernelOnClose: flag().optional(),
    logger: loggerOption().optional(),
    configure: z.custom((value) => typeof value === 'function', { error: 'must be a function of the fastify instance' }).optional(),
    authenticate: z
      .custom((value) => typeof value === 'function', { error: 'must be a function of the request returning the principal, such as createJwtAuthenticator({ ... })' })
      .optional(),
    challenge: text('a WWW-Authenticate challenge such as Bearer realm="shop"', /^[!#$%&'*+.^_`|~0-9A-Za-z-]+( [\x20-\x7e]*)?$/).optional(),
  })
  .strict();

/** A headers timeout above the request timeout (each given or its default), which Node refuses. */
const timeoutsInOrder = (value: { headersTimeoutMs?: unknown; requestTimeoutMs?: unknown }, context: z.RefinementCtx): void => {
  const valid = (given: unknown): given is number | undefined => given === undefined || (Number.isSafeInteger(given) && (given as number) > 0);
  if (!valid(value.headersTimeoutMs) || !valid(value.requestTimeoutMs)) return; // already refused by its own field
  const headers = value.headersTimeoutMs ?? DEFAULT_HTTP_GATEWAY_OPTIONS.headersTimeoutMs;
  const request = value.requestTimeoutMs ?? DEFAULT_HTTP_GATEWAY_OPTIONS.requestTimeoutMs;
  if (headers <= request) return;
  context.addIssue(
    value.headersTimeoutMs === undefined
      ? {
          code: 'custom',
          path: ['requestTimeoutMs'],
          message: `must be at least headersTimeoutMs (${headers}, its default), since it includes the headers (raise it, or lower headersTimeoutMs)`,
        }
      : {
          code: 'custom',
          path: ['headersTimeoutMs'],
          message: `must be at most requestTimeoutMs (${request}), which includes the headers (lower it, or raise requestTimeoutMs)`,
        },
  );
};

const HttpGatewayOptionsSchema = HttpGatewayFieldsSchema.superRefine(timeoutsInOrder);

/**
 * The options each process decides for itself (`keel start` from its flags, its environment and
 * the modules it hosts), which an application's configuration file therefore does not set.
 */
const PROCESS_OPTIONS = { kernel: true, contracts: true, port: true, host: true, logger: true, stopKernelOnClose: true } as const;

/**
 * The gateway options an application's configuration file sets (the `gateway` section of
 * `keel.config.ts`): every {@link HttpGatewayOptions} field but those each process decides
 * (`kernel`, `contracts`, `port`, `host`, `logger`, `stopKernelOnClose`).
 *
 * @example
 * ```ts
 * const gateway: HttpGatewayConfig = { cors: { origins: ['https://shop.example.com'] }, trustProxy: 1 };
 * ```
 */
export type HttpGatewayConfig = Omit<HttpGatewayOptions, keyof typeof PROCESS_OPTIONS>;

/**
 * The zod schema of {@link HttpGatewayConfig}: the gateway's own checks, for a tool that reads
 * the options from a file before any gateway exists (`keel up`, `keel deploy`). Strict: an
 * unknown key is refused. Use it through `parseOptions` to name the wrong field.
 *
 * @example
 * ```ts
 * const ConfigSchema = z.object({ gateway: HttpGatewayConfigSchema.optional() }).strict();
 * const config = parseOptions('keel.config.ts', ConfigSchema, await import('./keel.config.js'));
 * ```
 */
export const HttpGatewayConfigSchema: z.ZodType<HttpGatewayConfig> = HttpGatewayFieldsSchema.omit(PROCESS_OPTIONS).superRefine(
  timeoutsInOrder,
) as unknown as z.ZodType<HttpGatewayConfig>;

/**
 * Checks the gateway's options once and returns them with the defaults filled in and the
 * exposed contracts decided (default: every contract of the kernel's manifest). Throws
 * `INVALID_CONFIG` naming every wrong field and what it takes.
 *
 * @example
 * ```ts
 * const resolved = resolveHttpGatewayOptions({ kernel, port: undefined });
 * resolved.port; // 3000
 * ```
 */
export function resolveHttpGatewayOptions(options: HttpGatewayOptions): ResolvedHttpGatewayOptions {
  const given = parseOptions(FACTORY, HttpGatewayOptionsSchema, options) as HttpGatewayOptions;
  const merged = { ...DEFAULT_HTTP_GATEWAY_OPTIONS, ...given };
  const contracts = merged.contracts ?? merged.kernel.modules.map((module) => module.contract as AnyContract);
  // One application-wide list (keel.config.ts) serves every process: a gateway that exposes some
  // modules offers GET for theirs, and passes over the names of the application's other modules.
  const exposed = new Set(contracts.map((contract) => contract.name));
  const elsewhere = new Set(merged.kernel.modules.map((module) => module.name).filter((name) => !exposed.has(name)));
  // A kernel from another copy of keel may lack the field: the default deadline then.
  const defaultTimeoutMs = typeof merged.kernel.defaultTimeoutMs === 'number' ? merged.kernel.defaultTimeoutMs : DEFAULT_TIMEOUT_MS;
  const resolved: ResolvedHttpGatewayOptions = {
    ...merged,
    contracts,
    maxTimeoutMs: merged.maxTimeoutMs ?? defaultTimeoutMs,
    defaultTimeoutMs,
    getOperations: merged.getOperations.filter((name) => !elsewhere.has(name.split('.')[0] ?? '')),
  };
  const problems = pathProblems(resolved);
  if (problems.length > 0) throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${FACTORY}: ${problems.join('; ')}.`);
  return resolved;
}

/** What in valid options still clashes: a path served twice, a GET for an operation that is not there or not idempotent. */
function pathProblems(options: ResolvedHttpGatewayOptions): string[] {
  const problems: string[] = [];
  const { contracts, docsPath } = options;
  // Else every signed-in request is a 401 blaming the client, unlogged (a kernel of another keel copy lacks the field).
  if (options.authenticate !== undefined && 'principalSchema' in options.kernel && options.kernel.principalSchema === undefined) {
    problems.push("authenticate is given, but the kernel declares no principal schema, so it would refuse every principal the hook makes (give createKernel({ principal }) the application's principal schema)");
  }
  const metricsKernel = kernelOfMetrics(options.metrics);
  if (metricsKernel !== undefined && metricsKernel !== options.kernel) {
    problems.push("metrics were made by createKernelMetrics for another kernel (make them with this gateway's kernel)");
  }
  const fixedPaths = [GATEWAY_PATHS.health, GATEWAY_PATHS.ready, ...(options.metrics === false ? [] : [GATEWAY_PATHS.metrics])];
  if (docsPath !== false && (fixedPaths as string[]).includes(docsPath)) {
    problems.push(`docsPath is "${docsPath}", a path the gateway serves itself (choose another, such as "/docs")`);
  }
  const reserved = new Set([...Object.values(GATEWAY_PATHS), ...(docsPath === false ? [] : [docsPath])].map((path) => path.split('/')[1]));
  const seen = new Set<string>();
  for (const contract of contracts) {
    if (seen.has(contract.name)) {
      problems.push(`contracts has "${contract.name}" listed twice (list each contract once)`);
    } else if (reserved.has(contract.name)) {
      problems.push(`contracts has "${contract.name}", which would shadow the gateway's /${contract.name} path (choose another docsPath, or do not expose it)`);
    }
    seen.add(contract.name);
  }
  for (const name of options.getOperations) {
    const [contractName, operationName] = name.split('.');
    const operation = contracts.find((contract) => contract.name === contractName)?.operations[operationName ?? ''];
    if (operation === undefined) {
      problems.push(`getOperations names "${name}", which is no operation of the exposed contracts (write it as "module.operation")`);
    } else if (operation.internal) {
      problems.push(`getOperations names "${name}", which its contract declares internal (the gateway does not serve it)`);
    } else if (!operation.idempotent) {
      problems.push(`getOperations names "${name}", which its contract does not declare idempotent (GET is only for idempotent reads)`);
    }
  }
  return problems;
}
