/**
 * `keel up` and `keel dev` facing a failure that no restart heals: a port another process holds,
 * a configuration the process refuses, NATS refusing its credentials. keel up stops at the first
 * exit, with one error naming the process, the cause and what to do, rather than five starts
 * with backoff that bury it; a failure that may pass (NATS not reachable yet) is still retried.
 * keel dev's advice fits the cause: a save cannot free a port or start a NATS server.
 */
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { copyFixtureApp } from './support/cli.js';
import { runKeelCommand as keel } from './support/keel-run.js';
import { startNatsServer } from './support/nats-server.js';

const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** A copy of the one-module fixture application (module `whoami`), with `topologies/one.json`: one process, `whoami`. */
function app(): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-lasting-'));
  temporary.push(parent);
  const root = copyFixtureApp('up-replicas', parent);
  writeFileSync(join(root, 'topologies/one.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'] } } }));
  return root;
}

/** A server holding a free port of the loopback address, as another program would. */
async function holdPort(): Promise<{ readonly port: number; readonly server: Server }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as { port: number }).port, server };
}

/** How many times `name` printed its failure with `code` (`whoami | error E_CODE: ...`): once per start that failed so. */
function failedStarts(output: string, name: string, code: string): number {
  return output.split('\n').filter((line) => line.startsWith(`${name} | error ${code}: `)).length;
}

describe('cli - keel up and keel dev - failures a restart would meet again', () => {
  it('cli - keel up stops at the first exit of a process whose HTTP port another process holds, naming the port and what to do', { timeout: 60_000 }, async () => {
    const root = app();
    const held = await holdPort();
    writeFileSync(join(root, 'topologies/port.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'], http: held.port } } }));
    const up = keel('up', ['topologies/port.json'], root);
    try {
      expect(await up.exit(), up.output()).toBe(1);
    } finally {
      up.kill();
      held.server.close();
    }
    // One start: its failure, then no restart.
    expect(failedStarts(up.output(), 'whoami', 'E_HTTP_LISTEN'), up.output()).toBe(1);
    expect(up.output()).not.toContain('restarting in');
    expect(up.output()).toContain('keel up: whoami exited (exit code 1) before becoming ready, with E_HTTP_LISTEN, which a restart would meet again; not restarting it.');
    expect(up.errors()).toContain(
      `error E_PROCESS: whoami cannot start, and a restart would not change that: E_HTTP_LISTEN: The HTTP gateway cannot listen on 127.0.0.1:${held.port}: another process listens there (EADDRINUSE); see its output above.\n` +
        `  Free port ${held.port} (stop the process that listens there), or give the process another http port in the topology (http: 0 picks a free one).\n`,
    );
  });

  it('cli - keel up stops at the first exit of a process whose configuration file refuses its environment (E_CONFIG)', { timeout: 60_000 }, async () => {
    const root = app();
    // keel up reads the file in its own environment, where it loads; the process's env breaks it.
    writeFileSync(
      join(root, 'keel.config.ts'),
      "if (process.env['WHOAMI_REGION'] === 'mars') throw new Error('WHOAMI_REGION \"mars\" is not a region');\nexport default {};\n",
    );
    writeFileSync(join(root, 'topologies/region.json'), JSON.stringify({ processes: { whoami: { modules: ['whoami'], env: { WHOAMI_REGION: 'mars' } } } }));
    const up = keel('up', ['topologies/region.json'], root);
    try {
      expect(await up.exit(), up.output()).toBe(1);
    } finally {
      up.kill();
    }
    expect(failedStarts(up.output(), 'whoami', 'E_CONFIG'), up.output()).toBe(1);
    expect(up.output()).not.toContain('restarting in');
    expect(up.errors()).toMatch(/^error E_PROCESS: whoami cannot start, and a restart would not change that: E_CONFIG: Loading keel\.config\.ts failed: WHOAMI_REGION "mars" is not a region; see its output above\.$/m);
  });

  it('cli - keel up stops at the first exit of a process whose NATS credentials the server refuses, naming the server', { timeout: 60_000 }, async () => {
    const nats = await startNatsServer({ token: 'the-right-token' });
    const root = app();
    const up = keel('up', ['topologies/one.json', '--nats', nats.url], root, { env: { KEEL_NATS_TOKEN: 'a-wrong-token' } });
    try {
      expect(await up.exit(), up.output()).toBe(1);
    } finally {
      up.kill();
      await nats.stop();
    }
    expect(failedStarts(up.output(), 'whoami', 'UNAVAILABLE'), up.output()).toBe(1);
    expect(up.output()).not.toContain('restarting in');
    expect(up.errors()).toMatch(/^error E_PROCESS: whoami cannot start, and a restart would not change that: UNAVAILABLE: Could not connect to NATS at nats:\/\/127\.0\.0\.1:\d+: Authorization Violation/m);
    expect(up.errors()).toContain(`  Give it credentials the NATS server at ${nats.url} accepts: KEEL_NATS_TOKEN,`);
  });

  it('cli - keel up still restarts a process that cannot reach NATS (it may come up), and names the URL to start a server at when it gives up', { timeout: 240_000 }, async () => {
    // Port 1 of the loopback: nothing listens there (a free port picked here could be another test file's nats-server's by the time a process connects).
    const url = 'nats://127.0.0.1:1';
    const up = keel('up', ['topologies/one.json', '--nats', url], app());
    try {
      // Each wait is bounded on its own: five starts on a loaded machine may take a while.
      for (const delay of [250, 500, 1000, 2000]) await up.waitFor(`keel up: whoami exited (exit code 1); restarting in ${delay} ms.`);
      expect(await up.exit(), up.output()).toBe(1);
    } finally {
      up.kill();
    }
    expect(up.output()).toContain('keel up: whoami exited (exit code 1) 5 times in a row before becoming ready; giving up.');
    expect(up.errors()).toMatch(/^error E_PROCESS: whoami kept exiting before it became ready, last with UNAVAILABLE: Could not connect to NATS at /m);
    expect(up.errors()).toContain(`  Start a NATS server at ${url}, or give the URL of a running one (--nats, KEEL_NATS_URL or the topology's nats.url).\n`);
  });

  it('cli - keel dev says to free a port another process holds, or set PORT, rather than to fix a file and save', { timeout: 60_000 }, async () => {
    const held = await holdPort();
    const dev = keel('dev', [], app(), { env: { PORT: String(held.port), KEEL_HTTP_PORT: '' } });
    try {
      await dev.waitFor('keel dev: app cannot start');
      await dev.waitFor('the next change starts it again.\n');
    } finally {
      dev.kill();
      held.server.close();
    }
    expect(failedStarts(dev.output(), 'app', 'E_HTTP_LISTEN'), dev.output()).toBe(1);
    expect(dev.output()).toContain(
      `keel dev: app cannot start, and a restart would not change that: E_HTTP_LISTEN: The HTTP gateway cannot listen on 127.0.0.1:${held.port}: another process listens there (EADDRINUSE). ` +
        `Free port ${held.port} (stop the process that listens there), or set PORT to another (0 picks a free one). Then save any file: the next change starts it again.\n`,
    );
    expect(dev.output()).not.toContain('Fix it and save');
  });

  it('cli - keel dev names the NATS URL to start a server at when a process cannot reach it, rather than to fix a file and save', { timeout: 240_000 }, async () => {
    // Port 1 of the loopback: nothing listens there (a free port picked here could be another test file's nats-server's by the time a process connects).
    const url = 'nats://127.0.0.1:1';
    const dev = keel('dev', ['--nats', url, '--http', 'off'], app());
    try {
      for (const delay of [250, 500, 1000, 2000]) await dev.waitFor(`keel dev: app exited (exit code 1); restarting in ${delay} ms.`);
      await dev.waitFor('keel dev: app kept exiting before it became ready');
      await dev.waitFor('the next change starts it again.\n');
    } finally {
      dev.kill();
    }
    expect(dev.output()).toMatch(
      new RegExp(
        `keel dev: app kept exiting before it became ready, last with UNAVAILABLE: Could not connect to NATS at ${url}: .*\\. ` +
          `Start a NATS server at ${url}, or give the URL of a running one \\(--nats, KEEL_NATS_URL or the topology's nats\\.url\\)\\. Then save any file: the next change starts it again\\.\\n`,
      ),
    );
    expect(dev.output()).not.toContain('Fix it and save');
  });
});
