/**
 * Start-up: how long a one-module process of the shop's per-module topology takes from launch to
 * ready, and how much memory it holds when idle, started from the build (`keel build`, then
 * plain `node`, as the image runs it) against two baselines measured in the same run: bare Node
 * (a script that only says it is ready) and the same process through tsx (how `keel start`
 * runs from the sources). The deployed process keeps its data in PostgreSQL (`keel deploy` gives every
 * process hosting a module that owns data a `DATABASE_URL`); the same start with the embedded
 * PGlite, the development default, is its own column. The image `keel deploy` writes runs Node 24,
 * so the build is also started on Node 24 (from `.ci/node 24`) when the machine's Node is another,
 * first start and warm compile cache, beside bare Node 24; the targets are judged on the image's
 * Node, first start. Also the size of a production install (`npm ci --omit=dev`).
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchNatsServer } from '../cli/nats-server.js';
import { createTestDatabase } from '../test/support/databases.js';
import { interleavedSamples, medianOf } from './support.js';

const repository = join(import.meta.dirname, '..');
const ROUNDS = 5;
const IDLE_MS = 2_000;
/** The targets of issue 10, for a one-module process started from the build. */
const TARGET = { readyMs: 500, rssMb: 80 } as const;

interface Sample {
  readonly readyMs: number;
  readonly rssMb: number;
}

/** Launches `args`, waits for `marker` on stdout, idles, reads VmRSS, then SIGTERMs it. */
async function sample(command: string, args: readonly string[], env: Record<string, string>, marker: string): Promise<Sample> {
  const started = performance.now();
  const child = spawn(command, args, { cwd: repository, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const readyMs = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`not ready within 30 s: ${args.join(' ')}\n${output}`));
    }, 30_000);
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString('utf8');
      if (output.includes(marker)) {
        clearTimeout(timer);
        resolve(performance.now() - started);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code}) before ready: ${args.join(' ')}\n${output}`));
    });
  });
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? Number.NaN);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
  return { readyMs, rssMb: rssKb / 1024 };
}

/** The image's Node (24): this process's when it runs 24, else the pinned one from `.ci/node 24` (installed into its cache if missing). */
function imageNode(): { path: string; own: boolean } {
  if (process.version.startsWith('v24.')) return { path: process.execPath, own: true };
  const bin = execFileSync(join(repository, '.ci/node'), ['24'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 }).trim();
  return { path: join(bin, 'node'), own: false };
}

function run(command: string, args: string[], cwd: string): void {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
}

function folderBytes(folder: string): number {
  let total = 0;
  for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** A production install of an application depending on keel, as the image's runtime stage makes it. */
function productionInstallMb(): { total: number; largest: string } {
  const folder = mkdtempSync(join(tmpdir(), 'keel-bench-install-'));
  try {
    run('npm', ['pack', '--silent', '--pack-destination', folder], repository);
    const tarball = readdirSync(folder).find((file) => file.endsWith('.tgz'));
    const manifest = JSON.parse(readFileSync(join(repository, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    const app = join(folder, 'app');
    mkdirSync(app);
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'app', private: true, type: 'module', dependencies: { keel: `file:../${tarball}`, zod: manifest.dependencies['zod'] } }),
    );
    run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], app);
    const modules = join(app, 'node_modules');
    const sizes = readdirSync(modules)
      .flatMap((name) => (name.startsWith('@') ? readdirSync(join(modules, name)).map((inner) => `${name}/${inner}`) : [name]))
      .filter((name) => !name.startsWith('.'))
      .map((name) => [name, folderBytes(join(modules, name))] as const)
      .sort((a, b) => b[1] - a[1]);
    const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    return {
      total: folderBytes(modules) / 2 ** 20,
      largest: sizes.slice(0, 5).map(([name, bytes]) => `${name} ${mb(bytes)} MB`).join(', '),
    };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/**
 * Runs the start-up benchmark and returns its markdown section.
 *
 * @example
 * ```ts
 * const { markdown } = await benchStartup();
 * ```
 */
export async function benchStartup(): Promise<{ markdown: string }> {
  // keel's own build is in dist/ (`npm run bench` builds it first); the application's is made here.
  const keel = join(repository, 'dist', 'cli', 'bin.js');
  run(process.execPath, [keel, 'build'], repository);
  const { default: topology } = (await import('../topologies/per-module.js')) as { default: { processes: Record<string, { modules: string[] }> } };
  const modules = Object.values(topology.processes).flatMap((group) => group.modules);
  const image = imageNode();
  // The compile cache the image bakes in (`keel warm`, a line of the Dockerfile `keel deploy` writes), and a fresh copy of it for each
  // start, as each new container gets the image's: a start adds what it compiled beyond it, which the next container would not have.
  // Made before the servers start, so that a failure here leaves nothing running.
  const baked = mkdtempSync(join(tmpdir(), 'keel-bench-baked-cache-'));
  const bakedCopy = `${baked}-run`;
  try {
    execFileSync(image.path, [keel, 'warm'], { cwd: repository, env: { ...process.env, NODE_COMPILE_CACHE: baked }, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (error) {
    rmSync(baked, { recursive: true, force: true });
    throw error;
  }
  // The database first: when PostgreSQL cannot be reached, nothing is left running.
  const database = await createTestDatabase();
  const nats = await launchNatsServer().catch(async (error: unknown) => {
    await database.drop();
    rmSync(baked, { recursive: true, force: true });
    throw error;
  });
  const cache = mkdtempSync(join(tmpdir(), 'keel-bench-compile-cache-'));
  // A module process of a deployed topology: its modules, NATS for the rest, probes and metrics on PORT.
  // Its start-up lines are info records in JSON (its stdout is a pipe): the ready record is the marker.
  // Its data in PostgreSQL, as `keel deploy` configures it (the unmeasured warm-up round applies the migrations, as a first rollout does).
  const moduleEnv = { KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: 'json', PORT: '0', KEEL_HTTP_OPERATIONS: 'none', DATABASE_URL: database.url };
  // The development default: no DATABASE_URL, the embedded PGlite, every module's schema in one data folder of the run's
  // (made and migrated by the warm-up round: the measured rounds open an existing database, as a restart does).
  const pgliteData = mkdtempSync(join(tmpdir(), 'keel-bench-pglite-'));
  const pgliteEnv = { ...moduleEnv, DATABASE_URL: '', KEEL_DATA_DIR: pgliteData, NODE_DISABLE_COMPILE_CACHE: '1' };
  const readyRecord = '"msg":"ready"';
  const bare = `process.stdout.write('{${readyRecord}}\\n'); setInterval(() => {}, 1 << 30); process.on('SIGTERM', () => process.exit(0));`;
  const rows: string[] = [];
  const imageRows: string[] = [];
  const all: Record<string, Sample[]> = { bare: [], build: [], cached: [], tsx: [], pglite: [], imageBuild: [], imageBaked: [], imageBare: [] };
  try {
    for (const module of modules) {
      const startArgs = ['start', '--modules', module, '--nats', nats.url];
      const cases: Record<string, () => Promise<Sample>> = {
        bare: () => sample(process.execPath, ['-e', bare], {}, readyRecord),
        build: () => sample(process.execPath, [keel, ...startArgs, '--build'], { ...moduleEnv, NODE_DISABLE_COMPILE_CACHE: '1' }, readyRecord),
        cached: () => sample(process.execPath, [keel, ...startArgs, '--build'], { ...moduleEnv, NODE_COMPILE_CACHE: cache }, readyRecord),
        tsx: () => sample(process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'cli/bin.ts', ...startArgs], moduleEnv, readyRecord),
        pglite: () => sample(process.execPath, [keel, ...startArgs, '--build'], pgliteEnv, readyRecord),
        // A container's first start: the image's Node with the image's compile cache.
        imageBaked: () => {
          rmSync(bakedCopy, { recursive: true, force: true });
          cpSync(baked, bakedCopy, { recursive: true });
          return sample(image.path, [keel, ...startArgs, '--build'], { ...moduleEnv, NODE_COMPILE_CACHE: bakedCopy }, readyRecord);
        },
        // The image's Node, when this is another: the same starts as `build` and `bare`.
        ...(image.own
          ? {}
          : {
              imageBuild: () => sample(image.path, [keel, ...startArgs, '--build'], { ...moduleEnv, NODE_DISABLE_COMPILE_CACHE: '1' }, readyRecord),
              imageBare: () => sample(image.path, ['-e', bare], {}, readyRecord),
            }),
      };
      const samples = await interleavedSamples(ROUNDS, cases);
      /** A case's medians for this module; `count` false for a cell shown twice, whose samples are already counted. */
      const cell = (name: string, count = true) => {
        const list = samples[name]!;
        if (count) all[name]!.push(...list);
        return `${medianOf(list.map((entry) => entry.readyMs)).toFixed(0)} ms · ${medianOf(list.map((entry) => entry.rssMb)).toFixed(0)} MB`;
      };
      rows.push(`| ${module} | ${cell('build')} | ${cell('cached')} | ${cell('tsx')} | ${cell('pglite')} | ${cell('bare')} |`);
      // On Node 24 itself, its no-cache and bare columns are the `build` and `bare` cases, counted above.
      imageRows.push(`| ${module} | ${cell(image.own ? 'build' : 'imageBuild', !image.own)} | ${cell('imageBaked')} | ${cell(image.own ? 'bare' : 'imageBare', !image.own)} |`);
    }
  } finally {
    const report = (step: string) => (error: unknown) => console.error(`start-up bench: ${step} failed: ${String(error)}`);
    await nats.stop().catch(report('stopping nats-server'));
    await database.drop().catch(report('dropping the database'));
    rmSync(cache, { recursive: true, force: true });
    rmSync(baked, { recursive: true, force: true });
    rmSync(bakedCopy, { recursive: true, force: true });
    rmSync(pgliteData, { recursive: true, force: true });
  }
  const ready = (name: string) => medianOf(all[name]!.map((entry) => entry.readyMs));
  const rss = (name: string) => medianOf(all[name]!.map((entry) => entry.rssMb));
  const install = productionInstallMb();
  const verdict = (value: number, target: number, unit: string) => `${value.toFixed(0)} ${unit} (target ≤ ${target} ${unit}: ${value <= target ? 'met' : 'not met'})`;
  const node = process.version.slice(1);
  const imageVersion = image.own ? node : execFileSync(image.path, ['--version'], { encoding: 'utf8' }).trim().slice(1);
  // The targets are the deployed process's: the image's Node, a container's first start (the compile cache the image bakes in).
  const [judgedCold, judgedBare] = image.own ? ['build', 'bare'] : ['imageBuild', 'imageBare'];
  const judged = 'imageBaked';
  const imageSection = [
    `On Node ${imageVersion}, the Node of the image \`keel deploy\` writes (\`FROM node:24-slim\`), in the same rounds; "the image's compile cache": ` +
      'the cache `keel warm` fills in the image (a line of its Dockerfile), a fresh copy of it for each start, as each new container has it:',
    '',
    '| module | build, no compile cache | build, the image\'s compile cache: a container\'s first start | bare Node |',
    '| --- | ---: | ---: | ---: |',
    ...imageRows,
    '',
  ];
  const markdown = [
    '## Start-up of a one-module process',
    '',
    `On this machine's Node (${node}) unless said otherwise. Each module of \`topologies/per-module.ts\` started alone, hosting that module, reaching the others over a local nats-server, serving probes and metrics on a port (\`KEEL_HTTP_OPERATIONS=none\`, as \`keel deploy\` sets), its data in the machine's PostgreSQL (\`DATABASE_URL\`, as \`keel deploy\` gives every process hosting a module that owns data; one database for the run: the unmeasured warm-up round of each module applies its migrations, as a first rollout does). Launch to the \`ready\` log record, and resident memory (VmRSS) after ${IDLE_MS / 1000} s idle; medians of ${ROUNDS} interleaved rounds.`,
    '',
    '- **build**: `node node_modules/keel/dist/cli/bin.js start` on the output of `keel build`, as the image runs it, on its first start (`NODE_DISABLE_COMPILE_CACHE=1`);',
    '- **build, compile cache warm**: the same with the compile cache the `keel` executable turns on (Node ≥ 22.1; Node 20 has none, so there it is the first start again), filled by an earlier start, as a restarted container finds it;',
    '- **tsx**: `keel start` from the TypeScript sources through tsx (development);',
    '- **build, embedded PGlite**: the build with no `DATABASE_URL`: the development default, the embedded PGlite (WebAssembly PostgreSQL) in one data folder for the run, which the warm-up round made, so each measured start opens an existing database;',
    '- **bare Node**: a script that prints the line and idles: the floor.',
    '',
    '| module | build | build, compile cache warm | tsx | build, embedded PGlite | bare Node |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
    '',
    ...imageSection,
    `Targets (issue 10), judged as the image runs a module process (Node ${imageVersion}, the compile cache \`keel warm\` baked in), over every module: ` +
      `ready in ${verdict(ready(judged), TARGET.readyMs, 'ms')}, idle at ${verdict(rss(judged), TARGET.rssMb, 'MB')}; ` +
      `with no compile cache ready in ${ready(judgedCold).toFixed(0)} ms and idle at ${rss(judgedCold).toFixed(0)} MB; ` +
      `bare Node ${imageVersion} takes ${ready(judgedBare).toFixed(0)} ms and ${rss(judgedBare).toFixed(0)} MB.`,
    '',
    `On Node ${node}, over every module: from the build, ready in ${ready('build').toFixed(0)} ms, idle at ${rss('build').toFixed(0)} MB; with a warm compile cache ready in ${ready('cached').toFixed(0)} ms. ` +
      `The build is ready in ${(ready('build') / ready('tsx')).toFixed(2)}× the time of tsx and holds ${(rss('build') / rss('tsx')).toFixed(2)}× its memory; ` +
      `with the embedded PGlite instead of PostgreSQL it is ready in ${ready('pglite').toFixed(0)} ms and idles at ${rss('pglite').toFixed(0)} MB; ` +
      `bare Node takes ${ready('bare').toFixed(0)} ms and ${rss('bare').toFixed(0)} MB.`,
    '',
    `Production install (\`npm install --omit=dev\` of an application depending on keel and zod): ${install.total.toFixed(1)} MB of node_modules; largest: ${install.largest}.`,
    '',
  ].join('\n');
  return { markdown };
}
