import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isKeelError, silentLogger, type KeelError } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

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

  it('nats - never puts a secret in an error message', () => {
    const messages = [
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'http://user:hunter2@a:4222' })).message,
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_TOKEN: 'hunter2', KEEL_NATS_CREDS: file })).message,
      configError(() => natsOptionsFromEnv({ KEEL_NATS_URL: 'nats://a', KEEL_NATS_PASSWORD: 'hunter2' })).message,
    ];
    for (const message of messages) expect(message).not.toContain('hunter2');
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

/** A throwaway CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
function makeCertificates():
  | { directory: string; ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string }
  | undefined {
  if (spawnSync('openssl', ['version']).status !== 0) return undefined;
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-tls-'));
  const path = (name: string): string => join(directory, name);
  const openssl = (...args: string[]): void => {
    const result = spawnSync('openssl', args, { cwd: directory, encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${result.stderr}`);
  };
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...key, '-keyout', path('ca.key'), '-out', path('ca.pem'), '-days', '1', '-subj', '/CN=keel test CA');
  for (const [name, extension] of [
    ['server', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth'],
    ['client', 'extendedKeyUsage=clientAuth'],
  ] as const) {
    writeFileSync(path(`${name}.ext`), `${extension}\n`);
    openssl('req', ...key, '-keyout', path(`${name}.key`), '-out', path(`${name}.csr`), '-subj', `/CN=keel test ${name}`);
    openssl(
      'x509', '-req', '-in', path(`${name}.csr`), '-CA', path('ca.pem'), '-CAkey', path('ca.key'), '-CAcreateserial',
      '-out', path(`${name}.pem`), '-days', '1', '-extfile', path(`${name}.ext`),
    );
  }
  return {
    directory,
    ca: path('ca.pem'),
    serverCert: path('server.pem'),
    serverKey: path('server.key'),
    clientCert: path('client.pem'),
    clientKey: path('client.key'),
  };
}

describe('nats - TLS', () => {
  const certificates = makeCertificates();
  let server: NatsServer;
  afterAll(() => {
    if (certificates !== undefined) rmSync(certificates.directory, { recursive: true, force: true });
  });

  beforeAll(async () => {
    if (certificates === undefined) return;
    server = await startNatsServer({
      tls: { certFile: certificates.serverCert, keyFile: certificates.serverKey, caFile: certificates.ca, verify: true },
    });
  });

  it.skipIf(certificates === undefined)('nats - connects with mutual TLS configured from the environment', async () => {
    const { ca, clientCert, clientKey } = certificates as NonNullable<typeof certificates>;
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

  it.skipIf(certificates === undefined)('nats - is refused with UNAVAILABLE without a client certificate', async () => {
    const { ca } = certificates as NonNullable<typeof certificates>;
    const error = await rejection(createNatsTransport({ servers: server.url, tls: { caFile: ca }, connectTimeoutMs: 2_000, logger: silentLogger }));
    expect(isKeelError(error, 'UNAVAILABLE')).toBe(true);
  });
});
