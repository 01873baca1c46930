/**
 * `keel build` on the shop (this repository's example application) and on small projects made
 * here: what it writes, what it refuses, and `keel start --build` running what it wrote. The
 * packed-package test runs a build from a production install, with neither tsx nor TypeScript.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, runCli } from 'keel/cli';
import { READY, collector, gatewayUrl, logMessages, logRecords, runKeel } from './support/cli.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
/** The shop's build folder: `keel.outDir` in this repository's package.json. */
const shopBuild = join(repository, 'build');
const scratchRoot = join(repository, '.scratch');
mkdirSync(scratchRoot, { recursive: true });
const scratch = mkdtempSync(join(scratchRoot, 'build-test-'));

afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A project of its own under .scratch (so that TypeScript resolves from this repository's node_modules). */
function project(name: string, files: Record<string, string>): string {
  const root = join(scratch, name);
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

const tsconfig = JSON.stringify({
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, types: ['node'], noEmit: true },
  include: ['modules'],
});

function files(folder: string): string[] {
  return readdirSync(folder, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => relative(folder, join(entry.parentPath, entry.name)));
}

describe('cli - keel build', () => {
  it('cli - builds the shop to JavaScript (modules, topologies, the entry in keel.entry) with a build record, and no tests', async () => {
    const built = await runKeel(['build'], { cwd: repository });
    expect(built, built.stderr).toMatchObject({ code: 0 });
    expect(built.stdout).toMatch(/^keel build: \d+ JavaScript files from modules, topologies, keel.config.ts, app in build\/ \(/);

    const written = files(shopBuild);
    // Every source file of the compiled folders is in the build, whatever the shop names its files:
    // TypeScript as JavaScript with its map, anything else (the modules' SQL migrations) as it is.
    const sources = ['modules', 'topologies', 'app'].flatMap((folder) => files(join(repository, folder)).map((file) => `${folder}/${file}`));
    const expected = sources.flatMap((file) => (file.endsWith('.ts') ? [file.replace(/\.ts$/, '.js'), file.replace(/\.ts$/, '.js.map')] : [file]));
    expect(written).toEqual(expect.arrayContaining(expected));
    expect(expected).toEqual(expect.arrayContaining(['modules/index.js', 'topologies/split.js', 'app/main.js']));
    // The application's configuration travels with the build, where keel start reads it.
    expect(written).toEqual(expect.arrayContaining(['keel.config.js']));
    expect(written.filter((file) => file.endsWith('.sql')).length, 'the migrations of the modules that own data').toBeGreaterThanOrEqual(5);
    expect(written.filter((file) => /\.test\.|\.ts$/.test(file) && !file.endsWith('.d.ts'))).toEqual([]);
    const record = JSON.parse(readFileSync(join(shopBuild, 'keel-build.json'), 'utf8'));
    expect(record).toMatchObject({ manifest: 'modules/index.js', keel: JSON.parse(readFileSync(join(repository, 'package.json'), 'utf8')).version });
    expect(Date.parse(record.builtAt)).not.toBeNaN();
  }, 120_000);

  it('cli - keel start --build runs the JavaScript of the build where the sources are too', async () => {
    expect(existsSync(join(shopBuild, 'keel-build.json')), 'the test above builds the shop').toBe(true);
    const stdout = collector();
    const stderr = collector();
    const controller = new AbortController();
    const exit = runCli(main, ['start', '--build', '--http', '0'], {
      cwd: repository,
      // The shop's modules own data: in memory, so that the run neither holds the repository's .keel/data/app nor keeps data.
      env: { KEEL_LOG_LEVEL: 'info', KEEL_DATA_DIR: 'memory' },
      stdout,
      stderr,
      signal: controller.signal,
    });
    const deadline = Date.now() + 30_000;
    while (!stdout.text.includes(READY) && Date.now() < deadline) {
      const ended = await Promise.race([exit, new Promise((resolve) => setTimeout(resolve, 50, 'waiting'))]);
      if (ended !== 'waiting') expect.fail(`keel start ended (${String(ended)}) before it was ready:\n${stderr.text}`);
    }
    const url = gatewayUrl(stdout.text);
    try {
      expect(logRecords(stdout.text)[0]).toMatchObject({ build: 'build/', msg: expect.stringMatching(/^running the build in build\/ \(built \d{4}-/) });
      expect(logMessages(stdout.text)).toContain('configuration from build/keel.config.js');
      expect(logMessages(stdout.text)).toContain('data of catalog, inventory, payments, orders, notifications: pglite in memory');
      // KB-001 is seeded by a catalog migration: the built module found its migrations beside it in the build.
      const response = await fetch(`${url}/catalog/getProduct`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'KB-001' }),
      });
      expect(await response.json()).toMatchObject({ sku: 'KB-001' });
    } finally {
      controller.abort('SIGTERM');
    }
    expect(await exit).toBe(0);
  }, 60_000);

  it('cli - keel build reports tsc errors as E_BUILD and leaves no half build', async () => {
    const root = project('broken', {
      'package.json': JSON.stringify({ name: 'broken', type: 'module' }),
      'tsconfig.json': tsconfig,
      'modules/index.ts': "export const modules: number = 'not a number';\n",
    });
    const built = await runKeel(['build'], { cwd: root });
    expect(built.code).toBe(1);
    expect(built.stderr).toContain('error E_BUILD: tsc found errors; nothing usable was built:');
    expect(built.stderr).toMatch(/modules\/index\.ts\(1,14\): error TS2322/);
    expect(existsSync(join(root, 'dist'))).toBe(false);

    const start = await runKeel(['start', '--build'], { cwd: root });
    expect(start.code).toBe(1);
    expect(start.stderr).toContain(`error E_BUILD: ${root} has no build in dist/ to start.`);
  }, 60_000);

  it('cli - keel build replaces its own earlier build, and refuses an output folder holding other files or a corrupt record, the sources, one outside the project, and a manifest at the root', async () => {
    const root = project('refusals', {
      'package.json': JSON.stringify({ name: 'refusals', type: 'module', keel: { outDir: 'out' } }),
      'tsconfig.json': tsconfig,
      'modules/index.ts': 'export const modules = [];\n',
    });
    expect((await runKeel(['build'], { cwd: root })).code).toBe(0);
    writeFileSync(join(root, 'out', 'stale.js'), 'an earlier build left this');
    expect((await runKeel(['build'], { cwd: root })).code).toBe(0);
    expect(files(join(root, 'out')).sort()).toEqual(['keel-build.json', 'modules/index.js', 'modules/index.js.map']);

    writeFileSync(join(root, 'out', 'keel-build.json'), 'not json');
    const corrupt = await runKeel(['build'], { cwd: root });
    expect(corrupt.stderr).toContain(`error E_BUILD: ${join(root, 'out', 'keel-build.json')} is not a build record keel wrote.`);
    expect(corrupt.stderr).toContain(`If ${join(root, 'out')} is an old build, delete it and run \`keel build\` again`);

    rmSync(join(root, 'out', 'keel-build.json'));
    const foreign = await runKeel(['build'], { cwd: root });
    expect(foreign.code).toBe(1);
    expect(foreign.stderr).toContain('error E_BUILD: keel build will not write to out: it holds files that keel build did not write');
    expect(files(join(root, 'out')).sort()).toEqual(['modules/index.js', 'modules/index.js.map']);

    const sources = await runKeel(['build', '--out-dir', 'modules'], { cwd: root });
    expect(sources.stderr).toContain('keel build will not write to modules: the sources are in it.');
    const outside = await runKeel(['build', '--out-dir', '../elsewhere'], { cwd: root });
    expect(outside.stderr).toContain('keel build will not write to ../elsewhere: it must be a folder inside the project.');

    const entry = project('bad-entry', {
      'package.json': JSON.stringify({ name: 'bad-entry', type: 'module', keel: { entry: 'app/main.ts' } }),
      'modules/index.ts': 'export const modules = [];\n',
    });
    const wrongShape = await runKeel(['build'], { cwd: entry });
    expect(wrongShape.stderr).toContain('"keel.entry" must be an array of paths relative to the project root');

    const atRoot = project('root-manifest', {
      'package.json': JSON.stringify({ name: 'root-manifest', type: 'module', keel: { manifest: 'index.ts' } }),
      'index.ts': 'export const modules = [];\n',
    });
    const rootManifest = await runKeel(['build'], { cwd: atRoot });
    expect(rootManifest.stderr).toContain(`error E_BUILD: keel build compiles the manifest's folder, and ${join(atRoot, 'index.ts')} is at the project root.`);
  }, 60_000);
});
