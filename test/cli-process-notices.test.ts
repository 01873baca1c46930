/**
 * The `keel` process's own notices (a warning Node emits in it, the "Ctrl-C again" notice) are
 * records of its command's log while the command logs JSON, and text otherwise
 * (cli/command-log.ts `routeProcessWarnings`, `processNotice`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createCommandLog, nodeOptionsArgs, processNotice } from '../cli/command-log.js';
import { READY, collector, logRecords } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const WARNING = 'a warning the test asked for';
const DISABLED = 'a warning turned off with --disable-warning';

// Preloaded into keel start: emits a warning when the test sends SIGUSR2.
const folder = mkdtempSync(join(tmpdir(), 'keel-notices-'));
const preload = join(folder, 'warn-on-usr2.cjs');
// First a warning --disable-warning turns off: Node emits warnings in order, so once the test's is written, that one was passed over.
writeFileSync(
  preload,
  `process.on('SIGUSR2', () => { process.emitWarning(${JSON.stringify(DISABLED)}, { code: 'KEEL_DISABLED_WARNING' }); process.emitWarning(${JSON.stringify(WARNING)}, { code: 'KEEL_TEST_WARNING' }); });\n`,
);
/** The processes started, killed after the tests if one is left (a test that timed out never reached its own kill). */
const started = new Set<ChildProcess>();
afterAll(() => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(folder, { recursive: true, force: true });
});
/** Rejects after `ms`, so that a wait that never ends fails the test in time for its cleanup. */
const within = <T>(ms: number, what: () => string, promise: Promise<T>): Promise<T> =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what()}: not within ${ms} ms`)), ms).unref())]);

/** `keel start` as its own process in `format`; once ready, SIGUSR2 (a warning), then SIGTERM once `warned` says it was written. */
async function startAndWarn(format: 'json' | 'pretty', warned: (stdout: string, stderr: string) => boolean) {
  // --trace-warnings: in JSON format the record carries the warning's stack.
  const child = spawn(process.execPath, ['--disable-warning=KEEL_DISABLED_WARNING', '--trace-warnings', '--require', preload, '--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'start', '--http', 'off'], {
    cwd: repository,
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: format, DATABASE_URL: '', KEEL_DATA_DIR: 'memory', KEEL_MODULES: 'catalog', KEEL_RELEASE_STARTUP_MEMORY: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child);
  const stdout = collector();
  const stderr = collector();
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => stdout.write(chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.write(chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    const ended = exited.then(() => expect.fail(`keel start ended early:\n${stdout.text}${stderr.text}`));
    await within(40_000, () => `keel start ready:\n${stdout.text}${stderr.text}`, Promise.race([stdout.waitFor(format === 'json' ? READY : 'ready (Ctrl-C to stop)'), ended]));
    child.kill('SIGUSR2');
    let waiting = true;
    const written = new Promise<void>((resolve) => {
      const check = () => (warned(stdout.text, stderr.text) ? resolve() : waiting && setTimeout(check, 20));
      check();
    });
    await within(10_000, () => `the warning written:\n${stdout.text}${stderr.text}`, Promise.race([written, ended])).finally(() => (waiting = false));
  } finally {
    child.kill('SIGTERM');
  }
  const [code] = await exited;
  return { code, stdout: stdout.text, stderr: stderr.text };
}

describe('cli - the keel process\'s own notices', () => {
  it('cli - in JSON format a warning Node emits in keel start is a warn record on stdout (its name, code and, with --trace-warnings, stack), and stderr stays empty', { timeout: 60_000 }, async () => {
    const { code, stdout, stderr } = await startAndWarn('json', (out, errors) => out.includes(WARNING) || errors.includes(WARNING));
    expect(code, stderr).toBe(0);
    expect(stderr).toBe('');
    // logRecords throws on a line that is not a JSON object.
    const warning = logRecords(stdout).find((record) => record.msg?.includes(WARNING));
    expect(warning).toMatchObject({ level: 40, msg: `Warning: ${WARNING}`, warning: 'Warning', code: 'KEEL_TEST_WARNING', name: 'keel' });
    expect(warning?.['stack']).toContain('warn-on-usr2.cjs');
    expect(logRecords(stdout).at(-1)?.msg).toBe('stopped');
    expect(stdout).not.toContain(DISABLED);
  });

  it('cli - in pretty format Node prints the same warning itself, as text on stderr', { timeout: 60_000 }, async () => {
    const { code, stderr } = await startAndWarn('pretty', (_, errors) => errors.includes(WARNING));
    expect(code, stderr).toBe(0);
    expect(stderr).toMatch(new RegExp(`^\\(node:\\d+\\) \\[KEEL_TEST_WARNING\\] Warning: ${WARNING}$`, 'm'));
    expect(stderr).not.toContain(DISABLED);
  });

  it('cli - processNotice is a warn record of the owning command\'s log while it logs JSON', async () => {
    const stdout = collector();
    const stderr = collector();
    const own = createCommandLog(
      { cwd: repository, env: { KEEL_LOG_FORMAT: 'json' }, stdout, stderr, signal: new AbortController().signal, self: { command: process.execPath, args: [] }, ownsProcess: true },
      'keel up',
    );
    await own.run(async () => {
      processNotice('Ctrl-C again, exiting without waiting for work in flight.');
    });
    expect(logRecords(stdout.text)).toEqual([
      expect.objectContaining({ level: 40, process: 'keel up', msg: 'Ctrl-C again, exiting without waiting for work in flight.' }),
    ]);
    expect(stderr.text).toBe('');
  });

  it('cli - NODE_OPTIONS is split as Node splits it: a quoted --disable-warning name with spaces is one argument', () => {
    expect(nodeOptionsArgs('  --no-deprecation   --disable-warning="My Slow Warning" --max-old-space-size=100 ')).toEqual([
      '--no-deprecation',
      '--disable-warning=My Slow Warning',
      '--max-old-space-size=100',
    ]);
    expect(nodeOptionsArgs('--disable-warning "Quoted \\"Type\\"" --trace-warnings')).toEqual(['--disable-warning', 'Quoted "Type"', '--trace-warnings']);
    expect(nodeOptionsArgs('')).toEqual([]);
    // Node itself reads the same name from the same value: the warning of that type is not printed, another one is.
    const value = '--disable-warning="My Slow Warning"';
    const name = (nodeOptionsArgs(value)[0] as string).slice('--disable-warning='.length);
    const script = `process.emitWarning('hidden', ${JSON.stringify(name)}); process.emitWarning('shown', 'Other Warning');`;
    const { stderr, status } = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, NODE_OPTIONS: value }, encoding: 'utf8' });
    expect(status, stderr).toBe(0);
    expect(stderr).toContain('Other Warning: shown');
    expect(stderr).not.toContain('hidden');
  });
});
