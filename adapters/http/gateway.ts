/**
 * The HTTP gateway's lifecycle: a fastify server exposing contract operations as
 * `POST /<module>/<operation>` (and `GET ...?input=` for the reads named in `getOperations`),
 * with OpenAPI, an API reference page, health, readiness and Prometheus metrics; listening and a
 * graceful close. Every route is derived from the contracts; none is written by hand per
 * operation. Options are checked in gateway-options.ts, operation routes live in gateway-routes.ts.
 */
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest, type RouteHandlerMethod, type onSendHookHandler } from 'fastify';
import { KeelError, KeelErrorCode, type Kernel } from 'keel';
import { KeyedLogThrottle, MAX_TIMEOUT_MS, createLogger, gatewayCloseBoundMs, isTraceparent } from 'keel/transport';
import { operatorNoteOf } from './operator-note.js';
import { GATEWAY_PATHS, resolveHttpGatewayOptions, type HttpGatewayOptions } from './gateway-options.js';
import {
  CORRELATION_ID_PROPERTY,
  GatewayRefusal,
  challengeOf,
  isRefusedCredentials,
  notFoundHandler,
  refusalOfFastifyError,
  requestAnswers,
} from './gateway-answers.js';
import {
  CLOSING_AWARE_HANDLERS,
  JSON_ANSWER_HANDLERS,
  OPERATION_ROUTE_PROPERTY,
  JSON_CONTENT_TYPE,
  addOperationRoutes,
  allowedMethodsOf,
  routeOf,
  strictJsonBodyParser,
} from './gateway-routes.js';
import { NOT_RATE_LIMITED, addDefences, defenceServerOptions } from './gateway-defences.js';
import { createKernelMetrics, kernelOfMetrics, type KernelMetrics, type KernelMetricsOptions } from './metrics.js';
import { createOpenApiDocument, type OpenApiDocument } from './openapi.js';
import { gatewayProblem, problemOf, retryAfterOf } from './problem.js';
import { HttpProblemCode } from './status.js';
import { addHttpTracing, requestTraceparent } from './tracing.js';
import { clientErrorAnswer } from './client-error.js';
import { listenFailure } from './listen-failure.js';
import { closeWithin } from './gateway-close.js';

/** The HTTP metric's method for an answer Node's client-error handler writes: OpenTelemetry's name for a method not known. */
const UNPARSED_METHOD = '_OTHER';
/** The HTTP metric's route for the same answers: no request was parsed, so none was routed. */
const UNPARSED_ROUTE = 'unparsed';

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
  /**
   * Starts listening; resolves with the URL. An address Node refuses (the port taken, not
   * allowed, no such host) rejects with a KeelError `INVALID_CONFIG` naming the address and
   * Node's code (`details.errno`). Calling it again resolves with the same URL; after a
   * refusal, a call tries again.
   */
  listen(): Promise<string>;
  /**
   * Graceful shutdown: stops accepting connections (readiness turns false, requests on open
   * connections get 503), waits for requests in flight, then stops the kernel (unless
   * `stopKernelOnClose` is false). Close the transport after it. Idempotent.
   *
   * The wait is bounded by the longest deadline the gateway may give a call (the kernel's
   * default deadline, `maxTimeoutMs`, the longest `timeoutMs` of an exposed operation) plus 1 s,
   * the share of the grace periods `keel deploy` writes for it (`gatewayCloseBoundMs` of
   * `keel/transport`): a request every handler answers within its deadline is never cut (a call
   * that starts during the close gets at most what is left of the bound as its deadline, or is
   * refused `UNAVAILABLE` with nothing run), and the connections still open past it (a client
   * still sending its body, an `authenticate` hook still waiting) are ended, with one warn line,
   * before the kernel stops.
   */
  close(): Promise<void>;
}

/**
 * Creates the HTTP gateway of a kernel. Every operation of the exposed contracts becomes
 * `POST /<module>/<operation>` (JSON in, JSON out; idempotent ones also `GET ...?input=<json>`),
 * validated by the contract's own schemas through `kernel.client(contract, { caller: 'http' })`.
 * Errors are `application/problem+json` with a status from one table (`HTTP_STATUS_BY_CODE`,
 * `HTTP_STATUS_BY_KIND`). Also serves `/openapi.json`, the API reference at `/docs` (local
 * assets, works offline), `/healthz`, `/readyz` and `/metrics`. The options are checked once,
 * before anything is set up: a wrong one is `INVALID_CONFIG` naming the field and what it takes.
 *
 * Create it before `kernel.start()` and listen after: `/metrics` counts only what happens once
 * the gateway exists, and `start()` is where modules make their first calls and durable
 * consumers handle the events that waited for them (the start-up backlog). A gateway made after
 * `start()` takes `metrics: createKernelMetrics(kernel)` made before it instead.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createHttpGateway } from 'keel/http';
 * import { modules } from './modules/index.js';
 *
 * const kernel = createKernel({ modules });
 * const gateway = await createHttpGateway({ kernel, port: 3000 }); // before start: /metrics misses nothing
 * await kernel.start();
 * console.log(`listening on ${await gateway.listen()}`);
 * process.once('SIGTERM', () => void gateway.close()); // finishes requests, then stops the kernel
 * ```
 */
export async function createHttpGateway(options: HttpGatewayOptions): Promise<HttpGateway> {
  const resolved = resolveHttpGatewayOptions(options);
  const { kernel, contracts } = resolved;
  const logger = (resolved.logger ?? createLogger({ name: 'keel-http' })).child({ component: 'http-gateway' });
  const document = createOpenApiDocument({
    contracts,
    ...resolved.openapi,
    getOperations: resolved.getOperations,
    timeoutHeader: resolved.timeoutHeader,
    correlationHeader: resolved.correlationHeader,
    maxTimeoutMs: resolved.maxTimeoutMs,
    authenticates: resolved.authenticate !== undefined,
  });
  const documentJson = JSON.stringify(document);
  // Metrics made by the caller (before kernel.start()) are served as they are, and closed by the caller.
  const given = kernelOfMetrics(resolved.metrics) === undefined ? undefined : (resolved.metrics as KernelMetrics);
  const metrics: KernelMetrics | undefined =
    resolved.metrics === false
      ? undefined
      : (given ?? createKernelMetrics(kernel, resolved.metrics === true || resolved.metrics === undefined ? {} : (resolved.metrics as KernelMetricsOptions)));

  // Counts the answer to `request` in the HTTP metric once it is written (see the first hook below).
  // Once: light-my-request's response (`server.inject()`) emits 'finish' twice.
  const countAnswer =
    metrics === undefined
      ? undefined
      : (request: FastifyRequest, reply: FastifyReply): void => {
          const started = performance.now();
          let counted = false;
          reply.raw.on('finish', () => {
            if (counted) return;
            counted = true;
            metrics.observeHttp(request.method, routeOf(request), reply.statusCode, performance.now() - started);
          });
        };

  const correlationHeader = resolved.correlationHeader.toLowerCase();
  let closing = false;
  const isClosing = (): boolean => closing;
  /** When (`performance.now()`) a close that began ends the connections still open; Infinity before. */
  let cutAt = Number.POSITIVE_INFINITY;
  const { correlationIdOf, sendProblem, refuse } = requestAnswers(correlationHeader, isClosing);

  const server = fastify({
    logger: false,
    bodyLimit: resolved.bodyLimit,
    ...defenceServerOptions(resolved),
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // Errors met before routing (an undecodable URL): answered like every other bad request.
    // No hook runs for these: they are counted here.
    frameworkErrors: (error, request, reply) => {
      countAnswer?.(request, reply);
      return refuse(request, reply, new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, `The request is malformed: ${error.message}`));
    },
    clientErrorHandler: (error, socket) => {
      // Node's own rule (its default 'clientError' answer): nothing is written once the answer in
      // flight on this connection sent its head, since a raw answer would land inside that one.
      const inFlight = (socket as { _httpMessage?: { readonly headersSent?: boolean } })._httpMessage;
      if (!socket.writable || (error as NodeJS.ErrnoException).code === 'ECONNRESET' || inFlight?.headersSent === true) {
        socket.destroy();
        return;
      }
      const { status, raw } = clientErrorAnswer(error, resolved);
      // Counted with no duration (nothing says when such a request began), as method `_OTHER`
      // (OpenTelemetry's name for a method not known) and route `unparsed`.
      metrics?.observeHttp(UNPARSED_METHOD, UNPARSED_ROUTE, status);
      socket.end(raw);
    },
  });
  // First: every answer fastify routes is counted, whichever hook or handler sends it (the
  // client-error answers written to the socket, which no request object sees, are counted in
  // clientErrorHandler above). The raw response's
  // 'finish' rather than an onResponse hook: with one, fastify puts two listeners on every
  // response, takes them off again and runs its hook runner and request logger (about 4 k
  // instructions a request; docs/performance.md, "Gateway, thirteenth round").
  if (countAnswer !== undefined) {
    server.addHook('onRequest', (request, reply, done) => {
      countAnswer(request, reply);
      done();
    });
  }
  // Then every request gets its server span, early refusals too.
  addHttpTracing(server);
  // JSON only: without this, fastify would also accept text/plain bodies as strings.
  server.removeContentTypeParser('text/plain');
  // JSON in strict UTF-8: fastify's own parser decodes leniently (an invalid byte becomes U+FFFD).
  server.removeContentTypeParser('application/json');
  server.addContentTypeParser('application/json', { parseAs: 'buffer' }, strictJsonBodyParser(server));
  server.decorateRequest(CORRELATION_ID_PROPERTY, '');
  server.decorateRequest(OPERATION_ROUTE_PROPERTY, '');
  // While closing, every answer ends its connection: a connection kept alive would hold close()
  // open. The operation routes and the problems see to it themselves (gateway-routes.ts,
  // gateway-answers.ts); every other route (CORS's, the gateway's own, the application's) gets an
  // onSend hook of its own here. One hook for the whole server would cost each operation request
  // fastify's onSend run.
  const closingOnSend: onSendHookHandler = (_request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  };
  server.addHook('onRoute', (route) => {
    if (CLOSING_AWARE_HANDLERS.has(route.handler)) return;
    const given = route.onSend;
    route.onSend = given === undefined ? [closingOnSend] : [...(Array.isArray(given) ? given : [given]), closingOnSend];
  });
  // Before the gateway's own hooks: security headers and CORS go on every answer, its early refusals too.
  const setSecurityHeaders = await addDefences(server, resolved, correlationHeader);

  const allowedMethods = allowedMethodsOf(resolved);
  const notFound = notFoundHandler(resolved, allowedMethods, refuse);
  server.setNotFoundHandler(notFound);

  // Hooks in callback style: an async hook costs fastify a promise and a microtask per request.
  server.addHook('onRequest', (request, reply, done) => {
    // The security headers, when no other hook (CORS's) goes between theirs and this one.
    setSecurityHeaders?.(request, reply);
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

  // The authenticate hook fails the same way for every request while a key set is unreachable:
  // one line per 10 s for each failure, with how many were left out. An unreachable key set's is
  // keyed by its cause (refused, not found, timed out), whose message is the same for each: a new
  // cause is logged. The keyed throttle holds at most 64 keys, however many messages a hook makes.
  const hookFailureLogs = new KeyedLogThrottle();
  const logHookFailure = (error: FastifyError, fields: Readonly<Record<string, unknown>>): void => {
    const note = operatorNoteOf(error);
    const suppressed = hookFailureLogs.take(note?.logKey ?? `${String(fields['code'])} ${error.message}`);
    if (suppressed < 0) return;
    logger.error(
      { err: error, ...fields, ...note?.fields, suppressed },
      `${note?.message ?? 'the authenticate hook failed'} (at most one line per 10 s for each failure; suppressed: how many since the last line)`,
    );
  };
  server.setErrorHandler((error: FastifyError, request, reply) => {
    const correlationId = correlationIdOf(request);
    if (error instanceof GatewayRefusal) return refuse(request, reply, error);
    const refusal = refusalOfFastifyError(error, resolved.bodyLimit, request);
    if (refusal !== undefined) return refuse(request, reply, refusal);
    const problem = problemOf(error, correlationId, resolved.development);
    const fields: Record<string, unknown> = { correlation_id: correlationId, route: request.routeOptions.url, code: problem.code };
    // Tracing off, no span is active here for the log fields: the request's own traceparent names
    // the trace, as it does on every line its handlers wrote (kernel/log-fields.ts).
    const upstream = requestTraceparent(request) === undefined ? request.headers['traceparent'] : undefined;
    if (isTraceparent(upstream)) {
      fields['trace_id'] = upstream.slice(3, 35);
      fields['span_id'] = upstream.slice(36, 52);
    }
    if (problem.status === 401) {
      reply.header('www-authenticate', challengeOf(resolved.challenge, isRefusedCredentials(error)));
      // The client's to fix, and a client can send any number: at debug, for an operator asking why clients are refused.
      // The detail the client got, never the token (no message here holds it).
      logger.debug({ ...fields, detail: error.message, ...operatorNoteOf(error)?.fields }, 'refused a request: not authenticated (401)');
    }
    const retryAfter = retryAfterOf(problem, error);
    if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
    if (problem.status >= 500) {
      if (isRefusedCredentials(error)) logHookFailure(error, fields);
      else logger.error({ err: error, ...fields }, 'request failed');
    }
    return sendProblem(reply, problem);
  });

  await resolved.configure?.(server);

  addOperationRoutes(server, resolved, allowedMethods, correlationIdOf, isClosing, () => cutAt - performance.now());
  await addGatewayRoutes(server, {
    kernel,
    metrics,
    document,
    documentJson,
    docsPath: resolved.docsPath,
    readyNeedsDatabases: resolved.readyNeedsDatabases,
    isClosing,
  });
  await server.ready();

  // What close() waits for requests in flight, the gateway's share of the grace periods keel deploy writes.
  const closeBoundMs = gatewayCloseBoundMs({
    contracts,
    maxTimeoutMs: resolved.maxTimeoutMs,
    defaultTimeoutMs: resolved.defaultTimeoutMs,
  });
  let url: string | undefined;
  let closed: Promise<void> | undefined;
  let listening: Promise<string> | undefined;
  const close = async (): Promise<void> => {
    closing = true;
    cutAt = performance.now() + Math.min(closeBoundMs, MAX_TIMEOUT_MS);
    try {
      await closeWithin(server, closeBoundMs, resolved.requestTimeoutMs, logger);
    } finally {
      if (given === undefined) metrics?.close();
      if (resolved.stopKernelOnClose) await kernel.stop();
    }
  };
  return {
    get url() {
      return url;
    },
    openapi: document,
    server,
    listen() {
      if (closed !== undefined) return Promise.reject(new KeelError(KeelErrorCode.INVALID_CONFIG, 'HTTP gateway: the gateway is closed; create a new one.'));
      // Once: a second call gets the same URL (fastify would refuse to listen again); after a failure, a call tries again.
      listening ??= (async () => {
        await server.listen({ port: resolved.port, host: resolved.host }).catch((error: unknown) => {
          listening = undefined;
          throw listenFailure(error, resolved.host, resolved.port);
        });
        const address = server.server.address() as AddressInfo;
        const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        url = `http://${host}:${address.port}`;
        logger.info({ url, contracts: contracts.map((contract) => contract.name) }, 'HTTP gateway listening');
        return url;
      })();
      return listening;
    },
    close() {
      closed ??= close();
      return closed;
    },
  };
}

/** What the gateway's own paths (health, readiness, metrics, OpenAPI, the reference page) serve from. */
interface GatewayRoutesSource {
  readonly kernel: Kernel;
  readonly metrics: KernelMetrics | undefined;
  readonly document: OpenApiDocument;
  readonly documentJson: string;
  readonly docsPath: string | false;
  /** The `readyNeedsDatabases` option: a hosted module's database `down` makes readiness false. */
  readonly readyNeedsDatabases: boolean;
  /** True once close() has begun: readiness turns false. */
  isClosing(): boolean;
}

/** Adds `/healthz`, `/readyz`, `/metrics` (unless off), `/openapi.json` and the API reference page (unless off). */
async function addGatewayRoutes(server: FastifyInstance, source: GatewayRoutesSource): Promise<void> {
  const { kernel, metrics, document, documentJson, docsPath } = source;
  const config = { config: NOT_RATE_LIMITED };
  /** Adds a GET route whose answers are JSON or Prometheus text: the API set of security headers. */
  const json = (path: string, options: { config?: object }, handler: RouteHandlerMethod): void => {
    JSON_ANSWER_HANDLERS.add(handler);
    server.get(path, options, handler);
  };
  json(GATEWAY_PATHS.health, config, async (_request, reply) => reply.type(JSON_CONTENT_TYPE).send('{"status":"ok"}'));
  json(GATEWAY_PATHS.ready, config, async (_request, reply) => {
    const status = kernel.status();
    const closing = source.isClosing();
    const ready = !closing && kernel.ready() && !(source.readyNeedsDatabases && status.databases.some((database) => database.state === 'down'));
    return reply
      .status(ready ? 200 : 503)
      .type(JSON_CONTENT_TYPE)
      .send(
        JSON.stringify({ ready, closing, state: status.state, modules: status.modules, remote: status.remote, transports: status.transports, databases: status.databases }),
      );
  });
  if (metrics !== undefined) {
    json(GATEWAY_PATHS.metrics, config, async (_request, reply) => reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));
  }
  json(GATEWAY_PATHS.openapi, {}, async (_request, reply) => reply.type(JSON_CONTENT_TYPE).send(documentJson));
  if (docsPath !== false) {
    // Loaded only for a gateway that serves the page: a probes-only process starts without them.
    const [{ default: fastifySwagger }, { default: fastifySwaggerUi }] = await Promise.all([
      import('@fastify/swagger'),
      import('@fastify/swagger-ui'),
    ]);
    await server.register(fastifySwagger, { mode: 'static', specification: { document: document as never } });
    await server.register(fastifySwaggerUi, {
      routePrefix: docsPath,
      uiConfig: { deepLinking: true, displayRequestDuration: true, tryItOutEnabled: true },
      // swagger-ui's top bar is an explorer for other URLs and a fastify logo: noise for one API.
      theme: { title: document.info.title, css: [{ filename: 'keel.css', content: '.swagger-ui .topbar { display: none; }' }] },
      validatorUrl: false,
    });
  }
}
