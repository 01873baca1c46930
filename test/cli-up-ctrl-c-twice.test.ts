/**
 * A second Ctrl-C while `keel up` drains exits at once, without waiting for work in flight, and
 * takes everything it started along: its processes (each in a process group of its own, which
 * the terminal's signal does not reach) and its nats-server's folder, which holds the NATS
 * credentials. A process left draining would hold its port and its embedded database, with
 * nobody reading its output, and the next `keel up` would find them taken.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { copyFixtureApp } from './support/cli.js';
import { runKeelCommand, WAIT_MS } from './support/keel-run.js';

const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** The one-module fixture whose module never finishes stopping: its drain lasts until SIGKILL. */
function neverStopsApp(): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-up-ctrl-c-'));
  temporary.push(parent);
  const root = copyFixtureApp('up-replicas', parent);
  writeFileSync(
    join(root, 'modules/whoami/module.ts'),
    `import { defineModule } from 'keel';
import { whoami } from './contract.js';

export const whoamiModule = defineModule({
  contract: whoami,
  create: () => ({
    stop: () => new Promise<void>(() => setInterval(() => {}, 1000)),
    handlers: { whoami: () => ({ pid: process.pid, process: process.env['KEEL_PROCESS_NAME'] ?? '' }) },
  }),
});
`,
  );
  return root;
}

/** The pids of the `keel start` processes `parent` runs (Linux's /proc). */
function startedProcesses(parent: number): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      try {
        return (
          readFileSync(`/proc/${entry}/status`, 'utf8').includes(`\nPPid:\t${parent}\n`) && readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes('\0start\0')
        );
      } catch {
        return false; // it ended while being read
      }
    })
    .map(Number);
}

/** True while `pid` runs (a zombie no longer counts: it has ended, its parent has not reaped it). */
function runs(pid: number): boolean {
  try {
    return !/\nState:\tZ/.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

describe.runIf(process.platform === 'linux')('cli - keel up on a second Ctrl-C', () => {
  it('cli - a second Ctrl-C during the drain exits 130 at once and ends every process still draining, and removes its nats-server folder', { timeout: 90_000 }, async () => {
    const up = runKeelCommand('up', ['topologies/replicas.json'], neverStopsApp(), { detached: true });
    let children: number[] = [];
    try {
      await up.waitFor('keel up: ready: all 2 processes (whoami#1, whoami#2)');
      const folder = /finds its credentials in (\S+)\/_client\.env/.exec(up.output())?.[1];
      expect(folder, up.output()).toBeDefined();
      children = startedProcesses(up.child.pid as number);
      expect(children, up.output()).toHaveLength(2);
      process.kill(-(up.child.pid as number), 'SIGINT');
      await up.waitFor('keel up: stopping: draining every process');
      // Past the half second in which a relayed copy of the first counts as the same Ctrl-C.
      await sleep(600);
      process.kill(-(up.child.pid as number), 'SIGINT');
      expect(await up.exit(), up.output()).toBe(130);
      expect(up.output()).toContain('Ctrl-C again, exiting without waiting for work in flight.');
      expect(existsSync(folder as string), 'the nats-server folder, with its credentials, was left behind').toBe(false);
      // Each was sent SIGKILL as keel up exited: gone within seconds, where its own drain would never end.
      const deadline = Date.now() + WAIT_MS / 3;
      while (children.some(runs) && Date.now() < deadline) await sleep(50);
      expect(children.filter(runs), 'processes keel up left running').toEqual([]);
    } finally {
      up.kill();
      for (const pid of children.filter(runs)) process.kill(pid, 'SIGKILL');
    }
  });
});
