/**
 * `keel start` hands back its start-up memory once ready (cli/startup-memory.ts): as its own
 * process, on Node 22 and later; never when run inside another program.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main, runCli } from 'keel/cli';
import { READY, collector, gatewayUrl, logRecords, type LogRecord } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const MEMORY = 'start-up memory';
const major = Number(process.versions.node.split('.')[0]);

/**
 * `keel start` of every module in process, as its own process (tsx on this Node, with `nodeFlags`),
 * with `env` added, at debug level in JSON, until its start-up memory record; then SIGTERM. Resolves with its exit
 * code and its records.
 */
async function startOwnProcess(nodeFlags: readonly string[] = [], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; records: LogRecord[] }> {
  const child = spawn(process.execPath, [...nodeFlags, '--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'start', '--http', 'off'], {
    cwd: repository,
    env: { ...process.env, KEEL_LOG_LEVEL: 'debug', KEEL_LOG_FORMAT: 'json', DATABASE_URL: '', KEEL_DATA_DIR: 'memory', KEEL_MODULES: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stdout = collector();
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => stdout.write(chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    await Promise.race([stdout.waitFor(MEMORY), exited.then(() => expect.fail(`keel start ended before its memory record:\n${stdout.text}${stderr}`))]);
  } finally {
    // The record is a whole line once the process has ended: stop it, then read every line.
    child.kill('SIGTERM');
  }
  const [code] = await exited;
  return { code, stderr, records: logRecords(stdout.text) };
}

/** The start-up memory record of `records`, after the ready one, at debug level; the last record is `stopped`. */
function memoryRecord(records: readonly LogRecord[]): Record<string, unknown> {
  const messages = records.map((record) => record.msg);
  const memory = records.find((record) => record.msg?.includes(MEMORY));
  expect(memory, messages.join('\n')).toBeDefined();
  expect(messages.indexOf(memory!.msg)).toBeGreaterThan(messages.indexOf('ready'));
  expect(memory!['level']).toBe(20);
  expect(messages.at(-1)).toBe('stopped');
  return memory!;
}

// A `keel start` of the whole shop as its own process (tsx compiling it) has taken 20 s to be ready on a
// loaded 2-core CI machine: the default 30 s per test is too close.
describe('cli - keel start releases its start-up memory', { timeout: 90_000 }, () => {
  it(`cli - as its own process, logs after ready what it released: ${major >= 22 ? 'less resident memory and a one-page young generation' : 'nothing, naming Node 22'} (Node ${process.versions.node})`, async () => {
    const { code, stderr, records } = await startOwnProcess();
    expect(code, stderr).toBe(0);
    const memory = memoryRecord(records);
    if (major >= 22) {
      expect(memory).toMatchObject({ released: true, msg: expect.stringMatching(/^released start-up memory: [\d.]+ → [\d.]+ MB resident \([\d.]+ ms\)$/) });
      expect(memory['rssAfterMb']).toBeLessThan(memory['rssBeforeMb'] as number);
      expect(memory['newSpaceAfterMb']).toBeLessThanOrEqual(1);
      expect(memory['newSpaceBeforeMb']).toBeGreaterThan(memory['newSpaceAfterMb'] as number);
    } else {
      expect(memory).toMatchObject({ released: false, reason: expect.stringContaining('Node 22 or later') });
    }
  });

  it('cli - with no gc extension to take (node --expose-gc-as=collect), says so at debug level and keeps serving until SIGTERM, exit 0', async () => {
    const { code, stderr, records } = await startOwnProcess(['--expose-gc-as=collect']);
    expect(code, stderr).toBe(0);
    const memory = memoryRecord(records);
    expect(memory).toMatchObject({ released: false, reason: major >= 22 ? expect.stringContaining('gc extension was not available') : expect.stringContaining('Node 22 or later') });
  });

  it('cli - with KEEL_RELEASE_STARTUP_MEMORY=off, makes no collection and says so at debug level after ready, exit 0', async () => {
    const { code, stderr, records } = await startOwnProcess([], { KEEL_RELEASE_STARTUP_MEMORY: 'off' });
    expect(code, stderr).toBe(0);
    expect(memoryRecord(records)).toMatchObject({ released: false, reason: 'KEEL_RELEASE_STARTUP_MEMORY is off', msg: 'start-up memory left to V8: KEEL_RELEASE_STARTUP_MEMORY is off' });
  });

  it('cli - refuses a KEEL_RELEASE_STARTUP_MEMORY other than on or off with a usage error naming it (exit 2), before starting anything', async () => {
    const stdout = collector();
    const stderr = collector();
    const exit = await runCli(main, ['start', '--http', 'off'], { cwd: repository, env: { KEEL_RELEASE_STARTUP_MEMORY: 'later', KEEL_DATA_DIR: 'memory' }, stdout, stderr });
    expect(exit, stderr.text).toBe(2);
    expect(stderr.text).toContain('KEEL_RELEASE_STARTUP_MEMORY "later" is not on or off.');
    expect(stdout.text).toBe('');
  });

  it('cli - run inside another program (runCli), leaves that process alone: no memory record by the time its gateway has answered', async () => {
    const stdout = collector();
    const stderr = collector();
    const controller = new AbortController();
    const exit = runCli(main, ['start', '--http', '0'], {
      cwd: repository,
      env: { KEEL_LOG_LEVEL: 'debug', KEEL_DATA_DIR: 'memory' },
      stdout,
      stderr,
      signal: controller.signal,
    });
    await Promise.race([stdout.waitFor(READY), exit.then(() => expect.fail(stderr.text))]);
    try {
      // The release would be queued (setImmediate) before the ready record returns: an HTTP round trip is later.
      expect((await fetch(`${gatewayUrl(stdout.text)}/readyz`)).status).toBe(200);
      expect(stdout.text).toContain('"msg":"hosting catalog, inventory, payments, orders, notifications"');
      expect(stdout.text).not.toContain(MEMORY);
    } finally {
      controller.abort('SIGTERM');
    }
    expect(await exit).toBe(0);
  });
});
