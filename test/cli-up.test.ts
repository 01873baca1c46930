import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createClient } from 'keel/transport';
import { main, runCli } from 'keel/cli';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { catalog } from '../modules/catalog/contract.js';
import { modules } from '../modules/index.js';
import { orders } from '../modules/orders/contract.js';
import { payments } from '../modules/payments/contract.js';
import { freePort } from '../cli/nats-server.js';
import { copyFixtureApp, failureRecord, logRecords, runKeel } from './support/cli.js';
import { Principal } from '../app/principal.js';
import { asCustomer } from './support/shop-auth.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
/** tsx's loader by absolute URL, so that `keel up` and the processes it starts find it from any folder. */
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const temporary: string[] = [];
/** How long a drain on Ctrl-C (or a closed terminal) may take: seconds, with room for a loaded 2-core CI machine (the supervisor's SIGKILL comes at 86 s, and a second Ctrl-C kills at once). */
const STOP_MS = 20_000;

afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

interface UpOptions {
  /** The application folder (default: this repository, the shop). */
  readonly cwd?: string;
  /** Environment variables over this process's. */
  readonly env?: Record<string, string>;
  /** Its own process group, as a command a terminal runs in the foreground: `process.kill(-pid, 'SIGINT')` is Ctrl-C. */
  readonly detached?: boolean;
}

/** Runs `keel up` from source, as `npm run keel -- up` does, and collects its output. */
function keelUp(
  argv: readonly string[],
  options: UpOptions = {},
): {
  child: ChildProcess;
  /** Its stdout and stderr, as they came. */
  output: () => string;
  stdout: () => string;
  stderr: () => string;
  waitFor: (text: string) => Promise<void>;
  exited: Promise<number | null>;
} {
  const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'up', ...argv], {
    cwd: options.cwd ?? repository,
    // The shop's modules own data: each process keeps it in memory unless a test says otherwise, so that a
    // run never holds nor fills the repository's .keel/data/<process> folders, nor finds an earlier run's data.
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', DATABASE_URL: '', KEEL_DATA_DIR: 'memory', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  let output = '';
  const streams = { stdout: '', stderr: '' };
  const waiters: { text: string; resolve: () => void }[] = [];
  const collect = (stream: keyof typeof streams) => (chunk: Buffer): void => {
    streams[stream] += chunk.toString('utf8');
    output += chunk.toString('utf8');
    for (const waiter of waiters.filter((entry) => output.includes(entry.text))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  child.stdout?.on('data', collect('stdout'));
  child.stderr?.on('data', collect('stderr'));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    stdout: () => streams.stdout,
    stderr: () => streams.stderr,
    exited,
    waitFor: (text) =>
      output.includes(text)
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiters.push({ text, resolve })),
            exited.then((code) => {
              throw new Error(`keel up exited (${code}) before printing "${text}". Its output:\n${output}`);
            }),
          ]),
  };
}

/** SIGTERM to `keel up` (SIGKILL if it has not exited after `graceMs`); resolves with its exit code. */
async function terminate(up: ReturnType<typeof keelUp>, graceMs = 60_000): Promise<number | null> {
  if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGTERM');
  const force = setTimeout(() => up.child.kill('SIGKILL'), graceMs);
  const code = await up.exited;
  clearTimeout(force);
  return code;
}

/** `call`'s outcome; its failure (a call's, an assertion's) carries keel up's output, which says what each process was doing. */
async function withOutput<T>(up: ReturnType<typeof keelUp>, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    throw new Error(`${String(error)}\nkeel up's output:\n${up.output()}`, { cause: error });
  }
}

/** The lines of `output` written whole (a running keel up may be halfway through the last). */
const complete = (output: string): string => output.slice(0, output.lastIndexOf('\n') + 1);

/** What `keel up` writes for `msg`, its own or a process's, in JSON format: the text to wait for. */
const said = (msg: string): string => JSON.stringify({ msg }).slice(1, -1);

/**
 * The messages `name` logged (`keel up` for its own): keel up's output is no terminal, so it and
 * its processes write JSON records, each line one, which `logRecords` checks.
 */
function messagesOf(output: string, name: string): string[] {
  return logRecords(complete(output))
    .filter((record) => record['process'] === name)
    .map((record) => record.msg ?? '');
}

/** The nats-server `keel up` started, from its output. */
function startedNatsUrl(output: string): string {
  const url = /"msg":"started nats-server on (nats:\/\/127\.0\.0\.1:\d+) \(pid \d+\)"/.exec(output)?.[1];
  expect(url, output).toBeDefined();
  return url as string;
}

/** The client user's `KEEL_NATS_*` variables from the file keel up names, as `natsOptionsFromEnv` reads them. */
function clientEnvironment(output: string): Record<string, string> {
  const path = /a client of every operation \(keel status, scripts\) finds its credentials in ([^"\s]+)/.exec(output)?.[1];
  expect(path, output).toBeDefined();
  expect(statSync(path as string).mode & 0o777).toBe(0o600);
  return Object.fromEntries(
    readFileSync(path as string, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('KEEL_'))
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

function acceptsConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve) => {
    const socket = createConnection({ host: hostname, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** A copy of the one-module fixture application whose `keel` and `zod` resolve to this repository. */
function replicasApp(): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-up-'));
  temporary.push(parent);
  return copyFixtureApp('up-replicas', parent);
}

/**
 * What a process may print besides its log records, added to the fixture's module: two plain
 * lines on stderr (as a Node warning and a line of its stack would be), a plain line and a JSON
 * object without `process` on stdout. keel up, which loads the module too, has no KEEL_PROCESS_NAME.
 */
const NOISE = `
const name = process.env['KEEL_PROCESS_NAME'];
if (name) {
  process.stderr.write(\`(node:\${process.pid}) Warning: plain from \${name}\\n    at a stack line of \${name}\\n\`);
  process.stdout.write(\`plain stdout of \${name}\\n\`);
  process.stdout.write(\`\${JSON.stringify({ level: 30, msg: \`own json of \${name}\` })}\\n\`);
}
`;

/** {@link replicasApp} whose module prints {@link NOISE} in each process. */
function noisyReplicasApp(): string {
  const app = replicasApp();
  appendFileSync(join(app, 'modules/whoami/module.ts'), NOISE);
  return app;
}

const escaped = (text: string): string => text.replace(/[#.()|]/g, '\\$&');

/** The fixture's contract, as a caller outside the application sees it (same name, version and schemas). */
const whoami = defineContract({
  name: 'whoami',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ pid: z.number().int(), process: z.string() }), idempotent: true }),
  },
});

describe('cli - keel up', () => {
  let server: NatsServer;
  let transport: Transport;
  let caller: Kernel;

  beforeAll(async () => {
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    caller = createKernel({ modules, principal: Principal, logger: silentLogger, topology: { host: [], transport } });
    await caller.start();
  });

  afterAll(async () => {
    await caller?.stop();
    await transport?.close();
  });

  it('cli - runs the split shop topology, answers across processes, and drains every process on SIGTERM', { timeout: 120_000 }, async () => {
    const up = keelUp(['topologies/split.ts', '--nats', server.url]);
    try {
      await up.waitFor(said('ready: all 3 processes (storefront, back-office, notifications)'));
      // Each process keeps the data of the modules it hosts in a database of its own, here in memory.
      expect(messagesOf(up.output(), 'storefront')).toContain('data of catalog, orders: pglite in memory');
      expect(messagesOf(up.output(), 'back-office')).toContain('data of inventory, payments: pglite in memory');
      expect(messagesOf(up.output(), 'notifications')).toContain('data of notifications: pglite in memory');

      // The calls across processes, from just after all three said ready: on a loaded 2-core CI machine the first
      // once went unanswered for the default 10 s, so it gets 30 s, and a failure shows what each process logged.
      await withOutput(
        up,
        (async () => {
          const { products } = await caller.client(catalog).listProducts({}, { timeoutMs: 30_000 });
          const sku = (products[0] as { sku: string }).sku;
          const order = await caller.client(orders).placeOrder({ customerId: 'cli-up', lines: [{ sku, quantity: 1 }], card: { token: 'tok_visa' } });
          expect(order).toMatchObject({ customerId: 'cli-up' });
          expect(await caller.client(orders).getOrder({ orderId: order.orderId }, asCustomer('cli-up'))).toMatchObject({ status: order.status });
          // Orders (the storefront) charged the card in payments (the back office).
          const { payments: charged } = await caller.client(payments).listPayments({ customerId: 'cli-up' }, asCustomer('cli-up'));
          expect(charged).toEqual([expect.objectContaining({ paymentId: order.paymentId, amountCents: order.totalCents })]);
        })(),
      );
    } finally {
      up.child.kill('SIGTERM');
    }
    expect(await up.exited, up.output()).toBe(0);
    const output = up.output();
    for (const name of ['storefront', 'back-office', 'notifications']) {
      expect(messagesOf(output, 'keel up')).toContain(`${name} stopped cleanly`);
    }
    expect(messagesOf(output, 'keel up')).toContain('stopped');
  });

  it('cli - starts its own nats-server from PATH for the per-module topology, answers, and stops it all on SIGTERM', { timeout: 150_000 }, async () => {
    // A PORT in the environment must not reach the five processes: they would all claim it.
    const port = await freePort();
    const up = keelUp(['topologies/per-module.ts'], { env: { KEEL_NATS_URL: '', PORT: String(port), KEEL_HTTP_PORT: '' } });
    let natsUrl: string | undefined;
    let callerTransport: Transport | undefined;
    try {
      await up.waitFor(said('ready: all 5 processes (catalog, inventory, payments, orders, notifications)'));
      natsUrl = startedNatsUrl(up.output());
      expect(messagesOf(up.output(), 'keel up')).toContain(`shop, one process per module: 5 processes over ${natsUrl}, subject prefix keel`);
      for (const name of ['catalog', 'inventory', 'payments', 'orders', 'notifications']) {
        expect(messagesOf(up.output(), name)).toContain('ready');
      }
      expect(up.output()).not.toContain('HTTP gateway on');

      // Locked down by default: an anonymous client is refused; the client user keel up wrote is let in.
      const anonymous = await createNatsTransport({ servers: natsUrl, connectTimeoutMs: 2_000, logger: silentLogger }).then(
        async (transport) => {
          await transport.close();
          return 'connected';
        },
        (error: unknown) => String(error),
      );
      expect(anonymous).toMatch(/Authorization Violation/i);
      // The file names the server too: sourcing it is all a client needs.
      const clientEnv = clientEnvironment(up.output());
      expect(clientEnv['KEEL_NATS_URL']).toBe(natsUrl);
      const client = natsOptionsFromEnv(clientEnv);
      callerTransport = await createNatsTransport({ ...client, logger: silentLogger });
      const caller = createKernel({ modules, logger: silentLogger, topology: { host: [], transport: callerTransport } });
      await caller.start();
      const order = await caller.client(orders).placeOrder({
        customerId: 'cli-up-own-nats',
        lines: [{ sku: 'KB-001', quantity: 1 }],
        card: { token: 'tok_visa' },
      });
      expect(order).toMatchObject({ customerId: 'cli-up-own-nats', status: 'placed' });
      await caller.stop();
    } finally {
      await callerTransport?.close();
      expect(await terminate(up), up.output()).toBe(0);
    }
    for (const name of ['catalog', 'inventory', 'payments', 'orders', 'notifications']) {
      expect(messagesOf(up.output(), 'keel up')).toContain(`${name} stopped cleanly`);
    }
    expect(messagesOf(up.output(), 'keel up')).toContain('stopped');
    expect(await acceptsConnections(natsUrl as string)).toBe(false);
  });

  it("cli - runs replicas as name#1 and name#2 under the shell's KEEL_NATS_PREFIX (the topology sets none), locked down for it; calls reach both, and keel status finds both", { timeout: 120_000 }, async () => {
    const app = replicasApp();
    // Trimmed, as the adapter reads it. The server's permissions must be written for it too.
    const up = keelUp(['topologies/replicas.json'], { cwd: app, env: { KEEL_NATS_URL: '', KEEL_NATS_PREFIX: ' acme.who ' } });
    let transport: Transport | undefined;
    try {
      await up.waitFor(said('ready: all 2 processes (whoami#1, whoami#2)'));
      expect(messagesOf(up.output(), 'keel up')).toContain('whoami ×2: whoami');
      expect(messagesOf(up.output(), 'whoami#1')).toContain('ready');
      expect(messagesOf(up.output(), 'whoami#2')).toContain('ready');
      const natsUrl = startedNatsUrl(up.output());
      expect(messagesOf(up.output(), 'keel up')).toContain(`whoami, two replicas: 2 processes over ${natsUrl}, subject prefix acme.who`);

      const credentials = clientEnvironment(up.output());
      expect(credentials['KEEL_NATS_PREFIX']).toBe('acme.who');
      transport = await createNatsTransport({ ...natsOptionsFromEnv({ ...credentials, KEEL_NATS_URL: natsUrl }), logger: silentLogger });
      const client = createClient(whoami, transport);
      const answers = await Promise.all(Array.from({ length: 40 }, () => client.whoami({})));
      // NATS spreads a queue group's messages at random: both answer 40 calls but with odds of 2^-39.
      expect(new Set(answers.map((answer) => answer.process))).toEqual(new Set(['whoami#1', 'whoami#2']));
      expect(new Set(answers.map((answer) => answer.pid)).size).toBe(2);

      // No --nats: the client's file names the server keel up started.
      expect(credentials['KEEL_NATS_URL']).toBe(natsUrl);
      // With the topology, `keel status` waits (up to --wait) for both replicas it names, not only
      // 300 ms after the latest answer: two processes starved of CPU (another test file runs
      // beside this one) can answer further apart.
      let status = '';
      const code = await runCli(main, ['status', '--topology', 'topologies/replicas.json', '--wait', '10000'], {
        cwd: app,
        env: credentials,
        stdout: { write: (text: string) => (status += text) },
        stderr: { write: (text: string) => (status += text) },
      });
      expect(code, status).toBe(0);
      expect(status).toMatch(/^whoami +2 +1\.0\.0 /m);
    } finally {
      await transport?.close();
      expect(await terminate(up), up.output()).toBe(0);
    }
    expect(messagesOf(up.output(), 'keel up')).toEqual(expect.arrayContaining(['whoami#1 stopped cleanly', 'whoami#2 stopped cleanly']));
  });

  it('cli - runs a gateway group of two replicas (http: 0), each serving HTTP on a port of its own that answers from its own process', { timeout: 120_000 }, async () => {
    const app = replicasApp();
    writeFileSync(join(app, 'topologies/gateways.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'], replicas: 2, http: 0 } } }));
    const up = keelUp(['topologies/gateways.json'], { cwd: app, env: { KEEL_NATS_URL: '' } });
    try {
      await up.waitFor(said('ready: all 2 processes (whoami#1, whoami#2)'));
      const urls = ['whoami#1', 'whoami#2'].map((name) => {
        const record = logRecords(complete(up.output())).find((entry) => entry['process'] === name && entry.msg?.startsWith('HTTP gateway on ') === true);
        expect(record, `${name}'s gateway line in:\n${up.output()}`).toBeDefined();
        return [name, String(record?.['url'])] as const;
      });
      expect(new Set(urls.map(([, url]) => url)).size).toBe(2);
      for (const [name, url] of urls) {
        const response = await withOutput(up, fetch(new URL('/whoami/whoami', url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' }));
        expect(response.status).toBe(200);
        expect(await response.json()).toMatchObject({ process: name });
      }
    } finally {
      expect(await terminate(up), up.output()).toBe(0);
    }
  });

  it('cli - in JSON format writes nothing but JSON objects: its processes\' records, their other lines wrapped in records naming them, and its own', { timeout: 120_000 }, async () => {
    const up = keelUp(['topologies/replicas.json'], { cwd: noisyReplicasApp(), env: { KEEL_NATS_URL: '', KEEL_LOG_FORMAT: 'json', KEEL_PROCESS_NAME: '' } });
    try {
      await up.waitFor(said('ready: all 2 processes (whoami#1, whoami#2)'));
    } finally {
      expect(await terminate(up), up.output()).toBe(0);
    }
    const records = logRecords(up.stdout());
    expect(up.stderr()).toBe('');
    expect(records.filter((record) => typeof record['process'] !== 'string'), up.stdout()).toEqual([]);
    expect(messagesOf(up.stdout(), 'keel up')).toEqual(
      expect.arrayContaining(['whoami ×2: whoami', 'ready: all 2 processes (whoami#1, whoami#2)', 'whoami#1 stopped cleanly', 'whoami#2 stopped cleanly', 'stopped']),
    );
    for (const name of ['whoami#1', 'whoami#2']) {
      const own = records.filter((record) => record['process'] === name);
      expect(own.map((record) => record.msg)).toEqual(expect.arrayContaining(['ready', 'stopped']));
      const pid = own.find((record) => record.msg === 'ready')?.['pid'];
      expect(pid).toEqual(expect.any(Number));
      // Each line a record of its own, in order, at error level from stderr and info from stdout.
      const wrapped = (stream: string, level: number, msg: string) =>
        expect.objectContaining({ level, time: expect.any(Number), pid, hostname: expect.any(String), process: name, stream, msg });
      expect(own.filter((record) => record['stream'] === 'stderr')).toEqual([
        wrapped('stderr', 50, `(node:${String(pid)}) Warning: plain from ${name}`),
        wrapped('stderr', 50, `    at a stack line of ${name}`),
      ]);
      expect(own.filter((record) => record['stream'] === 'stdout')).toEqual([wrapped('stdout', 30, `plain stdout of ${name}`)]);
      // A JSON object passes as it is, with the process it lacked.
      expect(own).toContainEqual({ level: 30, msg: `own json of ${name}`, process: name });
    }
  });

  it('cli - in pretty format writes every line of a process behind its name, as the process wrote it, and its own behind "keel up:"', { timeout: 120_000 }, async () => {
    const up = keelUp(['topologies/replicas.json'], { cwd: noisyReplicasApp(), env: { KEEL_NATS_URL: '', KEEL_LOG_FORMAT: 'pretty', KEEL_PROCESS_NAME: '' } });
    try {
      await up.waitFor('keel up: ready: all 2 processes (whoami#1, whoami#2)\n');
    } finally {
      expect(await terminate(up), up.output()).toBe(0);
    }
    const output = up.stdout();
    expect(up.stderr()).toBe('');
    expect(output).toMatch(/^keel up: whoami, two replicas: 2 processes over nats:\/\/127\.0\.0\.1:\d+, subject prefix keel$/m);
    expect(output).toContain('keel up:   whoami ×2: whoami\n');
    for (const name of ['whoami#1', 'whoami#2']) {
      expect(output).toMatch(new RegExp(`^${escaped(name)} \\| \\[[\\d:.]+\\] INFO \\(keel\\): ready \\(Ctrl-C to stop\\)`, 'm'));
      expect(output).toMatch(new RegExp(`^${escaped(name)} \\| \\(node:\\d+\\) Warning: plain from ${escaped(name)}$`, 'm'));
      expect(output).toContain(`\n${name} |     at a stack line of ${name}\n`);
      expect(output).toContain(`\n${name} | plain stdout of ${name}\n`);
      expect(output).toContain(`\n${name} | {"level":30,"msg":"own json of ${name}"}\n`);
      expect(output).toContain(`\nkeel up:   ${name} stopped cleanly\n`);
    }
    expect(output.endsWith('\nkeel up: stopped\n')).toBe(true);
  });

  it('cli - takes a Ctrl-C that reaches it twice within milliseconds (the terminal signals the group; npm forwards it too) as one: every process drains and it exits 0', { timeout: 120_000 }, async () => {
    const up = keelUp(['topologies/replicas.json'], { cwd: replicasApp(), env: { KEEL_NATS_URL: '' } });
    try {
      await up.waitFor(said('ready: all 2 processes (whoami#1, whoami#2)'));
      up.child.kill('SIGINT');
      // The relayed copy, a moment later (two signals pending at once would be one), well inside the half second.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(up.child.kill('SIGINT'), 'keel up had already exited: the second SIGINT reached nothing').toBe(true);
      expect(await up.exited, up.output()).toBe(0);
    } finally {
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
    }
    expect(up.output()).not.toContain('Ctrl-C again');
    expect(messagesOf(up.output(), 'keel up')).toEqual(expect.arrayContaining(['whoami#1 stopped cleanly', 'whoami#2 stopped cleanly', 'stopped']));
  });

  it('cli - stops its own nats-server last: Ctrl-C to its process group drains every process in seconds, with no SIGKILL', { timeout: 120_000 }, async () => {
    // The split shop: its notifications process holds JetStream consumers, whose drain waited for the server that had died.
    const up = keelUp(['topologies/split.ts'], { env: { KEEL_NATS_URL: '' }, detached: true });
    let natsUrl: string | undefined;
    let stoppedAt: number | undefined;
    try {
      await up.waitFor(said('ready: all 3 processes (storefront, back-office, notifications)'));
      natsUrl = startedNatsUrl(up.output());
      // What a terminal does on Ctrl-C: SIGINT to every process of the foreground group.
      stoppedAt = Date.now();
      process.kill(-(up.child.pid as number), 'SIGINT');
      const code = await Promise.race([up.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, up.output()).toBe(0);
    } finally {
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
    }
    expect(Date.now() - (stoppedAt as number)).toBeLessThan(STOP_MS);
    const output = up.output();
    // The server outlived every process: none lost its connection while draining.
    expect(output).not.toMatch(/SIGKILL|killing it|disconnected from NATS/);
    for (const name of ['storefront', 'back-office', 'notifications']) {
      expect(messagesOf(output, name)).toEqual(expect.arrayContaining(['stopping: finishing work in flight', 'stopped']));
      expect(messagesOf(output, 'keel up')).toContain(`${name} stopped cleanly`);
    }
    expect(messagesOf(output, 'keel up')).toContain('stopped');
    expect(await acceptsConnections(natsUrl as string)).toBe(false);
  });

  it('cli - SIGHUP (the terminal closed) to its process group drains every process and stops its own nats-server', { timeout: 120_000 }, async () => {
    const up = keelUp(['topologies/split.ts'], { env: { KEEL_NATS_URL: '' }, detached: true });
    let natsUrl: string | undefined;
    try {
      await up.waitFor(said('ready: all 3 processes (storefront, back-office, notifications)'));
      natsUrl = startedNatsUrl(up.output());
      expect(await acceptsConnections(natsUrl as string)).toBe(true);
      // What a terminal does when its window closes: SIGHUP to the foreground process group.
      process.kill(-(up.child.pid as number), 'SIGHUP');
      const code = await Promise.race([up.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, up.output()).toBe(0);
    } finally {
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
    }
    const output = up.output();
    expect(output).not.toMatch(/SIGKILL|killing it|disconnected from NATS/);
    for (const name of ['storefront', 'back-office', 'notifications']) expect(messagesOf(output, 'keel up')).toContain(`${name} stopped cleanly`);
    expect(messagesOf(output, 'keel up')).toContain('stopped');
    expect(await acceptsConnections(natsUrl as string)).toBe(false);
  });

  it('cli - says how to get nats-server when a topology needs NATS and none is on PATH', async () => {
    let stderr = '';
    const code = await runCli(main, ['up', 'topologies/per-module.ts'], {
      cwd: repository,
      env: { KEEL_NATS_SERVER_BIN: '/nonexistent/nats-server' },
      stdout: { write: () => true },
      stderr: { write: (text: string) => (stderr += text) },
    });
    expect(code).toBe(1);
    // Its output is no terminal: its failure is a JSON error record too.
    expect(logRecords(stderr)).toEqual([
      expect.objectContaining({ level: 50, process: 'keel up', code: 'E_NATS_SERVER', msg: expect.stringContaining('Cannot run "/nonexistent/nats-server"') }),
    ]);
    expect(stderr).toContain('apt-get install nats-server');
  });

  it('cli - refuses a NATS URL no process could use before starting any, naming where it came from', async () => {
    const up = async (argv: string[], env: Record<string, string> = {}) => {
      let stderr = '';
      const code = await runCli(main, ['up', 'topologies/split.ts', ...argv], {
        cwd: repository,
        env: { KEEL_NATS_SERVER_BIN: '/nonexistent/nats-server', ...env },
        stdout: { write: () => true },
        stderr: { write: (text: string) => (stderr += text) },
      });
      return { code, record: failureRecord(stderr, { process: 'keel up', code: 'E_USAGE' }) };
    };
    const flag = await up(['--nats', 'http://127.0.0.1:4222']);
    expect(flag.code).toBe(2);
    expect(flag.record.msg).toBe('--nats "http://127.0.0.1:4222" uses http:; keel connects with nats:// or tls:// URLs.');
    expect(flag.record['hint']).toContain('nats://host:4222');
    const variable = await up([], { KEEL_NATS_URL: 'nats://127.0.0.1:4222/path' });
    expect(variable.record.msg).toBe('KEEL_NATS_URL "nats://127.0.0.1:4222/path" has a path; a NATS URL is only nats://host:port.');
    // The topology's own: a topology error, naming the file; keel dev's hint names keel dev.
    const app = replicasApp();
    writeFileSync(join(app, 'topologies/bad-url.json'), JSON.stringify({ nats: { url: 'http://127.0.0.1:4222' }, processes: { whoami: { modules: ['whoami'], replicas: 2 } } }));
    const topology = await runKeel(['dev', 'topologies/bad-url.json'], { cwd: app, env: { PATH: process.env['PATH'] ?? '' } });
    // keel dev writes pretty lines unless told otherwise.
    expect(topology.code).toBe(1);
    expect(topology.stderr).toContain(
      `error E_TOPOLOGY: ${join('topologies', 'bad-url.json')}'s nats.url "http://127.0.0.1:4222" uses http:; keel connects with nats:// or tls:// URLs.`,
    );
    expect(topology.stderr).toContain('or none: keel dev then starts its own where the topology needs one');
  });

  it('cli - refuses, before starting any process, a topology whose groups would listen on one HTTP port of this host, naming both groups and the port', async () => {
    const app = replicasApp();
    writeFileSync(join(app, 'topologies/clash.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'], replicas: 2, http: 3000 }, other: { modules: ['whoami'], http: 3001 } } }));
    let stderr = '';
    let stdout = '';
    const code = await runCli(main, ['up', 'topologies/clash.json'], {
      cwd: app,
      env: { KEEL_NATS_SERVER_BIN: '/nonexistent/nats-server' },
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
    });
    expect(code, stderr).toBe(1);
    const record = failureRecord(stderr, { process: 'keel up', code: 'E_TOPOLOGY' });
    expect(record.msg).toBe(`${join('topologies', 'clash.json')}: processes "whoami" and "other" both listen on HTTP port 3001 (other: port 3001), on this one host.`);
    expect(record['hint']).toContain('Give each group HTTP ports of its own');
    // Refused before anything started: not even the nats-server (whose binary here does not exist).
    expect(stdout + stderr).not.toContain('nats-server');
  });

  it('cli - stops at the first exit of a process that failed with what a restart would meet again, naming its failure', { timeout: 60_000 }, async () => {
    const app = replicasApp();
    writeFileSync(join(app, 'topologies/misconfigured.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'], env: { KEEL_HTTP_PORT: 'eighty' } } } }));
    const up = keelUp(['topologies/misconfigured.json'], { cwd: app, env: { KEEL_NATS_URL: '' } });
    expect(await up.exited, up.output()).toBe(1);
    const failure = failureRecord(up.stderr(), { process: 'keel up', code: 'E_PROCESS' });
    expect(failure.msg).toMatch(/^whoami cannot start, and a restart would not change that: E_USAGE: HTTP port "eighty" \(from KEEL_HTTP_PORT\)/);
    // One start: the failure, then no restart.
    expect(messagesOf(up.output(), 'keel up').filter((message) => message.startsWith('whoami exited'))).toEqual([
      'whoami exited (exit code 2) before becoming ready, with E_USAGE, which a restart would meet again; not restarting it.',
    ]);
  });

  it('cli - refuses a KEEL_LOG_LEVEL that is not a level with one INVALID_CONFIG error record naming it, in JSON format from the start', async () => {
    let stdout = '';
    let stderr = '';
    const code = await runCli(main, ['up', 'topologies/per-module.ts'], {
      cwd: repository,
      env: { KEEL_LOG_FORMAT: 'json', KEEL_LOG_LEVEL: 'loud', KEEL_NATS_SERVER_BIN: '/nonexistent/nats-server' },
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
    });
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(failureRecord(stderr, { process: 'keel up', code: 'INVALID_CONFIG' }).msg).toContain('KEEL_LOG_LEVEL "loud" is not a log level');
  });
});
