/**
 * Where end-user identity enters keel: the gateway's `authenticate` hook, which turns a request
 * into the application's principal, and a ready one for bearer JWTs verified with `jose` against
 * a JSON Web Key Set or a shared secret, with issuer and audience checks.
 */
import type { FastifyRequest } from 'fastify';
import type { JWTPayload, JWTVerifyGetKey, JWTVerifyOptions } from 'jose';
import { z } from 'zod';
import { KeelError, KeelErrorCode, isKeelError, type Principal } from 'keel';
import { parseOptions } from 'keel/transport';
import { hasOperatorNote, noted } from './operator-note.js';

/**
 * The gateway's `authenticate` hook: the principal of a request, `undefined` for an anonymous
 * one (no credentials), or a throw: a `KeelError` `UNAUTHENTICATED` for credentials that do not
 * hold (401 with `WWW-Authenticate`, `error="invalid_token"`), `UNAVAILABLE` when they cannot be
 * checked now (503). Whatever it returns is checked against the kernel's principal schema.
 *
 * @example
 * ```ts
 * const authenticate: Authenticate = (request) => {
 *   const key = request.headers['x-api-key'];
 *   if (key === undefined) return undefined;
 *   const principal = apiKeys.get(String(key));
 *   if (principal === undefined) throw new KeelError(KeelErrorCode.UNAUTHENTICATED, 'Unknown API key.');
 *   return principal;
 * };
 * const gateway = await createHttpGateway({ kernel, authenticate, challenge: 'ApiKey realm="shop"' });
 * ```
 */
export type Authenticate = (request: FastifyRequest) => Principal | undefined | PromiseLike<Principal | undefined>;

/**
 * What {@link createJwtAuthenticator} takes: exactly one of `jwksUrl` and `secret`.
 *
 * @example
 * ```ts
 * const options: JwtAuthenticatorOptions = {
 *   jwksUrl: 'https://login.example.com/.well-known/jwks.json',
 *   issuer: 'https://login.example.com/',
 *   audience: 'shop-api',
 *   principal: (claims) => ({ sub: claims.sub, roles: claims['roles'] ?? [] }),
 * };
 * ```
 */
export interface JwtAuthenticatorOptions {
  /** http(s) URL of the issuer's JSON Web Key Set (asymmetric keys: RS*, PS*, ES*, EdDSA), fetched and cached by jose; another scheme, or a user or password in it, is `INVALID_CONFIG`. */
  readonly jwksUrl?: string | URL;
  /** Shared secret for HMAC tokens (HS256, HS384, HS512): at least 32 bytes. */
  readonly secret?: string | Uint8Array;
  /** Expected `iss`: a token from another issuer is refused. */
  readonly issuer?: string | readonly string[];
  /** Expected `aud`: a token for another audience is refused. */
  readonly audience?: string | readonly string[];
  /** Accepted algorithms (default: HS256, HS384, HS512 with a secret; every asymmetric one jose knows with a JWKS). */
  readonly algorithms?: readonly string[];
  /**
   * Refuse a token without an `exp` claim (default `true`): a bearer token that never expires
   * stays good for whoever copies it until the key changes. `false` accepts one, for an issuer
   * whose tokens carry none (its `exp` is still checked when present).
   */
  readonly requireExpiry?: boolean;
  /**
   * Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (default 5, at most 300: an expired
   * token stays good that much longer). A token whose `iat`
   * (issued at) is later than now plus this is refused: its issuer's clock is wrong, or it was
   * made to outlive its expiry's check.
   */
  readonly clockToleranceSeconds?: number;
  /**
   * Oldest a token may be, in whole seconds since its `iat` (default: no limit, the token's own
   * `exp` decides). Given, a token without `iat` is refused, and so is one issued longer ago than
   * this (plus `clockToleranceSeconds`), whatever its `exp` says: a bound on how long a token
   * copied from a log or a browser stays good, even one whose issuer set an `exp` of 1e300.
   *
   * @example
   * ```ts
   * createJwtAuthenticator({ jwksUrl, issuer, audience, maxTokenAgeSeconds: 3_600 }); // an hour at most
   * ```
   */
  readonly maxTokenAgeSeconds?: number;
  /** The principal of a verified token's claims (default: the claims as they are; the kernel's schema checks the result). A `KeelError` it throws answers as such (`UNAUTHENTICATED` refuses the token); anything else is a 500 `INTERNAL`, logged naming it. */
  readonly principal?: (claims: JWTPayload) => unknown;
  /** How long to wait for the JWKS, in ms (default 5 000). */
  readonly jwksTimeoutMs?: number;
}

/** The most clock skew `clockToleranceSeconds` may allow: beyond it, the clocks need fixing, not tolerating. */
const MAX_CLOCK_TOLERANCE_SECONDS = 300;
const CLOCK_TOLERANCE_RULE = `must be a number of seconds from 0 to ${MAX_CLOCK_TOLERANCE_SECONDS}, such as 5 (the default): an expired token stays good that much longer, so fix a clock further off (NTP) instead`;
const MAX_TOKEN_AGE_RULE = 'must be a whole number of seconds above 0, such as 3600 (an hour)';

const JwtAuthenticatorOptionsSchema = z
  .object({
    jwksUrl: z
      // Another scheme (file:, ftp:) passed, and made every token a 503 "key set unreachable" for good.
      .custom((value) => ['http:', 'https:'].includes((value instanceof URL ? value : typeof value === 'string' ? URL.parse(value) : null)?.protocol ?? ''), {
        error: 'must be an http(s) URL of a JSON Web Key Set',
      })
      .optional(),
    secret: z
      .custom((value) => (typeof value === 'string' ? Buffer.byteLength(value) : value instanceof Uint8Array ? value.length : 0) >= 32, {
        error: 'must be a string or bytes of at least 32 bytes (a shorter HMAC secret can be guessed)',
      })
      .optional(),
    issuer: z.union([z.string().min(1), z.array(z.string().min(1))], { error: 'must be a string or an array of strings' }).optional(),
    audience: z.union([z.string().min(1), z.array(z.string().min(1))], { error: 'must be a string or an array of strings' }).optional(),
    algorithms: z.array(z.string().min(1), { error: 'must be an array of JWS algorithm names, such as ["RS256"]' }).min(1).optional(),
    requireExpiry: z.boolean({ error: 'must be true or false' }).optional(),
    // Unbounded, a tolerance of a day kept every expired token good for a day more.
    clockToleranceSeconds: z
      .number({ error: CLOCK_TOLERANCE_RULE })
      .refine((value) => value >= 0 && value <= MAX_CLOCK_TOLERANCE_SECONDS, CLOCK_TOLERANCE_RULE)
      .optional(),
    maxTokenAgeSeconds: z
      .number({ error: MAX_TOKEN_AGE_RULE })
      .refine((value) => Number.isSafeInteger(value) && value > 0, MAX_TOKEN_AGE_RULE)
      .optional(),
    principal: z.custom((value) => typeof value === 'function', { error: 'must be a function of the claims returning the principal' }).optional(),
    jwksTimeoutMs: z.number({ error: 'must be a whole number of milliseconds above 0' }).int('must be a whole number of milliseconds above 0').positive().max(2_147_483_647, 'must be at most 2147483647 (about 24 days)').optional(),
  })
  .strict();

const BEARER = /^Bearer[ ]+([A-Za-z0-9\-._~+/]+=*)$/i;

/**
 * An {@link Authenticate} hook for bearer JWTs: reads `Authorization: Bearer <token>`, verifies
 * its signature (against the JWKS at `jwksUrl`, or the shared `secret`), its `exp` (required
 * unless `requireExpiry: false`), `nbf` and `iat` (not in the future; with `maxTokenAgeSeconds`,
 * required and not older than that), and
 * `iss` and `aud` when `issuer` and `audience` are given, then maps its claims to the principal.
 * No `Authorization` header is an anonymous request; a token that does not verify, or more than
 * one `Authorization` header, is `UNAUTHENTICATED` (401); a JWKS that cannot be fetched is `UNAVAILABLE` (503). Options are
 * checked once: a wrong one is `INVALID_CONFIG` naming the field. The gateway logs each 401 at
 * debug with the refusal's `reason` (never the token), and a key set it cannot fetch at error,
 * at most once per 10 s for each cause, naming the URL (its query shown as `?…`) and the cause.
 *
 * @example
 * ```ts
 * import { createHttpGateway, createJwtAuthenticator } from 'keel/http';
 *
 * const gateway = await createHttpGateway({
 *   kernel,
 *   authenticate: createJwtAuthenticator({
 *     jwksUrl: 'https://login.example.com/.well-known/jwks.json',
 *     issuer: 'https://login.example.com/',
 *     audience: 'shop-api',
 *     principal: (claims) => ({ sub: claims.sub, roles: claims['roles'] ?? [] }),
 *   }),
 * });
 * ```
 */
export function createJwtAuthenticator(options: JwtAuthenticatorOptions): Authenticate {
  refuseUrlCredentials(options?.jwksUrl);
  refuseUrlScheme(options?.jwksUrl);
  const given = parseOptions('createJwtAuthenticator', JwtAuthenticatorOptionsSchema, options, ['secret']) as JwtAuthenticatorOptions;
  if ((given.jwksUrl === undefined) === (given.secret === undefined)) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      'createJwtAuthenticator: give exactly one of jwksUrl (the URL of a JSON Web Key Set) and secret (a shared HMAC secret of at least 32 bytes).',
    );
  }
  // An algorithm the key cannot verify would refuse every token, each with a 401: refused here instead.
  const cannot = (given.algorithms ?? []).find((name) => (given.secret !== undefined ? !HMAC.includes(name) : name === 'none' || /^HS\d+$/.test(name)));
  if (cannot !== undefined) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      given.secret !== undefined
        ? `createJwtAuthenticator: algorithms has "${cannot}", which a shared secret cannot verify; use HS256, HS384 or HS512, or leave algorithms out.`
        : `createJwtAuthenticator: algorithms has "${cannot}", which a JSON Web Key Set cannot verify (it publishes public keys); use an asymmetric algorithm such as RS256 or ES256, or leave algorithms out.`,
    );
  }
  const jwksUrl = given.jwksUrl === undefined ? undefined : new URL(given.jwksUrl as string | URL);
  // jose (some fifty modules) loads with the first token, not with every process that only builds
  // the gateway: a process started without auth configured, or before its first request, never pays it.
  let verifier: Promise<{ jose: typeof import('jose'); key: Uint8Array | JWTVerifyGetKey }> | undefined;
  const loadVerifier = () =>
    (verifier ??= import('jose').then(
      (jose) => ({
        jose,
        key:
          given.secret !== undefined
            ? typeof given.secret === 'string'
              ? new TextEncoder().encode(given.secret)
              : given.secret
            : jose.createRemoteJWKSet(jwksUrl as URL, { timeoutDuration: given.jwksTimeoutMs ?? 5_000 }),
      }),
      (error: unknown) => {
        // Not kept: the next token tries again.
        verifier = undefined;
        throw new KeelError(KeelErrorCode.UNAVAILABLE, 'The token could not be checked now: jose, the JWT library, did not load. Retry later.', { cause: error });
      },
    ));
  const clockTolerance = given.clockToleranceSeconds ?? 5;
  const verifyOptions: JWTVerifyOptions = {
    ...(given.issuer === undefined ? {} : { issuer: given.issuer as string | string[] }),
    ...(given.audience === undefined ? {} : { audience: given.audience as string | string[] }),
    algorithms: [...(given.algorithms ?? (given.secret !== undefined ? HMAC : ASYMMETRIC))],
    clockTolerance,
    ...(given.requireExpiry === false ? {} : { requiredClaims: ['exp'] }),
    // jose then requires `iat`, and refuses one too old or in the future.
    ...(given.maxTokenAgeSeconds === undefined ? {} : { maxTokenAge: given.maxTokenAgeSeconds }),
  };
  const toPrincipal = given.principal ?? ((claims: JWTPayload) => claims);
  const verify = async (token: string): Promise<Principal> => {
    const { jose, key } = await loadVerifier();
    let payload: JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, key as never, verifyOptions));
    } catch (error) {
      throw refusalOf(jose.errors, error, jwksUrl, given.maxTokenAgeSeconds);
    }
    // jose checks `iat` only with maxTokenAge: a token issued in the future was taken, and lived
    // as long as its `exp` said from a start no clock had reached.
    if (typeof payload.iat === 'number' && payload.iat > Date.now() / 1000 + clockTolerance) throw refused(IAT_IN_THE_FUTURE, 'iat-in-the-future');
    let principal: unknown;
    try {
      principal = toPrincipal(payload);
    } catch (error) {
      throw mapperFailure(error);
    }
    // An async mapper's rejection too.
    if (typeof (principal as PromiseLike<unknown> | undefined)?.then !== 'function') return principal as Principal;
    return Promise.resolve(principal).then(undefined, (error: unknown) => {
      throw mapperFailure(error);
    }) as Promise<Principal>;
  };
  return (request) => {
    const header = request.headers.authorization;
    // An empty header is credentials of the wrong form, as http.md's table says: refused, not anonymous.
    if (header === undefined) return undefined;
    // Node keeps the first of several and drops the others unseen: which one a proxy in front checked is anyone's guess.
    const count = request.raw?.headersDistinct?.authorization?.length ?? 1;
    if (count > 1) {
      throw noted(new KeelError(KeelErrorCode.UNAUTHENTICATED, `The request has ${count} Authorization headers: send one, "Bearer <token>".`), {
        fields: { reason: 'several-authorization-headers' },
      });
    }
    const token = BEARER.exec(header)?.[1];
    if (token === undefined) {
      throw noted(new KeelError(KeelErrorCode.UNAUTHENTICATED, 'The Authorization header is not "Bearer <token>": send a JWT as a bearer token.'), {
        fields: { reason: 'not-bearer' },
      });
    }
    return verify(token);
  };
}

/**
 * Refuses a key set URL with a user or password in it, without repeating it: fetch refuses such a
 * URL, so every token was a 503, and each one's error line showed the password.
 */
function refuseUrlCredentials(jwksUrl: unknown): void {
  const url = jwksUrl instanceof URL ? jwksUrl : typeof jwksUrl === 'string' ? URL.parse(jwksUrl) : null;
  // One that does not parse (a port past 65535) is refused next, showing its value: its user part is looked for here.
  const unparsed = url === null && typeof jwksUrl === 'string' && /^[a-z][a-z\d+.-]*:\/\/[^/?#]*@/i.test(jwksUrl);
  if (!unparsed && (url === null || (url.username === '' && url.password === ''))) return;
  throw new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    'createJwtAuthenticator: jwksUrl has a user or password in it (not shown), which fetch refuses: a JSON Web Key Set is public, give its URL without them.',
  );
}

/** Refuses a key set URL of another scheme than http(s), shown without its query (an API key, for some issuers). */
function refuseUrlScheme(jwksUrl: unknown): void {
  if (typeof jwksUrl !== 'string' && !(jwksUrl instanceof URL)) return;
  const url = jwksUrl instanceof URL ? jwksUrl : URL.parse(jwksUrl);
  if (url !== null && ['http:', 'https:'].includes(url.protocol)) return;
  throw new KeelError(
    KeelErrorCode.INVALID_CONFIG,
    // As given, not as parsed: without its scheme, `keel:pw@login.test/jwks.json` parses as the scheme `keel:`, its password the path.
    `createJwtAuthenticator: jwksUrl must be an http(s) URL of a JSON Web Key Set, got "${shownUrl(jwksUrl instanceof URL ? jwksUrl.href : jwksUrl)}".`,
  );
}

/**
 * A key set's URL as a log line or an error shows it: without its query (some issuers take an API
 * key there) and fragment, which become `?…`, and without a user or password.
 */
function shownUrl(url: URL | string): string {
  // A user part is cut with or without a scheme before it (`keel:pw@login.test/...` lacks its https://).
  if (typeof url === 'string') return url.replace(/^((?:[a-z][a-z\d+.-]*:)?\/\/)?[^/?#]*@/i, '$1').replace(/[?#].*$/s, '?…');
  const shown = new URL(url.href);
  const hidden = shown.search !== '' || shown.hash !== '';
  shown.username = '';
  shown.password = '';
  shown.search = '';
  shown.hash = '';
  return hidden ? `${shown.href}?…` : shown.href;
}

const HMAC = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

/**
 * What a throw of the `principal` option becomes: a `KeelError` stays as it is (an
 * `UNAUTHENTICATED` is its refusal of the claims: a 401 with the reason `principal-refused`);
 * anything else is a bug of the server's, a 500 whose answer does not repeat its message
 * (problem.ts) and whose error line names the mapper, once per 10 s.
 */
function mapperFailure(error: unknown): unknown {
  if (isKeelError(error)) {
    return hasOperatorNote(error) || error.code !== KeelErrorCode.UNAUTHENTICATED ? error : noted(error, { fields: { reason: 'principal-refused' } });
  }
  const failure = typeof error === 'object' && error !== null ? error : new Error(`the principal option threw ${typeof error}: ${String(error)}`);
  // Throttled as one, not by message, which may quote the claims.
  return noted(failure, {
    fields: { reason: 'principal-mapper-threw' },
    logKey: 'principal-mapper-threw',
    message:
      "createJwtAuthenticator's principal option threw on a verified token's claims: every such request is answered 500 INTERNAL. " +
      'Fix the mapper for these claims (err has what it threw), or throw a KeelError UNAUTHENTICATED from it to refuse them',
  });
}

const IAT_IN_THE_FUTURE = 'its "iat" claim (issued at) is in the future';

/** A refusal of the token (401), saying `reason` to the client and `code` (and jose's `cause`) to the log. */
function refused(reason: string, code: string, cause?: { readonly code?: unknown; readonly claim?: unknown }): KeelError {
  const error = new KeelError(KeelErrorCode.UNAUTHENTICATED, `The bearer token was refused: ${reason}. Authenticate again.`, cause === undefined ? {} : { cause });
  return noted(error, {
    fields: { reason: code, ...(typeof cause?.code === 'string' ? { jose: cause.code } : {}), ...(typeof cause?.claim === 'string' ? { claim: cause.claim } : {}) },
  });
}

/** The messages of `error` and its causes, joined: `fetch failed: connect ECONNREFUSED 127.0.0.1:1`. */
function causeChain(error: unknown): string {
  const messages: string[] = [];
  for (let at: unknown = error; at instanceof Error && messages.length < 4; at = at.cause) messages.push(at.message);
  return messages.join(': ') || String(error);
}

/**
 * Why a key set could not be fetched, as a code from a short list: jose's (`ERR_JWKS_TIMEOUT`, or
 * `ERR_JOSE_GENERIC` for an answer other than 200) or the system's under fetch's (`ECONNREFUSED`,
 * `ENOTFOUND`); `unknown` for any other. The gateway throttles its lines by it: a new cause is logged.
 */
function failureCodeOf(error: unknown): string {
  for (let at: unknown = error, depth = 0; typeof at === 'object' && at !== null && depth < 4; at = (at as { cause?: unknown }).cause, depth += 1) {
    const code = (at as { code?: unknown }).code;
    if (typeof code === 'string' && /^[A-Z][A-Z\d_]{0,39}$/.test(code)) return code;
  }
  return 'unknown';
}

/** What the HTTP client is told about a token jose refused; the reason stays short and safe to show. */
function refusalOf(errors: typeof import('jose').errors, error: unknown, jwksUrl: URL | undefined, maxTokenAgeSeconds: number | undefined): KeelError {
  if (
    error instanceof errors.JWKSTimeout ||
    error instanceof errors.JWKSInvalid ||
    // jose's bare JOSEError: the key set's answer was not a 200 with JSON.
    (error instanceof Error && (!(error instanceof errors.JOSEError) || error.constructor === errors.JOSEError))
  ) {
    // The key set could not be fetched (a timeout, a refused connection, an error answer): not the client's fault.
    const unavailable = new KeelError(KeelErrorCode.UNAVAILABLE, 'The token could not be checked now: the key set is unreachable. Retry later.', { cause: error });
    const shown = jwksUrl === undefined ? '(none)' : shownUrl(jwksUrl);
    // The URL as given, were a cause to quote it, is shown as everywhere else: without its query.
    const problem = jwksUrl === undefined ? causeChain(error) : causeChain(error).replaceAll(jwksUrl.href, shown);
    const failure = failureCodeOf(error);
    return noted(unavailable, {
      fields: { reason: 'jwks-unreachable', jwksUrl: shown, failure, problem },
      logKey: `jwks-unreachable ${shown} ${failure}`,
      message:
        `could not fetch the JSON Web Key Set at ${shown} (${problem}): every bearer token is answered 503 until it can. ` +
        "Check that this process reaches that URL (network, DNS, proxy, firewall) and that it is the issuer's jwks_uri, which answers 200 with the key set",
    });
  }
  if (error instanceof errors.JWTExpired) {
    return error.claim === 'iat'
      ? refused(`it was issued more than ${maxTokenAgeSeconds ?? 0} seconds ago, the oldest this API accepts`, 'too-old', error)
      : refused('the token has expired', 'expired', error);
  }
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'iat' && error.reason === 'check_failed') return refused(IAT_IN_THE_FUTURE, 'iat-in-the-future', error);
    return refused(`its "${error.claim}" claim is ${error.reason === 'missing' ? 'missing' : 'not what this API accepts'}`, `claim-${error.reason === 'missing' ? 'missing' : 'refused'}`, error);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey) return refused('its signature does not verify', 'bad-signature', error);
  if (error instanceof errors.JOSEAlgNotAllowed) return refused('its algorithm is not accepted', 'algorithm-not-accepted', error);
  return refused('it is not a valid JWT', 'not-a-jwt', error as { code?: unknown });
}
