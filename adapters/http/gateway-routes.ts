/**
 * The gateway's routes: every operation of the exposed contracts as `POST /<module>/<operation>`
 * (and `GET ...?input=` for `getOperations`), the call options read from a request (correlation
 * id, traceparent, deadline header, idempotency key, a per-connection abort signal) and the
 * GET input. The answer to a request refused before it becomes a call (no such route, a wrong
 * method, a malformed body or header) is in gateway-answers.ts.
 */
import { setMaxListeners } from 'node:events';
import type { FastifyBodyParser, FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { KeelError, KeelErrorCode, isKeelError, type AnyContract, type Principal } from 'keel';
import { GATEWAY_CLOSE_MARGIN_MS, isIdempotencyKey, isTraceparent, type AnyOperation, type CallOptions } from 'keel/transport';
import { GatewayRefusal, encodedBodyRefusal, markRefusedCredentials, type RequestAnswers } from './gateway-answers.js';
import type { ResolvedHttpGatewayOptions } from './gateway-options.js';
import { getNeedsInput, operationPath, servedOperations } from './openapi.js';
import { withReason } from './operator-note.js';
import { compileOutputSerializer, type OutputSerializer } from './serializer.js';
import { HttpProblemCode } from './status.js';
import { requestTraceparent } from './tracing.js';

/** Content type of every JSON answer that is not a problem. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const TIMEOUT_PATTERN = /^[0-9]{1,15}$/;

/**
 * Route handlers that end their connection themselves while the gateway closes (the operation
 * routes): the gateway gives every other route an `onSend` hook that does it (gateway.ts).
 */
export const CLOSING_AWARE_HANDLERS = new WeakSet<object>();

/**
 * The handlers of the gateway's routes that answer JSON (or Prometheus text) and never HTML: the
 * operation routes, health, readiness, metrics and the OpenAPI document. Their answers carry the
 * API set of security headers; every other route, the API reference page and the application's
 * own included, carries helmet's full set (gateway-defences.ts).
 */
export const JSON_ANSWER_HANDLERS = new WeakSet<object>();

/**
 * Request property (a fastify decorator) holding the route template of the operation route that
 * took the request, set by its handler ('' until then): what the HTTP metric reads there, rather
 * than `request.routeOptions`, an object fastify builds anew on every read.
 */
export const OPERATION_ROUTE_PROPERTY = 'keelOperationRoute';

/** A fastify request with the gateway's operation route decorator. */
type RoutedRequest = FastifyRequest & { [OPERATION_ROUTE_PROPERTY]: string };

/** The route template of the request's route, for the HTTP metric: `unmatched` when no route took it. */
export function routeOf(request: FastifyRequest): string {
  const route = (request as RoutedRequest)[OPERATION_ROUTE_PROPERTY];
  return route !== '' && route !== undefined ? route : (request.routeOptions.url ?? 'unmatched');
}

type Call = (input: unknown, options?: CallOptions) => Promise<unknown>;

/** What the route of one operation calls and answers with, fixed when the route is added. */
interface OperationRoute {
  readonly call: Call;
  /** The most a request's timeout header may ask for. */
  readonly cap: number;
  /** A request's deadline without the timeout header: the operation's `timeoutMs`, else the kernel's default. */
  readonly defaultMs: number;
  /** `module.operation`, for messages. */
  readonly label: string;
  readonly operation: AnyOperation;
  /** The output's JSON body (serializer.ts). */
  readonly serialize: OutputSerializer;
}

/**
 * Of what is left before a closing gateway ends the connections still open, the time kept to
 * write the answer of a call that starts then (half of the close's margin past the longest deadline).
 */
const CLOSING_ANSWER_MS = GATEWAY_CLOSE_MARGIN_MS / 2;

/** The methods of each operation path: POST, and GET too for the operations named in `getOperations`. */
export function allowedMethodsOf(options: ResolvedHttpGatewayOptions): ReadonlyMap<string, readonly string[]> {
  const getOperations = new Set(options.getOperations);
  const allowed = new Map<string, readonly string[]>();
  for (const contract of options.contracts) {
    for (const [name] of servedOperations(contract)) {
      allowed.set(operationPath(contract.name, name), getOperations.has(`${contract.name}.${name}`) ? ['POST', 'GET'] : ['POST']);
    }
  }
  return allowed;
}

/** fastify's own JSON parser with the server's poisoning rules (its default: refuse __proto__ and constructor.prototype keys). */
function serverJsonParser(server: FastifyInstance): ReturnType<FastifyInstance['getDefaultJsonParser']> {
  const { onProtoPoisoning = 'error', onConstructorPoisoning = 'error' } = server.initialConfig;
  return server.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
}

/**
 * The gateway's parser of `application/json` bodies: fastify's own JSON parser (its secure
 * parsing, with the server's `__proto__` and `constructor.prototype` rules) over the body decoded
 * as strict UTF-8, once a body sent with a `Content-Encoding` other than `identity` (gzip, br,
 * …), which the gateway does not decode, is refused (415). fastify's string bodies are decoded leniently, every invalid byte turned into
 * U+FFFD, so a body that is not UTF-8 would be accepted with other text than the client sent,
 * where `?input=` with the same bytes is refused: here it is `MALFORMED_JSON` too.
 *
 * @example
 * ```ts
 * server.removeContentTypeParser('application/json');
 * server.addContentTypeParser('application/json', { parseAs: 'buffer' }, strictJsonBodyParser(server));
 * ```
 */
export function strictJsonBodyParser(server: FastifyInstance): FastifyBodyParser<Buffer> {
  const parseJson = serverJsonParser(server);
  // One decoder for every request: fatal decoding validates and decodes in one pass, as fast as
  // Buffer#toString (docs/design-notes.md). It keeps a BOM (ignoreBOM): fastify's parser drops one,
  // as ?input='s does, so a body with two is refused by both methods alike.
  const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  return (request, body, done) => {
    // Before the bytes are decoded (fastify has read them, up to bodyLimit): an encoded body is refused whatever its bytes happen to be (`{}` sent as "gzip" too).
    const encoding = request.headers['content-encoding'];
    if (encoding !== undefined) {
      const refusal = encodedBodyRefusal(encoding);
      if (refusal !== undefined) {
        done(refusal, undefined);
        return;
      }
    }
    let text: string;
    try {
      text = utf8.decode(body);
    } catch {
      done(
        new GatewayRefusal(
          HttpProblemCode.MALFORMED_JSON,
          'The body is not valid UTF-8: send the input as JSON encoded in UTF-8 (with content-type application/json).',
        ),
        undefined,
      );
      return;
    }
    // A body of a BOM alone is an empty one, as it was when the decoder dropped the BOM.
    parseJson(request, text === '\ufeff' ? '' : text, done);
  };
}

/**
 * The `Idempotency-Key` header (IETF draft: a structured-field string, `"8e03978e-..."`; a bare
 * token is taken as well), or undefined when absent. Anything else is a malformed request.
 */
function idempotencyKeyOf(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const raw = Array.isArray(header) ? header.join(',') : header;
  const key = raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  if (!isIdempotencyKey(key)) {
    throw new GatewayRefusal(
      HttpProblemCode.MALFORMED_REQUEST,
      'Header Idempotency-Key must be one key of 1 to 255 visible ASCII characters, such as "8e03978e-40d5-43e8-bc93-6894a57f9324".',
    );
  }
  return key;
}

/**
 * Adds a route per operation and method in `allowedMethods`, each calling the operation through
 * `kernel.client(contract, { caller })` with the request's call options.
 */
export function addOperationRoutes(
  server: FastifyInstance,
  options: ResolvedHttpGatewayOptions,
  allowedMethods: ReadonlyMap<string, readonly string[]>,
  correlationIdOf: RequestAnswers['correlationIdOf'],
  isClosing: () => boolean,
  closingLeftMs: () => number,
): void {
  const { kernel } = options;
  const timeoutHeader = options.timeoutHeader.toLowerCase();
  /**
   * The timeout of a call that starts while the gateway closes (its request arrived before, and
   * its body or its authenticate hook ended since): at most what is left before close() ends the
   * connections still open, less {@link CLOSING_ANSWER_MS} to write the answer, so that it is
   * answered (a 504 at worst) rather than cut. None left: refused, nothing ran.
   */
  const closingTimeoutMs = (route: OperationRoute, timeoutMs: number | undefined, request: FastifyRequest): number => {
    const roomMs = Math.floor(closingLeftMs() - CLOSING_ANSWER_MS);
    if (roomMs < 1) {
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `${route.label} was not called: the gateway is shutting down and would end this connection before a call could be answered. Nothing ran: retry on another instance.`,
        { correlationId: correlationIdOf(request) },
      );
    }
    return Math.min(timeoutMs ?? route.defaultMs, roomMs);
  };
  const readCallOptions = (request: FastifyRequest, route: OperationRoute, signal: AbortSignal, principal: Principal | undefined): CallOptions => {
    const { cap } = route;
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
    if (isClosing()) timeoutMs = closingTimeoutMs(route, timeoutMs, request);
    const idempotencyKey = idempotencyKeyOf(request.headers['idempotency-key']);
    // One shape for every request (absent options are undefined), no spreads.
    return {
      correlationId: correlationIdOf(request),
      traceparent: requestTraceparent(request) ?? (isTraceparent(traceparent) ? traceparent : undefined),
      timeoutMs,
      signal,
      idempotencyKey,
      principal,
    };
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
  const { authenticate } = options;
  const send = (request: FastifyRequest, reply: FastifyReply, route: OperationRoute, input: unknown, principal: Principal | undefined) =>
    route.call(input, readCallOptions(request, route, signalOf(request), principal)).then(
      (output) => {
        // A connection kept alive would hold close() open: an answer given while closing ends its connection.
        if (isClosing()) reply.header('connection', 'close');
        return reply.type(JSON_CONTENT_TYPE).send(route.serialize(output));
      },
      // The principal the credentials made does not match the application's schema: those credentials are refused.
      principal === undefined ? refusedAnonymous : refusedPrincipal,
    );
  /** The call with the principal the hook made of the request; a call its contract says needs one is refused here, without a round trip. */
  const serveAs = (request: FastifyRequest, reply: FastifyReply, route: OperationRoute, input: unknown, principal: Principal | undefined): Promise<FastifyReply> => {
    if (principal === undefined && route.operation.auth !== undefined) {
      return Promise.reject(
        withReason(
          new KeelError(
            KeelErrorCode.UNAUTHENTICATED,
            `${route.label} needs a caller identity and the request carries none. Nothing ran: send credentials${authenticate === undefined ? '' : ' (such as Authorization: Bearer <token>)'} and retry.`,
            { correlationId: correlationIdOf(request) },
          ),
          'no-credentials',
        ),
      );
    }
    return send(request, reply, route, input, principal);
  };
  // Each 401's debug line has a reason: the principal's schema or the module refused it (the detail says which).
  const refusedPrincipal = (error: unknown): never => {
    if (isKeelError(error, KeelErrorCode.UNAUTHENTICATED)) markRefusedCredentials(withReason(error, 'refused-by-call'));
    throw error;
  };
  // A request without credentials the module (or a module it calls) refused: an operation that checks its principal itself.
  const refusedAnonymous = (error: unknown): never => {
    throw isKeelError(error, KeelErrorCode.UNAUTHENTICATED) ? withReason(error, 'no-credentials') : error;
  };
  // A refusal of a hook other than createJwtAuthenticator's, which gives none of its own.
  const hookThrew = (error: unknown): never =>
    markRefusedCredentials(isKeelError(error, KeelErrorCode.UNAUTHENTICATED) ? withReason(error, 'refused-by-hook') : error);
  // Not an async function: one promise per request fewer (each costs more once AsyncLocalStorage is on).
  const serve = (request: FastifyRequest, reply: FastifyReply, route: OperationRoute, input: unknown): Promise<FastifyReply> => {
    if (authenticate === undefined) {
      return route.operation.auth === undefined ? send(request, reply, route, input, undefined) : serveAs(request, reply, route, input, undefined);
    }
    let principal: ReturnType<typeof authenticate>;
    try {
      principal = authenticate(request);
    } catch (error) {
      return Promise.reject(hookThrew(error));
    }
    return Promise.resolve(principal).then(
      (who) => serveAs(request, reply, route, input, who),
      hookThrew,
    );
  };

  // The very parser of POST bodies, with the server's own poisoning rules: GET input follows the same rules.
  const parseJson = serverJsonParser(server);
  // The output a call answers with was parsed by this contract's schema, which the compiled
  // serializer relies on (serializer.ts), unless the kernel hosts a module of that name with
  // another contract object: then the hosted module's schema parsed it, and JSON.stringify writes it.
  const validatedBy = (contract: AnyContract): boolean =>
    kernel.modules.every((module) => module.contract.name !== contract.name || module.contract === contract);
  const stringify: OutputSerializer = (output) => JSON.stringify(output);
  for (const contract of options.contracts) {
    const client = kernel.client(contract, { caller: options.caller }) as unknown as Record<string, Call>;
    // An internal operation gets no route: a request for it is the not-found handler's 404.
    for (const [name, operation] of servedOperations(contract)) {
      const route: OperationRoute = {
        call: client[name] as Call,
        cap: operation.timeoutMs ?? options.maxTimeoutMs,
        defaultMs: operation.timeoutMs ?? options.defaultTimeoutMs,
        label: `${contract.name}.${name}`,
        operation,
        serialize: validatedBy(contract) ? compileOutputSerializer(operation.output).serialize : stringify,
      };
      const url = operationPath(contract.name, name);
      const post: RouteHandlerMethod = (request, reply) => {
        (request as RoutedRequest)[OPERATION_ROUTE_PROPERTY] = url;
        return serve(request, reply, route, request.body);
      };
      CLOSING_AWARE_HANDLERS.add(post);
      JSON_ANSWER_HANDLERS.add(post);
      server.post(url, post);
      if (allowedMethods.get(url)?.includes('GET')) {
        // An operation that takes no input at all is called without one whatever else the query holds (a cache buster).
        const needsInput = getNeedsInput(operation.input);
        const get: RouteHandlerMethod = (request, reply) => {
          (request as RoutedRequest)[OPERATION_ROUTE_PROPERTY] = url;
          return serve(request, reply, route, parseQueryInput(request, parseJson, needsInput));
        };
        CLOSING_AWARE_HANDLERS.add(get);
        JSON_ANSWER_HANDLERS.add(get);
        server.get(url, get);
      }
    }
  }
}

/**
 * The `input` query parameter of a GET (absent: `undefined`, left to the schema; refused naming
 * the other parameters when the operation `needsInput`), parsed by
 * `parseJson`, the gateway's parser of POST bodies: the same JSON, and the same refusal of
 * `__proto__` and `constructor.prototype` keys.
 */
function parseQueryInput(request: FastifyRequest, parseJson: FastifyBodyParser<string>, needsInput: boolean): unknown {
  const query = request.query as Record<string, unknown> | undefined;
  const raw = query?.['input'];
  if (raw === undefined) {
    // Other parameters and no input, where one is needed: a misspelt `input` (or input given as separate parameters).
    const others = Object.keys(query ?? {});
    if (needsInput && others.length > 0) {
      throw new GatewayRefusal(
        HttpProblemCode.MALFORMED_REQUEST,
        `The query has ${others.map((name) => `"${name}"`).join(', ')} and no "input": a GET operation takes its whole input as one ` +
          'query parameter, ?input=<URL-encoded JSON>, for example ?input=%7B%22sku%22%3A%22KB-1%22%7D.',
      );
    }
    return undefined;
  }
  if (typeof raw !== 'string') {
    throw new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, 'Give the query parameter "input" once, as URL-encoded JSON.');
  }
  let parsed: { readonly value: unknown } | undefined;
  // fastify's JSON parser answers synchronously.
  parseJson(request, raw, (error, value) => {
    if (error === null) parsed = { value };
  });
  if (parsed === undefined) {
    throw new GatewayRefusal(
      HttpProblemCode.MALFORMED_JSON,
      'The query parameter "input" is not valid JSON (or holds a __proto__ or constructor.prototype key): ' +
        'URL-encode a JSON value, for example ?input=%7B%22sku%22%3A%22KB-1%22%7D.',
    );
  }
  return parsed.value;
}
