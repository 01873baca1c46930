/**
 * `keel warm` as the image runs it, a process of its own: what of the application does not load
 * here is reported and does not fail it, and a handle a module opens when imported does not keep
 * it running. On Node 20, which has no compile cache, it says so and warms nothing.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { main, runCli } from 'keel/cli';
import { collector, copyWhoamiApp } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const major = Number(process.versions.node.split('.')[0]);
const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** The one-module fixture application (whoami), whose module opens a timer when imported and whose keel.config.ts throws. */
function applicationWithAHandleAndABrokenConfig(): { root: string; cache: string } {
  // Under the repository's .scratch, so that keel build finds TypeScript in its node_modules.
  mkdirSync(join(repository, '.scratch'), { recursive: true });
  const parent = mkdtempSync(join(repository, '.scratch', 'warm-test-'));
  temporary.push(parent);
  const root = copyWhoamiApp(parent);
  const module = join(root, 'modules/whoami/module.ts');
  writeFileSync(module, `${readFileSync(module, 'utf8')}\n// A cache refreshed every minute, from import on.\nsetInterval(() => {}, 60_000);\n`);
  writeFileSync(join(root, 'keel.config.ts'), "throw new Error('WHOAMI_SECRET is not set');\n");
  // Built without type checking: keel's types come from its dist/, which is not there on a fresh clone and which
  // another test file's npm pack rebuilds while this one runs. What is checked here is warm, not the build.
  const compilerOptions = { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, experimentalDecorators: true, skipLibCheck: true, noCheck: true };
  writeFileSync(join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions }));
  return { root, cache: join(parent, 'compile-cache') };
}

/** `keel build`, in process: keel warm warms the build, as the image has it. */
async function build(root: string): Promise<void> {
  const stderr = collector();
  expect(await runCli(main, ['build'], { cwd: root, env: {}, stdout: collector(), stderr }), stderr.text).toBe(0);
}

/** `keel warm` from source, as `npx keel warm` in the application runs it; rejects after 30 s, a hang. */
async function warm(root: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const environment = { ...process.env, ...env };
  delete environment['NODE_DISABLE_COMPILE_CACHE'];
  const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'warm'], {
    cwd: root,
    env: environment,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  if (signal === 'SIGKILL') throw new Error(`keel warm was still running after 30 s. Its output:\n${stdout}${stderr}`);
  return { code, stdout, stderr };
}

describe('cli - keel warm', () => {
  it(
    major >= 22
      ? `cli - reports a configuration that does not load, fills the cache, and exits 0 though a module left a timer running (Node ${process.versions.node})`
      : `cli - says Node ${process.versions.node} has no compile cache and exits 0, warming nothing`,
    async () => {
      const { root, cache } = applicationWithAHandleAndABrokenConfig();
      await build(root);
      const { code, stdout, stderr } = await warm(root, { NODE_COMPILE_CACHE: cache });
      expect(code, stderr).toBe(0);
      if (major < 22) {
        expect(stderr).toContain(`keel warm: Node ${process.versions.node} has no module compile cache (Node 22.1 and later have one): nothing to warm.`);
        expect(stdout).toBe('');
        return;
      }
      expect(stderr).toMatch(/^keel warm: the configuration did not load or check here \(.*WHOAMI_SECRET is not set.*\); keel start loads it where it runs\.$/m);
      expect(stderr).not.toContain('the modules did not load');
      const [folder] = readdirSync(cache);
      const files = readdirSync(join(cache, folder!)).length;
      expect(files).toBeGreaterThan(100);
      expect(stdout).toMatch(new RegExp(`^keel warm: \\d+ files of keel, its dependencies and the application \\(from dist\\/\\) compiled into .+ \\(${files} there in all\\)`));
    },
    // The build, then a warm killed at 30 s if it hangs.
    60_000,
  );
});
