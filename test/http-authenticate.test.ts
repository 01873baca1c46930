/**
 * The gateway's authenticate hook over real HTTP, with real JWTs signed here by jose: a shared
 * secret, and an RSA key whose JSON Web Key Set is served on a local HTTP port. The principal a
 * token makes reaches the handler; a missing token where the contract requires one, and a token
 * that does not verify, are 401 with WWW-Authenticate; an auth predicate's refusal is 403.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWTPayload } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel } from 'keel';
import { createHttpGateway, createJwtAuthenticator, type HttpGateway } from 'keel/http';

const Principal = z.object({ sub: z.string().min(1), roles: z.array(z.string()) });
const Seen = Principal.nullable();

const account = defineContract({
  name: 'account',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ principal: Seen }), idempotent: true }),
    settings: operation({ input: z.object({}), output: z.object({ owner: z.string() }), auth: 'required' }),
    setPrice: operation({
      input: z.object({ cents: z.number().int() }),
      output: z.object({ by: z.string() }),
      auth: (principal) => principal.roles.includes('admin'),
    }),
  },
});

const accountModule = defineModule({
  contract: account,
  create: () => ({
    handlers: {
      whoami: (_input, context) => ({ principal: context.principal ?? null }),
      settings: (_input, context) => ({ owner: context.principal?.sub ?? '' }),
      setPrice: (_input, context) => ({ by: context.principal?.sub ?? '' }),
    },
  }),
});

const SECRET = 'a shared secret of more than thirty-two bytes, for tests only';
const ISSUER = 'https://login.test/';
const AUDIENCE = 'shop-api';

/** POSTs `body`; `token` is sent as `Bearer <token>`, `authorization` as the whole header. */
async function post(
  url: string,
  path: string,
  body: unknown,
  token?: string,
  authorization = token === undefined ? undefined : `Bearer ${token}`,
): Promise<{ status: number; body: any; challenge: string | null }> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(authorization === undefined ? {} : { authorization }) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json(), challenge: response.headers.get('www-authenticate') };
}

/** A token signed with the secret; `expires: null` makes one without an `exp` claim. */
function hmacToken(claims: JWTPayload, options: { issuer?: string; audience?: string; expires?: string | number | null; secret?: string } = {}): Promise<string> {
  const token = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer(options.issuer ?? ISSUER).setAudience(options.audience ?? AUDIENCE).setIssuedAt();
  if (options.expires !== null) token.setExpirationTime(options.expires ?? '5m');
  return token.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

describe('http - caller identity', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let url: string;

  beforeAll(async () => {
    kernel = createKernel({ modules: [accountModule], principal: Principal, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      metrics: false,
      docsPath: false,
      stopKernelOnClose: false,
      authenticate: createJwtAuthenticator({
        secret: SECRET,
        issuer: ISSUER,
        audience: AUDIENCE,
        principal: (claims) => ({ sub: claims.sub, roles: claims['roles'] ?? [] }),
      }),
    });
    url = await gateway.listen();
  });
  afterAll(async () => {
    await gateway?.close();
    await kernel?.stop();
  });

  it('http - a bearer JWT signed with the shared secret becomes the principal the handler reads; no token is an anonymous call', async () => {
    const token = await hmacToken({ sub: 'ada', roles: ['admin'] });
    expect(await post(url, '/account/whoami', {}, token)).toMatchObject({ status: 200, body: { principal: { sub: 'ada', roles: ['admin'] } } });
    expect(await post(url, '/account/whoami', {})).toMatchObject({ status: 200, body: { principal: null } });
  });

  it("http - an operation whose auth is 'required' answers 401 UNAUTHENTICATED with WWW-Authenticate to a request without a token", async () => {
    const refused = await post(url, '/account/settings', {});
    expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED', title: 'Authentication required' }, challenge: 'Bearer realm="keel"' });
    expect(refused.body.detail).toContain('account.settings needs a caller identity');
    expect(await post(url, '/account/settings', {}, await hmacToken({ sub: 'bob', roles: [] }))).toMatchObject({ status: 200, body: { owner: 'bob' } });
  });

  it('http - a token that is expired, never expires (no exp), is from another issuer or audience, signed with another secret, or not a JWT is 401 with error="invalid_token", even where no auth is required', async () => {
    const tokens = {
      expired: await hmacToken({ sub: 'ada', roles: [] }, { expires: Math.floor(Date.now() / 1000) - 60 }),
      neverExpires: await hmacToken({ sub: 'ada', roles: [] }, { expires: null }),
      issuer: await hmacToken({ sub: 'ada', roles: [] }, { issuer: 'https://elsewhere.test/' }),
      audience: await hmacToken({ sub: 'ada', roles: [] }, { audience: 'another-api' }),
      secret: await hmacToken({ sub: 'ada', roles: [] }, { secret: 'another secret of more than thirty-two bytes, for tests' }),
      garbage: 'not.a.jwt',
    };
    const details: Record<string, string> = {};
    for (const [name, token] of Object.entries(tokens)) {
      const refused = await post(url, '/account/whoami', {}, token);
      expect(refused, name).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel", error="invalid_token"' });
      details[name] = refused.body.detail;
    }
    expect(details).toEqual({
      expired: 'The bearer token was refused: the token has expired. Authenticate again.',
      neverExpires: 'The bearer token was refused: its "exp" claim is missing. Authenticate again.',
      issuer: 'The bearer token was refused: its "iss" claim is not what this API accepts. Authenticate again.',
      audience: 'The bearer token was refused: its "aud" claim is not what this API accepts. Authenticate again.',
      secret: 'The bearer token was refused: its signature does not verify. Authenticate again.',
      garbage: 'The bearer token was refused: it is not a valid JWT. Authenticate again.',
    });
  });

  it("http - a token whose claims do not make a principal of the application's schema is 401 with error=\"invalid_token\" and the issues' paths as in INVALID_INPUT", async () => {
    const refused = await post(url, '/account/whoami', {}, await hmacToken({ roles: ['admin'] }));
    expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel", error="invalid_token"' });
    const roles = await post(url, '/account/whoami', {}, await hmacToken({ sub: 'ada', roles: [1] }));
    expect(roles).toMatchObject({ status: 401, challenge: 'Bearer realm="keel", error="invalid_token"' });
    expect(roles.body.details.issues).toEqual([expect.objectContaining({ path: ['roles', 0] })]);
  });

  it('http - an empty Authorization header is credentials of the wrong form: 401 with error="invalid_token", not an anonymous call', async () => {
    const refused = await post(url, '/account/whoami', {}, undefined, '');
    expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel", error="invalid_token"' });
    expect(refused.body.detail).toBe('The Authorization header is not "Bearer <token>": send a JWT as a bearer token.');
  });

  it('http - two Authorization headers are 401 with error="invalid_token", whichever comes first; one of them alone is served', async () => {
    // Node kept the first and dropped the second unseen: a customer's token then an admin's was the customer, the other order the admin.
    const customer = await hmacToken({ sub: 'bob', roles: [] });
    const admin = await hmacToken({ sub: 'ada', roles: ['admin'] });
    const postTwice = (authorization: string[]) =>
      new Promise<{ status: number; body: any; challenge: string | undefined }>((resolve, reject) => {
        const body = JSON.stringify({ cents: 100 });
        const sent = request(`${url}/account/setPrice`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (answer) => {
          let text = '';
          answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
          answer.on('end', () => resolve({ status: answer.statusCode ?? 0, body: JSON.parse(text), challenge: answer.headers['www-authenticate'] }));
        });
        sent.setHeader('authorization', authorization); // one header line per value
        sent.on('error', reject);
        sent.end(body);
      });
    for (const pair of [[`Bearer ${customer}`, `Bearer ${admin}`], [`Bearer ${admin}`, `Bearer ${customer}`]]) {
      const refused = await postTwice(pair);
      expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel", error="invalid_token"' });
      expect(refused.body.detail).toBe('The request has 2 Authorization headers: send one, "Bearer <token>".');
    }
    expect(await postTwice([`Bearer ${admin}`])).toMatchObject({ status: 200, body: { by: 'ada' } });
  });

  it('http - createHttpGateway refuses an authenticate hook on a kernel without a principal schema (INVALID_CONFIG naming it), instead of answering every signed-in request 401', async () => {
    // It was accepted: every token that verified was then a 401 "invalid_token" blaming the client, and nothing was logged.
    const bare = createKernel({ modules: [accountModule], logger: silentLogger });
    const authenticate = createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE });
    const refused = await createHttpGateway({ kernel: bare, port: 0, logger: silentLogger, metrics: false, docsPath: false, authenticate }).then(
      async (made) => {
        await made.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(isKeelError(refused, 'INVALID_CONFIG'), String(refused)).toBe(true);
    expect((refused as Error).message).toBe(
      "createHttpGateway: authenticate is given, but the kernel declares no principal schema, so it would refuse every principal the hook makes (give createKernel({ principal }) the application's principal schema).",
    );
    // The same hook on this suite's kernel, which declares one, serves the token's principal.
    expect(await post(url, '/account/whoami', {}, await hmacToken({ sub: 'ada', roles: [] }))).toMatchObject({ status: 200, body: { principal: { sub: 'ada' } } });
  });

  it("http - an auth predicate that refuses the token's principal answers 403 FORBIDDEN; one it allows is served", async () => {
    const customer = await post(url, '/account/setPrice', { cents: 100 }, await hmacToken({ sub: 'bob', roles: ['customer'] }));
    expect(customer).toMatchObject({ status: 403, body: { code: 'FORBIDDEN', title: 'Forbidden' }, challenge: null });
    expect(await post(url, '/account/setPrice', { cents: 100 }, await hmacToken({ sub: 'ada', roles: ['admin'] }))).toMatchObject({
      status: 200,
      body: { by: 'ada' },
    });
  });

  it('http - the OpenAPI document marks the operations whose contract declares auth with the bearer scheme, 401 and (for a predicate) 403; the others with an optional bearer token and 401', async () => {
    const document = (await (await fetch(`${url}/openapi.json`)).json()) as any;
    const post = (path: string) => document.paths[path].post;
    // The gateway authenticates: a token sent to any operation is checked, and one that does not hold is 401.
    expect(post('/account/whoami').security).toEqual([{ bearer: [] }, {}]);
    expect(post('/account/whoami').responses['401']).toEqual({ $ref: '#/components/responses/CredentialsRefused' });
    expect(document.components.responses.CredentialsRefused.headers).toHaveProperty('WWW-Authenticate');
    expect(post('/account/settings')).toMatchObject({ security: [{ bearer: [] }], responses: { '401': { $ref: '#/components/responses/Unauthenticated' } } });
    expect(post('/account/settings').responses['403']).toBeUndefined();
    expect(post('/account/setPrice').responses['403']).toEqual({ $ref: '#/components/responses/Forbidden' });
    expect(document.components.securitySchemes).toEqual({ bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } });
    const SwaggerParser = (await import('@apidevtools/swagger-parser')).default;
    await SwaggerParser.validate(structuredClone(document));
  });

  it('http - createJwtAuthenticator with requireExpiry: false accepts a token without exp, and still refuses an expired one', async () => {
    const authenticate = createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, requireExpiry: false });
    const asRequest = (token: string) => ({ headers: { authorization: `Bearer ${token}` } }) as unknown as Parameters<typeof authenticate>[0];
    expect(await authenticate(asRequest(await hmacToken({ sub: 'ada', roles: [] }, { expires: null })))).toMatchObject({ sub: 'ada' });
    const expired = await Promise.resolve(authenticate(asRequest(await hmacToken({ sub: 'ada', roles: [] }, { expires: Math.floor(Date.now() / 1000) - 60 })))).catch((error: unknown) => error);
    expect(isKeelError(expired, 'UNAUTHENTICATED'), String(expired)).toBe(true);
    expect(() => createJwtAuthenticator({ secret: SECRET, requireExpiry: 'yes' as never })).toThrow(/requireExpiry must be true or false/);
  });

  it('http - createJwtAuthenticator refuses options it cannot verify with: neither or both key sources, a key set URL that is not http(s) or holds a password, a short secret, a JWKS timeout that is not whole milliseconds, a clock tolerance above 300 s', () => {
    const refusal = (options: Parameters<typeof createJwtAuthenticator>[0]): string => {
      try {
        createJwtAuthenticator(options);
      } catch (error) {
        expect(isKeelError(error, 'INVALID_CONFIG')).toBe(true);
        return (error as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refusal({})).toContain('give exactly one of jwksUrl');
    expect(refusal({ secret: SECRET, jwksUrl: 'http://127.0.0.1:1/jwks.json' })).toContain('give exactly one of jwksUrl');
    // Any URL passed: a file: or ftp: key set made every token a 503 "unreachable" for good.
    expect(refusal({ jwksUrl: 'file:///etc/keel/jwks.json' })).toBe(
      'createJwtAuthenticator: jwksUrl must be an http(s) URL of a JSON Web Key Set, got "file:///etc/keel/jwks.json".',
    );
    expect(refusal({ jwksUrl: new URL('ftp://127.0.0.1/jwks.json') })).toContain('jwksUrl must be an http(s) URL');
    // A user or password in it made every token a 503, and each one's error line showed the password.
    // One that does not parse either (a port past 65535): its password was shown in the message refusing the URL.
    for (const jwksUrl of ['https://keel:hunter2-secret@login.test/jwks.json', new URL('https://keel@login.test/jwks.json'), 'https://keel:hunter2-secret@login.test:99999/jwks.json']) {
      const message = refusal({ jwksUrl });
      expect(message).toBe(
        'createJwtAuthenticator: jwksUrl has a user or password in it (not shown), which fetch refuses: a JSON Web Key Set is public, give its URL without them.',
      );
    }
    // Without its scheme, the URL parses as one of the scheme "keel:", its password the path: the refusal showed it.
    for (const jwksUrl of ['keel:hunter2-secret@login.test/jwks.json', '//keel:hunter2-secret@login.test/jwks.json', new URL('keel:hunter2-secret@login.test/jwks.json')]) {
      const message = refusal({ jwksUrl });
      expect(message, String(jwksUrl)).toContain('jwksUrl must be an http(s) URL');
      expect(message, String(jwksUrl)).not.toContain('hunter2');
    }
    expect(() => createJwtAuthenticator({ jwksUrl: new URL('https://login.test/jwks.json') })).not.toThrow();
    // A secret is never repeated, not even a wrong one: a start-up log would keep it.
    expect(refusal({ secret: 'short-but-secret' })).toBe(
      'createJwtAuthenticator: secret must be a string or bytes of at least 32 bytes (a shorter HMAC secret can be guessed), got a string (not shown: it is a secret).',
    );
    // jose loads with the first token: what it would refuse then is refused here, at creation.
    expect(refusal({ jwksUrl: 'http://127.0.0.1:1/jwks.json', jwksTimeoutMs: 1500.5 })).toContain('jwksTimeoutMs');
    expect(refusal({ jwksUrl: 'http://127.0.0.1:1/jwks.json', jwksTimeoutMs: 2 ** 31 })).toContain('jwksTimeoutMs');
    // Unbounded, a tolerance of a day kept every expired token good for a day more.
    expect(refusal({ secret: SECRET, clockToleranceSeconds: 86_400 })).toBe(
      'createJwtAuthenticator: clockToleranceSeconds must be a number of seconds from 0 to 300, such as 5 (the default): an expired token stays good that much longer, so fix a clock further off (NTP) instead, got 86400.',
    );
    for (const wrong of [-1, 300.5, Number.NaN, Number.POSITIVE_INFINITY, '5']) {
      expect(refusal({ secret: SECRET, clockToleranceSeconds: wrong as number }), String(wrong)).toContain('clockToleranceSeconds must be a number of seconds from 0 to 300');
    }
    for (const fine of [0, 2.5, 300]) expect(() => createJwtAuthenticator({ secret: SECRET, clockToleranceSeconds: fine })).not.toThrow();
    // An algorithm its key cannot verify was accepted, and every token then refused with a 401.
    expect(refusal({ secret: SECRET, algorithms: ['none'] })).toBe(
      'createJwtAuthenticator: algorithms has "none", which a shared secret cannot verify; use HS256, HS384 or HS512, or leave algorithms out.',
    );
    expect(refusal({ secret: SECRET, algorithms: ['HS256', 'RS256'] })).toContain('algorithms has "RS256", which a shared secret cannot verify');
    expect(refusal({ jwksUrl: 'http://127.0.0.1:1/jwks.json', algorithms: ['HS256'] })).toBe(
      'createJwtAuthenticator: algorithms has "HS256", which a JSON Web Key Set cannot verify (it publishes public keys); use an asymmetric algorithm such as RS256 or ES256, or leave algorithms out.',
    );
    expect(() => createJwtAuthenticator({ secret: SECRET, algorithms: ['HS512'] })).not.toThrow();
  });
});

describe('http - caller identity from a JSON Web Key Set', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let jwks: Server;
  let url: string;
  let sign: (claims: JWTPayload) => Promise<string>;
  let signWithStranger: (claims: JWTPayload) => Promise<string>;
  const jwksRequests: string[] = [];

  beforeAll(async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const stranger = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'key-1', alg: 'RS256', use: 'sig' };
    jwks = createServer((request, response) => {
      jwksRequests.push(request.url ?? '');
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`;
    const signer = (key: Parameters<SignJWT['sign']>[0], kid: string) => (claims: JWTPayload) =>
      new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid }).setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(key);
    sign = signer(privateKey, 'key-1');
    signWithStranger = signer(stranger.privateKey, 'key-1');
    kernel = createKernel({ modules: [accountModule], principal: Principal, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      metrics: false,
      docsPath: false,
      challenge: 'Bearer realm="shop"',
      authenticate: createJwtAuthenticator({ jwksUrl, issuer: ISSUER, audience: AUDIENCE }),
    });
    url = await gateway.listen();
  });
  afterAll(async () => {
    await gateway?.close();
    await new Promise((resolve) => jwks?.close(resolve));
  });

  it('http - a token signed with the key the JWKS publishes is verified (the key set fetched from its URL); one signed with another key is 401', async () => {
    expect(await post(url, '/account/setPrice', { cents: 5 }, await sign({ sub: 'ada', roles: ['admin'] }))).toMatchObject({ status: 200, body: { by: 'ada' } });
    expect(jwksRequests).toEqual(['/.well-known/jwks.json']);
    expect(await post(url, '/account/whoami', {}, await signWithStranger({ sub: 'eve', roles: ['admin'] }))).toMatchObject({
      status: 401,
      body: { code: 'UNAUTHENTICATED', detail: 'The bearer token was refused: its signature does not verify. Authenticate again.' },
      challenge: 'Bearer realm="shop", error="invalid_token"',
    });
  });

  it('http - an HMAC token is refused by a JWKS authenticator (no algorithm confusion)', async () => {
    const refused = await post(url, '/account/whoami', {}, await hmacToken({ sub: 'eve', roles: ['admin'] }));
    expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED', detail: 'The bearer token was refused: its algorithm is not accepted. Authenticate again.' } });
  });

  it('http - a JWKS that cannot be reached makes a token unverifiable for now: 503 UNAVAILABLE, not 401', async () => {
    const unreachable = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      metrics: false,
      docsPath: false,
      stopKernelOnClose: false,
      authenticate: createJwtAuthenticator({ jwksUrl: 'http://127.0.0.1:1/jwks.json', issuer: ISSUER, audience: AUDIENCE }),
    });
    try {
      const answer = await post(await unreachable.listen(), '/account/whoami', {}, await sign({ sub: 'ada', roles: [] }));
      expect(answer).toMatchObject({ status: 503, body: { code: 'UNAVAILABLE' }, challenge: null });
    } finally {
      await unreachable.close();
    }
  });
});
