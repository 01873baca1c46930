/**
 * `keel up` and `keel dev` when the nats-server they started dies under them (killed, the OOM
 * killer): nothing starts it again on its port, so every process has lost NATS for good. They
 * say so, naming the server and how it ended, stop every process, remove its folder, and exit 1
 * with `E_NATS_SERVER`, instead of running on with processes that reconnect forever.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyFixtureApp } from './support/cli.js';
import { runKeelCommand as keel } from './support/keel-run.js';

const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

function app(fixture: string): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-nats-lost-'));
  temporary.push(parent);
  return copyFixtureApp(fixture, parent);
}

/** The pid of the nats-server the run started, from its line `started nats-server on nats://... (pid N)`. */
function natsServerPid(output: string): number {
  const pid = /started nats-server on nats:\/\/127\.0\.0\.1:\d+ \(pid (\d+)\)/.exec(output)?.[1];
  expect(pid, output).toBeDefined();
  return Number(pid);
}

describe('cli - keel up and keel dev when their nats-server dies', () => {
  it('cli - keel up whose nats-server is killed says so, stops every process, removes its folder and exits 1 with E_NATS_SERVER', { timeout: 90_000 }, async () => {
    const up = keel('up', ['topologies/replicas.json'], app('up-replicas'));
    try {
      await up.waitFor('keel up: ready: all 2 processes (whoami#1, whoami#2)');
      const folder = /finds its credentials in (\S+)\/_client\.env/.exec(up.output())?.[1];
      expect(folder, up.output()).toBeDefined();
      process.kill(natsServerPid(up.output()), 'SIGKILL');
      expect(await up.exit(), up.output()).toBe(1);
      expect(up.output()).toMatch(/keel up: the nats-server keel up started on nats:\/\/127\.0\.0\.1:\d+ \(pid \d+\) stopped while it ran \(it was ended by SIGKILL\): every process lost NATS; stopping every process/);
      for (const name of ['whoami#1', 'whoami#2']) expect(up.output()).toContain(`keel up:   ${name} stopped cleanly`);
      expect(up.errors()).toMatch(/^error E_NATS_SERVER: The nats-server keel up started on .* every process lost NATS\.\n {2}Run keel up again/m);
      expect(existsSync(folder as string)).toBe(false);
    } finally {
      up.kill();
    }
  });

  it('cli - keel dev whose nats-server is killed says so, stops every process and exits 1 with E_NATS_SERVER', { timeout: 90_000 }, async () => {
    const dev = keel('dev', ['topologies/split.json'], app('dev-app'));
    try {
      await dev.waitFor('keel dev: ready: all 2 processes; watching for changes');
      process.kill(natsServerPid(dev.output()), 'SIGKILL');
      expect(await dev.exit(), dev.output()).toBe(1);
      expect(dev.output()).toMatch(/keel dev: the nats-server keel dev started on .* \(it was ended by SIGKILL\): every process lost NATS; stopping every process/);
      expect(dev.errors()).toMatch(/^error E_NATS_SERVER: The nats-server keel dev started on .*\n {2}Run keel dev again/m);
    } finally {
      dev.kill();
    }
  });
});
