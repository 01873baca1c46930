/**
 * The gateway's security headers: helmet's, worked out once when the gateway is made and set on
 * every answer by one callback hook. `@fastify/helmet` builds helmet's middleware again on every
 * request (parsing the Content-Security-Policy directives each time) behind two hooks, one of
 * them async: about a tenth of a small request's CPU in the gateway's profile (docs/performance.md,
 * "Gateway profile"). Here the same helmet (the one `@fastify/helmet` depends on) with the same
 * options runs once against a recording response, and each request replays what it did, in the
 * same order, with the same values, as fastify headers: the same header lines but for the case of
 * their names, lower case like every header fastify itself writes (names are case-insensitive).
 *
 * What `@fastify/helmet` offers besides stays: the `reply.helmet(options?)` decorator (helmet's
 * headers with other options, for one answer), `reply.cspNonce` (null: nonces are off), and the
 * route option `helmet` (`false` or `{ skipRoute: true }`: no headers on that route; any other
 * object: helmet with those options merged in, worked out once for the route, where the plugin
 * did it per request), given as the route option or in the route's `config.helmet`.
 *
 * The gateway sets a shorter set on the answers of its JSON routes (`ApiSecurityHeaders`): the
 * lines OWASP's REST Security Cheat Sheet asks of every API answer, without those that only a
 * browser rendering HTML reads (docs/security.md, "Security headers").
 */
import { createRequire } from 'node:module';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** helmet's options, as far as the gateway reads them (helmet checks them itself). */
export type HelmetOptions = Readonly<Record<string, unknown>>;

type Middleware = (request: IncomingMessage, response: ServerResponse, next: (error?: unknown) => void) => void;
type Helmet = (options?: HelmetOptions) => Middleware;

/** One thing helmet did to a response: set a header, or remove one. */
type HeaderStep = readonly [name: string, value: string | undefined];

// The helmet `@fastify/helmet` itself uses (its dependency), so the headers stay the ones it set.
const requireFromPlugin = createRequire(createRequire(import.meta.url).resolve('@fastify/helmet'));

function loadHelmet(): Helmet {
  return requireFromPlugin('helmet') as Helmet;
}

/** What `helmet(options)` does to a response: its `setHeader` and `removeHeader` calls, in order. */
export function helmetSteps(helmet: Helmet, options: HelmetOptions): readonly HeaderStep[] {
  const steps: HeaderStep[] = [];
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      if (typeof value !== 'string') throw new Error(`helmet set ${name} to a ${typeof value}; only strings are replayed`);
      steps.push([name, value]);
      return recorder;
    },
    removeHeader(name: string) {
      steps.push([name, undefined]);
    },
  };
  let failed: unknown;
  helmet(options)({} as IncomingMessage, recorder as unknown as ServerResponse, (error) => {
    failed = error;
  });
  if (failed !== undefined) throw failed;
  return steps;
}

/** Header names whose removal Node's response remembers (it then leaves out its own line for them). */
const REMEMBERED_REMOVALS: ReadonlySet<string> = new Set(['connection', 'content-length', 'transfer-encoding', 'date']);

/** Route config the `helmet` route option becomes (as `@fastify/helmet` stores it). */
interface RouteHelmetConfig {
  readonly helmet?: HelmetOptions & { readonly skipRoute?: boolean; readonly enableCSPNonces?: boolean };
}

/** Where a route's config keeps the function that sets its answers' security headers. */
const ROUTE_HEADERS = Symbol('keel.securityHeaders');

/** A route config holding its security headers' function. */
interface RouteHeadersConfig {
  readonly [ROUTE_HEADERS]?: (reply: FastifyReply) => void;
}

/** Sets a gateway's security headers on one answer; called first thing for every request. */
export type SecurityHeadersHook = (request: FastifyRequest, reply: FastifyReply) => void;

/**
 * A second, shorter set of headers for the answers of a server's JSON routes: helmet with
 * `options`, on the routes whose handler is in `handlers`, and on every answer given without a
 * route (not found).
 */
export interface ApiSecurityHeaders {
  readonly options: HelmetOptions;
  readonly handlers: WeakSet<object>;
  /** Lines set after helmet's on those answers (lower-case names), such as `cache-control`. */
  readonly also?: readonly (readonly [name: string, value: string])[];
}

/**
 * Sets up helmet's headers, with `options`, for every answer of `server`: the decorators and the
 * route option `helmet`, and the function that sets them on one answer, for a hook to call
 * before anything can answer (its early refusals and problems too). {@link addSecurityHeaders}
 * adds that hook itself; the gateway calls it from its own first hook when no other hook must
 * run between the two (one hook fewer per request).
 *
 * With `api`, the routes whose handler is one of `api.handlers`, and answers given without a
 * route, get `api.options`' headers instead: a JSON route pays for the lines a JSON answer needs.
 * Each route's choice is made when it is added; a request reads it from its route's config.
 */
export function securityHeaders(server: FastifyInstance, options: HelmetOptions, api?: ApiSecurityHeaders): SecurityHeadersHook {
  const helmet = loadHelmet();
  // Set as fastify's own headers (lower-case names, as fastify writes all of its own): Node then
  // writes the head from fastify's header object in one pass, where one `setHeader` on the raw
  // response would make it set every header one by one (docs/performance.md, "Gateway profile").
  const prepare = (given: HelmetOptions, also: readonly (readonly [string, string])[] = []): ((reply: FastifyReply) => void) => {
    const steps = [...helmetSteps(helmet, given), ...also];
    const names = steps.map(([name]) => name.toLowerCase());
    const values = steps.map(([, value]) => value);
    const count = steps.length;
    return (reply) => {
      const raw = reply.raw;
      for (let index = 0; index < count; index += 1) {
        const value = values[index];
        const name = names[index] as string;
        if (value !== undefined) reply.header(name, value);
        // helmet's removal (X-Powered-By) of a header the response does not hold is a no-op, but
        // for the names whose removal Node remembers, and an error once the head is sent: asked
        // only then, it spares Node's name checks and lower-casing on every answer.
        else if (REMEMBERED_REMOVALS.has(name) || raw.headersSent || raw.hasHeader(name)) raw.removeHeader(name);
      }
    };
  };
  const apply = prepare(options);
  // What an answer gets when its route chose nothing else: answers given without a route (not
  // found) and, with `api`, the JSON routes'.
  const fallback = api === undefined ? apply : prepare(api.options, api.also);
  const none = (): void => {};

  // Untyped: @fastify/helmet's types (when loaded) declare these decorators with its own shapes.
  const decorate = server.decorateReply.bind(server) as unknown as (name: string, value: unknown) => void;
  decorate('helmet', function (this: FastifyReply, more?: HelmetOptions) {
    prepare(more === undefined ? options : { ...options, ...more })(this);
  });
  decorate('cspNonce', null);
  // Each route's headers are worked out once, when it is added, and kept in its config (fastify
  // copies the config into the route's context, symbol keys included). The first hook reads them
  // there: before the application's own hooks, so that those may still change what it set.
  let chosen = false;
  server.addHook('onRoute', (route) => {
    // The route option `helmet`, else the same choice made in the route's `config.helmet`, which
    // @fastify/helmet reads at each request (the route option wins, as the plugin copies it there).
    // As the plugin, only an object there counts: `config.helmet: false` (or any other value)
    // leaves the route the defaults, where the route option `helmet: false` turns them off.
    const option = (route as { helmet?: unknown }).helmet;
    const configured = (route.config as { helmet?: unknown } | undefined)?.helmet;
    const given = option ?? (typeof configured === 'object' && configured !== null ? configured : undefined);
    if (option !== undefined && option !== false && (typeof option !== 'object' || option === null)) throw new Error('Unknown value for route helmet configuration');
    if (option !== undefined) route.config = Object.assign(route.config ?? Object.create(null), { helmet: option === false ? { skipRoute: true } : option });
    if (given === undefined && (api === undefined || api.handlers.has(route.handler))) return;
    let set: (reply: FastifyReply) => void;
    if (given === undefined) set = apply;
    else {
      const { skipRoute, enableCSPNonces: _nonces, ...more } = given === false ? { skipRoute: true } : (given as RouteHelmetConfig['helmet'] & object);
      // `helmet: false` and `helmet: { skipRoute: true }` alike: no security headers, as with @fastify/helmet.
      set = skipRoute === true ? none : prepare({ ...options, ...more });
    }
    // A config of its own: one object may be given to several routes.
    const config: RouteHeadersConfig = { ...(route.config as object | undefined), [ROUTE_HEADERS]: set };
    route.config = config as typeof route.config;
    chosen = true;
  });
  return (request, reply) => {
    // Until a route chose other headers, no request needs its route's options read (fastify builds
    // `routeOptions` anew on every read).
    const set = chosen ? (request.routeOptions.config as RouteHeadersConfig | undefined)?.[ROUTE_HEADERS] : undefined;
    (set ?? fallback)(reply);
  };
}

/**
 * Adds helmet's headers, with `options`, to every answer of `server` (its early refusals and
 * problems too): {@link securityHeaders} behind one callback `onRequest` hook, added where it is called.
 */
export function addSecurityHeaders(server: FastifyInstance, options: HelmetOptions): void {
  const set = securityHeaders(server, options);
  server.addHook('onRequest', (request, reply, done) => {
    set(request, reply);
    done();
  });
}
