/**
 * The default logger as a deployed process uses it: JSON lines on stdout, and the process
 * group's name (`KEEL_PROCESS_NAME`, set by `keel up` and `keel deploy`) on every record.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

const PLACED = "(await import('keel/transport')).createLogger().info({ order: 7 }, 'placed');";

/** What a process printing one record through the default logger (`script`, by default {@link PLACED}) writes, with `env` as its environment. */
function run(env: Record<string, string>, script = PLACED) {
  return spawnSync(
    process.execPath,
    ['--import', 'tsx', '--conditions=keel-source', '--input-type=module', '-e', script],
    { cwd: repository, env: { PATH: process.env['PATH'] ?? '', ...env }, encoding: 'utf8', timeout: 30_000 },
  );
}

function logLine(env: Record<string, string>, script?: string): Record<string, unknown> {
  const result = run(env, script);
  expect(result.status, result.stderr).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
}

describe('kernel - default logger', () => {
  it('kernel - every record names the process group from KEEL_PROCESS_NAME, beside pid and hostname', () => {
    expect(logLine({ KEEL_PROCESS_NAME: 'storefront#2' })).toMatchObject({ process: 'storefront#2', order: 7, msg: 'placed', pid: expect.any(Number) });
  });

  it('kernel - without KEEL_PROCESS_NAME a record has no process field', () => {
    const line = logLine({});
    expect(line).toMatchObject({ order: 7, msg: 'placed', pid: expect.any(Number), hostname: expect.any(String) });
    expect(line).not.toHaveProperty('process');
  });

  it('kernel - with KEEL_LOG_FORMAT=pretty a record is one human line (time, level, name, message, then its fields), not JSON', () => {
    const result = run({ KEEL_LOG_FORMAT: 'pretty' });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(keel\): placed \{"order":7\}\n$/);
  });

  it("kernel - an error's cause is logged as an object of its own under err.cause, its message not glued to the error's", () => {
    const script =
      "const cause = new Error('connect ECONNREFUSED 127.0.0.1:1');" +
      "(await import('keel/transport')).createLogger().error({ err: new Error('Could not connect. Check DATABASE_URL.', { cause }) }, 'failed');";
    const line = logLine({ KEEL_LOG_FORMAT: 'json' }, script);
    expect(line['err']).toMatchObject({
      type: 'Error',
      message: 'Could not connect. Check DATABASE_URL.',
      cause: { type: 'Error', message: 'connect ECONNREFUSED 127.0.0.1:1' },
    });
  });

  it('kernel - without KEEL_LOG_FORMAT, and stdout no terminal, a record is one JSON line', () => {
    expect(logLine({ CI: '' })).toMatchObject({ order: 7, msg: 'placed' });
  });

  it('kernel - a KEEL_LOG_FORMAT other than json or pretty fails with INVALID_CONFIG naming the variable and both values', () => {
    const result = run({ KEEL_LOG_FORMAT: 'yaml' });
    expect(result.status).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('KEEL_LOG_FORMAT "yaml" is not a log format: set it to json (one JSON object a line) or pretty (human lines)');
    expect(result.stderr).toContain("code: 'INVALID_CONFIG'");
  });

  it('kernel - a KEEL_LOG_LEVEL that is not a level fails with INVALID_CONFIG naming the variable and the levels', () => {
    const result = run({ KEEL_LOG_LEVEL: 'loud' });
    expect(result.status).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('KEEL_LOG_LEVEL "loud" is not a log level: set it to one of fatal, error, warn, info, debug, trace, silent');
    expect(result.stderr).toContain("code: 'INVALID_CONFIG'");
  });

  it('kernel - KEEL_LOG_LEVEL=warn leaves out an info record and still writes a warning', () => {
    const result = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--conditions=keel-source', '--input-type=module', '-e', "const l = (await import('keel/transport')).createLogger(); l.info({}, 'placed'); l.warn({}, 'late');"],
      { cwd: repository, env: { PATH: process.env['PATH'] ?? '', KEEL_LOG_LEVEL: 'warn' }, encoding: 'utf8', timeout: 30_000 },
    );
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim().split('\n').map((line) => (JSON.parse(line) as { msg: string }).msg)).toEqual(['late']);
  });
});
