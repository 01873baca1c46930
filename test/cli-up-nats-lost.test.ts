/**
 * `keel up` and `keel dev` when the nats-server they started dies under them (killed, the OOM
 * killer): nothing starts it again on its port, so every process has lost NATS for good. They
 * say so, naming the server and how it ended, stop every process, remove its folder, and exit 1
 * with `E_NATS_SERVER`, instead of running on with processes that reconnect forever.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { copyFixtureApp } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** How long any one awaited line, or the exit, may take before the test fails rather than hangs. */
const WAIT_MS = 30_000;

function app(fixture: string): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-nats-lost-'));
  temporary.push(parent);
  return copyFixtureApp(fixture, parent);
}

/** Runs `keel <command>` from source, in pretty format, and collects its output. */
function keel(command: 'up' | 'dev', argv: readonly string[], cwd: string) {
  const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), command, ...argv], {
    cwd,
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: 'pretty', DATABASE_URL: '', KEEL_DATA_DIR: 'memory', KEEL_NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let errors = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    for (const waiter of waiters.filter((entry) => output.includes(entry.text))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', (chunk: Buffer) => {
    errors += chunk.toString('utf8');
    collect(chunk);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const bounded = <T>(what: string, promise: Promise<T>): Promise<T> =>
    Promise.race([
      promise,
      new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms. Output:\n${output}`)), WAIT_MS).unref()),
    ]);
  return {
    child,
    output: () => output,
    errors: () => errors,
    /** Its exit code, failing the test when it has not exited within {@link WAIT_MS}. */
    exit: () => bounded(`exit of keel ${command}`, exited),
    waitFor: (text: string) =>
      bounded(
        `"${text}"`,
        output.includes(text)
          ? Promise.resolve()
          : Promise.race([
              new Promise<void>((resolve) => waiters.push({ text, resolve })),
              exited.then((code) => Promise.reject(new Error(`keel ${command} exited (${code}) before "${text}". Its output:\n${output}`))),
            ]),
      ),
  };
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
      if (up.child.exitCode === null && up.child.signalCode === null) up.child.kill('SIGKILL');
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
      if (dev.child.exitCode === null && dev.child.signalCode === null) dev.child.kill('SIGKILL');
    }
  });
});
