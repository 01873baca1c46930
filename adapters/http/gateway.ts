/**
 * The HTTP gateway: a fastify server exposing contract operations as `POST /<module>/<operation>`
 * (and `GET ...?input=` for the reads named in `getOperations`), with OpenAPI, an API reference page, health,
 * readiness and Prometheus metrics. Every route is derived from the contracts; none is written
 * by hand per operation.
 */
import { setMaxListeners } from 'node:events';
import type { AddressInfo } from 'node:net';
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { KeelError, KeelErrorCode, type AnyContract, type Kernel, type Logger } from 'keel';
import { DEFAULT_TIMEOUT_MS, createLogger, isCorrelationId, isTraceparent, newCorrelationId, type CallOptions } from 'keel/transport';
import { createKernelMetrics, type KernelMetrics, type KernelMetricsOptions } from './metrics.js';
import { createOpenApiDocument, operationPath, type OpenApiDocument } from './openapi.js';
import { PROBLEM_CONTENT_TYPE, gatewayProblem, problemOf, type Problem } from './problem.js';
import { HttpProblemCode } from './status.js';

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

/**
 * A running (or ready to run) HTTP gateway, made by {@link createHttpGateway}.
 *
 * @example
 * ```ts
 * const gateway = await createHttpGateway({ kernel, port: 0 });
 * const url = await gateway.listen();
 * const response = await fetch(`${url}/catalog/getProduct`, {
 *   method: 'POST',
 *   headers: { 'content-type': 'application/json' },
 *   body: JSON.stringify({ sku: 'KB-001' }),
 * });
 * await gateway.close(); // answers requests in flight, then stops the kernel
 * ```
 */
export interface HttpGateway {
  /** `http://host:port` once listening, else `undefined`. */
  readonly url: string | undefined;
  /** The OpenAPI 3.1 document served at `/openapi.json`. */
  readonly openapi: OpenApiDocument;
  /** The fastify instance, for `inject()` or inspection; add hooks and routes with `configure`. */
  readonly server: FastifyInstance;
  /** Starts listening; resolves with the URL. */
  listen(): Promise<string>;
  /**
   * Graceful shutdown: stops accepting connections (readiness turns false, requests on open
   * connections get 503), waits for requests in flight, then stops the kernel (unless
   * `stopKernelOnClose` is false). Close the transport after it. Idempotent.
   */
  close(): Promise<void>;
}

/** Paths the gateway serves besides operations. */
const GATEWAY_PATHS = { health: '/healthz', ready: '/readyz', metrics: '/metrics', openapi: '/openapi.json' } as const;

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const TIMEOUT_PATTERN = /^[0-9]{1,15}$/;

/** Request property (a fastify decorator) holding the request's correlation id once known. */
const CORRELATION_ID_PROPERTY = 'keelCorrelationId';

/** A fastify request with the gateway's decorator. */
type CorrelatedRequest = FastifyRequest & { [CORRELATION_ID_PROPERTY]: string };

/** A request the gateway refuses before any call: answered with its own problem code. */
class GatewayRefusal extends Error {
  constructor(
    readonly code: HttpProblemCode | typeof KeelErrorCode.PAYLOAD_TOO_LARGE,
    message: string,
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}

/** Maps fastify's own request errors (body parsing, limits) to gateway codes. */
function refusalOfFastifyError(error: FastifyError, options: ResolvedOptions): GatewayRefusal | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayRefusal(
        HttpProblemCode.UNSUPPORTED_MEDIA_TYPE,
        'The body must be JSON: send it with content-type application/json.',
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayRefusal(
        KeelErrorCode.PAYLOAD_TOO_LARGE,
        `The body is larger than ${options.bodyLimit} bytes, the most this gateway accepts.`,
        { limit: options.bodyLimit },
      );
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new GatewayRefusal(
        HttpProblemCode.MALFORMED_JSON,
        'The body is empty but its content-type says JSON: send the input as JSON, for example {}.',
      );
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new GatewayRefusal(
        HttpProblemCode.MALFORMED_JSON,
        'The body is not valid JSON (or holds a __proto__ or constructor.prototype key): send the input as JSON.',
      );
    default:
      if (typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500) {
        return new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, `The request is malformed: ${error.message}`);
      }
      return undefined;
  }
}

type ResolvedOptions = Omit<HttpGatewayOptions, keyof typeof DEFAULT_HTTP_GATEWAY_OPTIONS> & {
  readonly port: number;
  readonly host: string;
  readonly bodyLimit: number;
  readonly development: boolean;
  readonly maxTimeoutMs: number;
  readonly timeoutHeader: string;
  readonly correlationHeader: string;
  readonly getOperations: readonly string[];
  readonly docsPath: string | false;
  readonly caller: string;
  readonly stopKernelOnClose: boolean;
};

type Call = (input: unknown, options?: CallOptions) => Promise<unknown>;

function checkOptions(options: ResolvedOptions, contracts: readonly AnyContract[]): void {
  const fail = (message: string): never => {
    throw configError(message);
  };
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65_535) fail(`port must be 0..65535, got ${options.port}.`);
  if (!Number.isInteger(options.bodyLimit) || options.bodyLimit <= 0) fail(`bodyLimit must be a positive number of bytes, got ${options.bodyLimit}.`);
  if (!(options.maxTimeoutMs > 0)) fail(`maxTimeoutMs must be positive, got ${options.maxTimeoutMs}.`);
  if (options.docsPath !== false && !/^\/[a-z0-9-/]*[a-z0-9]$/i.test(options.docsPath)) {
    fail(`docsPath must look like "/docs", got "${options.docsPath}".`);
  }
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

/**
 * Creates the HTTP gateway of a kernel. Every operation of the exposed contracts becomes
 * `POST /<module>/<operation>` (JSON in, JSON out; idempotent ones also `GET ...?input=<json>`),
 * validated by the contract's own schemas through `kernel.client(contract, { caller: 'http' })`.
 * Errors are `application/problem+json` with a status from one table (`HTTP_STATUS_BY_CODE`,
 * `HTTP_STATUS_BY_KIND`). Also serves `/openapi.json`, the API reference at `/docs` (local
 * assets, works offline), `/healthz`, `/readyz` and `/metrics`.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createHttpGateway } from 'keel/http';
 * import { modules } from './modules/index.js';
 *
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * const gateway = await createHttpGateway({ kernel, port: 3000 });
 * console.log(`listening on ${await gateway.listen()}`);
 * process.once('SIGTERM', () => void gateway.close()); // finishes requests, then stops the kernel
 * ```
 */
export async function createHttpGateway(options: HttpGatewayOptions): Promise<HttpGateway> {
  const resolved: ResolvedOptions = { ...DEFAULT_HTTP_GATEWAY_OPTIONS, ...stripUndefined(options) };
  const { kernel } = resolved;
  const contracts = resolved.contracts ?? kernel.modules.map((module) => module.contract as AnyContract);
  checkOptions(resolved, contracts);
  const logger = (resolved.logger ?? createLogger({ name: 'keel-http' })).child({ component: 'http-gateway' });
  const document = createOpenApiDocument({
    contracts,
    ...resolved.openapi,
    getOperations: resolved.getOperations,
    timeoutHeader: resolved.timeoutHeader,
    maxTimeoutMs: resolved.maxTimeoutMs,
  });
  const documentJson = JSON.stringify(document);
  const metrics: KernelMetrics | undefined =
    resolved.metrics === false ? undefined : createKernelMetrics(kernel, resolved.metrics === true || resolved.metrics === undefined ? {} : resolved.metrics);

  const correlationHeader = resolved.correlationHeader.toLowerCase();
  const timeoutHeader = resolved.timeoutHeader.toLowerCase();
  // Kept on the request itself (a fastify request decorator, see below): cheaper than a WeakMap entry per request.
  const correlationIdOf = (request: FastifyRequest): string => {
    const correlated = request as Partial<CorrelatedRequest>;
    let id = correlated[CORRELATION_ID_PROPERTY];
    // Unset ('') on a routed request; absent on the bare request fastify hands frameworkErrors.
    if (id === undefined || id === '') {
      const header = request.headers[correlationHeader];
      id = isCorrelationId(header) ? header : newCorrelationId();
      correlated[CORRELATION_ID_PROPERTY] = id;
    }
    return id;
  };
  const sendProblem = (reply: FastifyReply, problem: Problem): FastifyReply => {
    // Headers may not be writable when the client has gone; fastify then only logs.
    return reply
      .status(problem.status)
      .header(correlationHeader, problem.correlationId)
      .type(PROBLEM_CONTENT_TYPE)
      .send(JSON.stringify(problem));
  };
  const refuse = (request: FastifyRequest, reply: FastifyReply, refusal: GatewayRefusal): FastifyReply =>
    sendProblem(reply, gatewayProblem(refusal.code, refusal.message, correlationIdOf(request), refusal.details));

  let closing = false;
  const server = fastify({
    logger: false,
    bodyLimit: resolved.bodyLimit,
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Errors met before routing (an undecodable URL): answered like every other bad request.
    frameworkErrors: (error, request, reply) =>
      refuse(request, reply, new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, `The request is malformed: ${error.message}`)),
    clientErrorHandler: (error, socket) => {
      if (!socket.writable || (error as NodeJS.ErrnoException).code === 'ECONNRESET') {
        socket.destroy();
        return;
      }
      const body = JSON.stringify(
        gatewayProblem(HttpProblemCode.MALFORMED_REQUEST, `The HTTP request is malformed: ${error.message}`, newCorrelationId()),
      );
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    },
  });
  // JSON only: without this, fastify would also accept text/plain bodies as strings.
  server.removeContentTypeParser('text/plain');
  server.decorateRequest(CORRELATION_ID_PROPERTY, '');

  const allowedMethods = new Map<string, string[]>();
  const exposedOperations =
    contracts.length === 0
      ? `This gateway exposes no operation; it serves only ${[
          GATEWAY_PATHS.health,
          GATEWAY_PATHS.ready,
          ...(metrics === undefined ? [] : [GATEWAY_PATHS.metrics]),
          GATEWAY_PATHS.openapi,
          ...(resolved.docsPath === false ? [] : [resolved.docsPath]),
        ].join(', ')}.`
      : `Operations are POST /<module>/<operation>, for the modules ${contracts.map((contract) => contract.name).join(', ')}; the list is at ` +
        `${GATEWAY_PATHS.openapi}${resolved.docsPath === false ? '' : ` and ${resolved.docsPath}`}.`;
  const notFound = (request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    const path = request.url.split('?')[0] ?? '';
    const allowed = allowedMethods.get(path.length > 1 ? path.replace(/\/+$/, '') : path);
    if (allowed !== undefined) {
      reply.header('allow', allowed.join(', '));
      return refuse(
        request,
        reply,
        new GatewayRefusal(HttpProblemCode.METHOD_NOT_ALLOWED, `${path} does not take ${request.method}; use ${allowed.join(' or ')}.`, {
          allow: allowed,
        }),
      );
    }
    const [, moduleName, operationName] = path.split('/');
    const contract = contracts.find((candidate) => candidate.name === moduleName);
    let message: string;
    if (contract !== undefined) {
      message =
        `Module "${contract.name}" has no operation "${operationName ?? ''}"; its operations are ${Object.keys(contract.operations).join(', ') || 'none'} ` +
        `(POST /${contract.name}/<operation>).`;
    } else if (kernel.modules.some((module) => module.name === moduleName)) {
      // A module of the application that this gateway was told not to expose: say so, rather than that it does not exist.
      message = `No route ${request.method} ${path}: module "${moduleName}" is not exposed by this gateway. ${exposedOperations}`;
    } else {
      message = `No route ${request.method} ${path}. ${exposedOperations}`;
    }
    return refuse(request, reply, new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, message));
  };
  server.setNotFoundHandler(notFound);

  // Hooks in callback style: an async hook costs fastify a promise and a microtask per request.
  server.addHook('onRequest', (request, reply, done) => {
    reply.header(correlationHeader, correlationIdOf(request));
    if (closing) {
      reply.header('connection', 'close');
      sendProblem(
        reply,
        gatewayProblem(KeelErrorCode.UNAVAILABLE, 'The gateway is shutting down; retry on another instance.', correlationIdOf(request)),
      );
      return;
    }
    // Unknown routes are answered before their body is read or parsed.
    if (request.is404) {
      notFound(request, reply);
      return;
    }
    done();
  });
  server.addHook('onSend', (_request, reply, payload, done) => {
    // A connection kept alive would hold close() open: let each answer given while closing end its connection.
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
  if (metrics !== undefined) {
    server.addHook('onResponse', (request, reply, done) => {
      metrics.observeHttp(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime);
      done();
    });
  }

  server.setErrorHandler((error: FastifyError, request, reply) => {
    const correlationId = correlationIdOf(request);
    if (error instanceof GatewayRefusal) return refuse(request, reply, error);
    const refusal = refusalOfFastifyError(error, resolved);
    if (refusal !== undefined) return refuse(request, reply, refusal);
    const problem = problemOf(error, correlationId, resolved.development);
    if (problem.status >= 500) {
      logger.error({ err: error, correlationId, route: request.routeOptions.url, code: problem.code }, 'request failed');
    }
    return sendProblem(reply, problem);
  });

  await resolved.configure?.(server);

  const maxTimeoutMs = resolved.maxTimeoutMs;
  const readCallOptions = (request: FastifyRequest, cap: number, signal: AbortSignal): CallOptions => {
    const traceparent = request.headers['traceparent'];
    const timeout = request.headers[timeoutHeader];
    let timeoutMs: number | undefined;
    if (timeout !== undefined) {
      const value = Array.isArray(timeout) ? timeout.join(',') : timeout;
      if (!TIMEOUT_PATTERN.test(value) || Number(value) === 0) {
        throw new GatewayRefusal(
          HttpProblemCode.MALFORMED_REQUEST,
          `Header ${timeoutHeader} must be a positive whole number of milliseconds, got "${value.slice(0, 40)}".`,
        );
      }
      timeoutMs = Math.min(Number(value), cap);
    }
    // One shape for every request (absent options are undefined), no spreads.
    return { correlationId: correlationIdOf(request), traceparent: isTraceparent(traceparent) ? traceparent : undefined, timeoutMs, signal };
  };
  // One abort signal per connection, not per request (an AbortSignal costs more than a fast call):
  // when the client disconnects, the calls of its requests still in flight are cancelled; calls
  // already answered no longer listen to it.
  const connectionSignals = new WeakMap<object, AbortSignal>();
  const signalOf = (request: FastifyRequest): AbortSignal => {
    const socket = request.raw.socket;
    let signal = connectionSignals.get(socket);
    if (signal === undefined) {
      const controller = new AbortController();
      signal = controller.signal;
      setMaxListeners(0, signal); // pipelined requests on one connection each listen while their call runs
      socket.once('close', () => controller.abort(new Error('the HTTP client disconnected')));
      connectionSignals.set(socket, signal);
    }
    return signal;
  };
  // Not an async function: one promise per request fewer (each costs more once AsyncLocalStorage is on).
  const serve = (request: FastifyRequest, reply: FastifyReply, call: Call, cap: number, input: unknown): Promise<FastifyReply> =>
    call(input, readCallOptions(request, cap, signalOf(request))).then((output) => reply.type(JSON_CONTENT_TYPE).send(JSON.stringify(output)));

  const getOperations = new Set(resolved.getOperations);
  for (const contract of contracts) {
    const client = kernel.client(contract, { caller: resolved.caller }) as unknown as Record<string, Call>;
    for (const [name, operation] of Object.entries(contract.operations)) {
      const call = client[name] as Call;
      const cap = operation.timeoutMs ?? maxTimeoutMs;
      const url = operationPath(contract.name, name);
      const methods = ['POST'];
      server.post(url, (request, reply) => serve(request, reply, call, cap, request.body));
      if (getOperations.has(`${contract.name}.${name}`)) {
        methods.push('GET');
        server.get(url, (request, reply) => serve(request, reply, call, cap, parseQueryInput(request.query)));
      }
      allowedMethods.set(url, methods);
    }
  }

  server.get(GATEWAY_PATHS.health, async (_request, reply) => reply.type(JSON_CONTENT_TYPE).send('{"status":"ok"}'));
  server.get(GATEWAY_PATHS.ready, async (_request, reply) => {
    const status = kernel.status();
    const ready = !closing && kernel.ready();
    return reply
      .status(ready ? 200 : 503)
      .type(JSON_CONTENT_TYPE)
      .send(JSON.stringify({ ready, closing, state: status.state, modules: status.modules, remote: status.remote, transports: status.transports }));
  });
  if (metrics !== undefined) {
    server.get(GATEWAY_PATHS.metrics, async (_request, reply) =>
      reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
    );
  }
  server.get(GATEWAY_PATHS.openapi, async (_request, reply) => reply.type(JSON_CONTENT_TYPE).send(documentJson));
  if (resolved.docsPath !== false) {
    // Loaded only for a gateway that serves the page: a probes-only process starts without them.
    const [{ default: fastifySwagger }, { default: fastifySwaggerUi }] = await Promise.all([
      import('@fastify/swagger'),
      import('@fastify/swagger-ui'),
    ]);
    await server.register(fastifySwagger, { mode: 'static', specification: { document: document as never } });
    await server.register(fastifySwaggerUi, {
      routePrefix: resolved.docsPath,
      uiConfig: { deepLinking: true, displayRequestDuration: true, tryItOutEnabled: true },
      // swagger-ui's top bar is an explorer for other URLs and a fastify logo: noise for one API.
      theme: { title: document.info.title, css: [{ filename: 'keel.css', content: '.swagger-ui .topbar { display: none; }' }] },
      validatorUrl: false,
    });
  }
  await server.ready();

  let url: string | undefined;
  let closed: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    closing = true;
    try {
      await server.close();
    } finally {
      metrics?.close();
      if (resolved.stopKernelOnClose) await kernel.stop();
    }
  };
  return {
    get url() {
      return url;
    },
    openapi: document,
    server,
    async listen() {
      if (closed !== undefined) throw configError('the gateway is closed; create a new one.');
      await server.listen({ port: resolved.port, host: resolved.host });
      const address = server.server.address() as AddressInfo;
      const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
      url = `http://${host}:${address.port}`;
      logger.info({ url, contracts: contracts.map((contract) => contract.name) }, 'HTTP gateway listening');
      return url;
    },
    close() {
      closed ??= close();
      return closed;
    },
  };
}

/** The `input` query parameter of a GET, parsed as JSON (absent: `undefined`, left to the schema). */
function parseQueryInput(query: unknown): unknown {
  const raw = (query as Record<string, unknown> | undefined)?.['input'];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string') {
    throw new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, 'Give the query parameter "input" once, as URL-encoded JSON.');
  }
  try {
    return JSON.parse(raw, (key, value: unknown) => {
      if (key === '__proto__') throw new SyntaxError('__proto__ key');
      return value;
    });
  } catch {
    throw new GatewayRefusal(
      HttpProblemCode.MALFORMED_JSON,
      'The query parameter "input" is not valid JSON: URL-encode a JSON value, for example ?input=%7B%22sku%22%3A%22KB-1%22%7D.',
    );
  }
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as T;
}
