/**
 * The nats-server `keel up` and `keel dev` start (cli/nats-server.ts), real ones:
 * - it does not outlive them: a `keel up` killed with SIGKILL runs no handler, and its server, in
 *   a session of its own, used to keep running (a real process, started and then killed);
 * - it picks its own port, read from its ports file, also through a wrapper that runs it as a
 *   child, and `stop()` ends its whole process group;
 * - one that stops before it listens is an error saying how it ended.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { acceptsConnections as accepts, launchNatsServer } from '../cli/nats-server.js';

const require = createRequire(import.meta.url);
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const folder = mkdtempSync(join(tmpdir(), 'keel-nats-launch-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe('cli - the nats-server keel up starts', () => {
  // Linux only: elsewhere there is no parent-death signal, and docs/cli.md says the server stays.
  it.skipIf(process.platform !== 'linux')(
    'cli - stops when the keel process that started it is killed with SIGKILL: its port refuses connections within 10 s',
    { timeout: 60_000 },
    async () => {
      // The probe cli/nats-server.ts makes: a setpriv without --pdeathsig (util-linux before 2.33, busybox) would not do.
      expect(
        spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true']).status,
        'setpriv --pdeathsig is missing: install util-linux 2.33 or later (Alpine: the setpriv package)',
      ).toBe(0);
      const script = join(folder, 'launch.mts');
      writeFileSync(
        script,
        `import { launchNatsServer } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../cli/nats-server.ts')).href)};\n` +
          `const server = await launchNatsServer({ binary: process.env.KEEL_NATS_SERVER_BIN || undefined });\n` +
          `console.log(\`launched \${server.url} \${server.pid} \${server.directory}\`);\nsetInterval(() => {}, 60_000);\n`,
      );
      const launcher = spawn(process.execPath, ['--import', tsxLoader, script], { stdio: ['ignore', 'pipe', 'inherit'] });
      onTestFinished(() => {
        launcher.kill('SIGKILL');
      });
      let output = '';
      const launched = await new Promise<RegExpExecArray>((resolve, reject) => {
        launcher.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString('utf8');
          const match = /launched nats:\/\/127\.0\.0\.1:(\d+) (\d+) (\S+)/.exec(output);
          if (match !== null) resolve(match);
        });
        launcher.once('exit', (code) => reject(new Error(`the launcher exited with ${code} before the server was up: ${output}`)));
      });
      const port = Number(launched[1]);
      const pid = Number(launched[2]);
      // The server's folder: its stop() never runs once its starter is killed.
      onTestFinished(() => rmSync(launched[3] as string, { recursive: true, force: true }));
      // Killed by the test only while it still answers (the test failed): once it stopped, its pid may be another process's.
      onTestFinished(async () => {
        if (await accepts(port)) process.kill(pid, 'SIGKILL');
      });
      expect(await accepts(port)).toBe(true);
      launcher.kill('SIGKILL');
      // Bounded: a server that outlives its starter keeps accepting, and the test fails at the deadline.
      const deadline = Date.now() + 10_000;
      while ((await accepts(port)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await accepts(port), `nats-server (pid ${pid}) still accepts connections on ${port} after its starter was killed`).toBe(false);
    },
  );

  it('cli - four started at once each listen on a port of their own, read from the ports file the server writes, and answer there', { timeout: 60_000 }, async () => {
    const launches = await Promise.allSettled(Array.from({ length: 4 }, () => launchNatsServer({ binary: process.env['KEEL_NATS_SERVER_BIN'] || undefined })));
    const servers = launches.flatMap((launch) => (launch.status === 'fulfilled' ? [launch.value] : []));
    try {
      expect(launches.filter((launch) => launch.status === 'rejected')).toEqual([]);
      const ports = servers.map((server) => Number(new URL(server.url).port));
      expect(new Set(ports).size).toBe(4);
      for (const port of ports) expect(await accepts(port)).toBe(true);
    } finally {
      await Promise.all(servers.map((server) => server.stop()));
    }
    for (const server of servers) expect(existsSync(server.directory), 'its folder, removed by stop()').toBe(false);
  });

  it('cli - starts through a wrapper that runs nats-server as its child (another pid): the ports file is found under any name, and stop() ends the server too', { timeout: 60_000 }, async () => {
    const wrapper = join(folder, 'nats-server-wrapper');
    // No exec, no trap: the server's pid, in its ports file's name, is not the wrapper's, and only
    // a signal to the process group reaches the server.
    const binary = process.env['KEEL_NATS_SERVER_BIN'] || 'nats-server';
    writeFileSync(wrapper, `#!/bin/sh\n"${binary}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    const server = await launchNatsServer({ binary: wrapper });
    const port = Number(new URL(server.url).port);
    // Should the test fail: the wrapper's whole group, the server in it, while it still answers.
    onTestFinished(async () => {
      if (await accepts(port)) process.kill(-server.pid, 'SIGKILL');
    });
    try {
      expect(await accepts(port)).toBe(true);
    } finally {
      await server.stop();
    }
    // stop() waits for the whole group, the server behind the wrapper included.
    expect(await accepts(port), 'the server behind the wrapper, stopped with its process group').toBe(false);
    expect(() => process.kill(-server.pid, 0), 'no process of the group left').toThrow(expect.objectContaining({ code: 'ESRCH' }));
  });

  it('cli - a nats-server that stops before it listens is an E_NATS_SERVER error saying how it ended, with its output', { timeout: 60_000 }, async () => {
    const error = await launchNatsServer({ binary: process.env['KEEL_NATS_SERVER_BIN'] || undefined, extraConfig: 'jetstream { not valid' }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toMatchObject({ code: 'E_NATS_SERVER', message: expect.stringMatching(/^nats-server stopped before it accepted connections \(it exited with code \d+\)\. Its output:\n.*[Pp]arse error/s) });
  });
});
