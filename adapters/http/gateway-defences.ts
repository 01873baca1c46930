/**
 * The gateway's defences against slow and abusive clients, set up from its resolved options:
 * the server's timeouts, connection limit and proxy trust (given to fastify when it is made),
 * then security headers (helmet), CORS and a per-client rate limit (fastify's own plugins,
 * each loaded only when it is on). docs/security.md says what each one protects.
 */
import type { ServerOptions } from 'node:http';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { ResolvedHttpGatewayOptions } from './gateway-options.js';
import { GatewayRefusal } from './gateway-answers.js';
import { JSON_ANSWER_HANDLERS } from './gateway-routes.js';
import { securityHeaders, type SecurityHeadersHook } from './security-headers.js';
import { HttpProblemCode } from './status.js';

/**
 * How often Node looks for requests past their timeouts (its default is 30 s, which would let a
 * slow client outlive a 10 s timeout threefold): a request is cut within this of its limit.
 */
export const TIMEOUT_CHECK_INTERVAL_MS = 1_000;

/** Route option marking a route the rate limit never counts: probes and scrapes must get through a flood. */
export const NOT_RATE_LIMITED = { rateLimit: false } as const;

/** Defaults of the rate limit's fields, when `rateLimit` is an object naming only some. */
const DEFAULT_RATE_LIMIT = { max: 1000, windowMs: 60_000 } as const;

/**
 * helmet's options for the answers of the gateway's JSON routes and its problems: the lines OWASP's
 * REST Security Cheat Sheet asks of every API answer. A CSP that allows nothing and no framing
 * (`default-src 'none'; frame-ancestors 'none'`, where a JSON answer needs no source at all) and
 * `X-Frame-Options: DENY`, both stricter than the page's; `nosniff`, HSTS, `no-referrer` and
 * `Cross-Origin-Resource-Policy: same-origin` as on every answer. Left out: the lines only a browser
 * rendering HTML reads (`Cross-Origin-Opener-Policy`, `Origin-Agent-Cluster`,
 * `X-DNS-Prefetch-Control`, `X-Download-Options`, `X-Permitted-Cross-Domain-Policies`,
 * `X-XSS-Protection`), which cost a JSON answer its largest share of the gateway's work
 * (docs/performance.md, "Gateway, twelfth round").
 */
const API_ANSWER_HEADERS = {
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  crossOriginOpenerPolicy: false,
  originAgentCluster: false,
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false,
  xFrameOptions: { action: 'deny' },
} as const;

/**
 * Set after helmet's on the same answers: `Cache-Control: no-store`, which the same cheat sheet asks
 * of API answers, so that no browser or shared cache keeps what an operation answered (an order,
 * a customer's data) or a stale health or metrics reading. A route of the application's keeps
 * helmet's set without it; an `onRequest` hook in `configure` may change it on a route's answers,
 * not on its problems, which set it again themselves (gateway-answers.ts `sendProblem`).
 */
const API_ANSWER_LINES = [['cache-control', 'no-store']] as const;

/** Headers a browser script may read on a cross-origin answer, besides the CORS-safelisted ones. */
const EXPOSED_HEADERS = ['retry-after', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'];

/** The fastify server options {@link defenceServerOptions} sets. */
export interface DefenceServerOptions {
  readonly requestTimeout: number;
  readonly keepAliveTimeout: number;
  readonly trustProxy: NonNullable<FastifyServerOptions['trustProxy']>;
  readonly http: ServerOptions;
}

/**
 * The fastify server options that carry the defences fixed when the server is made: the request
 * and headers timeouts (and how often Node checks them), the keep-alive timeout and proxy trust.
 */
export function defenceServerOptions(options: ResolvedHttpGatewayOptions): DefenceServerOptions {
  const trustProxy = options.trustProxy;
  return {
    requestTimeout: options.requestTimeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs,
    // A number of hops as fastify reads it (its types omit the number it takes).
    trustProxy:
      typeof trustProxy === 'number'
        ? (_address: string, hop: number) => hop < trustProxy
        : typeof trustProxy === 'string' || typeof trustProxy === 'boolean'
          ? trustProxy
          : [...trustProxy],
    http: {
      requestTimeout: options.requestTimeoutMs,
      headersTimeout: options.headersTimeoutMs,
      connectionsCheckingInterval: Math.min(TIMEOUT_CHECK_INTERVAL_MS, options.headersTimeoutMs),
    },
  };
}

/**
 * Adds the defences that are plugins or server settings: the connection limit, security headers,
 * CORS and the rate limit. Called before any route is added, since the rate limit attaches itself
 * to the routes added after it. Security headers go on before anything else can answer: their own
 * hook when CORS is on (helmet's, then CORS's); else the function that sets them is returned, for
 * the gateway's first hook to call (one hook fewer per request, the same order of header lines).
 */
export async function addDefences(
  server: FastifyInstance,
  options: ResolvedHttpGatewayOptions,
  correlationHeader: string,
): Promise<SecurityHeadersHook | undefined> {
  server.server.maxConnections = options.maxConnections;
  // Loaded side by side, and only those that are on: loading is most of what they cost a start.
  const [corsModule, rateLimitModule] = await Promise.all([
    options.cors === false ? undefined : import('@fastify/cors'),
    options.rateLimit === false ? undefined : import('@fastify/rate-limit'),
  ]);
  let setSecurityHeaders: SecurityHeadersHook | undefined;
  if (options.securityHeaders) {
    // helmet's headers, worked out once (security-headers.ts): not @fastify/helmet, which builds them per request.
    setSecurityHeaders = securityHeaders(
      server,
      {
        // The gateway often serves plain HTTP behind a TLS proxy or on localhost: upgrading the API
        // reference page's requests to https would break the page where there is no TLS at all.
        contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } },
      },
      { options: API_ANSWER_HEADERS, handlers: JSON_ANSWER_HANDLERS, also: API_ANSWER_LINES },
    );
    if (options.cors !== false) {
      const set = setSecurityHeaders;
      server.addHook('onRequest', (request, reply, done) => {
        set(request, reply);
        done();
      });
      setSecurityHeaders = undefined;
    }
  }
  if (corsModule !== undefined && options.cors !== false) {
    const cors = corsModule.default;
    const origins = new Set(options.cors.origins);
    const anyOrigin = origins.has('*');
    await server.register(cors, {
      // A function, not the list: an origin not allowed then gets no CORS header at all, and its
      // preflight falls through to the gateway's own 405 rather than a 204 a browser would refuse anyway.
      origin: (origin: string | undefined, done: (error: Error | null, allow: string | boolean) => void) =>
        done(null, origin === undefined ? false : anyOrigin ? '*' : origins.has(origin) ? origin : false),
      methods: ['GET', 'POST'],
      credentials: options.cors.credentials ?? false,
      maxAge: options.cors.maxAgeSeconds ?? 600,
      exposedHeaders: [correlationHeader, ...EXPOSED_HEADERS],
    });
  }
  if (rateLimitModule !== undefined && options.rateLimit !== false) {
    const rateLimit = rateLimitModule.default;
    const { max, windowMs } = { ...DEFAULT_RATE_LIMIT, ...options.rateLimit };
    await server.register(rateLimit, {
      max,
      timeWindow: windowMs,
      ...(options.rateLimit.allowList === undefined ? {} : { allowList: [...options.rateLimit.allowList] }),
      errorResponseBuilder: (_request, context) =>
        new GatewayRefusal(
          HttpProblemCode.RATE_LIMITED,
          `Too many requests from this client: at most ${max} every ${windowMs / 1000} s. Retry in ${context.after} (the Retry-After header has the seconds).`,
          { limit: max, windowMs, retryAfterSeconds: Math.ceil(context.ttl / 1000) },
        ),
    });
  }
  return setSecurityHeaders;
}
