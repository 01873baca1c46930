/**
 * What the gateway says about the requests its authenticate hook refuses, over real HTTP: each
 * 401 logged at debug with its reason and correlation id (never the token); a key set that cannot
 * be fetched logged once per 10 s with how many were left out, its URL and the cause; and the
 * token's `iat`: one in the future refused, and one older than `maxTokenAgeSeconds` when given.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, type JWTPayload } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { KeelError, KeelErrorCode, createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel } from 'keel';
import { createHttpGateway, createJwtAuthenticator, type Authenticate, type HttpGateway } from 'keel/http';
import { LogFormat, createLogger } from 'keel/transport';
import { refusedPorts } from './support/refused-ports.js';

const Principal = z.object({ sub: z.string().min(1), roles: z.array(z.string()).default([]) });

const account = defineContract({
  name: 'account',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ sub: z.string().nullable() }), idempotent: true }),
    settings: operation({ input: z.object({}), output: z.object({ owner: z.string() }), auth: 'required' }),
    // Checks its principal itself, declaring no auth.
    profile: operation({ input: z.object({}), output: z.object({ owner: z.string() }), idempotent: true }),
  },
});

const accountModule = defineModule({
  contract: account,
  create: () => ({
    handlers: {
      whoami: (_input, context) => ({ sub: context.principal?.sub ?? null }),
      settings: (_input, context) => ({ owner: context.principal?.sub ?? '' }),
      profile: (_input, context) => {
        if (context.principal === undefined) throw new KeelError(KeelErrorCode.UNAUTHENTICATED, 'Sign in to see your profile.');
        return { owner: context.principal.sub };
      },
    },
  }),
});

const SECRET = 'a shared secret of more than thirty-two bytes, for tests only';
const ISSUER = 'https://login.test/';
const AUDIENCE = 'shop-api';
const now = (): number => Math.floor(Date.now() / 1000);

/** A token signed with `secret`; each claim given replaces the usual one (`null` leaves it out). */
function token(claims: { iss?: string; aud?: string; iat?: number | null; exp?: number | null; secret?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ sub: 'ada' } satisfies JWTPayload)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(claims.iss ?? ISSUER)
    .setAudience(claims.aud ?? AUDIENCE);
  if (claims.iat !== null) jwt.setIssuedAt(claims.iat ?? now());
  if (claims.exp !== null) jwt.setExpirationTime(claims.exp ?? now() + 300);
  return jwt.sign(new TextEncoder().encode(claims.secret ?? SECRET));
}

/** A JWT of RS256's form whose signature is never checked (its key set cannot be fetched). */
const rs256Shaped = (): string =>
  [{ alg: 'RS256', kid: 'key-1' }, { sub: 'ada', exp: now() + 300 }].map((part) => Buffer.from(JSON.stringify(part)).toString('base64url')).join('.') + '.c2lnbmF0dXJl';

/** POSTs `{}` to `path` with each of `authorization` as its own header line, and `correlationId`. */
function post(url: string, path: string, authorization: readonly string[], correlationId = 'c-none'): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const sent = request(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-correlation-id': correlationId } }, (answer) => {
      let text = '';
      answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
      answer.on('end', () => resolve({ status: answer.statusCode ?? 0, body: JSON.parse(text) }));
    });
    if (authorization.length > 0) sent.setHeader('authorization', [...authorization]);
    sent.on('error', reject);
    sent.end('{}');
  });
}

describe('http - authenticate refusals', () => {
  let kernel: Kernel;
  const gateways: HttpGateway[] = [];
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger({ format: LogFormat.JSON, level: 'debug', destination: { write: (line) => lines.push(JSON.parse(line) as Record<string, unknown>) } });

  /** A gateway answering on a free port with `authenticate`, logging into `lines`. */
  const start = async (authenticate: Authenticate): Promise<string> => {
    const gateway = await createHttpGateway({ kernel, port: 0, logger, metrics: false, docsPath: false, stopKernelOnClose: false, authenticate });
    gateways.push(gateway);
    return gateway.listen();
  };

  beforeAll(async () => {
    kernel = createKernel({ modules: [accountModule], principal: Principal, logger: silentLogger });
    await kernel.start();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
  afterAll(async () => {
    for (const gateway of gateways) await gateway.close();
    await kernel?.stop();
  });

  it('http - each 401 is logged at debug with its reason, the correlation id and the route, never the token', async () => {
    // No 401 was logged at any level: an operator could not tell why clients were refused.
    const url = await start(createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE }));
    const good = await token();
    const cases: Record<string, { path?: string; authorization: string[]; reason: string; detail: RegExp }> = {
      expired: { authorization: [`Bearer ${await token({ exp: now() - 60 })}`], reason: 'expired', detail: /has expired/ },
      signature: { authorization: [`Bearer ${await token({ secret: 'another secret of more than thirty-two bytes, for tests' })}`], reason: 'bad-signature', detail: /signature/ },
      audience: { authorization: [`Bearer ${await token({ aud: 'another-api' })}`], reason: 'claim-refused', detail: /"aud" claim/ },
      issuer: { authorization: [`Bearer ${await token({ iss: 'https://elsewhere.test/' })}`], reason: 'claim-refused', detail: /"iss" claim/ },
      notBearer: { authorization: [`Basic ${good}`], reason: 'not-bearer', detail: /not "Bearer <token>"/ },
      twoHeaders: { authorization: [`Bearer ${good}`, `Bearer ${good}`], reason: 'several-authorization-headers', detail: /2 Authorization headers/ },
      missing: { path: '/account/settings', authorization: [], reason: 'no-credentials', detail: /needs a caller identity/ },
    };
    for (const [name, { path, authorization, reason, detail }] of Object.entries(cases)) {
      const correlationId = `c-refused-${name}`;
      expect((await post(url, path ?? '/account/whoami', authorization, correlationId)).status, name).toBe(401);
      const logged = lines.filter((line) => line['correlation_id'] === correlationId);
      expect(logged, name).toEqual([
        expect.objectContaining({ level: 20, msg: 'refused a request: not authenticated (401)', code: 'UNAUTHENTICATED', route: path ?? '/account/whoami', detail: expect.stringMatching(detail) }),
      ]);
      expect(logged[0]?.['reason'], name).toBe(reason);
      for (const header of authorization) expect(JSON.stringify(logged), name).not.toContain(header.split(' ')[1]);
    }
    // A token that holds is served, and not logged as refused.
    expect(await post(url, '/account/whoami', [`Bearer ${good}`], 'c-served')).toMatchObject({ status: 200, body: { sub: 'ada' } });
    expect(lines.filter((line) => line['correlation_id'] === 'c-served')).toEqual([]);
  });

  it('http - a key set that cannot be fetched is logged once per 10 s with how many were left out, naming its URL and the cause', async () => {
    // One error line per request: a burst of clients while the identity provider was down flooded the logs.
    // Not port 1, which fetch refuses itself ("bad port") before any connection.
    const port = (await refusedPorts(2)).find((candidate) => candidate !== 1);
    const jwksUrl = `http://127.0.0.1:${port}/.well-known/jwks.json`;
    const url = await start(createJwtAuthenticator({ jwksUrl, issuer: ISSUER, audience: AUDIENCE }));
    // Only Date is faked: the throttle's interval passes without a sleep, and sockets and timers stay real.
    vi.useFakeTimers({ toFake: ['Date'] });
    // The key set is never fetched, so the signature is never checked: an RS256 token's form suffices.
    const unverifiable = rs256Shaped();
    const failed = (): Record<string, unknown>[] => lines.filter((line) => line['reason'] === 'jwks-unreachable');
    for (let index = 0; index < 5; index += 1) {
      expect(await post(url, '/account/whoami', [`Bearer ${unverifiable}`], `c-jwks-${index}`)).toMatchObject({ status: 503, body: { code: 'UNAVAILABLE' } });
    }
    expect(failed()).toEqual([expect.objectContaining({ level: 50, suppressed: 0, jwksUrl, correlation_id: 'c-jwks-0', route: '/account/whoami', code: 'UNAVAILABLE' })]);
    const [first] = failed();
    expect(first?.['msg']).toContain(`could not fetch the JSON Web Key Set at ${jwksUrl}`);
    expect(first?.['msg']).toContain('ECONNREFUSED');
    expect(first?.['msg']).toContain('Check that this process reaches that URL');
    expect(lines.filter((line) => line['msg'] === 'request failed')).toEqual([]);

    vi.setSystemTime(Date.now() + 10_001);
    expect((await post(url, '/account/whoami', [`Bearer ${unverifiable}`], 'c-jwks-later')).status).toBe(503);
    expect(failed()).toHaveLength(2);
    expect(failed()[1]).toMatchObject({ suppressed: 4, correlation_id: 'c-jwks-later' });
  });

  it('http - a key set that answers an error (404) is 503 UNAVAILABLE and logged as unreachable, not a 401 blaming the token', async () => {
    const jwks: Server = createServer((_request, response) => response.writeHead(404).end('not here'));
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    try {
      const jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
      const url = await start(createJwtAuthenticator({ jwksUrl }));
      const answer = await post(url, '/account/whoami', [`Bearer ${rs256Shaped()}`], 'c-jwks-404');
      expect(answer).toMatchObject({ status: 503, body: { code: 'UNAVAILABLE' } });
      expect(lines.find((line) => line['correlation_id'] === 'c-jwks-404')).toMatchObject({ reason: 'jwks-unreachable', jwksUrl, problem: expect.stringContaining('200 OK') });
    } finally {
      await new Promise((resolve) => jwks.close(resolve));
    }
  });

  it("http - a 401 of a hook of one's own is logged with the reason refused-by-hook, and one of the principal schema with refused-by-call", async () => {
    // Only createJwtAuthenticator's refusals had a reason: a hook of one's own's had only the detail.
    const url = await start((request) => {
      const key = request.headers['x-api-key'];
      if (key === undefined) return undefined;
      if (key === 'bad-shape') return { sub: '' } as never;
      throw new KeelError(KeelErrorCode.UNAUTHENTICATED, 'Unknown API key.');
    });
    const send = (key: string, id: string): Promise<{ status: number; body: any }> =>
      new Promise((resolve, reject) => {
        const sent = request(`${url}/account/whoami`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-correlation-id': id, 'x-api-key': key } }, (answer) => {
          let text = '';
          answer.on('data', (chunk: Buffer) => (text += chunk.toString()));
          answer.on('end', () => resolve({ status: answer.statusCode ?? 0, body: JSON.parse(text) }));
        });
        sent.on('error', reject);
        sent.end('{}');
      });
    expect(await send('unknown', 'c-hook-unknown')).toMatchObject({ status: 401, body: { detail: 'Unknown API key.' } });
    expect(await send('bad-shape', 'c-hook-shape')).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' } });
    expect(lines.find((line) => line['correlation_id'] === 'c-hook-unknown')).toMatchObject({ level: 20, reason: 'refused-by-hook', detail: 'Unknown API key.' });
    expect(lines.find((line) => line['correlation_id'] === 'c-hook-shape')).toMatchObject({ level: 20, reason: 'refused-by-call', detail: expect.stringContaining("principal schema") });
  });

  it('http - a 401 of a module refusing a request without credentials (an operation checking its principal itself) is logged with the reason no-credentials', async () => {
    // The gateway gave reasons to the refusals of the principal, not to a module's refusal of none.
    const url = await start(() => undefined);
    expect(await post(url, '/account/profile', [], 'c-module-anonymous')).toMatchObject({ status: 401, body: { detail: 'Sign in to see your profile.' } });
    expect(lines.find((line) => line['correlation_id'] === 'c-module-anonymous')).toMatchObject({
      level: 20,
      msg: 'refused a request: not authenticated (401)',
      reason: 'no-credentials',
      detail: 'Sign in to see your profile.',
    });
  });

  it("http - a key set URL's query (an API key) is never logged nor answered, whether its server refuses, answers 404 or times out", async () => {
    // The URL was logged verbatim with each unreachable key set's line, API key and all.
    const apiKey = 'api-key-never-logged-7f3a';
    const jwks: Server = createServer((request, response) => {
      if (!request.url?.startsWith('/slow')) response.writeHead(404).end('not here');
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    try {
      const base = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}`;
      const refused = (await refusedPorts(2)).find((candidate) => candidate !== 1);
      const cases = {
        refused: [`http://127.0.0.1:${refused}/jwks.json?api_key=${apiKey}`, 'ECONNREFUSED'],
        notFound: [`${base}/jwks.json?api_key=${apiKey}#${apiKey}`, 'ERR_JOSE_GENERIC'],
        timeout: [`${base}/slow/jwks.json?api_key=${apiKey}`, 'ERR_JWKS_TIMEOUT'],
      } as const;
      for (const [name, [jwksUrl, failure]] of Object.entries(cases)) {
        const url = await start(createJwtAuthenticator({ jwksUrl, jwksTimeoutMs: 300 }));
        const answer = await post(url, '/account/whoami', [`Bearer ${rs256Shaped()}`], `c-query-${name}`);
        expect(answer, name).toMatchObject({ status: 503, body: { code: 'UNAVAILABLE' } });
        expect(JSON.stringify(answer), name).not.toContain(apiKey);
        const shown = `${jwksUrl.slice(0, jwksUrl.indexOf('?'))}?…`;
        const line = lines.find((logged) => logged['correlation_id'] === `c-query-${name}`);
        expect(line, name).toMatchObject({ reason: 'jwks-unreachable', jwksUrl: shown, failure });
        expect(line?.['msg'], name).toContain(`could not fetch the JSON Web Key Set at ${shown} (`);
      }
      expect(JSON.stringify(lines)).not.toContain(apiKey);
      // Nor does the refusal of a URL of another scheme repeat it.
      expect(() => createJwtAuthenticator({ jwksUrl: `ftp://login.test/jwks.json?api_key=${apiKey}` })).toThrow(
        'createJwtAuthenticator: jwksUrl must be an http(s) URL of a JSON Web Key Set, got "ftp://login.test/jwks.json?…".',
      );
      // Nor one that does not parse (a port past 65535).
      expect(() => createJwtAuthenticator({ jwksUrl: `https://login.test:99999/jwks.json?api_key=${apiKey}` })).toThrow(
        'createJwtAuthenticator: jwksUrl must be an http(s) URL of a JSON Web Key Set, got "https://login.test:99999/jwks.json?…".',
      );
    } finally {
      jwks.closeAllConnections();
      await new Promise((resolve) => jwks.close(resolve));
    }
  });

  it('http - an unreachable key set is throttled for each cause: a new cause (404, then a timeout, then an invalid key set) is logged within the 10 s', async () => {
    // Keyed by the message, which is the same for every cause: the first cause's line hid the others for 10 s.
    let answer: 'not-found' | 'hang' | 'invalid' = 'not-found';
    const jwks: Server = createServer((_request, response) => {
      if (answer === 'not-found') response.writeHead(404).end('not here');
      else if (answer === 'invalid') response.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":"none"}');
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    try {
      const url = await start(createJwtAuthenticator({ jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`, jwksTimeoutMs: 300 }));
      // Only Date is faked and never moved: every request falls within one throttle interval.
      vi.useFakeTimers({ toFake: ['Date'] });
      const send = async (id: string): Promise<void> => {
        expect((await post(url, '/account/whoami', [`Bearer ${rs256Shaped()}`], id)).status, id).toBe(503);
      };
      const logged = (): unknown[] => lines.filter((line) => String(line['correlation_id']).startsWith('c-cause-')).map((line) => [line['correlation_id'], line['failure']]);
      await send('c-cause-404-a');
      await send('c-cause-404-b');
      answer = 'hang';
      await send('c-cause-timeout');
      answer = 'not-found';
      await send('c-cause-404-c');
      answer = 'invalid';
      await send('c-cause-invalid');
      expect(logged()).toEqual([
        ['c-cause-404-a', 'ERR_JOSE_GENERIC'],
        ['c-cause-timeout', 'ERR_JWKS_TIMEOUT'],
        ['c-cause-invalid', 'ERR_JWKS_INVALID'],
      ]);
    } finally {
      jwks.closeAllConnections();
      await new Promise((resolve) => jwks.close(resolve));
    }
  });

  it("http - a principal mapper that throws is a 500 INTERNAL not repeating what it threw, logged at error naming the mapper once per 10 s; one throwing UNAUTHENTICATED is a 401 with the reason principal-refused", async () => {
    // The line said only "the authenticate hook failed", and was throttled by the thrown message, which may quote the claims.
    const thrown = 'mapper-message-not-for-clients';
    let mode: 'sync' | 'async' | 'refuse' = 'sync';
    const principal = (claims: JWTPayload): unknown => {
      if (mode === 'refuse') throw new KeelError(KeelErrorCode.UNAUTHENTICATED, 'This account may not use this API.');
      if (mode === 'async') return Promise.reject(new TypeError(`${thrown} (async) for ${String(claims.sub)}`));
      throw new TypeError(`${thrown} for ${String(claims.sub)}`);
    };
    const url = await start(createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, principal }));
    vi.useFakeTimers({ toFake: ['Date'] });
    const good = await token();
    const failing = async (id: string): Promise<void> => {
      const answer = await post(url, '/account/whoami', [`Bearer ${good}`], id);
      expect(answer, id).toMatchObject({ status: 500, body: { code: 'INTERNAL' } });
      expect(JSON.stringify(answer), id).not.toContain(thrown);
    };
    await failing('c-mapper-sync');
    await failing('c-mapper-sync-again');
    mode = 'async';
    await failing('c-mapper-async');
    vi.setSystemTime(Date.now() + 10_001);
    await failing('c-mapper-async-later');
    const failed = lines.filter((line) => String(line['correlation_id']).startsWith('c-mapper-') && line['level'] === 50);
    expect(failed).toEqual([
      expect.objectContaining({ correlation_id: 'c-mapper-sync', reason: 'principal-mapper-threw', code: 'INTERNAL', suppressed: 0 }),
      expect.objectContaining({ correlation_id: 'c-mapper-async-later', reason: 'principal-mapper-threw', code: 'INTERNAL', suppressed: 2 }),
    ]);
    expect(failed[0]?.['msg']).toContain("createJwtAuthenticator's principal option threw");
    expect((failed[0]?.['err'] as { message?: string }).message).toBe(`${thrown} for ada`);

    mode = 'refuse';
    const refused = await post(url, '/account/whoami', [`Bearer ${good}`], 'c-mapper-refuse');
    expect(refused).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED', detail: 'This account may not use this API.' } });
    expect(lines.find((line) => line['correlation_id'] === 'c-mapper-refuse')).toMatchObject({ level: 20, reason: 'principal-refused' });
  });

  it('http - a token issued in the future is refused; maxTokenAgeSeconds refuses one issued longer ago, or without iat, whatever its exp', async () => {
    // jose checks iat only with maxTokenAge: a token issued an hour ahead, or living until an exp of 1e300, was taken.
    const byDefault = await start(createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE }));
    const future = await post(byDefault, '/account/whoami', [`Bearer ${await token({ iat: now() + 3_600 })}`]);
    expect(future).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED', detail: 'The bearer token was refused: its "iat" claim (issued at) is in the future. Authenticate again.' } });
    // Within the clock tolerance (5 s), an issuer's clock a little ahead is no refusal.
    expect(await post(byDefault, '/account/whoami', [`Bearer ${await token({ iat: now() + 3 })}`])).toMatchObject({ status: 200 });
    // No limit on age by default: a token's own exp decides, so an existing issuer's tokens keep working.
    const ancient = await token({ iat: now() - 7_200, exp: 1e300 });
    expect(await post(byDefault, '/account/whoami', [`Bearer ${ancient}`])).toMatchObject({ status: 200, body: { sub: 'ada' } });

    const bounded = await start(createJwtAuthenticator({ secret: SECRET, issuer: ISSUER, audience: AUDIENCE, maxTokenAgeSeconds: 3_600 }));
    expect(await post(bounded, '/account/whoami', [`Bearer ${ancient}`])).toMatchObject({
      status: 401,
      body: { detail: 'The bearer token was refused: it was issued more than 3600 seconds ago, the oldest this API accepts. Authenticate again.' },
    });
    expect(await post(bounded, '/account/whoami', [`Bearer ${await token({ iat: null })}`])).toMatchObject({
      status: 401,
      body: { detail: 'The bearer token was refused: its "iat" claim is missing. Authenticate again.' },
    });
    expect(await post(bounded, '/account/whoami', [`Bearer ${await token({ iat: now() + 3_600 })}`])).toMatchObject({ status: 401, body: { detail: future.body.detail } });
    expect(await post(bounded, '/account/whoami', [`Bearer ${await token({ iat: now() - 60 })}`])).toMatchObject({ status: 200, body: { sub: 'ada' } });

    const refusal = (maxTokenAgeSeconds: unknown): string => {
      try {
        createJwtAuthenticator({ secret: SECRET, maxTokenAgeSeconds: maxTokenAgeSeconds as number });
      } catch (error) {
        expect(isKeelError(error, 'INVALID_CONFIG')).toBe(true);
        return (error as Error).message;
      }
      throw new Error(`accepted ${String(maxTokenAgeSeconds)}`);
    };
    expect(refusal(0)).toBe('createJwtAuthenticator: maxTokenAgeSeconds must be a whole number of seconds above 0, such as 3600 (an hour), got 0.');
    for (const wrong of [-60, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '1h']) expect(refusal(wrong)).toContain('maxTokenAgeSeconds must be a whole number of seconds above 0');
  });
});
