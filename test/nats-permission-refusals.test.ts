/**
 * Permissions the server refuses a running transport. A caller whose reply subscription the
 * server refuses after start (an operator reloads the server's permissions): its calls end at
 * once, unsent, and its transport reports not ready; granted again, the transport subscribes
 * again by itself and its calls resume, with no restart. And the log lines of refused publishes:
 * bounded for each subject, so that one refused subject does not hide another's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: {
    say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }),
    shout: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }),
    /** Its first run hangs past its attempt's deadline; idempotent, so the kernel tries again. */
    slow: operation({
      input: z.object({ text: z.string() }),
      output: z.object({ text: z.string() }),
      idempotent: true,
      retry: { attemptTimeoutMs: 2_000, maxAttempts: 3, backoffMs: 1 },
    }),
  },
});

/** Resolved when `slow`'s first run starts; that run hangs until its deadline. */
let slowStarted: () => void = () => {};

const echoModule = defineModule({
  contract: echo,
  create: () => {
    let slowRuns = 0;
    return {
      handlers: {
        say: ({ text }) => ({ text }),
        shout: ({ text }) => ({ text: text.toUpperCase() }),
        slow: async ({ text }, context) => {
          slowRuns += 1;
          if (slowRuns === 1) {
            slowStarted();
            await new Promise((resolve) => setTimeout(resolve, Math.max(0, context.deadline - Date.now()) + 100));
          }
          return { text };
        },
      },
    };
  },
});

const CALLER_INBOX = '_INBOX_caller';

/**
 * The server's users: `svc` may do anything; `caller` may publish anything but
 * `callerMayNotPublish` and read replies under `callerMayRead` only; `muted` may read its
 * replies but not call echo's operations.
 */
function users(callerMayRead: string, callerMayNotPublish = 'nothing.here'): string {
  return `authorization { users: [
  { user: "svc", password: "svc-secret" },
  { user: "caller", password: "caller-secret", permissions: { publish: { allow: ">", deny: ${JSON.stringify(callerMayNotPublish)} }, subscribe: ${JSON.stringify(callerMayRead)} } },
  { user: "muted", password: "muted-secret", permissions: { publish: { allow: ">", deny: "keel.echo.*" }, subscribe: "_INBOX_muted.>" } }
] }`;
}

/** Records the caller transport's log lines, to assert what it says once and what it says on recovery. */
function recordingLogger(lines: { level: string; message: string }[]): Logger {
  const record = (level: string) => (_fields: object, message: string) => void lines.push({ level, message });
  const logger: Logger = { ...silentLogger, error: record('error'), warn: record('warn'), info: record('info'), child: () => logger };
  return logger;
}

describe('nats - a reply subscription refused after start', () => {
  let server: NatsServer;
  let serviceTransport: Transport;
  let callerTransport: Transport;
  let service: Kernel;
  let caller: Kernel;
  const logged: { level: string; message: string }[] = [];

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false, extraConfig: users(`${CALLER_INBOX}.>`) });
    serviceTransport = await createNatsTransport({ servers: server.url, user: 'svc', password: 'svc-secret', logger: silentLogger });
    callerTransport = await createNatsTransport({
      servers: server.url,
      user: 'caller',
      password: 'caller-secret',
      inboxPrefix: CALLER_INBOX,
      logger: recordingLogger(logged),
    });
    service = createKernel({ modules: [echoModule], topology: { host: ['echo'], transport: serviceTransport }, logger: silentLogger });
    caller = createKernel({ contracts: [echo], topology: { host: [], transport: callerTransport }, logger: silentLogger });
    await service.start();
    await caller.start();
  });

  afterAll(async () => {
    await caller?.stop();
    await service?.stop();
    await callerTransport?.close();
    await serviceTransport?.close();
    await server?.stop();
  });

  it('nats reply permission - refused by a reload: calls fail INVALID_CONFIG unsent and the transport is not ready; granted by another, calls resume without a restart', { timeout: 60_000 }, async () => {
    const say = (text: string) => caller.client(echo).say({ text }, { timeoutMs: 5_000 });
    expect(await say('before')).toEqual({ text: 'before' });
    expect(callerTransport.status()).toMatchObject({ ready: true });

    // The operator takes the caller's inbox away: the server refuses its open reply subscription.
    await server.reload(users('nothing.here'));
    await expect.poll(() => callerTransport.status(), { timeout: 10_000, interval: 50 }).toMatchObject({
      ready: false,
      detail: expect.stringMatching(/refused this process's user permission to subscribe to its reply subject _INBOX_caller\./),
    });
    const started = performance.now();
    await expect(say('while refused')).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/^echo\.say was not sent: NATS refused this process's user permission to subscribe to its reply subject/),
    });
    // Unsent, so not a wait for the call's 5 s deadline.
    expect(performance.now() - started).toBeLessThan(4_000);

    // Granted again: the transport asks for its replies every few seconds and resumes by itself.
    await server.reload(users(`${CALLER_INBOX}.>`));
    await expect.poll(() => callerTransport.status().ready, { timeout: 20_000, interval: 100 }).toBe(true);
    expect(await say('after')).toEqual({ text: 'after' });

    // Said once when refused (not once per retry), and once when granted again.
    expect(logged.filter((line) => line.level === 'error' && /reply subject/.test(line.message))).toHaveLength(1);
    expect(logged.filter((line) => line.level === 'info' && /granted the reply subscription again/.test(line.message))).toHaveLength(1);
  });
  it('nats reply permission - a retried call whose first attempt timed out and whose second was refused unsent ends TIMEOUT (it may have run), saying the later attempt was not sent', { timeout: 60_000 }, async () => {
    const started = new Promise<void>((resolve) => {
      slowStarted = resolve;
    });
    const failure = caller
      .client(echo)
      .slow({ text: 'x' }, { timeoutMs: 10_000 })
      .then(() => undefined, (error: unknown) => error);
    await started;
    // While the first attempt hangs, the operator takes the operation's subject from the caller.
    await server.reload(users(`${CALLER_INBOX}.>`, 'keel.echo.slow'));
    try {
      expect(await failure).toMatchObject({
        code: 'TIMEOUT',
        details: { attempts: 2 },
        message: expect.stringMatching(/A later attempt was not sent: echo\.slow was not sent: NATS refused this process's user permission to publish to keel\.echo\.slow; nothing ran/),
      });
    } finally {
      await server.reload(users(`${CALLER_INBOX}.>`));
    }
  });
});

describe('nats - refused publishes in the log', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  const logged: { level: string; message: string }[] = [];

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false, extraConfig: users(`${CALLER_INBOX}.>`) });
    transport = await createNatsTransport({ servers: server.url, user: 'muted', password: 'muted-secret', inboxPrefix: '_INBOX_muted', logger: recordingLogger(logged) });
    kernel = createKernel({ contracts: [echo], topology: { host: [], transport }, logger: silentLogger });
    await kernel.start();
  });

  afterAll(async () => {
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it('nats refusal log - one line per refused subject within 10 s: a second refusal of echo.say is left out, the first of echo.shout is not', async () => {
    const client = kernel.client(echo);
    // Each call fails when the server's refusal arrives, after the connection decided whether to log it.
    for (const call of [() => client.say({ text: 'a' }), () => client.say({ text: 'b' }), () => client.shout({ text: 'c' })]) {
      await expect(call()).rejects.toMatchObject({ code: 'INVALID_CONFIG' });
    }
    const refusals = logged.filter((line) => line.level === 'warn' && line.message.startsWith('NATS refused'));
    expect(refusals.map((line) => line.message.split(' (')[0])).toEqual([
      "NATS refused this connection's user permission to publish to keel.echo.say",
      "NATS refused this connection's user permission to publish to keel.echo.shout",
    ]);
  });
});
