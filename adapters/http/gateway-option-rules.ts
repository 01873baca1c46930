/**
 * The rules of the gateway's options, shared by gateway-options.ts: small zod builders that say
 * what a field takes, and the schemas and types of the defence options (CORS, rate limit,
 * trusted proxies), which docs/http.md ("Defences") documents.
 */
import { isIP } from 'node:net';
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from 'keel/transport';

/**
 * The gateway's CORS settings (`cors` of {@link HttpGatewayOptions}); see docs/http.md.
 *
 * @example
 * ```ts
 * const cors: HttpCorsOptions = { origins: ['https://shop.example.com'], credentials: true };
 * const gateway = await createHttpGateway({ kernel, cors });
 * ```
 */
export interface HttpCorsOptions {
  /** Origins allowed, each `scheme://host[:port]` as a browser sends it; `'*'` allows any (never with `credentials`). */
  readonly origins: readonly string[];
  /** Let browsers send cookies and `Authorization` (`Access-Control-Allow-Credentials`, default false). */
  readonly credentials?: boolean;
  /** Seconds a browser may keep a preflight's answer (default 600). */
  readonly maxAgeSeconds?: number;
}

/**
 * The gateway's rate limit (`rateLimit` of {@link HttpGatewayOptions}): at most `max` requests
 * per `windowMs` per client address.
 *
 * @example
 * ```ts
 * const rateLimit: HttpRateLimitOptions = { max: 100, windowMs: 1_000, allowList: ['10.0.0.5'] };
 * ```
 */
export interface HttpRateLimitOptions {
  /** Requests allowed per window per client (default 1000). */
  readonly max?: number;
  /** The window in milliseconds (default 60 000). */
  readonly windowMs?: number;
  /** Client addresses never limited, such as a trusted internal caller. */
  readonly allowList?: readonly string[];
}

const MILLISECONDS_RULE = `a whole number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;
const ORIGIN = /^(\*|[a-z][a-z0-9+.-]*:\/\/[^/\s?#]+)$/i;
export const TRUST_PROXY_RULE =
  'must be true, false, a number of proxy hops, or the proxies\' addresses or CIDR ranges (a string or an array of strings, such as "10.0.0.0/8")';


export const wholeNumber = (what: string, accepts: (value: number) => boolean) =>
  z.number({ error: `must be ${what}` }).refine((value) => Number.isSafeInteger(value) && accepts(value), `must be ${what}`);
export const text = (what: string, pattern = /\S/) => z.string({ error: `must be ${what}` }).regex(pattern, `must be ${what}`);
export const flag = () => z.boolean({ error: 'must be true or false' });

/** A proxy as proxy-addr takes it: an address, a CIDR range, or one of its names; a string may list several, comma-separated. */
const isProxy = (entry: string): boolean => {
  const [address = '', prefix, ...rest] = entry.trim().split('/');
  if (rest.length > 0) return false;
  if (prefix === undefined && ['loopback', 'linklocal', 'uniquelocal'].includes(address)) return true;
  const family = isIP(address);
  return family !== 0 && (prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128)));
};
export const proxyList = () =>
  z.string().refine((value) => value.split(',').every(isProxy), TRUST_PROXY_RULE);
export const milliseconds = () => wholeNumber(MILLISECONDS_RULE, (value) => value > 0 && value <= MAX_TIMEOUT_MS);

export const CorsOptionsSchema = z
  .object({
    origins: z
      .array(text('an origin such as "https://shop.example.com" (scheme, host and port; no path) or "*"', ORIGIN), {
        error: 'must be an array of origins, such as ["https://shop.example.com"]',
      })
      .min(1, 'must name at least one origin (or set cors to false)'),
    credentials: flag().optional(),
    maxAgeSeconds: wholeNumber('a whole number of seconds, 0 or more', (value) => value >= 0).optional(),
  })
  .strict()
  .refine((value) => !(value.credentials === true && value.origins.includes('*')), {
    error: 'cannot allow any origin ("*") with credentials: name the origins',
    path: ['origins'],
  });
export const RateLimitOptionsSchema = z
  .object({
    max: wholeNumber('a whole number of requests above 0', (value) => value > 0).optional(),
    windowMs: milliseconds().optional(),
    allowList: z.array(text('a client address, such as 10.0.0.5'), { error: 'must be an array of client addresses' }).optional(),
  })
  .strict();
