/**
 * The slow one: keel as users get it, on whatever Node runs the suite (CI runs this file on
 * every supported line). Packs keel with `npm pack`, creates an application with `keel new`,
 * installs the tarball (dependencies from the npm cache or registry), generates two modules
 * where one depends on the other (with `--operations`) and reuses its declared error, the first
 * owning data (`--data`), and a third that handles their events (`--subscribes-to`), and runs
 * the new application's own checks: its `npm test` (typecheck, then tests) and its tests over
 * NATS (data in PGlite in memory), its typecheck, the installed CLI's `check` and `contracts
 * snapshot`/`diff`, `npm start` with HTTP calls, twice (the data kept in .keel/data across the
 * restart), and then the steps of the Dockerfile `keel deploy` writes: build, production
 * install, start (its data in the machine's PostgreSQL, as compose's DATABASE_URL would put
 * it), `/readyz`, HEALTHCHECK.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join } from 'node:path';
import nodeModule, { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { parse as parseYaml } from 'yaml';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { runDockerfileSteps, runHealthcheck, startCmd, userOf } from './support/dockerfile.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
/** Node 22.1 and later keep a module compile cache, which the image's `keel warm` fills. */
const hasCompileCache = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function';

/** The environment of a user's shell: none of the variables npm, vitest or this repository's tests set. */
function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|KEEL_)/i.test(key) || key === 'NODE_OPTIONS' || key === 'TEST' || key === 'NODE_ENV') continue;
    env[key] = value;
  }
  // info: keel start's own lines (hosting, data, ready, stopped) are info records.
  return { ...env, KEEL_LOG_LEVEL: 'info', NO_COLOR: '1', ...extra };
}

function run(command: string, args: string[], cwd: string, extra: Record<string, string> = {}): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, env: userEnvironment(extra), encoding: 'utf8', timeout: 240_000 });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd} (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

/** POSTs `input` to an operation of the application on `port` and returns the answer's status and body. */
async function call(port: number, path: string, input: unknown): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(input),
  });
  return { status: response.status, body: await response.json() };
}

/** A `check` for {@link startAndCall}: billing (which owns data) has greeted Ada `times` times, this call included. */
function greetsAda(times: number): (port: number) => Promise<void> {
  return async (port) => {
    expect(await call(port, '/billing/hello', { name: 'Ada' })).toEqual({ status: 200, body: { message: 'Hello, Ada, from billing.', greetings: times } });
  };
}

/**
 * Waits for a started application to be ready, reads the gateway's port from its output,
 * checks /readyz and one operation over HTTP (and `check`, if given), then stops it and expects
 * a clean stop. Returns its output. A child started `detached` (npm, which forwards signals to
 * keel but ends by them itself, as in a terminal) is stopped through its process group, and
 * keel's own report of its stop is what is checked; any other exits 0 on SIGTERM.
 */
async function startAndCall(child: ChildProcessByStdio<null, Readable, Readable>, check?: (port: number) => void | Promise<void>): Promise<string> {
  const group = child.spawnargs[0] === 'npm';
  const signal = (name: NodeJS.Signals): void => {
    if (group && child.pid !== undefined) process.kill(-child.pid, name);
    else child.kill(name);
  };
  let output = '';
  // 'close', not 'exit': npm ends by the signal while keel, which shares its pipes, still drains and
  // closes its database; the pipes close once every process of the group has exited.
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  const ready = new Promise<void>((resolve, reject) => {
    const collect = (chunk: Buffer): void => {
      output += chunk.toString('utf8');
      if (output.includes('"msg":"ready"')) resolve();
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    void exited.then((code) => reject(new Error(`the application exited (${code}) before it was ready:\n${output}`)));
  });
  const timer = setTimeout(() => signal('SIGKILL'), 60_000);
  try {
    await ready;
    const base = /"msg":"HTTP gateway on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
    expect(base, output).toBeDefined();
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    const response = await fetch(`${base}/greeter/hello`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Ada' }),
    });
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ message: expect.stringContaining('Ada') });
    await check?.(Number(new URL(base as string).port));
  } finally {
    signal('SIGTERM');
  }
  const code = await exited;
  clearTimeout(timer);
  if (!group) expect(code, output).toBe(0);
  expect(output.indexOf('"msg":"stopped"}\n'), output).toBeGreaterThan(output.indexOf('"msg":"stopping: finishing work in flight"}\n'));
  expect(output).toContain('"msg":"stopping: finishing work in flight"}\n');
  return output;
}

describe('cli - the packed package', () => {
  const folder = mkdtempSync(join(tmpdir(), 'keel-package-'));
  const app = join(folder, 'my-shop');
  let tarball: string;
  let server: NatsServer;
  let database: TestDatabase | undefined;

  beforeAll(async () => {
    server = await startNatsServer();
    run('npm', ['pack', '--silent', '--pack-destination', folder], repository);
    const packed = readdirSync(folder).find((file) => file.endsWith('.tgz'));
    if (packed === undefined) throw new Error(`npm pack wrote no tarball to ${folder}`);
    tarball = join(folder, packed);
  }, 120_000);

  afterAll(async () => {
    await database?.drop();
    rmSync(folder, { recursive: true, force: true });
  });

  it('cli - a new application installs keel from the tarball, generates modules, passes its own tests and checks, serves HTTP, and runs from a production install of its build as its Dockerfile says', async () => {
    const listing = run('tar', ['-tzf', tarball], folder).stdout.split('\n');
    expect(listing).toContain('package/dist/cli/bin.js');
    expect(listing).toContain('package/dist/kernel/index.d.ts');
    expect(listing).toContain('package/dist/kernel/transport-entry.d.ts');
    expect(listing.some((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))).toBe(false);

    // As README's "Three ways to use keel" step 1 says: the tarball's own `keel` bin, through npx.
    const created = run('npx', ['--yes', '--package', `./${basename(tarball)}`, '--', 'keel', 'new', 'my-shop', '--keel', `file:${tarball}`], folder);
    expect(created.stdout).toContain('Created my-shop in my-shop, with the module greeter.');

    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], app);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'keel', 'package.json'), 'utf8'));
    expect(installed.bin).toEqual({ keel: './dist/cli/bin.js' });
    // Both doors resolve from the installed package, each to its own names.
    const doors = run(
      process.execPath,
      ['--input-type=module', '-e', "const [a, t] = [await import('keel'), await import('keel/transport')]; console.log(typeof a.createKernel, typeof t.createLocalTransport, 'createLocalTransport' in a);"],
      app,
    );
    expect(doors.stdout.trim()).toBe('function function false');

    const keel = join(app, 'node_modules', '.bin', 'keel');
    // billing owns data: a migration, and a hello that counts each name's greetings in its own table.
    run(keel, ['generate', 'module', 'billing', '--depends-on', 'greeter', '--events', 'invoiceSent', '--data'], app);
    const shipping = run(keel, ['generate', 'module', 'shipping', '--depends-on', 'billing', '--operations', 'ship'], app);
    expect(shipping.stdout).toContain('updated modules/index.ts  (registers shippingModule)');
    // reminders handles billing's and greeter's events: a stub for each, read from their contracts.
    run(keel, ['generate', 'module', 'reminders', '--subscribes-to', 'billing,greeter'], app);
    expect(readFileSync(join(app, 'modules', 'reminders', 'module.ts'), 'utf8')).toContain('  subscribesTo: [billing, greeter],\n');

    // shipping reuses billing's declared error, as the shop's orders contract reuses payments'.
    const billingContract = join(app, 'modules', 'billing', 'contract.ts');
    writeFileSync(
      billingContract,
      readFileSync(billingContract, 'utf8')
        .replace("import { defineContract,", "import { ErrorKind, defineContract, defineError,")
        .replace(
          'export const billing = defineContract({',
          [
            'export const InvoiceMissing = defineError({',
            "  code: 'INVOICE_MISSING',",
            '  kind: ErrorKind.NOT_FOUND,',
            '  data: z.object({ invoice: z.string() }),',
            "  message: (data) => `No invoice ${data.invoice}.`,",
            '});',
            '',
            'export const billing = defineContract({',
          ].join('\n'),
        )
        .replace("\n      description: 'Greets", "\n      errors: [InvoiceMissing],\n      description: 'Greets"),
    );
    expect(readFileSync(billingContract, 'utf8')).toContain('errors: [InvoiceMissing]');
    const shippingContract = join(app, 'modules', 'shipping', 'contract.ts');
    writeFileSync(
      shippingContract,
      readFileSync(shippingContract, 'utf8')
        .replace("import { defineContract, operation } from 'keel/contract';", "import { defineContract, operation } from 'keel/contract';\nimport { InvoiceMissing } from '../billing/contract.js';")
        .replace("      idempotent: true,", "      idempotent: true,\n      errors: [InvoiceMissing],"),
    );
    expect(readFileSync(shippingContract, 'utf8')).toContain('errors: [InvoiceMissing]');

    const vitest = join(app, 'node_modules', '.bin', 'vitest');
    // greeter 3, billing 4 (its greetings counted in a PGlite in memory), shipping 2, reminders 2.
    // npm test is the typecheck, then vitest.
    const inProcess = run('npm', ['test'], app);
    expect(inProcess.stdout).toContain('> tsc --noEmit');
    expect(inProcess.stdout).toMatch(/Tests\s+11 passed/);
    const overNats = run(vitest, ['run'], app, { KEEL_NATS_URL: server.url });
    expect(overNats.stdout).toMatch(/Tests\s+11 passed/);
    run(join(app, 'node_modules', '.bin', 'tsc'), ['--noEmit'], app);
    // With declarations on (a contract shared as a package), every type a contract, an error or a
    // module infers can be named from 'keel' or 'keel/contract' (TS2883 otherwise), with the installed declarations.
    run(join(app, 'node_modules', '.bin', 'tsc'), ['--noEmit', '--declaration'], app);

    // The installed CLI (JavaScript) loads contracts that import contracts, on whatever Node runs it.
    expect(run(keel, ['check'], app).stdout).toMatch(/keel check: no problems \(4 modules, \d+ files, 4 contracts loaded\)/);
    run(keel, ['contracts', 'snapshot'], app);
    const lock = JSON.parse(readFileSync(join(app, 'contracts.lock.json'), 'utf8'));
    expect(JSON.stringify(lock)).toContain('INVOICE_MISSING');
    expect(run(keel, ['contracts', 'diff'], app).stdout).toContain('keel contracts diff: the contracts match the lock.');

    // `npm start` is `keel start`: the application in one process, serving HTTP, until SIGTERM drains it.
    // billing's data is in the embedded database in .keel/data/app, kept across a restart.
    const npmStart = () => spawn('npm', ['start'], { cwd: app, env: userEnvironment({ PORT: '0' }), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const started = await startAndCall(npmStart(), greetsAda(1));
    expect(started).toContain('"msg":"hosting greeter, billing, shipping, reminders"');
    expect(started).toContain('"msg":"data of billing: pglite in .keel/data/app"');
    expect(await startAndCall(npmStart(), greetsAda(2))).toContain('"msg":"data of billing: pglite in .keel/data/app"');

    // The Dockerfile keel deploy writes, step by step: build stage (npm ci, keel build), then the
    // runtime stage (production install, the build only), started by its CMD as its USER with the
    // environment compose gives the topology's one process, and checked by its HEALTHCHECK.
    run(keel, ['deploy', 'topologies/single.ts', '--out', 'deploy'], app);
    const compose = parseYaml(readFileSync(join(app, 'deploy', 'compose.yaml'), 'utf8')) as { services: Record<string, { environment: Record<string, string> }> };
    // billing owns data: compose runs PostgreSQL beside the application's one process.
    expect(Object.keys(compose.services)).toEqual(['postgres', 'app']);
    expect(compose.services['app']?.environment['DATABASE_URL']).toBe('postgres://keel:keel@postgres:5432/my-shop');
    // The image's user (uid 1000, when this test runs as root) runs the RUN lines after USER and the CMD:
    // it must reach its files, as in the image, and run the Node of this test (the image has one Node),
    // whose folder may be closed to it (root's home, where .ci/node keeps the Node lines): a copy it can run.
    chmodSync(folder, 0o755);
    const imageNode = join(folder, 'node-bin');
    mkdirSync(imageNode);
    copyFileSync(process.execPath, join(imageNode, 'node'));
    const imagePath = `${imageNode}${delimiter}${process.env['PATH'] ?? ''}`;
    const stages = runDockerfileSteps({
      dockerfile: join(app, 'deploy', 'Dockerfile'),
      context: app,
      workspace: join(folder, 'image'),
      env: userEnvironment({ npm_config_prefer_offline: 'true', npm_config_loglevel: 'error', PATH: imagePath }),
    });
    const runtime = stages.at(-1);
    if (runtime === undefined) throw new Error('the Dockerfile has no stage');
    expect(stages.map((stage) => stage.name)).toEqual(['build', 'runtime']);
    expect(readdirSync(runtime.folder).sort()).toEqual(['.node-compile-cache', 'dist', 'node_modules', 'package-lock.json', 'package.json']);
    for (const devOnly of ['tsx', 'typescript', 'vitest']) expect(existsSync(join(runtime.folder, 'node_modules', devOnly)), devOnly).toBe(false);
    expect(runtime.user).toBe('node');
    // `keel warm` filled Node's compile cache as the image's user (Node keys it by user and version):
    // one folder of this Node and that user, holding the code a start loads. Node 20 has no such cache.
    const cacheFolders = readdirSync(join(runtime.folder, '.node-compile-cache'));
    if (hasCompileCache) {
      const uid = process.getuid?.() === 0 ? 1000 : process.getuid?.();
      expect(cacheFolders).toEqual([expect.stringMatching(new RegExp(`^v${process.versions.node.replaceAll('.', '\\.')}-.+-${uid}$`))]);
      // Warming again as that user finds everything there: the image's warm loaded what warm loads (a CLI start alone fills about 470).
      const again = spawnSync(join(imageNode, 'node'), ['node_modules/keel/dist/cli/bin.js', 'warm'], {
        cwd: runtime.folder,
        env: userEnvironment({ PATH: imagePath, NODE_COMPILE_CACHE: join(runtime.folder, '.node-compile-cache') }),
        encoding: 'utf8',
        ...userOf(runtime),
      });
      expect(again.status, again.stderr).toBe(0);
      const [, written, total] = /keel warm: (\d+) files? .* \((\d+) there in all\)/.exec(again.stdout) ?? [];
      expect(Number(written), again.stdout).toBe(0);
      expect(Number(total), again.stdout).toBeGreaterThan(800);
      expect(readdirSync(join(runtime.folder, '.node-compile-cache', cacheFolders[0]!)).length).toBe(Number(total));
    } else {
      expect(cacheFolders).toEqual([]);
    }
    // With the cache turned off, it says there is nothing to warm and does not fail the image's build (nor on Node 20, which has none).
    const disabled = spawnSync(join(imageNode, 'node'), ['node_modules/keel/dist/cli/bin.js', 'warm'], {
      cwd: runtime.folder,
      env: { ...userEnvironment({ PATH: imagePath }), NODE_DISABLE_COMPILE_CACHE: '1' },
      encoding: 'utf8',
    });
    expect(disabled.status, disabled.stderr).toBe(0);
    expect(disabled.stderr).toContain(hasCompileCache ? 'NODE_DISABLE_COMPILE_CACHE is set): nothing to warm' : 'has no module compile cache');
    // compose's DATABASE_URL names its postgres service; here the machine's PostgreSQL stands in for it,
    // in a database made for this test: the production install reaches PostgreSQL through keel/postgres.
    database = await createTestDatabase();
    const environment = userEnvironment({ ...compose.services['app']?.environment, DATABASE_URL: database.url, PORT: '0', KEEL_HTTP_HOST: '127.0.0.1', PATH: imagePath });
    const production = await startAndCall(startCmd(runtime, environment), async (port) => {
      runHealthcheck(runtime, { ...environment, PORT: String(port) });
      await greetsAda(1)(port);
    });
    expect(production).toContain('"msg":"running the build in dist/');
    expect(production).toContain('"msg":"hosting greeter, billing, shipping, reminders"');
    expect(production).toMatch(/"msg":"data of billing: postgres at 127\.0\.0\.1:5432\/keel_test_\w+/);
  }, 600_000);
});
