import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsx = fileURLToPath(new URL('../node_modules/.bin/tsx', import.meta.url));

describe('app - npm start', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)('app - prints what it hosts, then stops and exits 0 on %s', async (signal) => {
    const child = spawn(tsx, ['--conditions=keel-source', 'app/main.ts'], {
      cwd: root,
      env: { ...process.env, KEEL_LOG_LEVEL: 'silent', PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    try {
      await expect.poll(() => output, { timeout: 20_000, interval: 50 }).toContain('Press Ctrl+C to stop.');
      expect(output).toContain('keel shop is ready');
      expect(output).toContain('hosted here: catalog 1.0.0, inventory 1.0.0, payments 1.0.0, orders 1.0.0, notifications 1.0.0');
      expect(output).toMatch(/KB-001 +Mechanical keyboard +\$89\.00 +25 available/);

      child.kill(signal);
      const [code] = await exited;
      expect(code).toBe(0);
      expect(output).toContain(`${signal} received`);
      expect(output).toContain('Stopped.');
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
