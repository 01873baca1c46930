/**
 * The default logger as a deployed process uses it: JSON lines on stdout, and the process
 * group's name (`KEEL_PROCESS_NAME`, set by `keel up` and `keel deploy`) on every record.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { describe, expect, it } from 'vitest';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

function logLine(env: Record<string, string>): Record<string, unknown> {
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--conditions=keel-source', '--input-type=module', '-e', "(await import('keel/transport')).createLogger().info({ order: 7 }, 'placed');"],
    { cwd: repository, env: { PATH: process.env['PATH'] ?? '', ...env }, encoding: 'utf8', timeout: 30_000 },
  );
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
});
