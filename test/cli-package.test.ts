/**
 * The slow one: keel as users get it. Packs keel with `npm pack`, creates an application with
 * `keel new`, installs the tarball (dependencies from the npm cache or registry), generates two
 * modules where one depends on the other, and runs the new application's own checks: its
 * tests in process and over NATS, its typecheck, and `keel start`.
 */
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

/** The environment of a user's shell: none of the variables npm, vitest or this repository's tests set. */
function userEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|VITEST|KEEL_)/i.test(key) || key === 'NODE_OPTIONS' || key === 'TEST' || key === 'NODE_ENV') continue;
    env[key] = value;
  }
  return { ...env, KEEL_LOG_LEVEL: 'warn', NO_COLOR: '1', ...extra };
}

function run(command: string, args: string[], cwd: string, extra: Record<string, string> = {}): SpawnSyncReturns<string> {
  const result = spawnSync(command, args, { cwd, env: userEnvironment(extra), encoding: 'utf8', timeout: 240_000 });
  if (result.status !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd} (${result.status ?? result.signal}):\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

describe('cli - the packed package', () => {
  const folder = mkdtempSync(join(tmpdir(), 'keel-package-'));
  const app = join(folder, 'my-shop');
  let tarball: string;
  let server: NatsServer;

  beforeAll(async () => {
    server = await startNatsServer();
    run('npm', ['pack', '--silent', '--pack-destination', folder], repository);
    const packed = readdirSync(folder).find((file) => file.endsWith('.tgz'));
    if (packed === undefined) throw new Error(`npm pack wrote no tarball to ${folder}`);
    tarball = join(folder, packed);
  }, 120_000);

  afterAll(() => {
    rmSync(folder, { recursive: true, force: true });
  });

  it('cli - a new application installs keel from the tarball, generates modules and passes its own tests', async () => {
    const listing = run('tar', ['-tzf', tarball], folder).stdout.split('\n');
    expect(listing).toContain('package/dist/cli/bin.js');
    expect(listing).toContain('package/dist/kernel/index.d.ts');
    expect(listing.some((file) => file.endsWith('.ts') && !file.endsWith('.d.ts'))).toBe(false);

    // As README's "Three ways to use keel" step 1 says: the tarball's own `keel` bin, through npx.
    const created = run('npx', ['--yes', '--package', `./${basename(tarball)}`, '--', 'keel', 'new', 'my-shop', '--keel', `file:${tarball}`], folder);
    expect(created.stdout).toContain('Created my-shop in my-shop, with the module greeter.');

    run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], app);
    const installed = JSON.parse(readFileSync(join(app, 'node_modules', 'keel', 'package.json'), 'utf8'));
    expect(installed.bin).toEqual({ keel: './dist/cli/bin.js' });

    const keel = join(app, 'node_modules', '.bin', 'keel');
    run(keel, ['generate', 'module', 'billing', '--depends-on', 'greeter', '--events', 'invoiceSent'], app);
    const shipping = run(keel, ['generate', 'module', 'shipping', '--depends-on', 'billing'], app);
    expect(shipping.stdout).toContain('updated modules/index.ts  (registers shippingModule)');

    const vitest = join(app, 'node_modules', '.bin', 'vitest');
    const inProcess = run(vitest, ['run'], app);
    expect(inProcess.stdout).toMatch(/Tests\s+8 passed/);
    const overNats = run(vitest, ['run'], app, { KEEL_NATS_URL: server.url });
    expect(overNats.stdout).toMatch(/Tests\s+8 passed/);
    run(join(app, 'node_modules', '.bin', 'tsc'), ['--noEmit'], app);

    // `npm start` is `keel start`: the application in one process, until SIGTERM drains it.
    const start = spawn(keel, ['start'], { cwd: app, env: userEnvironment(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const ready = new Promise<void>((resolve, reject) => {
      const collect = (chunk: Buffer): void => {
        output += chunk.toString('utf8');
        if (output.includes('keel: ready')) resolve();
      };
      start.stdout.on('data', collect);
      start.stderr.on('data', collect);
      start.once('exit', (code) => reject(new Error(`keel start exited (${code}) before it was ready:\n${output}`)));
    });
    const exited = new Promise<number | null>((resolve) => start.once('exit', resolve));
    await ready;
    start.kill('SIGTERM');
    expect(await exited, output).toBe(0);
    expect(output).toContain('keel: hosting greeter, billing, shipping');
    expect(output).toContain('keel: stopped');
  }, 300_000);
});
