import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  defineContract,
  defineModule,
  isKeelError,
  operation,
  silentLogger,
  type KeelError,
  type Logger,
  type Transport,
} from 'keel';
import { createClient } from 'keel/transport';
import { DEFAULT_NATS_TRANSPORT_OPTIONS, createNatsTransport, natsOptionsFromEnv, type NatsTransportOptions } from 'keel/nats';
import { connect, headers } from '@nats-io/transport-node';
import { connectForStatus } from '../cli/tooling/status.js';
import { makeCertificates } from './support/certificates.js';
import { createOperatorAuth, startNatsServer, type NatsServer } from './support/nats-server.js';
import { refusedPorts } from './support/refused-ports.js';

function configError(run: () => unknown): KeelError {
  try {
    run();
  } catch (error) {
    expect(isKeelError(error, 'INVALID_CONFIG'), String(error)).toBe(true);
    return error as KeelError;
  }
  throw new Error('expected INVALID_CONFIG');
}

async function rejection(promise: Promise<unknown>): Promise<KeelError> {
  try {
    await promise;
  } catch (error) {
    return error as KeelError;
  }
  throw new Error('expected a rejection');
}

describe('nats - options from the environment', () => {
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-options-'));
  const file = join(directory, 'file.pem');
  writeFileSync(file, 'not really a certificate');
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  it('nats - reads the reply inbox prefix, and refuses one with a wildcard naming the variable', () => {
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_INBOX_PREFIX: '_INBOX_keel.storefront' })).toEqual({
      servers: ['nats://a:4222'],
      inboxPrefix: '_INBOX_keel.storefront',
    });
    expect(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_INBOX_PREFIX: '_INBOX.>' })).toThrow(
      'KEEL_NATS_INBOX_PREFIX="_INBOX.>" is not a reply subject prefix',
    );
  });

  it('nats - means "no NATS" when KEEL_NATS_URL is not set', () => {
    expect(natsOptionsFromEnv({})).toBeUndefined();
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: '  ' })).toBeUndefined();
  });

  it('nats - reads several servers, the prefix and the credentials', () => {
    expect(
      natsOptionsFromEnv({
        KEEL_NATS_URL: 'nats://a:4222, nats://b:4223,c:4224',
        KEEL_NATS_PREFIX: 'acme.shop',
        KEEL_NATS_USER: 'shop',
        KEEL_NATS_PASSWORD: 's3cret',
      }),
    ).toEqual({ servers: ['nats://a:4222', 'nats://b:4223', 'c:4224'], prefix: 'acme.shop', user: 'shop', password: 's3cret' });
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_TOKEN: 't0ken' })).toEqual({
      servers: ['nats://a:4222'],
      token: 't0ken',
    });
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'tls://a:4222', KEEL_NATS_CREDS: file, KEEL_NATS_TLS_CA: file })).toEqual({
      servers: ['tls://a:4222'],
      credentialsFile: file,
      tls: { caFile: file },
    });
    expect(
      natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_TLS_CERT: file, KEEL_NATS_TLS_KEY: file })?.tls,
    ).toEqual({ certFile: file, keyFile: file });
  });

  it('nats - refuses bad settings with INVALID_CONFIG naming the variable', () => {
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'http://a:4222' })).message).toContain('KEEL_NATS_URL');
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222/path' })).message).toContain('KEEL_NATS_URL');
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: ',' })).message).toContain('KEEL_NATS_URL');
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_PREFIX: 'a..b' })).message).toContain(
      'KEEL_NATS_PREFIX',
    );
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_PREFIX: 'keel.>' })).message).toContain(
      'KEEL_NATS_PREFIX',
    );
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_USER: 'u' })).message).toContain(
      'KEEL_NATS_PASSWORD',
    );
    expect(
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_TOKEN: 't', KEEL_NATS_USER: 'u', KEEL_NATS_PASSWORD: 'p' }))
        .message,
    ).toContain('KEEL_NATS_TOKEN');
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_CREDS: '/nope/user.creds' })).message).toContain(
      'KEEL_NATS_CREDS',
    );
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_TLS_CERT: file })).message).toContain(
      'KEEL_NATS_TLS_KEY',
    );
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_TOKEN: 't' })).message).toContain('KEEL_NATS_URL');
  });

  it('nats - reads the stream replicas, and refuses a count JetStream cannot keep naming the variable', () => {
    expect(natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_STREAM_REPLICAS: '3' })).toEqual({ servers: ['nats://a:4222'], streamReplicas: 3 });
    for (const value of ['0', '6', 'three', '1.5']) {
      expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a:4222', KEEL_NATS_STREAM_REPLICAS: value })).message).toBe(
        `KEEL_NATS_STREAM_REPLICAS="${value}" is not a number of stream replicas; use a whole number from 1 to 5 (3 in a three-node cluster), at most the number of servers in the NATS cluster.`,
      );
    }
    expect(configError(() => natsOptionsFromEnv({ KEEL_NATS_STREAM_REPLICAS: '3' })).message).toContain('KEEL_NATS_URL');
  });

  it('nats - never puts a secret in an error message', () => {
    const messages = [
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'http://user:hunter2@a:4222' })).message,
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_TOKEN: 'hunter2', KEEL_NATS_CREDS: file })).message,
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_PASSWORD: 'hunter2' })).message,
    ];
    for (const message of messages) expect(message).not.toContain('hunter2');
  });
});

describe('nats - options checked once', () => {
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-checked-'));
  const file = join(directory, 'file.pem');
  writeFileSync(file, 'not really a certificate');
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  /** The INVALID_CONFIG message createNatsTransport refuses `options` with, before connecting. */
  async function refusal(options: Record<string, unknown>): Promise<string> {
    const error = await rejection(createNatsTransport({ servers: 'nats://127.0.0.1:1', logger: silentLogger, ...options } as NatsTransportOptions));
    expect(isKeelError(error, 'INVALID_CONFIG'), String(error)).toBe(true);
    return error.message;
  }

  it('nats - refuses an unknown option (a misspelt one) and names what it takes', async () => {
    const message = await refusal({ drainTimeout: 5_000 });
    expect(message).toMatch(/^createNatsTransport: unknown option "drainTimeout" \(did you mean drainTimeoutMs\? it takes servers, prefix, name, .*drainTimeoutMs, logger\)\.$/);
  });

  it('nats - refuses an option of the wrong type, naming the field, what it takes and what it got', async () => {
    expect(await refusal({ defaultTimeoutMs: '5000' })).toBe(
      'createNatsTransport: defaultTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got "5000".',
    );
    const message = await refusal({ servers: 4222, name: 7, tls: 'yes', logger: {} });
    expect(message).toContain('servers must be a NATS URL such as nats://127.0.0.1:4222, several separated by commas, or a list of them, got 4222');
    expect(message).toContain('name must be a connection name, got 7');
    expect(message).toContain('tls must be an object of caFile, certFile and keyFile, each optional (an empty object requires TLS), got "yes"');
    expect(message).toContain('logger must be a Logger (debug, info, warn, error, child)');
    expect(await refusal({ inboxPrefix: '_INBOX.*' })).toContain('inboxPrefix must be subject tokens without wildcards');
    expect(await refusal({ prefix: 'acme', inboxPrefix: 'acme.inbox' })).toBe(
      'createNatsTransport: inboxPrefix "acme.inbox" is inside keel\'s subject space (prefix "acme"), where no reply is ever sent; use one outside it, such as "_INBOX.acme".',
    );
    expect(await refusal({ inboxPrefix: 'keel' })).toContain('inboxPrefix "keel" is inside keel\'s subject space');
    expect(await refusal({ prefix: '_INBOX' })).toBe(
      'createNatsTransport: prefix "_INBOX" holds the nats client\'s default reply inboxes ("_INBOX.…"), where keel sends no reply; give another prefix, or an inboxPrefix outside it, such as "_INBOX__INBOX".',
    );
    expect(await refusal({ tls: { caFile: file, ca: file } })).toContain('tls must be an object of caFile, certFile and keyFile');
    expect(await refusal({ tls: { certFile: 42 } })).toContain('tls.certFile must be the path of a PEM file, got 42');
  });

  it('nats - refuses an option out of range, naming every field and the value', async () => {
    const message = await refusal({
      connectTimeoutMs: 0,
      reconnectTimeWaitMs: Number.NaN,
      drainTimeoutMs: 2 ** 31,
      maxAckPending: 1.5,
      deadLetterMaxAgeMs: -1,
      deadLetterMaxMessages: 0,
      deadLetterMaxBytes: 1.5,
      eventMaxAgeMs: Number.POSITIVE_INFINITY,
      prefix: 'keel.>',
    });
    expect(message).toContain('connectTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got 0');
    expect(message).toContain('reconnectTimeWaitMs must be a number of milliseconds above 0 and at most 2147483647, got NaN');
    expect(message).toContain('drainTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got 2147483648');
    expect(message).toContain('maxAckPending must be a whole number of events, 1 or more, got 1.5');
    expect(message).toContain('deadLetterMaxAgeMs must be a number of milliseconds above 0, got -1');
    expect(message).toContain('deadLetterMaxMessages must be a whole number of dead letters, 1 or more, got 0');
    expect(message).toContain('deadLetterMaxBytes must be a whole number of bytes, 1 or more, got 1.5');
    expect(message).toContain('eventMaxAgeMs must be a number of milliseconds above 0, got Infinity');
    expect(message).toContain('prefix must be a subject prefix: letters, digits, "-" and "_" in dot-separated tokens');
    expect(await refusal({ servers: ' , ' })).toContain('servers must be a NATS URL');
    expect(await refusal({ servers: [] })).toContain('servers must be a NATS URL');
  });

  it('nats - refuses stream replicas, per-module stream limits and publish retries out of range, naming the field', async () => {
    const message = await refusal({ streamReplicas: 6, publishAttempts: 0, publishRetryDelayMs: -1 });
    expect(message).toContain('streamReplicas must be a whole number of copies from 1 to 5, got 6');
    expect(message).toContain('publishAttempts must be a whole number of attempts, 1 or more, got 0');
    expect(message).toContain('publishRetryDelayMs must be a number of milliseconds above 0 and at most 2147483647, got -1');
    const limits = await refusal({ streams: { orders: { replicas: 7, maxAgeMs: 0, maxMessages: 0, maxBytes: 'x' } } });
    expect(limits).toContain('streams.orders.replicas must be a whole number of copies from 1 to 5, got 7');
    expect(limits).toContain('streams.orders.maxAgeMs must be a number of milliseconds above 0, got 0');
    expect(limits).toContain('streams.orders.maxMessages must be a whole number of events, 1 or more, got 0');
    expect(limits).toContain('streams.orders.maxBytes must be a whole number of bytes, 1 or more, got "x"');
    expect(await refusal({ streams: { orders: { replicaz: 3 } } })).toContain('streams.orders must be an object of replicas, maxAgeMs, maxMessages, maxBytes');
    expect(await refusal({ streams: { Orders: { replicas: 3 } } })).toContain('streams.Orders is not a module name');
    expect(await refusal({ streams: 'orders' })).toContain('streams must be an object of stream limits by module name');
  });

  it('nats - names a token or password of the wrong type without showing it', async () => {
    const message = await refusal({ user: 'shop', password: 20_250_101 });
    expect(message).toBe('createNatsTransport: password must be a string, got a number (not shown: it is a secret).');
    expect(await refusal({ token: { value: 'hunter2' } })).toBe('createNatsTransport: token must be a string, got an object (not shown: it is a secret).');
  });

  it('nats - names the field in the checks a schema cannot make: URLs, credentials, files, a certificate without its key', async () => {
    const url = await refusal({ servers: 'http://shop:hunter2@127.0.0.1:4222' });
    expect(url).toBe('createNatsTransport: servers "http://***@127.0.0.1:4222" uses http:; keel connects with nats:// or tls:// URLs.');
    expect(await refusal({ servers: 'nats://127.0.0.1:4222/path' })).toContain('servers "nats://127.0.0.1:4222/path" has a path');
    expect(await refusal({ user: 'shop' })).toContain('user and password go together');
    expect(await refusal({ token: 't', credentialsFile: file })).toContain('give either token, user and password, or credentialsFile');
    expect(await refusal({ credentialsFile: join(directory, 'missing.creds') })).toBe(
      `createNatsTransport: credentialsFile "${join(directory, 'missing.creds')}" does not exist or cannot be read.`,
    );
    expect(await refusal({ tls: { certFile: file } })).toContain('tls.certFile and tls.keyFile go together');
    expect(await refusal({ tls: { caFile: join(directory, 'missing.pem') } })).toContain(`tls.caFile "${join(directory, 'missing.pem')}" does not exist`);
  });
});

describe('nats - connecting', () => {
  let tokenServer: NatsServer;
  let userServer: NatsServer;

  beforeAll(async () => {
    tokenServer = await startNatsServer({ token: 'hunter2-token' });
    userServer = await startNatsServer({ user: 'shop', password: 'hunter2-password' });
  });

  afterAll(async () => {
    await tokenServer?.stop();
    await userServer?.stop();
  });

  it('nats - connects with a token or a user and password read from the environment', async () => {
    for (const env of [
      { KEEL_NATS_URL: tokenServer.url, KEEL_NATS_TOKEN: 'hunter2-token' },
      { KEEL_NATS_URL: userServer.url, KEEL_NATS_USER: 'shop', KEEL_NATS_PASSWORD: 'hunter2-password' },
    ]) {
      const options = natsOptionsFromEnv(env);
      const transport = await createNatsTransport({ ...options, logger: silentLogger });
      expect(transport.status()).toMatchObject({ name: 'nats', ready: true });
      expect(JSON.stringify(transport.status())).not.toContain('hunter2');
      await transport.close();
      expect(transport.status().ready).toBe(false);
    }
  });

  it('nats - an option given as undefined takes its default: prefix keel, and a 10 s deadline for a request without one', async () => {
    const everyDefaultUndefined = Object.fromEntries(Object.keys(DEFAULT_NATS_TRANSPORT_OPTIONS).map((key) => [key, undefined]));
    const transport = await createNatsTransport({
      ...everyDefaultUndefined,
      servers: tokenServer.url,
      token: 'hunter2-token',
      credentialsFile: undefined,
      tls: undefined,
      logger: silentLogger,
    });
    const kernel = createKernel({ modules: [clockModule], topology: { transport }, logger: silentLogger });
    const raw = await connect({ servers: tokenServer.url, token: 'hunter2-token' });
    try {
      await kernel.start();
      expect(transport.status().detail).toContain('(prefix keel)');
      const request = headers();
      request.set('Keel-Contract-Version', clock.version);
      const reply = await raw.request('keel.clock.remaining', new TextEncoder().encode('{}'), { headers: request, timeout: 5_000 });
      const { remainingMs } = reply.json<{ remainingMs: number }>();
      expect(remainingMs).toBeGreaterThan(9_000);
      expect(remainingMs).toBeLessThanOrEqual(DEFAULT_NATS_TRANSPORT_OPTIONS.defaultTimeoutMs);
    } finally {
      await raw.close();
      await kernel.stop();
      await transport.close();
    }
  });

  it('nats - fails with UNAVAILABLE, without the secret, when authentication fails', async () => {
    const error = await rejection(createNatsTransport({ servers: tokenServer.url, token: 'wrong-hunter2', logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
    expect(error.message).not.toContain('hunter2');
    const withUrlSecret = await rejection(
      createNatsTransport({ servers: `nats://shop:hunter2-wrong@127.0.0.1:${userServer.port}`, logger: silentLogger }),
    );
    expect(isKeelError(withUrlSecret, 'UNAVAILABLE')).toBe(true);
    expect(withUrlSecret.message).not.toContain('hunter2');
  });

  it('nats - fails with UNAVAILABLE saying authorization failed, without the password, when the password is wrong', async () => {
    const error = await rejection(createNatsTransport({ servers: userServer.url, user: 'shop', password: 'wrong-hunter2', logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
    expect(error.message).toMatch(/authorization violation/i);
    expect(error.message).toContain(`127.0.0.1:${userServer.port}`);
    expect(error.message).not.toContain('hunter2');
  });

  it('nats - connects with credentials written in the server URL, and never shows them', async () => {
    for (const servers of [
      `nats://shop:hunter2-password@127.0.0.1:${userServer.port}`,
      `nats://hunter2-token@127.0.0.1:${tokenServer.port}`,
      `127.0.0.1:${tokenServer.port},nats://hunter2-token@127.0.0.1:${tokenServer.port}`,
    ]) {
      const transport = await createNatsTransport({ servers, logger: silentLogger });
      try {
        expect(transport.status()).toMatchObject({ name: 'nats', ready: true });
        expect(JSON.stringify(transport.status())).not.toContain('hunter2');
      } finally {
        await transport.close();
      }
    }
    const fromEnv = natsOptionsFromEnv({ KEEL_NATS_URL: `nats://shop:hunter2-password@127.0.0.1:${userServer.port}` });
    const transport = await createNatsTransport({ ...fromEnv, logger: silentLogger });
    expect(transport.status().ready).toBe(true);
    await transport.close();
  });

  it('nats - refuses credentials given twice or differently in several URLs, without showing them', async () => {
    const twice = await rejection(
      createNatsTransport({ servers: `nats://shop:hunter2@127.0.0.1:${userServer.port}`, user: 'shop', password: 'hunter2', logger: silentLogger }),
    );
    expect(isKeelError(twice, 'INVALID_CONFIG')).toBe(true);
    expect(twice.message).toContain('both in a server URL and as options');
    const differ = await rejection(createNatsTransport({ servers: ['nats://a:hunter2@127.0.0.1:1', 'nats://b:hunter3@127.0.0.1:2'], logger: silentLogger }));
    expect(isKeelError(differ, 'INVALID_CONFIG')).toBe(true);
    expect(differ.message).toContain('different credentials');
    for (const error of [twice, differ]) expect(error.message).not.toMatch(/hunter/);
  });

  it('nats - connects to a live server of the list when the others refuse connections', async () => {
    const dead = (await refusedPorts(3)).map((port) => `nats://127.0.0.1:${port}`);
    // The client shuffles its server list: with three dead servers and four connections, the
    // live one comes first every time with a chance of 1 in 256.
    for (let attempt = 0; attempt < 4; attempt += 1) {
      const transport = await createNatsTransport({ servers: [...dead, userServer.url], user: 'shop', password: 'hunter2-password', logger: silentLogger });
      try {
        expect(transport.status()).toMatchObject({ ready: true, detail: expect.stringContaining(`127.0.0.1:${userServer.port}`) });
      } finally {
        await transport.close();
      }
    }
  });

  it('nats - fails with UNAVAILABLE naming the servers when nothing listens', async () => {
    const error = await rejection(createNatsTransport({ servers: 'nats://127.0.0.1:1', connectTimeoutMs: 1_000, logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
    expect(error.message).toContain('127.0.0.1:1');
  });

  it('nats - refuses invalid options with INVALID_CONFIG before connecting', async () => {
    expect(isKeelError(await rejection(createNatsTransport({ prefix: 'bad prefix' })), 'INVALID_CONFIG')).toBe(true);
    expect(isKeelError(await rejection(createNatsTransport({ servers: [] })), 'INVALID_CONFIG')).toBe(true);
    expect(isKeelError(await rejection(createNatsTransport({ defaultTimeoutMs: -1 })), 'INVALID_CONFIG')).toBe(true);
    expect(isKeelError(await rejection(createNatsTransport({ user: 'u' })), 'INVALID_CONFIG')).toBe(true);
  });
});

const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: { say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }) },
});
const echoModule = defineModule({ contract: echo, create: () => ({ handlers: { say: ({ text }) => ({ text }) } }) });

const clock = defineContract({
  name: 'clock',
  version: '1.0.0',
  operations: { remaining: operation({ input: z.object({}), output: z.object({ remainingMs: z.number() }) }) },
});
const clockModule = defineModule({
  contract: clock,
  create: () => ({ handlers: { remaining: (_input, context) => ({ remainingMs: context.deadline - Date.now() }) } }),
});

describe('nats - credentials file (operator mode, JWT and nkey seed)', () => {
  const setup = createOperatorAuth();
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-creds-'));
  const userCreds = join(directory, 'user.creds');
  const strangerCreds = join(directory, 'stranger.creds');
  writeFileSync(userCreds, setup.user.text);
  writeFileSync(strangerCreds, setup.stranger.text);
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer({ operator: setup.auth, jetstream: false });
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(directory, { recursive: true, force: true });
  });

  it('nats - connects with KEEL_NATS_CREDS, serves a module and calls it over NATS', async () => {
    const transport = await createNatsTransport({ ...natsOptionsFromEnv({ KEEL_NATS_URL: server.url, KEEL_NATS_CREDS: userCreds }), logger: silentLogger });
    const kernel = createKernel({ modules: [echoModule], topology: { transport }, logger: silentLogger });
    try {
      await kernel.start();
      expect(kernel.ready()).toBe(true);
      expect(await createClient(echo, transport).say({ text: 'signed' })).toEqual({ text: 'signed' });
      expect(JSON.stringify(transport.status())).not.toContain(setup.user.seed);
    } finally {
      await kernel.stop();
      await transport.close();
    }
  });

  it('nats - fails with UNAVAILABLE, without the seed or the JWT, when the account is not trusted', async () => {
    const error = await rejection(createNatsTransport({ servers: server.url, credentialsFile: strangerCreds, logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
    expect(error.message).toMatch(/authorization violation/i);
    expect(error.message).not.toContain(setup.stranger.seed);
    expect(error.message).not.toContain(setup.stranger.jwt);
  });

  it('nats - keel status connects with the same credentials file, and is refused with an untrusted one', async () => {
    const connection = await connectForStatus({ servers: server.url, credentialsFile: userCreds });
    await connection.close();
    await expect(connectForStatus({ servers: server.url, credentialsFile: strangerCreds })).rejects.toThrow(/authorization violation/i);
  });

  // Runs last here: it restarts the server.
  it('nats - reads the credentials file on every connect, so a file rotated on disk is used when it reconnects', async () => {
    const rotating = join(directory, 'rotating.creds');
    writeFileSync(rotating, setup.user.text);
    const { logger, records } = capturingLogger();
    const transport = await createNatsTransport({ servers: server.url, credentialsFile: rotating, reconnectTimeWaitMs: 100, logger });
    try {
      expect(transport.status().ready).toBe(true);
      // A user of an account the server does not trust: only a fresh read of the file sends it.
      writeFileSync(rotating, setup.stranger.text);
      await server.restart();
      await vi.waitFor(() => expect(records.some((record) => /refused this connection's credentials/.test(record))).toBe(true), {
        timeout: 15_000,
        interval: 50,
      });
      expect(transport.status().ready).toBe(false);
      writeFileSync(rotating, setup.user.text);
      await vi.waitFor(() => expect(transport.status().ready).toBe(true), { timeout: 15_000, interval: 50 });
    } finally {
      await transport.close();
    }
  }, 30_000);
});

/** Every record a logger got, as text: message, fields, and errors with their message, stack and cause. */
function capturingLogger(): { logger: Logger; records: string[] } {
  const records: string[] = [];
  const errorText = (_key: string, value: unknown): unknown =>
    value instanceof Error ? { ...value, name: value.name, message: value.message, stack: value.stack, cause: value.cause } : value;
  const make = (bindings: Record<string, unknown>): Logger => {
    const log = (level: string) => (record: Record<string, unknown>, message: string) => {
      records.push(`${level} ${message} ${JSON.stringify({ ...bindings, ...record }, errorText)}`);
    };
    return { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error'), child: (more) => make({ ...bindings, ...more }) };
  };
  return { logger: make({}), records };
}

describe('nats - secrets never reach the logs', () => {
  const TOKEN = 'hunter2-log-token';
  const PASSWORD = 'hunter2-log-password';
  const ROTATED = 'hunter2-rotated-token';
  const setup = createOperatorAuth();
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-log-'));
  const userCreds = join(directory, 'user.creds');
  writeFileSync(userCreds, setup.user.text);
  const servers: NatsServer[] = [];
  afterAll(async () => {
    for (const server of servers) await server.stop();
    rmSync(directory, { recursive: true, force: true });
  });

  it('nats - logs no token, password or seed across connecting, failed authentication and reconnecting', async () => {
    const { logger, records } = capturingLogger();
    const tokenServer = await startNatsServer({ token: TOKEN, jetstream: false });
    const userServer = await startNatsServer({ user: 'shop', password: PASSWORD, jetstream: false });
    const credsServer = await startNatsServer({ operator: setup.auth, jetstream: false });
    servers.push(tokenServer, userServer, credsServer);
    const transports: Transport[] = [];
    const open = async (options: Parameters<typeof createNatsTransport>[0]): Promise<Transport> => {
      const transport = await createNatsTransport({ ...options, logger, reconnectTimeWaitMs: 100 });
      transports.push(transport);
      return transport;
    };
    try {
      const byToken = await open({ servers: tokenServer.url, token: TOKEN });
      const byPassword = await open({ servers: userServer.url, user: 'shop', password: PASSWORD });
      await open({ servers: credsServer.url, credentialsFile: userCreds });

      // Failed authentication, at connect time.
      expect(await rejection(open({ servers: tokenServer.url, token: `wrong-${TOKEN}` }))).toBeDefined();
      expect(await rejection(open({ servers: userServer.url, user: 'shop', password: `wrong-${PASSWORD}` }))).toBeDefined();

      // Disconnect and reconnect.
      await tokenServer.restart();
      await userServer.restart();
      await vi.waitFor(() => {
        expect(byToken.status().ready).toBe(true);
        expect(byPassword.status().ready).toBe(true);
      }, { timeout: 15_000, interval: 50 });
      expect(records.some((record) => record.includes('disconnected from NATS'))).toBe(true);
      expect(records.some((record) => record.includes('reconnected to NATS'))).toBe(true);

      // Failed authentication while reconnecting: another server, with another token, takes the address.
      await tokenServer.kill();
      const impostor = await startNatsServer({ port: tokenServer.port, token: ROTATED, jetstream: false });
      servers.push(impostor);
      await vi.waitFor(() => expect(records.some((record) => /refused this connection's credentials/.test(record))).toBe(true), {
        timeout: 15_000,
        interval: 50,
      });
      expect(byToken.status().ready).toBe(false);
      // The client keeps trying (credentials can be rotated on the server): once the right
      // server is back at that address, the connection comes back by itself.
      await impostor.stop();
      const restored = await startNatsServer({ port: tokenServer.port, token: TOKEN, jetstream: false });
      servers.push(restored);
      await vi.waitFor(() => expect(byToken.status().ready).toBe(true), { timeout: 15_000, interval: 50 });
    } finally {
      for (const transport of transports) await transport.close();
    }

    expect(records.length).toBeGreaterThan(0);
    for (const record of records) {
      for (const secret of [TOKEN, PASSWORD, ROTATED, setup.user.seed, setup.user.jwt]) expect(record).not.toContain(secret);
    }
  }, 60_000);
});

describe('nats - TLS', () => {
  let certificates: ReturnType<typeof makeCertificates>;
  let server: NatsServer;
  afterAll(() => {
    if (certificates !== undefined) rmSync(certificates.directory, { recursive: true, force: true });
  });

  beforeAll(async () => {
    certificates = makeCertificates();
    server = await startNatsServer({
      tls: { certFile: certificates.serverCert, keyFile: certificates.serverKey, caFile: certificates.ca, verify: true },
    });
  });

  it('nats - connects with mutual TLS configured from the environment', async () => {
    const { ca, clientCert, clientKey } = certificates;
    const options = natsOptionsFromEnv({
      KEEL_NATS_URL: server.url,
      KEEL_NATS_TLS_CA: ca,
      KEEL_NATS_TLS_CERT: clientCert,
      KEEL_NATS_TLS_KEY: clientKey,
    });
    const transport = await createNatsTransport({ ...options, logger: silentLogger });
    expect(transport.status().ready).toBe(true);
    await transport.close();
  });

  it('nats - is refused with UNAVAILABLE without a client certificate', async () => {
    const { ca } = certificates;
    const error = await rejection(createNatsTransport({ servers: server.url, tls: { caFile: ca }, connectTimeoutMs: 2_000, logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
  });
});
