/**
 * `keel dev`: a topology of two processes (clock; greeter, which calls clock) runs with its own
 * nats-server; a saved change restarts only the processes it concerns, each drained first, and
 * Ctrl-C to its process group stops everything in seconds.
 */
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { main, runCli } from 'keel/cli';
import { countsAsChange, impactOf, processesToRestart, watchProject } from '../cli/watch.js';
import { acceptsConnections } from '../cli/nats-server.js';
import { collector, copyFixtureApp, logRecords, type LogRecord } from './support/cli.js';
import { startNatsServer } from './support/nats-server.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** A copy of the two-module fixture application whose `keel` and `zod` resolve to this repository. */
function devApp(): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-dev-'));
  temporary.push(parent);
  return copyFixtureApp('dev-app', parent);
}

/**
 * Whether a `keel graph` child of `parent` runs and listens for signals as the keel executable
 * does: Linux's /proc shows SIGHUP caught (Node itself catches SIGINT from its first moment;
 * SIGHUP only once the executable set its handlers, right after SIGINT's).
 */
function graphReaderListening(parent: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (!status.includes(`\nPPid:\t${parent}\n`)) continue;
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('\0graph\0')) continue;
      const caught = /\nSigCgt:\t([0-9a-f]+)/.exec(status)?.[1];
      if (caught !== undefined && (BigInt(`0x${caught}`) & 1n) === 1n) return true;
    } catch {
      // The process ended while it was being read.
    }
  }
  return false;
}

/** How long any one awaited line may take before the test fails, rather than hangs. */
const WAIT_MS = 30_000;
/** How long a drain on Ctrl-C (or a closed terminal) may take: seconds, with room for a loaded 2-core CI machine (the supervisor's SIGKILL comes at 30 s). */
const STOP_MS = 20_000;

/** Runs `keel dev` from source in its own process group, as a terminal runs a foreground command. */
function keelDev(argv: readonly string[], cwd: string) {
  const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'dev', ...argv], {
    cwd,
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: '', DATABASE_URL: '', KEEL_DATA_DIR: 'memory', KEEL_NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let output = '';
  let errors = '';
  const waiters: { test: (output: string) => boolean; resolve: () => void }[] = [];
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    for (const waiter of waiters.filter((entry) => entry.test(output))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', (chunk: Buffer) => {
    errors += chunk.toString('utf8');
    collect(chunk);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const until = (what: string, test: (output: string) => boolean, waitMs = WAIT_MS): Promise<void> =>
    test(output)
      ? Promise.resolve()
      : Promise.race([
          new Promise<void>((resolve) => waiters.push({ test, resolve })),
          exited.then((code) => Promise.reject(new Error(`keel dev exited (${code}) before ${what}. Its output:\n${output}`))),
          new Promise<void>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${waitMs} ms. Output:\n${output}`)), waitMs).unref()),
        ]);
  return {
    child,
    exited,
    output: () => output,
    /** What it wrote on stderr alone. */
    errors: () => errors,
    until,
    /** Resolves once `name` logged its ready line `count` times. */
    readyTimes: (name: string, count: number) => until(`${name} ready ×${count}`, (text) => readyCount(text, name) >= count),
  };
}

/** True when the NATS server at `url` (on 127.0.0.1) still accepts connections. */
function natsAccepts(url: string): Promise<boolean> {
  return acceptsConnections(Number(new URL(url).port));
}

/** How many times `name` logged its `ready` line (pretty: keel dev's default format). */
function readyCount(output: string, name: string): number {
  return output.split('\n').filter((line) => new RegExp(`^${name} +\\| .*INFO.*: ready \\(Ctrl-C to stop\\)`).test(line)).length;
}

describe('cli - keel dev', () => {
  it('cli - restarts only the process hosting a changed module, and for a changed contract its callers too; Ctrl-C stops it all', { timeout: 120_000 }, async () => {
    const root = devApp();
    const dev = keelDev(['topologies/split.json'], root);
    try {
      await dev.until('every process ready', (text) => text.includes('keel dev: ready: all 2 processes; watching for changes'));
      // (The ready lines come through each process's output, its readiness over IPC: either may be first.)
      await dev.readyTimes('clock', 1);
      await dev.readyTimes('greeter', 1);

      // A module's own file: its process only.
      appendFileSync(join(root, 'modules/greeter/module.ts'), '// edited\n');
      await dev.until('the restart line', (text) => text.includes('keel dev: modules/greeter/module.ts changed; restarting greeter\n'));
      await dev.readyTimes('greeter', 2);

      // A contract: its module's process and those of the modules that call it.
      appendFileSync(join(root, 'modules/clock/contract.ts'), '// edited\n');
      await dev.until('the restart line', (text) => text.includes('keel dev: modules/clock/contract.ts changed; restarting clock, greeter\n'));
      await dev.readyTimes('clock', 2);
      await dev.readyTimes('greeter', 3);
      // A file no process runs (a test) restarts nothing: the next change's line comes alone.
      mkdirSync(join(root, 'test'));
      writeFileSync(join(root, 'test/greeter.test.ts'), '// a test\n');
      appendFileSync(join(root, 'modules/greeter/contract.ts'), '// edited\n');
      await dev.until('the restart line', (text) => text.includes('keel dev: modules/greeter/contract.ts changed; restarting greeter\n'));
      await dev.readyTimes('greeter', 4);
      await dev.until('every process ready again', (text) => text.split('keel dev: ready: all 2 processes').length - 1 === 4);

      const stoppedAt = Date.now();
      process.kill(-(dev.child.pid as number), 'SIGINT');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
      expect(Date.now() - stoppedAt).toBeLessThan(STOP_MS);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
    const output = dev.output();
    // Every restart drained the process first; none was killed, none lost its NATS server.
    expect(output).not.toMatch(/SIGKILL|killing it|disconnected from NATS|exited \(/);
    expect(output.split('\n').filter((line) => line.includes('changed; restarting'))).toEqual([
      'keel dev: modules/greeter/module.ts changed; restarting greeter',
      'keel dev: modules/clock/contract.ts changed; restarting clock, greeter',
      'keel dev: modules/greeter/contract.ts changed; restarting greeter',
    ]);
    // clock started twice in all (once for its contract), greeter four times.
    expect(readyCount(output, 'clock')).toBe(2);
    expect(readyCount(output, 'greeter')).toBe(4);
    expect(output.split('\n').filter((line) => /^clock +\| .*: stopped/.test(line))).toHaveLength(2);
    expect(output).toContain('keel dev:   clock stopped cleanly');
    expect(output).toContain('keel dev:   greeter stopped cleanly');
    expect(output).toContain('keel dev: stopped');
  });

  it.each([
    ['a process of the topology', ['topologies/split.json'], 'Add it to a process of topologies/split.json (a process of modules: ["*"] takes it when keel dev starts again), then restart keel dev.'],
    ['--modules', ['--modules', 'clock,greeter'], 'Name it in --modules, or run keel dev without --modules, then restart keel dev.'],
  ])('cli - warns, naming it, when the manifest gains a module no process hosts (its calls would find no responders), saying what to do with %s', { timeout: 120_000 }, async (_, argv, advice) => {
    const root = devApp();
    const dev = keelDev(argv, root);
    try {
      await dev.until('ready', (text) => text.includes('keel dev: ready: '));
      // A module "tick", a copy of clock under its own name, written into the manifest while keel dev runs.
      mkdirSync(join(root, 'modules/tick'));
      for (const file of ['contract.ts', 'module.ts']) {
        writeFileSync(join(root, 'modules/tick', file), readFileSync(join(root, 'modules/clock', file), 'utf8').replaceAll('clock', 'tick'));
      }
      const manifest = readFileSync(join(root, 'modules/index.ts'), 'utf8');
      writeFileSync(
        join(root, 'modules/index.ts'),
        manifest.replace("import { greeterModule }", "import { tickModule } from './tick/module.js';\nimport { greeterModule }").replace('greeterModule]', 'greeterModule, tickModule]'),
      );
      await dev.until('the warning', (text) => text.includes(`no process hosts "tick", new in the manifest: calls to it find no responders. ${advice}`));
      await dev.until('ready again', (text) => text.split('keel dev: ready: ').length - 1 >= 2);
      process.kill(-(dev.child.pid as number), 'SIGINT');
      expect(await dev.exited, dev.output()).toBe(0);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
  });

  it('cli - a process given up on (it failed on another module\'s broken file) starts again with the change that fixes that file', { timeout: 240_000 }, async () => {
    const root = devApp();
    const greeterFile = join(root, 'modules/greeter/module.ts');
    const working = readFileSync(greeterFile, 'utf8');
    const dev = keelDev(['topologies/split.json'], root);
    /** How long five failed starts with their backoff may take on a loaded machine. */
    const GIVE_UP_MS = 90_000;
    const gaveUp = (name: string, times: number) =>
      dev.until(`${name} given up on ×${times}`, (text) => text.split(`keel dev: ${name} kept exiting before it became ready, last with E_MANIFEST`).length - 1 >= times, GIVE_UP_MS);
    try {
      await dev.until('every process ready', (text) => text.includes('keel dev: ready: all 2 processes; watching for changes'));
      // greeter's file broken: greeter restarts, cannot load the manifest, and is given up on.
      writeFileSync(greeterFile, `${working}\nexport const broken = ;\n`);
      await gaveUp('greeter', 1);
      // A change to clock's file restarts clock, which loads the manifest too (greeter's broken file
      // with it), and greeter, given up on: both are given up on.
      appendFileSync(join(root, 'modules/clock/module.ts'), '// edited\n');
      await gaveUp('clock', 1);
      await gaveUp('greeter', 2);
      // The fix is greeter's file alone, which no module of clock's process owns: clock starts again too.
      writeFileSync(greeterFile, working);
      await dev.until('the restart of both', (text) => text.includes('keel dev: modules/greeter/module.ts changed; restarting clock, greeter\n'));
      await dev.until('every process ready again', (text) => text.split('keel dev: ready: all 2 processes').length - 1 === 2);
      process.kill(-(dev.child.pid as number), 'SIGINT');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
  });

  it('cli - an operation added while it runs answers through a gateway hosted elsewhere, a dependency added counts, --debounce gathers saves 0.5 s apart, SIGHUP stops it all', { timeout: 150_000 }, async () => {
    const root = devApp();
    // clock's process is the gateway: it serves greeter's operations, hosted in the other process.
    // On a port the system picks, anew at each restart: one found free here could be taken before it binds it.
    writeFileSync(
      join(root, 'topologies/gateway.json'),
      JSON.stringify({ processes: { clock: { modules: ['clock'], http: 0 }, greeter: { modules: ['greeter'] } } }),
    );
    const greeterModule = (dependsOnClock: boolean, farewell: boolean) =>
      [
        "import { defineModule } from 'keel';",
        "import { clock } from '../clock/contract.js';",
        "import { greeter } from './contract.js';",
        'void clock;',
        'export const greeterModule = defineModule({',
        '  contract: greeter,',
        ...(dependsOnClock ? ['  dependsOn: [clock],'] : []),
        `  create: (${dependsOnClock ? '{ get }' : ''}) => ({`,
        '    handlers: {',
        dependsOnClock
          ? '      greet: async ({ name }) => ({ text: `Hello, ${name}, at ${(await get(clock).now({})).iso}` }),'
          : '      greet: ({ name }) => ({ text: `Hello, ${name}` }),',
        ...(farewell ? ['      farewell: ({ name }) => ({ text: `Goodbye, ${name}` }),'] : []),
        '    },',
        '  }),',
        '});',
        '',
      ].join('\n');
    // At launch, greeter calls nobody.
    writeFileSync(join(root, 'modules/greeter/module.ts'), greeterModule(false, false));
    // A 2 s quiet time: the handler and the contract, saved 0.5 s apart, are one change (with the
    // default 150 ms they would be two), and a test process starved for a moment cannot split them.
    const dev = keelDev(['topologies/gateway.json', '--debounce', '2000'], root);
    const call = async (operation: string): Promise<{ status: number; body: unknown }> => {
      // The gateway's latest address: the clock process's since its last restart (callers wait for it to be ready).
      const url = [...dev.output().matchAll(/HTTP gateway on (http:\/\/127\.0\.0\.1:\d+)/g)].at(-1)?.[1];
      expect(url, dev.output()).toBeDefined();
      const answer = await fetch(`${url}/greeter/${operation}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"Ada"}' });
      return { status: answer.status, body: await answer.json() };
    };
    let natsUrl: string | undefined;
    try {
      await dev.until('every process ready', (text) => text.includes('keel dev: ready: all 2 processes; watching for changes'));
      await dev.readyTimes('clock', 1);
      await dev.readyTimes('greeter', 1);
      natsUrl = /keel dev: started nats-server on (nats:\/\/127\.0\.0\.1:\d+)/.exec(dev.output())?.[1];
      expect(natsUrl, dev.output()).toBeDefined();
      expect(await call('greet')).toEqual({ status: 200, body: { text: 'Hello, Ada' } });

      // A new operation: its handler, then its contract. The gateway restarts with the new route,
      // and NATS lets it through: its permissions are not those of the launch.
      writeFileSync(join(root, 'modules/greeter/module.ts'), greeterModule(false, true));
      await sleep(500);
      writeFileSync(
        join(root, 'modules/greeter/contract.ts'),
        readFileSync(join(root, 'modules/greeter/contract.ts'), 'utf8').replace(
          '    greet:',
          '    farewell: operation({ input: z.object({ name: z.string() }), output: z.object({ text: z.string() }) }),\n    greet:',
        ),
      );
      await dev.until('the restart line', (text) => /keel dev: modules\/greeter\/contract\.ts, modules\/greeter\/module\.ts changed; restarting clock, greeter\n/.test(text));
      await dev.readyTimes('clock', 2);
      await dev.readyTimes('greeter', 2);
      expect(await call('farewell'), dev.output()).toEqual({ status: 200, body: { text: 'Goodbye, Ada' } });

      // A dependency added in module.ts: from the next change, a change of clock's contract restarts greeter too.
      writeFileSync(join(root, 'modules/greeter/module.ts'), greeterModule(true, true));
      await dev.until('the restart line', (text) => text.includes('keel dev: modules/greeter/module.ts changed; restarting greeter\n'));
      await dev.readyTimes('greeter', 3);
      appendFileSync(join(root, 'modules/clock/contract.ts'), '// edited\n');
      await dev.until('the restart line', (text) => text.includes('keel dev: modules/clock/contract.ts changed; restarting'));
      await dev.readyTimes('clock', 3);
      expect(dev.output()).toContain('keel dev: modules/clock/contract.ts changed; restarting clock, greeter\n');
      await dev.readyTimes('greeter', 4);
      const greeting = await call('greet');
      expect(greeting.body, dev.output()).toMatchObject({ text: expect.stringMatching(/^Hello, Ada, at \d{4}-/) });

      // The terminal closed: SIGHUP to its process group drains everything and stops the nats-server.
      process.kill(-(dev.child.pid as number), 'SIGHUP');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
    } finally {
      // On a failure, a drain first: a SIGKILL would skip it (its nats-server then stops only by the
      // parent-death signal, and its folder stays behind).
      if (dev.child.exitCode === null && dev.child.signalCode === null) {
        process.kill(-(dev.child.pid as number), 'SIGTERM');
        await Promise.race([dev.exited, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
      }
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
    const output = dev.output();
    expect(output).not.toMatch(/SIGKILL|killing it|Permissions Violation|permission/i);
    expect(output).toContain('keel dev: NATS is open (no users, 127.0.0.1 only)');
    expect(output).toContain('keel dev: stopped');
    expect(await natsAccepts(natsUrl as string)).toBe(false);
  });

  it('cli - runs one process as keel start does, with its gateway; a change outside the modules restarts it', { timeout: 60_000 }, async () => {
    const root = devApp();
    const dev = keelDev(['--http', '0'], root);
    try {
      await dev.until('the process ready', (text) => text.includes('keel dev: ready: app; watching for changes (Ctrl-C to stop)\n'));
      await dev.readyTimes('app', 1);
      const url = /HTTP gateway on (http:\/\/127\.0\.0\.1:\d+)/.exec(dev.output())?.[1];
      expect(url, dev.output()).toBeDefined();
      const answer = await fetch(`${url}/greeter/greet`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"Ada"}' });
      expect(await answer.json()).toMatchObject({ text: expect.stringMatching(/^Hello, Ada, at \d{4}-/) });
      // One process, no NATS: nothing started for it.
      expect(dev.output()).not.toContain('nats-server');

      writeFileSync(join(root, 'keel.config.ts'), "export default { logging: { level: 'info' } };\n");
      await dev.until('the restart line', (text) => text.includes('keel dev: keel.config.ts changed; restarting app\n'));
      await dev.readyTimes('app', 2);
      process.kill(-(dev.child.pid as number), 'SIGINT');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
    expect(dev.output()).toContain('keel dev:   app stopped cleanly');
  });

  it('cli - --modules none runs one process hosting no module, as keel start --modules none: its gateway answers with the modules another keel dev hosts over NATS', { timeout: 90_000 }, async () => {
    const root = devApp();
    const nats = await startNatsServer();
    // Before, keel dev refused it: E_UNKNOWN_MODULE, "--modules names none, which the manifest does not have".
    const modules = keelDev(['--modules', 'clock,greeter', '--nats', nats.url], root);
    let gateway: ReturnType<typeof keelDev> | undefined;
    try {
      await modules.until('the modules ready', (text) => text.includes('keel dev: ready: app; watching for changes'));
      gateway = keelDev(['--modules', 'none', '--nats', nats.url, '--http', '0'], root);
      await gateway.until('the gateway ready', (text) => text.includes('keel dev: ready: app; watching for changes'));
      const output = gateway.output();
      expect(output).toContain(`keel dev: one process, no topology file over ${nats.url}\n`);
      expect(output).toContain('keel dev:   app: no module (a client of the others)\n');
      expect(output).toMatch(/^app +\| .*INFO.*: hosting no module \(a client of the others\) \{/m);
      expect(output).toMatch(/^app +\| .*INFO.*: reaching clock, greeter over nats \{/m);
      const url = /HTTP gateway on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      expect(url, output).toBeDefined();
      const answer = await fetch(`${url}/greeter/greet`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"name":"Ada"}' });
      expect(await answer.json(), gateway.output()).toMatchObject({ text: expect.stringMatching(/^Hello, Ada, at \d{4}-/) });
      for (const dev of [gateway, modules]) {
        process.kill(-(dev.child.pid as number), 'SIGINT');
        const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
        expect(code, dev.output()).toBe(0);
      }
    } finally {
      for (const dev of [gateway, modules]) {
        if (dev !== undefined && dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
      }
      await nats.stop();
    }
  });

  it('cli - in JSON format (the configuration says so) writes nothing but JSON lines: its processes\' records, its own as process "keel dev", a restart among them', { timeout: 60_000 }, async () => {
    const root = devApp();
    writeFileSync(join(root, 'keel.config.ts'), "export default { logging: { format: 'json' } };\n");
    const dev = keelDev(['--http', '0'], root);
    const records = (): LogRecord[] => logRecords(dev.output());
    const READY_LINE = 'ready: app; watching for changes (Ctrl-C to stop)';
    const readyTimes = (count: number) =>
      dev.until(`keel dev ready ×${count}`, () => records().filter((record) => record['process'] === 'keel dev' && record.msg === READY_LINE).length >= count);
    try {
      await readyTimes(1);
      appendFileSync(join(root, 'modules/greeter/module.ts'), '// edited\n');
      await dev.until('the restart record', (text) => text.includes('"msg":"modules/greeter/module.ts changed; restarting app"'));
      await readyTimes(2);
      process.kill(-(dev.child.pid as number), 'SIGINT');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
    // Every line, of stdout and of stderr, is a JSON object (logRecords throws on any other line).
    expect(dev.errors()).toBe('');
    const own = records().filter((record) => record['process'] === 'keel dev');
    expect(own.map((record) => record.msg)).toEqual([
      'configuration from keel.config.ts',
      'one process, no topology file',
      'app: clock, greeter',
      READY_LINE,
      'modules/greeter/module.ts changed; restarting app',
      READY_LINE,
      'stopping: draining every process',
      'app stopped cleanly',
      'stopped',
    ]);
    expect(own.every((record) => record['level'] === 30 && record['name'] === 'keel')).toBe(true);
    expect(records().filter((record) => record['process'] === 'app' && record.msg === 'stopped')).toHaveLength(2);
    expect(dev.output()).not.toContain('keel dev:');
  });

  it('cli - Ctrl-C in the middle of a restart, while the graph is read again, stops with no warning: neither the interrupted graph read nor the app stopped while starting is a failure', { timeout: 60_000 }, async () => {
    const root = devApp();
    writeFileSync(join(root, 'keel.config.ts'), "export default { logging: { format: 'json' } };\n");
    const dev = keelDev(['--http', '0'], root);
    const own = (): LogRecord[] => logRecords(dev.output()).filter((record) => record['process'] === 'keel dev');
    try {
      await dev.until('keel dev ready', () => own().some((record) => record.msg?.startsWith('ready: app') === true));
      // The contract, which the graph reader imports, now takes 3 s to load: the read lasts that long
      // at least, so that the search below finds it listening on a loaded machine (a read of about
      // 100 ms was missed by a search starved of CPU, with two test files running at once).
      appendFileSync(join(root, 'modules/greeter/contract.ts'), 'await new Promise((resolve) => setTimeout(resolve, 3000));\n');
      await dev.until('the restart record', (text) => text.includes('"msg":"modules/greeter/contract.ts changed; restarting app"'));
      // The graph is read again by a `keel graph` process, which loads the project's sources: the
      // signal goes to it too (one process group), once it listens, as a terminal's Ctrl-C would.
      const deadline = Date.now() + WAIT_MS;
      while (!graphReaderListening(dev.child.pid as number)) {
        if (Date.now() > deadline) throw new Error(`no keel graph process seen within ${WAIT_MS} ms. Output:\n${dev.output()}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      process.kill(-(dev.child.pid as number), 'SIGINT');
      const code = await Promise.race([dev.exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), STOP_MS).unref())]);
      expect(code, dev.output()).toBe(0);
    } finally {
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
    expect(own().filter((record) => (record['level'] as number) >= 40).map((record) => record.msg)).toEqual([]);
    expect(own().at(-1)?.msg).toBe('stopped');
  });

  it('cli - in JSON format a refusal is one error record on stderr, with its code, and nothing else is written', async () => {
    const root = devApp();
    for (const [argv, code, message] of [
      [['dev', '--modules', 'clock,calendar'], 'E_UNKNOWN_MODULE', '--modules names calendar, which the manifest does not have (it has clock, greeter).'],
      [['dev', 'topologies/split.json', '--http', '8080'], 'E_USAGE', '--modules and --http are for one process'],
      [['dev', '--debounce', '0.5s'], 'E_USAGE', '--debounce "0.5s" is not a whole number of milliseconds from 10 to 60000.'],
    ] as const) {
      const stdout = collector();
      const stderr = collector();
      expect(await runCli(main, argv, { cwd: root, env: { KEEL_LOG_FORMAT: 'json' }, stdout, stderr })).not.toBe(0);
      expect(stdout.text).toBe('');
      const records = logRecords(stderr.text);
      expect(records, stderr.text).toEqual([expect.objectContaining({ level: 50, process: 'keel dev', code, msg: expect.stringContaining(message) })]);
    }
  });

  it('cli - refuses --modules naming no module of the manifest, none without NATS or with other names, --modules or --http with a topology, and a --debounce out of range', async () => {
    const root = devApp();
    for (const [argv, message] of [
      [['dev', '--modules', 'clock,calendar'], 'error E_UNKNOWN_MODULE: --modules names calendar, which the manifest does not have (it has clock, greeter).'],
      [['dev', 'topologies/split.json', '--http', '8080'], 'error E_USAGE: --modules and --http are for one process'],
      [['dev', '--debounce', '9'], 'error E_USAGE: --debounce "9" is not a whole number of milliseconds from 10 to 60000.'],
      [['dev', '--debounce', '60001'], 'error E_USAGE: --debounce "60001" is not a whole number of milliseconds from 10 to 60000.'],
      // It started a process given `--modules ''`, which keel start refused, and waited for a save.
      [['dev', '--modules', ','], 'error E_USAGE: --modules "," names no module; name at least one, "none" to host nothing, or leave it out to host every module.'],
      // As keel start refuses it; before, keel dev refused "none" as an unknown module.
      [['dev', '--modules', 'none'], 'error E_USAGE: Hosting "none" makes a process that reaches every module over NATS, and no NATS server was given.'],
      // "none" stands alone, as for keel start (a module named "none" it is not).
      [['dev', '--modules', 'none,clock', '--nats', 'nats://127.0.0.1:4222'], 'error E_UNKNOWN_MODULE: --modules names none, which the manifest does not have (it has clock, greeter).'],
    ] as const) {
      const stdout = collector();
      const stderr = collector();
      // The signal ends a dev that was not refused (and would wait for a save).
      const code = await runCli(main, argv, { cwd: root, env: {}, stdout, stderr, signal: AbortSignal.timeout(15_000) });
      expect(code, stderr.text).not.toBe(0);
      expect(stderr.text).toContain(message);
      expect(stdout.text).not.toContain('started nats-server');
    }
  });

  it('cli - counts source, JSON and SQL files outside node_modules, hidden folders, the build and the tests', () => {
    const ignore = ['dist', 'test'];
    for (const path of ['modules/orders/module.ts', 'modules/orders/migrations/001_orders.sql', 'keel.config.ts', 'package.json', 'app/main.mts']) {
      expect(countsAsChange(path, ignore), path).toBe(true);
    }
    for (const path of ['coverage/coverage-final.json', 'test-results/results.json', '.nyc_output/out.json', 'node_modules/zod/index.js', '.git/index', '.keel/data/orders/x.json', 'dist/modules/index.js', 'test/orders.test.ts', 'modules/orders/module.test.ts', 'modules/orders/.module.ts.swp', 'modules/orders/module.ts~', 'README.md']) {
      expect(countsAsChange(path, ignore), path).toBe(false);
    }
  });

  it("cli - a module's file concerns its module, its contract also the modules that call it or handle its events, anything else every process", () => {
    const graph = [
      { name: 'catalog', dependsOn: [], subscribesTo: [] },
      { name: 'orders', dependsOn: ['catalog'], subscribesTo: [] },
      { name: 'notifications', dependsOn: [], subscribesTo: ['orders'] },
    ];
    const modules = (paths: string[]) => {
      const impact = impactOf(paths, 'modules', graph);
      return impact.all ? `all (${impact.reason})` : [...impact.modules].sort();
    };
    expect(modules(['modules/catalog/module.ts'])).toEqual(['catalog']);
    expect(modules(['modules/catalog/migrations/001.sql', 'modules/orders/saga.ts'])).toEqual(['catalog', 'orders']);
    expect(modules(['modules/catalog/contract.ts'])).toEqual(['catalog', 'orders']);
    expect(modules(['modules/orders/contract.ts'])).toEqual(['notifications', 'orders']);
    expect(modules(['modules/index.ts'])).toBe('all (modules/index.ts)');
    expect(modules(['modules/shared/money.ts'])).toBe('all (modules/shared/money.ts)');
    expect(modules(['modules/catalog/module.ts', 'keel.config.ts'])).toBe('all (keel.config.ts)');
  });

  it('cli - a contract change also restarts every process serving all operations over HTTP: a gateway exposes modules hosted elsewhere; any change restarts one given up on', () => {
    const graph = [
      { name: 'catalog', dependsOn: [], subscribesTo: [] },
      { name: 'orders', dependsOn: ['catalog'], subscribesTo: [] },
      { name: 'payments', dependsOn: [], subscribesTo: [] },
    ];
    // docs/deploy.md's shape: the storefront gateway hosts catalog and orders, and serves payments' operations too.
    const processes = [
      { name: 'storefront', modules: ['catalog', 'orders'], servesAllOperations: true },
      { name: 'back-office', modules: ['payments'], servesAllOperations: false },
    ];
    const restarted = (paths: string[]) => processesToRestart(impactOf(paths, 'modules', graph), processes).map((process) => process.name);
    expect(restarted(['modules/payments/contract.ts'])).toEqual(['storefront', 'back-office']);
    // Its other files change no route: the gateway stays up.
    expect(restarted(['modules/payments/module.ts'])).toEqual(['back-office']);
    expect(restarted(['keel.config.ts'])).toEqual(['storefront', 'back-office']);
    // A process given up on (it failed to start) restarts at any change: the fix may be in another module's file.
    expect(processesToRestart(impactOf(['modules/catalog/module.ts'], 'modules', graph), processes, new Set(['back-office'])).map((process) => process.name)).toEqual([
      'storefront',
      'back-office',
    ]);
  });

  it('cli - the watch skips tool output, warns when a folder goes, and watches it again once it is back', { timeout: 30_000 }, async () => {
    const root = mkdtempSync(join(tmpdir(), 'keel-watch-'));
    temporary.push(root);
    mkdirSync(join(root, 'modules'));
    const batches: string[][] = [];
    const warnings: string[] = [];
    const watcher = watchProject({ root, ignore: [], debounceMs: 50, onChange: (paths) => batches.push([...paths]), warn: (line) => warnings.push(line) });
    const until = async (what: string, test: () => boolean): Promise<void> => {
      for (const deadline = Date.now() + 10_000; !test(); await new Promise((resolve) => setTimeout(resolve, 20))) {
        if (Date.now() > deadline) throw new Error(`no ${what}: batches ${JSON.stringify(batches)}, warnings ${JSON.stringify(warnings)}`);
      }
    };
    const seen = (path: string) => batches.some((batch) => batch.includes(path));
    try {
      // Tool output next to a change: only the change counts (the later write closes the burst).
      mkdirSync(join(root, 'coverage'));
      writeFileSync(join(root, 'coverage/coverage-final.json'), '{}');
      mkdirSync(join(root, 'test-results'));
      writeFileSync(join(root, 'test-results/results.json'), '{}');
      await new Promise((resolve) => setTimeout(resolve, 100));
      writeFileSync(join(root, 'coverage/coverage-final.json'), '{"again":1}');
      writeFileSync(join(root, 'modules/a.ts'), '// a\n');
      await until('modules/a.ts', () => seen('modules/a.ts'));
      expect(batches.flat().filter((path) => path.startsWith('coverage') || path.startsWith('test-results'))).toEqual([]);

      // The folder goes (a branch switch): a warning naming it; back, it is watched again.
      rmSync(join(root, 'modules'), { recursive: true });
      await until('a warning', () => warnings.some((line) => line.includes('modules/')));
      mkdirSync(join(root, 'modules'));
      await until('the folder back', () => warnings.some((line) => line.includes('modules/ is back')));
      writeFileSync(join(root, 'modules/b.ts'), '// b\n');
      await until('modules/b.ts', () => seen('modules/b.ts'));
      expect(warnings[0]).toContain('modules/ was removed');
    } finally {
      watcher.close();
    }
  });
});
