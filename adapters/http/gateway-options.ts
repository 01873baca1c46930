/**
 * The HTTP gateway's options: their types, their defaults, and {@link resolveHttpGatewayOptions},
 * which merges and checks them once, before the gateway is set up.
 */
import type { FastifyInstance } from 'fastify';
import { KeelError, KeelErrorCode, type AnyContract, type Kernel, type Logger } from 'keel';
import { DEFAULT_TIMEOUT_MS, definedOnly } from 'keel/transport';
import type { KernelMetricsOptions } from './metrics.js';

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
  /** Prometheus metrics at `/metrics` (default true); options pick the registry and default metrics. */
  readonly metrics?: boolean | KernelMetricsOptions;
  /** Caller name the gateway's calls carry (default `http`). */
  readonly caller?: string;
  /** `close()` also stops the kernel, after the last request is answered (default true). */
  readonly stopKernelOnClose?: boolean;
  /** Logger (default pino, level from `KEEL_LOG_LEVEL`). */
  readonly logger?: Logger;
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
  development: false,
  maxTimeoutMs: DEFAULT_TIMEOUT_MS,
  timeoutHeader: 'x-keel-timeout-ms',
  correlationHeader: 'x-correlation-id',
  getOperations: [],
  docsPath: '/docs',
  caller: 'http',
  stopKernelOnClose: true,
} as const satisfies Partial<HttpGatewayOptions>;

/** Paths the gateway serves besides operations. */
export const GATEWAY_PATHS = { health: '/healthz', ready: '/readyz', metrics: '/metrics', openapi: '/openapi.json' } as const;

/** The options with every default filled in and the exposed contracts decided. */
export type ResolvedHttpGatewayOptions = Omit<HttpGatewayOptions, 'contracts'> &
  Required<Pick<HttpGatewayOptions, keyof typeof DEFAULT_HTTP_GATEWAY_OPTIONS>> & {
    readonly contracts: readonly AnyContract[];
  };

/**
 * Merges the gateway's options with {@link DEFAULT_HTTP_GATEWAY_OPTIONS} (an option given as
 * `undefined` takes its default), decides the exposed contracts (default: every contract of the
 * kernel's manifest) and checks them. Throws `INVALID_CONFIG`.
 *
 * @example
 * ```ts
 * const resolved = resolveHttpGatewayOptions({ kernel, port: undefined });
 * resolved.port; // 3000
 * ```
 */
export function resolveHttpGatewayOptions(options: HttpGatewayOptions): ResolvedHttpGatewayOptions {
  const merged = { ...DEFAULT_HTTP_GATEWAY_OPTIONS, ...(definedOnly(options) as HttpGatewayOptions) };
  const resolved: ResolvedHttpGatewayOptions = {
    ...merged,
    contracts: merged.contracts ?? merged.kernel.modules.map((module) => module.contract as AnyContract),
  };
  checkOptions(resolved);
  return resolved;
}

function checkOptions(options: ResolvedHttpGatewayOptions): void {
  const fail = (message: string): never => {
    throw configError(message);
  };
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535) fail(`port must be 0..65535, got ${options.port}.`);
  if (!Number.isInteger(options.bodyLimit) || options.bodyLimit <= 0) fail(`bodyLimit must be a positive number of bytes, got ${options.bodyLimit}.`);
  if (!(options.maxTimeoutMs > 0)) fail(`maxTimeoutMs must be positive, got ${options.maxTimeoutMs}.`);
  if (options.docsPath !== false && !/^\/[a-z0-9-/]*[a-z0-9]$/i.test(options.docsPath)) {
    fail(`docsPath must look like "/docs", got "${options.docsPath}".`);
  }
  const { contracts } = options;
  const reserved = new Set(
    [...Object.values(GATEWAY_PATHS), ...(options.docsPath === false ? [] : [options.docsPath])].map((path) => path.split('/')[1]),
  );
  const seen = new Set<string>();
  for (const contract of contracts) {
    if (reserved.has(contract.name)) {
      fail(`contract "${contract.name}" would shadow the gateway's /${contract.name} path; choose another docsPath or do not expose it.`);
    }
    if (seen.has(contract.name)) fail(`contract "${contract.name}" is listed twice in contracts.`);
    seen.add(contract.name);
  }
  for (const name of options.getOperations) {
    const [contractName, operationName] = name.split('.');
    const operation = contracts.find((contract) => contract.name === contractName)?.operations[operationName ?? ''];
    if (operation === undefined) {
      throw configError(`getOperations names "${name}", which is no operation of the exposed contracts; write it as "module.operation".`);
    }
    if (!operation.idempotent) {
      throw configError(`getOperations names "${name}", which its contract does not declare idempotent; GET is only for idempotent reads.`);
    }
  }
}

function configError(message: string): KeelError {
  return new KeelError(KeelErrorCode.INVALID_CONFIG, `HTTP gateway: ${message}`);
}
