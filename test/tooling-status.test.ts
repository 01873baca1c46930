import { mkdtempSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Service } from '@nats-io/services';
import { foreignServices } from './support/foreign-services.js';
import {
  createKernel,
  defineContract,
  defineError,
  defineModule,
  operation,
  silentLogger,
  type AnyModule,
  type Kernel,
  type Transport,
} from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPGliteDatabase } from 'keel/pglite';
import { modules as shop } from '../modules/index.js';
import { connectForStatus, formatDuration, formatStatusReport, readStatus } from '../cli/tooling/status.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { runKeel, type CliRun } from './support/cli.js';

const repository = fileURLToPath(new URL('..', import.meta.url));

async function keel(argv: string[], env: Record<string, string> = {}): Promise<CliRun> {
  return runKeel(argv, { cwd: repository, env });
}

const Refused = defineError({ code: 'REFUSED', kind: 'conflict', data: z.object({ name: z.string() }) });

const greeter = defineContract({
  name: 'greeter',
  version: '1.4.0',
  operations: {
    hello: operation({ input: z.object({ name: z.string() }), output: z.object({ text: z.string() }), errors: [Refused] }),
    bye: operation({ input: z.object({ name: z.string() }), output: z.object({ text: z.string() }) }),
    nap: operation({ input: z.object({ ms: z.number() }), output: z.object({ tookMs: z.number() }) }),
  },
});

const NAP_MS = 30;

const manifest: AnyModule[] = [
  defineModule({
    contract: greeter,
    create: () => ({
      handlers: {
        hello: ({ name }) => {
          if (name === 'nobody') throw new Refused({ name });
          return { text: `hello ${name}` };
        },
        bye: ({ name }) => ({ text: `bye ${name}` }),
        nap: async ({ ms }) => {
          const started = performance.now();
          await sleep(ms);
          return { tookMs: performance.now() - started };
        },
      },
    }),
  }),
];

describe('tooling - status', () => {
  let server: NatsServer;
  let connection: NatsConnection;
  let raw: NatsConnection;
  let legacy: Service;
  const transports: Transport[] = [];
  const kernels: Kernel[] = [];
  let napMs = 0;

  const databases: { close(): Promise<void> }[] = [];

  const boot = async (host: string[], modules: readonly AnyModule[] = manifest, prefix = 'keel'): Promise<Kernel> => {
    const transport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    transports.push(transport);
    // The shop's modules own data: a database in memory for the kernel that hosts them.
    const ownsData = modules.some((module) => host.includes(module.name) && module.data !== undefined);
    const database = ownsData ? await createPGliteDatabase() : undefined;
    if (database !== undefined) databases.push(database);
    const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger, ...(database ? { database } : {}) });
    await kernel.start();
    kernels.push(kernel);
    return kernel;
  };

  beforeAll(async () => {
    server = await startNatsServer();
    await boot(['greeter']);
    await boot(['greeter']);
    const caller = await boot([]);
    const client = caller.client(greeter);
    for (let index = 0; index < 5; index++) await client.hello({ name: `n${index}` });
    await client.bye({ name: 'n' });
    await expect(client.hello({ name: 'nobody' })).rejects.toBeInstanceOf(Refused);
    napMs = (await client.nap({ ms: NAP_MS })).tookMs;

    // A NATS service keel did not register, through the raw client.
    raw = await connect({ servers: server.url });
    legacy = await foreignServices(raw).add({ name: 'legacy', version: '0.3.0' });
    legacy.addEndpoint('ping', (error, msg) => {
      if (error === null) msg.respond('pong');
    });
    await raw.request('ping', '', { timeout: 2_000 }).catch(() => undefined);
    connection = await connectForStatus({ servers: server.url });

    // Part of the shop, under its own subject prefix, for the command tests.
    await boot(['catalog', 'inventory'], shop, 'shop');
  });

  afterAll(async () => {
    await connection?.close();
    await legacy?.stop();
    await raw?.close();
    for (const kernel of [...kernels].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
    for (const database of databases) await database.close();
  });

  it('tooling - status discovers keel modules through $SRV.PING, INFO and STATS', async () => {
    const report = await readStatus(connection, { prefix: 'keel' });
    expect(report.ok).toBe(true);
    expect(report.modules.map((module) => module.name)).toEqual(['greeter']);
    const [module] = report.modules;
    expect(module).toMatchObject({ name: 'greeter', keel: true, versions: ['1.4.0'], requests: 8 });
    expect(module?.instances).toHaveLength(2);
    expect(module?.instances.map((instance) => instance.operations)).toEqual([
      ['bye', 'hello', 'nap'],
      ['bye', 'hello', 'nap'],
    ]);
    expect(module?.instances.every((instance) => instance.prefix === 'keel' && instance.uptimeMs !== undefined)).toBe(true);
    expect(module?.averageMs).toBeTypeOf('number');
  });

  it('tooling - status counts error replies and whole-call processing time from keel counters', async () => {
    const report = await readStatus(connection, { prefix: 'keel' });
    const [module] = report.modules;
    // The declared REFUSED error is an error reply: the `nats` client's own num_errors misses it.
    expect(module?.errors).toBe(1);
    expect(module?.instances.every((instance) => instance.counters === 'keel')).toBe(true);
    expect(module?.instances.map((instance) => instance.lastError).filter((text) => text !== undefined)).toEqual([
      expect.stringMatching(/^REFUSED: /),
    ]);
    const totalMs = module?.instances.reduce((sum, instance) => sum + instance.processingMs, 0) ?? 0;
    expect(totalMs).toBeGreaterThanOrEqual(napMs - 0.001);
    expect(totalMs).toBeGreaterThanOrEqual(NAP_MS - 1);
    expect(module?.averageMs).toBeCloseTo(totalMs / 8, 6);
  });

  it('tooling - status command shows the errors and average time of keel modules', async () => {
    const { code, stdout } = await keel(['status', '--nats', server.url, '--prefix', 'keel']);
    expect(code).toBe(0);
    const row = /^greeter\s+2\s+1\.4\.0\s+\S+(?: \S+)?\s+8\s+1\s+(\S+)$/m.exec(stdout);
    expect(row, stdout).not.toBeNull();
    const average = row?.[1] ?? '';
    const averageMs = Number.parseFloat(average) / (average.endsWith('µs') ? 1_000 : 1);
    expect(averageMs).toBeGreaterThanOrEqual((NAP_MS - 2) / 8);
  });

  it('tooling - status shows services keel did not register only when asked', async () => {
    const report = await readStatus(connection, { all: true });
    expect(report.modules.map((module) => [module.name, module.keel])).toEqual([
      ['catalog', true],
      ['greeter', true],
      ['inventory', true],
      ['legacy', false],
    ]);
    expect(report.modules[3]).toMatchObject({ versions: ['0.3.0'], requests: 1 });
    // Without keel's counters in `data`, the standard fields are used.
    expect(report.modules[3]?.instances.map((instance) => instance.counters)).toEqual(['nats']);
  });

  it('tooling - status fails when an expected module has no instance', async () => {
    const report = await readStatus(connection, { expected: ['greeter', 'ledger'], prefix: 'keel' });
    expect(report.ok).toBe(false);
    expect(report.missing).toEqual(['ledger']);
    const text = formatStatusReport(report);
    expect(text).toMatch(/^MODULE\s+INSTANCES\s+VERSION\s+UPTIME\s+REQUESTS\s+ERRORS\s+AVG TIME$/m);
    expect(text).toMatch(/^greeter\s+2\s+1\.4\.0\s+\S+( \S+)?\s+8\s+1\s+\S+$/m);
    expect(text).toMatch(/^ledger\s+0\s+-\s+-\s+-\s+-\s+-\s+← expected, but no instance answers$/m);
    expect(text).toContain(`keel status: ledger has no running instance on 127.0.0.1:${server.port}`);
  });

  it('tooling - status waits past the 300 ms stall for the instances a topology names: one answering 1.5 s after the others is counted, and a module short of its count is noted, not missing', async () => {
    // A third greeter instance slow to answer the service API, as a starved process would be.
    const SLOW_MS = 1_500;
    const identity = { name: 'greeter', id: 'slow-greeter', version: '1.4.0', metadata: { 'keel.protocol': '1', 'keel.prefix': 'keel' } };
    const answers = {
      PING: { type: 'io.nats.micro.v1.ping_response', ...identity },
      INFO: { type: 'io.nats.micro.v1.info_response', ...identity, description: '', endpoints: [] },
      STATS: { type: 'io.nats.micro.v1.stats_response', ...identity, started: new Date().toISOString(), endpoints: [] },
    };
    const slow = await connect({ servers: server.url });
    const timers = new Set<NodeJS.Timeout>();
    try {
      for (const [verb, answer] of Object.entries(answers)) {
        slow.subscribe(`$SRV.${verb}`, {
          callback: (error, msg) => {
            if (error !== null) return;
            const timer = setTimeout(() => {
              timers.delete(timer);
              msg.respond(JSON.stringify(answer));
            }, SLOW_MS);
            timers.add(timer);
          },
        });
      }
      await slow.flush();
      const instancesOf = (report: Awaited<ReturnType<typeof readStatus>>) => report.modules.find((module) => module.name === 'greeter')?.instances.map((instance) => instance.id);

      // Without a count, the question ends 300 ms after the two quick answers.
      const plain = await readStatus(connection, { prefix: 'keel', maxWaitMs: 5_000 });
      expect(instancesOf(plain)).toHaveLength(2);

      const counted = await readStatus(connection, { prefix: 'keel', maxWaitMs: 5_000, expectedInstances: { greeter: 3 } });
      expect(instancesOf(counted)).toHaveLength(3);
      expect(instancesOf(counted)).toContain('slow-greeter');
      expect(counted.modules.find((module) => module.name === 'greeter')).toMatchObject({ instancesExpected: 3 });
      expect(formatStatusReport(counted)).toMatch(/^greeter\s+3\s+1\.4\.0\s+\S+( \S+)?\s+8\s+1\s+\S+$/m);

      // One more than run: maxWaitMs ends it, with every instance that answered, and the shortfall noted.
      const short = await readStatus(connection, { prefix: 'keel', maxWaitMs: SLOW_MS + 3_000, expectedInstances: { greeter: 4 } });
      expect(instancesOf(short)).toHaveLength(3);
      expect(short.ok).toBe(true);
      expect(short.missing).toEqual([]);
      expect(formatStatusReport(short)).toMatch(/^greeter\s+3\s.*← 3 of the 4 instances the topology names answer$/m);
    } finally {
      for (const timer of timers) clearTimeout(timer);
      await slow.close();
    }
  });

  it('tooling - status filters keel modules by subject prefix', async () => {
    expect((await readStatus(connection, { prefix: 'other' })).modules).toEqual([]);
    expect((await readStatus(connection, { prefix: 'keel' })).modules).toHaveLength(1);
  });

  it('tooling - status formats uptimes for people', () => {
    expect([850, 12_000, 185_000, 8_040_000, 277_200_000].map(formatDuration)).toEqual(['850ms', '12s', '3m 05s', '2h 14m', '3d 5h']);
  });

  it('tooling - status command prints the table and exits 0 when nothing is missing', async () => {
    const { code, stdout, stderr } = await keel(['status', '--nats', server.url, '--prefix', 'shop']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    // Each module's row shows its contract's version, as the shop's manifest has it.
    for (const name of ['catalog', 'inventory']) {
      const version = shop.find((module) => module.name === name)?.contract.version ?? 'missing';
      expect(stdout).toMatch(new RegExp(`^${name}\\s+1\\s+${version.replaceAll('.', '\\.')}\\s`, 'm'));
    }
    expect(stdout).toContain('keel status: 2 modules, 2 instances on');
  });

  it('tooling - status command exits 1 with E_STATUS when a module of the topology has no instance', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'keel-status-'));
    const file = join(directory, 'split.json');
    writeFileSync(
      file,
      JSON.stringify({
        nats: { url: server.url, prefix: 'shop' },
        processes: { front: { modules: ['catalog', 'inventory'] }, back: { modules: ['orders', 'payments', 'notifications'] } },
      }),
    );
    const { code, stdout, stderr } = await keel(['status', '--topology', file, '--json']);
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as { ok: boolean; missing: string[]; modules: Array<{ name: string; instances: unknown[] }> };
    expect(report.ok).toBe(false);
    expect(report.missing).toEqual(['notifications', 'orders', 'payments']);
    expect(report.modules.map((module) => [module.name, module.instances.length])).toEqual([
      ['catalog', 1],
      ['inventory', 1],
      ['notifications', 0],
      ['orders', 0],
      ['payments', 0],
    ]);
    expect(stderr).toContain('error E_STATUS: No running instance of notifications, orders, payments.');
  });

  it("tooling - status command with a topology counts only its prefix's instances: another keel system's catalog on the same server does not make up a missing replica", async () => {
    // This system's catalog, under keel's default prefix; the other system's (prefix `shop`) runs since beforeAll.
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    const database = await createPGliteDatabase();
    const own = createKernel({ modules: shop, topology: { host: ['catalog'], transport }, logger: silentLogger, database });
    await own.start();
    try {
      const directory = mkdtempSync(join(tmpdir(), 'keel-status-'));
      const file = join(directory, 'front.json');
      // No nats.prefix: its processes serve under `keel`, where one of its two catalogs runs, and nothing else.
      writeFileSync(
        file,
        JSON.stringify({
          nats: { url: server.url },
          processes: { front: { modules: ['catalog'], replicas: 2 }, back: { modules: ['inventory', 'orders', 'payments', 'notifications'] } },
        }),
      );
      const { code, stdout, stderr } = await keel(['status', '--topology', file, '--wait', '1500', '--json']);
      expect(code, stderr).toBe(1);
      const report = JSON.parse(stdout) as { missing: string[]; modules: Array<{ name: string; instances: Array<{ prefix: string }>; instancesExpected?: number }> };
      // The topology's modules (greeter, which runs under `keel` too, is no concern of it).
      const named = report.modules.filter((module) => module.name !== 'greeter');
      expect(named.map((module) => [module.name, module.instances.map((instance) => instance.prefix), module.instancesExpected])).toEqual([
        ['catalog', ['keel'], 2],
        ['inventory', [], 1],
        ['notifications', [], 1],
        ['orders', [], 1],
        ['payments', [], 1],
      ]);
      expect(report.missing).toEqual(['inventory', 'notifications', 'orders', 'payments']);
      const table = await keel(['status', '--topology', file, '--wait', '1500']);
      expect(table.stdout).toMatch(/^catalog\s+1\s.*← 1 of the 2 instances the topology names answer$/m);
    } finally {
      await own.stop();
      await transport.close();
      await database.close();
    }
  });

  it('tooling - status fails, naming the cause, when the question itself fails: a closed connection is not "nothing running"', async () => {
    const closing = await connectForStatus({ servers: server.url });
    await closing.close();
    await expect(readStatus(closing, { maxWaitMs: 1_000 })).rejects.toThrow(/Could not ask the NATS service API \(\$SRV\.\w+\): closed connection.*the NATS connection closed/);
  });

  it('tooling - status fails, naming the permission violation, for a NATS user that may not ask $SRV', async () => {
    const locked = await startNatsServer({
      extraConfig: [
        'authorization { users = [',
        '  { user: "watcher", password: "watcher-pw", permissions: { publish: { allow: ["_INBOX.>"] }, subscribe: { allow: ["_INBOX.>"] } } }',
        '] }',
      ].join('\n'),
    });
    try {
      const watcher = await connectForStatus({ servers: locked.url, user: 'watcher', password: 'watcher-pw' });
      try {
        await expect(readStatus(watcher, { maxWaitMs: 2_000 })).rejects.toThrow(/\$SRV\.\w+\): Permissions Violation for Publish .*may not ask the service API/);
      } finally {
        await watcher.close();
      }
      const run = await keel(['status', '--nats', locked.url], { KEEL_NATS_USER: 'watcher', KEEL_NATS_PASSWORD: 'watcher-pw' });
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/error E_STATUS: Could not ask the NATS service API \(\$SRV\.\w+\): Permissions Violation/);
    } finally {
      await locked.stop();
    }
  });

  it('tooling - status command reads the server from KEEL_NATS_URL and fails clearly when NATS is unreachable', async () => {
    const viaEnv = await keel(['status', '--prefix', 'shop'], { KEEL_NATS_URL: server.url });
    expect(viaEnv.code).toBe(0);
    const closed = await keel(['status', '--nats', 'nats://127.0.0.1:1']);
    expect(closed.code).toBe(1);
    expect(closed.stderr).toContain('error E_STATUS: Cannot reach NATS at nats://127.0.0.1:1');
  });

  it('tooling - status command refuses a --wait that is not a whole number of milliseconds from 1 to 60000, naming it, before it connects', async () => {
    for (const wait of ['0', '1.5', '60001', '2147483648', 'soon']) {
      const { code, stderr } = await keel(['status', '--nats', 'nats://127.0.0.1:1', '--wait', wait]);
      expect(code, stderr).toBe(2);
      expect(stderr).toContain(`error E_USAGE: --wait "${wait}" is not a whole number of milliseconds from 1 to 60000.`);
    }
  });

  it("tooling - status command with a topology but no nats.prefix reads the processes' prefix from KEEL_NATS_PREFIX, trimmed as the adapter reads it", async () => {
    const directory = mkdtempSync(join(tmpdir(), 'keel-status-'));
    const file = join(directory, 'front.json');
    writeFileSync(
      file,
      JSON.stringify({ nats: { url: server.url }, processes: { front: { modules: ['catalog', 'inventory'] }, back: { modules: ['orders', 'payments', 'notifications'] } } }),
    );
    const { code, stdout, stderr } = await keel(['status', '--topology', file, '--json'], { KEEL_NATS_PREFIX: ' shop ' });
    expect(code, stderr).toBe(1);
    const report = JSON.parse(stdout) as { missing: string[]; modules: Array<{ name: string; instances: Array<{ prefix: string }> }> };
    expect(report.modules.filter((module) => module.instances.length > 0).map((module) => [module.name, module.instances.map((instance) => instance.prefix)])).toEqual([
      ['catalog', ['shop']],
      ['inventory', ['shop']],
    ]);
    expect(report.missing).toEqual(['notifications', 'orders', 'payments']);
  });
});
