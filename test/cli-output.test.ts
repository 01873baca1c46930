import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

/**
 * Runs the `keel` executable from source with its stdout piped to a reader that has already
 * gone away (as `keel ... | head -1` leaves it once head has its line), and returns how it ended.
 */
function runWithClosedStdout(...argv: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return runWithClosed('stdout', argv).then(({ code, signal, other }) => ({ code, signal, stderr: other }));
}

/** The same with `closed` gone; `other` is what the other stream received. */
async function runWithClosed(
  closed: 'stdout' | 'stderr',
  argv: readonly string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; other: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'cli/bin.ts', ...argv], {
    cwd: repository,
    // The shop's modules own data: in memory, so that a run never holds nor fills the repository's .keel/data.
    // At info, keel start writes its start-up records: the first write finds the reader gone.
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_NATS_URL: '', DATABASE_URL: '', KEEL_DATA_DIR: 'memory' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child[closed].destroy();
  let other = '';
  child[closed === 'stdout' ? 'stderr' : 'stdout'].on('data', (chunk: Buffer) => (other += chunk.toString('utf8')));
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, other };
}

// Each test runs the CLI through tsx in a child process (keel start loads the whole shop): on a loaded
// 2-core CI machine that has taken 20 s, too close to the default 30 s per test.
describe('cli - output to a closed pipe', { timeout: 90_000 }, () => {
  it('cli - a command whose reader closed early exits 0 without an EPIPE stack trace', async () => {
    const result = await runWithClosedStdout('generate', 'module', 'billing', '--depends-on', 'orders,catalog', '--dry-run');
    expect(result.stderr).not.toContain('EPIPE');
    expect(result).toEqual({ code: 0, signal: null, stderr: '' });
  });

  it('cli - keel start stops cleanly, as on SIGTERM, when the reader of its output goes away', async () => {
    const result = await runWithClosedStdout('start', '--http', '0');
    expect(result.stderr).not.toContain('EPIPE');
    expect(result).toEqual({ code: 0, signal: null, stderr: '' });
  });

  it("cli - a usage error written to a stderr whose reader closed keeps the command's own exit code, 2, not a crash's 1", async () => {
    const result = await runWithClosed('stderr', ['start', '--http', 'notaport']);
    expect(result).toEqual({ code: 2, signal: null, other: '' });
  });
});
