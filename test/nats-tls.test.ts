/**
 * TLS to NATS, for real: certificates made with openssl (the test fails without it), a
 * nats-server requiring TLS and one requiring client certificates too, both locked down with the
 * users `keel deploy` generates, and keel calls and durable events carried over them by
 * transports configured from KEEL_NATS_* variables, as a deployed process is.
 */
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { natsAuthorization, natsUserEnvironment, natsUsers, type NatsUser } from '../cli/deploy/nats-config.js';
import { parseTopology } from '../cli/topology.js';
import { makeCertificates, type TestCertificates } from './support/certificates.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const greeter = defineContract({
  name: 'greeter',
  version: '1.0.0',
  operations: { greet: operation({ input: z.object({ name: z.string() }), output: z.object({ text: z.string() }) }) },
  events: { greeted: event({ payload: z.object({ name: z.string() }), delivery: 'durable' }) },
});

const guestbook = defineContract({
  name: 'guestbook',
  version: '1.0.0',
  operations: { count: operation({ input: z.object({}), output: z.object({ names: z.array(z.string()) }) }) },
});

const signed: string[] = [];
const modules = [
  defineModule({
    contract: greeter,
    create: ({ emit }) => ({
      handlers: {
        greet: async ({ name }) => {
          await emit('greeted', { name });
          return { text: `hello ${name}` };
        },
      },
    }),
  }),
  defineModule({
    contract: guestbook,
    subscribesTo: [greeter],
    create: () => ({
      handlers: { count: () => ({ names: [...signed] }) },
      events: {
        greeter: {
          greeted: {
            maxAttempts: 1,
            handle: ({ name }) => {
              if (name === 'poison') throw new Error('refusing to sign for poison');
              signed.push(name);
            },
          },
        },
      },
    }),
  }),
];
const names = modules.map((module) => module.name as string);
const topology = parseTopology({ nats: { prefix: 'tls' }, processes: { front: { modules: ['greeter'] }, back: { modules: ['guestbook'] } } }, names, 'tls');
const users = natsUsers(topology, modules);
const userOf = (name: string): NatsUser => users.find((user) => user.user === name) as NatsUser;

let certificates: TestCertificates;
beforeAll(() => {
  certificates = makeCertificates();
});
afterAll(() => {
  if (certificates !== undefined) rmSync(certificates.directory, { recursive: true, force: true });
});

/** Two processes' worth of kernels (front hosts greeter, back hosts guestbook) and a client, each on its own transport from `env`. */
async function runSplit(server: NatsServer, tlsEnv: Record<string, string>): Promise<{ kernels: Kernel[]; transports: Transport[] }> {
  const transports: Transport[] = [];
  const kernels: Kernel[] = [];
  for (const [host, user] of [[['greeter'], 'front'], [['guestbook'], 'back'], [[], '_client']] as const) {
    const options = natsOptionsFromEnv({ KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: 'tls', ...tlsEnv, ...natsUserEnvironment(userOf(user)) });
    const transport = await createNatsTransport({ ...options, logger: silentLogger });
    transports.push(transport);
    const kernel = createKernel({ modules, logger: silentLogger, topology: { host: [...host], transport } });
    await kernel.start();
    kernels.push(kernel);
  }
  return { kernels, transports };
}

async function stopSplit({ kernels, transports }: { kernels: Kernel[]; transports: Transport[] }): Promise<void> {
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
}

describe('nats TLS - a server requiring TLS, locked down with the generated users', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer({
      tls: { certFile: certificates.serverCert, keyFile: certificates.serverKey },
      extraConfig: natsAuthorization(users),
    });
  });

  it('nats TLS - calls, durable events and a dead letter travel over TLS with KEEL_NATS_TLS_CA, and the locked-down server refuses none of them', async () => {
    const split = await runSplit(server, { KEEL_NATS_TLS_CA: certificates.ca });
    try {
      const client = split.kernels[2]!;
      expect(await client.client(greeter).greet({ name: 'ada' })).toEqual({ text: 'hello ada' });
      await vi.waitFor(async () => expect((await client.client(guestbook).count({})).names).toContain('ada'), { timeout: 15_000, interval: 50 });
      // A handler that fails for good dead-letters the event: back may store it (and read the dead-letter stream's count).
      await client.client(greeter).greet({ name: 'poison' });
      const back = userOf('back');
      const nc = await connect({ servers: server.url, user: back.user, pass: back.password, inboxPrefix: back.inboxPrefix, tls: { caFile: certificates.ca } });
      try {
        const jsm = await jetstreamManager(nc);
        await vi.waitFor(async () => expect((await jsm.streams.info('tls__dead-letters')).state.messages).toBe(1), { timeout: 15_000, interval: 50 });
      } finally {
        await nc.close();
      }
      expect(server.output()).not.toMatch(/Violation/i);
    } finally {
      await stopSplit(split);
    }
  });

  it('nats TLS - a client that does not trust the CA is refused with UNAVAILABLE naming the certificate problem', async () => {
    const options = natsOptionsFromEnv({ KEEL_NATS_URL: `tls://127.0.0.1:${server.port}`, ...natsUserEnvironment(userOf('_client')) });
    const error = await createNatsTransport({ ...options, connectTimeoutMs: 3_000, logger: silentLogger }).then(
      async (transport) => {
        await transport.close();
        return new Error('connected without trusting the CA');
      },
      (reason: unknown) => reason as Error,
    );
    expect(isKeelError(error, 'UNAVAILABLE'), String(error)).toBe(true);
    expect(error.message).toMatch(/Could not connect to NATS at tls:\/\/127\.0\.0\.1:\d+: .*certificate/i);
    expect(error.message).toContain("The server's TLS certificate is not trusted: set KEEL_NATS_TLS_CA (tls.caFile)");
    // A nats:// URL gets the same answer: the client follows the server's demand for TLS, then cannot trust it.
    const plain = natsOptionsFromEnv({ KEEL_NATS_URL: server.url, ...natsUserEnvironment(userOf('_client')) });
    const refused = await createNatsTransport({ ...plain, connectTimeoutMs: 3_000, logger: silentLogger }).then(
      () => new Error('connected'),
      (reason: unknown) => reason as Error,
    );
    expect(refused.message).toContain('KEEL_NATS_TLS_CA');
  });
});

describe('nats TLS - a server requiring client certificates (verify)', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer({
      tls: { certFile: certificates.serverCert, keyFile: certificates.serverKey, caFile: certificates.ca, verify: true },
      extraConfig: natsAuthorization(users),
    });
  });

  it('nats TLS - calls and durable events travel over mutual TLS with KEEL_NATS_TLS_CA, KEEL_NATS_TLS_CERT and KEEL_NATS_TLS_KEY', async () => {
    signed.length = 0;
    const split = await runSplit(server, {
      KEEL_NATS_TLS_CA: certificates.ca,
      KEEL_NATS_TLS_CERT: certificates.clientCert,
      KEEL_NATS_TLS_KEY: certificates.clientKey,
    });
    try {
      const client = split.kernels[2]!;
      expect(await client.client(greeter).greet({ name: 'grace' })).toEqual({ text: 'hello grace' });
      await vi.waitFor(async () => expect((await client.client(guestbook).count({})).names).toEqual(['grace']), { timeout: 15_000, interval: 50 });
    } finally {
      await stopSplit(split);
    }
  });

  it('nats TLS - a client without a certificate is refused with UNAVAILABLE', async () => {
    const options = natsOptionsFromEnv({ KEEL_NATS_URL: server.url, KEEL_NATS_TLS_CA: certificates.ca, ...natsUserEnvironment(userOf('_client')) });
    const error = await createNatsTransport({ ...options, connectTimeoutMs: 3_000, logger: silentLogger }).then(
      async (transport) => {
        await transport.close();
        return new Error('connected without a client certificate');
      },
      (reason: unknown) => reason as Error,
    );
    expect(isKeelError(error, 'UNAVAILABLE'), String(error)).toBe(true);
    expect(error.message).toContain('Could not connect to NATS');
  });
});
