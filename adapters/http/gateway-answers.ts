/**
 * The gateway's own answers to a request: the correlation id that names it, and the problem it
 * answers with when it refuses the request before any call (no such route, a wrong method, a
 * malformed body or header, refused credentials). The operation routes are in gateway-routes.ts.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { KeelErrorCode } from 'keel';
import { isCorrelationId, newCorrelationId } from 'keel/transport';
import { GATEWAY_PATHS, type ResolvedHttpGatewayOptions } from './gateway-options.js';
import { servedOperations } from './openapi.js';
import { PROBLEM_CONTENT_TYPE, gatewayProblem, type Problem } from './problem.js';
import { HttpProblemCode } from './status.js';

/** Request property (a fastify decorator) holding the request's correlation id once known. */
export const CORRELATION_ID_PROPERTY = 'keelCorrelationId';

/** A fastify request with the gateway's correlation id decorator. */
type CorrelatedRequest = FastifyRequest & { [CORRELATION_ID_PROPERTY]: string };

/** A request the gateway refuses before any call: answered with its own problem code. */
export class GatewayRefusal extends Error {
  constructor(
    readonly code: HttpProblemCode | typeof KeelErrorCode.PAYLOAD_TOO_LARGE | typeof KeelErrorCode.FORBIDDEN,
    message: string,
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
  }
}

// Errors the authenticate hook threw: credentials were presented and refused (RFC 6750's invalid_token).
const refusedCredentials = new WeakSet<object>();

/** True when `error` is the authenticate hook's refusal of the credentials a request presented. */
export function isRefusedCredentials(error: unknown): boolean {
  return typeof error === 'object' && error !== null && refusedCredentials.has(error);
}

/**
 * Records `error`, which the authenticate hook threw, as its refusal of the credentials a request
 * presented, and throws it again.
 */
export function markRefusedCredentials(error: unknown): never {
  if (typeof error === 'object' && error !== null) refusedCredentials.add(error);
  throw error;
}

/**
 * The `WWW-Authenticate` value of a 401: the gateway's challenge, with `error="invalid_token"`
 * for a Bearer challenge when presented credentials were refused.
 */
export function challengeOf(challenge: string, refused: boolean): string {
  if (!refused || !/^bearer(\s|$)/i.test(challenge)) return challenge;
  return /^bearer\s*$/i.test(challenge) ? 'Bearer error="invalid_token"' : `${challenge}, error="invalid_token"`;
}

/**
 * The refusal of a body sent with `contentEncoding` (a `Content-Encoding` header), which the
 * gateway does not decode: undefined when there is none, or it is `identity`.
 */
export function encodedBodyRefusal(contentEncoding: string | undefined): GatewayRefusal | undefined {
  const encoding = contentEncoding?.trim().toLowerCase();
  if (encoding === undefined || encoding === '' || encoding === 'identity') return undefined;
  // Node joins a repeated header with ", ": identity, identity (or an empty token) is still no encoding.
  if (encoding.split(',').every((token) => ['', 'identity'].includes(token.trim()))) return undefined;
  return new GatewayRefusal(
    HttpProblemCode.UNSUPPORTED_MEDIA_TYPE,
    `The body is sent with Content-Encoding "${encoding.slice(0, 40)}", which this gateway does not decode: send the JSON without Content-Encoding.`,
  );
}

/**
 * Maps fastify's own request errors (body parsing, limits), and the 4xx a plugin's route answers
 * with (the reference page's static files), to gateway codes. A plugin's 403 and 404 keep their
 * status (`FORBIDDEN`, `ROUTE_NOT_FOUND`), saying what `request` asked for; any other 4xx is a
 * malformed request.
 */
export function refusalOfFastifyError(
  error: FastifyError,
  bodyLimit: number,
  request: { readonly method: string; readonly url: string; readonly routeOptions?: { readonly url?: string | undefined } },
): GatewayRefusal | undefined {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new GatewayRefusal(
        HttpProblemCode.UNSUPPORTED_MEDIA_TYPE,
        'The body must be JSON: send it with content-type application/json.',
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new GatewayRefusal(
        KeelErrorCode.PAYLOAD_TOO_LARGE,
        `The body is larger than ${bodyLimit} bytes, the most this gateway accepts.`,
        { limit: bodyLimit },
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
    default: {
      if (typeof error.statusCode !== 'number' || error.statusCode < 400 || error.statusCode >= 500) return undefined;
      const path = request.url.split('?')[0] ?? '';
      const asked = `${request.method} ${path.slice(0, 200)}`;
      // A route that serves files (its pattern ends in a wildcard, as the reference page's static files' does; a
      // missing file of those is not an error here: @fastify/static hands it to the not-found handler).
      const servesFiles = request.routeOptions?.url?.endsWith('*') === true;
      if (error.statusCode === 403) {
        // @fastify/static's answer to a path that climbs out of its folder (`..`, percent-encoded or not).
        const climbs = servesFiles && /(^|\/)\.\.(\/|$)/.test(decodedPath(path).replaceAll(/%2f/gi, '/'));
        return new GatewayRefusal(
          KeelErrorCode.FORBIDDEN,
          climbs
            ? `${asked} is refused: the path climbs out of the folder it serves files from (a ".." segment). Ask for the file by its own path, without "..".`
            : `${asked} is refused (${error.message}): this route does not serve it.`,
        );
      }
      if (error.statusCode === 404) {
        return new GatewayRefusal(
          HttpProblemCode.ROUTE_NOT_FOUND,
          servesFiles
            ? `Nothing is served at ${asked} (${error.message}): no such file.`
            : `Nothing is served at ${asked} (${error.message}); the list of operations is at ${GATEWAY_PATHS.openapi}.`,
        );
      }
      return new GatewayRefusal(HttpProblemCode.MALFORMED_REQUEST, `The request is malformed: ${error.message}`);
    }
  }
}

/** How the gateway names a request (its correlation id) and answers one with a problem. */
export interface RequestAnswers {
  /** The request's correlation id: its header's when valid, else a new one; the same on every call. */
  correlationIdOf(request: FastifyRequest): string;
  /** Answers with a problem body, its status and the correlation header. */
  sendProblem(reply: FastifyReply, problem: Problem): FastifyReply;
  /** Answers a refused request. */
  refuse(request: FastifyRequest, reply: FastifyReply, refusal: GatewayRefusal): FastifyReply;
}

/**
 * The {@link RequestAnswers} of a gateway whose correlation header is `correlationHeader` (lower
 * case). While `isClosing()`, a problem ends its connection (`connection: close`).
 */
export function requestAnswers(correlationHeader: string, isClosing: () => boolean): RequestAnswers {
  // Kept on the request itself (a fastify request decorator): cheaper than a WeakMap entry per request.
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
    if (isClosing()) reply.header('connection', 'close');
    // Headers may not be writable when the client has gone; fastify then only logs.
    return reply
      .status(problem.status)
      .header(correlationHeader, problem.correlationId)
      // One request's problem is no cache's to keep, whatever a hook set for the route's answers, with or without securityHeaders.
      .header('cache-control', 'no-store')
      .type(PROBLEM_CONTENT_TYPE)
      .send(JSON.stringify(problem));
  };
  const refuse = (request: FastifyRequest, reply: FastifyReply, refusal: GatewayRefusal): FastifyReply =>
    sendProblem(reply, gatewayProblem(refusal.code, refusal.message, correlationIdOf(request), refusal.details));
  return { correlationIdOf, sendProblem, refuse };
}

/**
 * The answer to a request no route takes: 405 with `allow` for an operation path asked with
 * another method, else 404 saying what the gateway does expose.
 */
export function notFoundHandler(
  options: ResolvedHttpGatewayOptions,
  allowedMethods: ReadonlyMap<string, readonly string[]>,
  refuse: RequestAnswers['refuse'],
): (request: FastifyRequest, reply: FastifyReply) => FastifyReply {
  const { contracts, docsPath, kernel } = options;
  const exposedOperations =
    contracts.length === 0
      ? `This gateway exposes no operation; it serves only ${[
          GATEWAY_PATHS.health,
          GATEWAY_PATHS.ready,
          ...(options.metrics === false ? [] : [GATEWAY_PATHS.metrics]),
          GATEWAY_PATHS.openapi,
          ...(docsPath === false ? [] : [docsPath]),
        ].join(', ')}.`
      : `Operations are POST /<module>/<operation>, for the modules ${contracts.map((contract) => contract.name).join(', ')}; the list is at ` +
        `${GATEWAY_PATHS.openapi}${docsPath === false ? '' : ` and ${docsPath}`}.`;
  // What a 405's Allow lists: the methods, and HEAD wherever GET is (fastify answers HEAD as the GET without its body).
  const allowHeader = new Map<string, readonly string[]>(
    [...allowedMethods].map(([path, methods]) => [path, methods.includes('GET') ? [...methods, 'HEAD'] : methods]),
  );
  // A GET refused on a POST-only operation: say how GET is offered, when it could be (an idempotent operation).
  const getHint = (path: string, method: string, allowed: readonly string[]): string => {
    if ((method !== 'GET' && method !== 'HEAD') || allowed.includes('GET')) return '';
    const [, moduleName, operationName] = path.split('/');
    const operation = contracts.find((candidate) => candidate.name === moduleName)?.operations[operationName ?? ''];
    return operation?.idempotent === true
      ? ` To serve it as GET ?input=<json>, name "${moduleName}.${operationName}" in the gateway's getOperations, if it is a pure read.`
      : '';
  };
  return (request, reply) => {
    const sent = request.url.split('?')[0] ?? '';
    // The path as the router compares it: decodeURI, which leaves %2F and the other reserved
    // characters encoded (find-my-way's rule), so /orders/%70laceOrder is /orders/placeOrder.
    const path = decodedPath(sent);
    const trimmed = path.length > 1 ? path.replace(/\/+$/, '') : path;
    if (trimmed !== path && allowedMethods.has(trimmed)) {
      // The router matches paths exactly: name the path that is served, with the methods it takes.
      const methods = allowedMethods.get(trimmed) as readonly string[];
      return refuse(
        request,
        reply,
        new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, `No route ${request.method} ${sent}: drop the trailing slash (${methods.join(' or ')} ${trimmed}).`),
      );
    }
    const allowed = allowedMethods.get(path);
    if (allowed !== undefined) {
      const allow = allowHeader.get(path) as readonly string[];
      reply.header('allow', allow.join(', '));
      return refuse(
        request,
        reply,
        new GatewayRefusal(HttpProblemCode.METHOD_NOT_ALLOWED, `${path} does not take ${request.method}; use ${allowed.join(' or ')}.${getHint(path, request.method, allowed)}`, {
          allow,
        }),
      );
    }
    // The reference page's static files: @fastify/static hands a missing one to this handler.
    if (docsPath !== false && path.startsWith(`${docsPath}/`)) {
      return refuse(
        request,
        reply,
        new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, `No file ${request.method} ${sent}: the API reference page has no such file; the page is at ${docsPath}.`),
      );
    }
    // An empty segment under an exposed module: said to be one, not taken for segments after an operation.
    if (trimmed.includes('//') && contracts.some((contract) => contract.name === trimmed.split('/').find((segment) => segment !== ''))) {
      return refuse(
        request,
        reply,
        new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, `No route ${request.method} ${sent}: the path has an empty segment (//); an operation's path is /{module}/{operation}.`),
      );
    }
    const [, moduleName, operationName, ...after] = trimmed.split('/');
    const contract = contracts.find((candidate) => candidate.name === moduleName);
    let message: string;
    if (contract !== undefined && after.length > 0) {
      // /orders/placeOrder/x: not an operation this module lacks, but a path longer than an operation's.
      const operationPathAsked = `/${contract.name}/${operationName ?? ''}`;
      const served = allowedMethods.get(operationPathAsked);
      message =
        `No route ${request.method} ${sent}: the path has segments after the operation; an operation's path is /{module}/{operation}` +
        (served === undefined
          ? `; the operations of "${contract.name}" are ${servedOperations(contract).map(([name]) => name).join(', ') || 'none'} (POST /${contract.name}/<operation>).`
          : ` (${served.join(' or ')} ${operationPathAsked}).`);
      return refuse(request, reply, new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, message));
    }
    const asked = contract !== undefined && Object.hasOwn(contract.operations, operationName ?? '') ? contract.operations[operationName ?? ''] : undefined;
    if (contract !== undefined && asked?.internal === true) {
      message = `No route ${request.method} ${sent}: ${contract.name}.${operationName ?? ''} is internal (its contract says so): other modules call it, the HTTP gateway does not serve it.`;
    } else if (contract !== undefined) {
      message =
        `Module "${contract.name}" has no operation "${operationName ?? ''}"; its operations are ${servedOperations(contract).map(([name]) => name).join(', ') || 'none'} ` +
        `(POST /${contract.name}/<operation>).`;
    } else if (kernel.modules.some((module) => module.name === moduleName)) {
      // A module of the application that this gateway was told not to expose: say so, rather than that it does not exist.
      message = `No route ${request.method} ${sent}: module "${moduleName}" is not exposed by this gateway. ${exposedOperations}`;
    } else {
      message = `No route ${request.method} ${sent}. ${exposedOperations}`;
    }
    return refuse(request, reply, new GatewayRefusal(HttpProblemCode.ROUTE_NOT_FOUND, message));
  };
}

/** `path` decoded as the router decodes it (decodeURI: reserved characters stay encoded); as it is when it does not decode. */
function decodedPath(path: string): string {
  if (!path.includes('%')) return path;
  try {
    return decodeURI(path);
  } catch {
    return path;
  }
}
