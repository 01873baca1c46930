/**
 * The nats-server `keel up` and `keel dev` start (cli/nats-server.ts), real ones:
 * - it does not outlive them: a `keel up` killed with SIGKILL runs no handler, and its server, in
 *   a session of its own, used to keep running (a real process, started and then killed);
 * - it picks its own port, read from its ports file, also through a wrapper that runs it as a
 *   child, and `stop()` ends its whole process group;
 * - one that stops before it listens is an error saying how it ended;
 * - the folder a killed run left behind is removed by the next launch, once its starter and its
 *   server are both gone, and only then.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { recordOwners, removeLeftFolders } from '../cli/nats-server-leftovers.js';
import { acceptsConnections as accepts, launchNatsServer } from '../cli/nats-server.js';

const require = createRequire(import.meta.url);
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const folder = mkdtempSync(join(tmpdir(), 'keel-nats-launch-'));
/** The pids of the processes of group `pgid` that are not zombies, from `/proc`. */
const runningInGroup = (pgid: number): number[] =>
  readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((entry) => {
      const [state, , pgrp] = readProcStat(Number(entry)).replace(/^.*\) /s, '').split(' ');
      return state !== undefined && state !== 'Z' && Number(pgrp) === pgid;
    })
    .map(Number);
/** `/proc/<pid>/stat`, or '' once the process is gone. */
const readProcStat = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
};
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe('cli - the nats-server keel up starts', () => {
  // Linux only: elsewhere there is no parent-death signal, and docs/cli.md says the server stays.
  it.skipIf(process.platform !== 'linux')(
    'cli - stops when the keel process that started it is killed with SIGKILL: its port refuses connections within 10 s, and the next launch removes the folder it left',
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
      // A temporary folder of its own: a keel up of another test file would remove what it leaves too.
      const temporary = mkdtempSync(join(folder, 'tmp-'));
      const launcher = spawn(process.execPath, ['--import', tsxLoader, script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, TMPDIR: temporary } });
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
        // Bounded below the test's timeout, so that a launch that hangs says how far it came.
        setTimeout(() => reject(new Error(`the launcher printed no server within 30 s: ${JSON.stringify(output)}`)), 30_000).unref();
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

      // Its folder is left (no code of the starter ran); the next launch removes it, once the server has exited too.
      expect(existsSync(launched[3] as string), 'the killed run\'s folder, before the next launch').toBe(true);
      const exited = Date.now() + 10_000;
      while (Date.now() < exited && existsSync(`/proc/${pid}`) && !/\) Z /.test(readProcStat(pid))) await new Promise((resolve) => setTimeout(resolve, 50));
      const shellTemporary = process.env['TMPDIR'];
      process.env['TMPDIR'] = temporary; // os.tmpdir() reads it at each call
      const next = await launchNatsServer({ binary: process.env['KEEL_NATS_SERVER_BIN'] || undefined }).finally(() => {
        if (shellTemporary === undefined) delete process.env['TMPDIR'];
        else process.env['TMPDIR'] = shellTemporary;
      });
      try {
        expect(next.removedLeftovers).toEqual([launched[3]]);
        expect(existsSync(launched[3] as string)).toBe(false);
        expect(next.removedLeftovers, 'never its own folder').not.toContain(next.directory);
        expect(await accepts(Number(new URL(next.url).port))).toBe(true);
      } finally {
        await next.stop();
      }
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
    // None running: the server, orphaned when the wrapper ended, may be left a zombie until PID 1 reaps it.
    if (process.platform === 'linux') expect(runningInGroup(server.pid), 'processes of the group still running').toEqual([]);
    else expect(() => process.kill(-server.pid, 0), 'no process of the group left').toThrow(expect.objectContaining({ code: 'ESRCH' }));
  });

  it('cli - acceptsConnections is false, and settles, for a listener that closes the connection without a word (a server shutting down), one that is silent, and one that greets with anything but INFO', { timeout: 30_000 }, async () => {
    const listeners = [
      createServer((socket) => socket.end()),
      createServer(() => undefined),
      createServer((socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n')),
      createServer((socket) => socket.write('INFO {}\r\n')),
    ];
    const ports = await Promise.all(
      listeners.map((listener) => new Promise<number>((resolve) => listener.listen(0, '127.0.0.1', () => resolve((listener.address() as AddressInfo).port)))),
    );
    try {
      // The silent one settles at its one-second timer; the test's own timeout bounds a hang.
      expect(await Promise.all(ports.map((port) => accepts(port)))).toEqual([false, false, false, true]);
    } finally {
      for (const listener of listeners) listener.close();
    }
  });

  it('cli - a nats-server that stops before it listens is an E_NATS_SERVER error saying how it ended, with its output', { timeout: 60_000 }, async () => {
    const error = await launchNatsServer({ binary: process.env['KEEL_NATS_SERVER_BIN'] || undefined, extraConfig: 'jetstream { not valid' }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(error).toMatchObject({ code: 'E_NATS_SERVER', message: expect.stringMatching(/^nats-server stopped before it accepted connections \(it exited with code \d+\)\. Its output:\n.*[Pp]arse error/s) });
  });

  it('cli - a launch removes the folders of this host whose starter and server are all gone (zombies included), or of an earlier boot, and keeps those with one running, of another pid namespace, host or kernel, of an older keel, with an owners file it cannot read, and anything else', async () => {
    const parent = mkdtempSync(join(folder, 'tmp-'));
    const gone = spawnSync(process.execPath, ['-e', '']).pid as number; // exited and reaped
    // A zombie: `sleep 1` exits, and its parent, by then `sleep 60`, never reaps it (killed when the test ends).
    // Not `sleep 0`: a child that exits before the shell's exec can be reaped by the shell (seen on a loaded host).
    const holder = spawn('sh', ['-c', 'sleep 1 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'inherit'] });
    onTestFinished(() => {
      holder.kill('SIGKILL');
    });
    const zombie = await new Promise<number>((resolve) => holder.stdout.once('data', (chunk: Buffer) => resolve(Number(chunk.toString('utf8').trim()))));
    const isZombie = Date.now() + 10_000;
    while (Date.now() < isZombie && !/\) Z /.test(readProcStat(zombie))) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(readProcStat(zombie)).toMatch(/\) Z /);
    const make = (name: string, files: Record<string, string>, owners?: { starter: number; server?: number }, ageMs = 0): string => {
      const path = join(parent, name);
      mkdirSync(path);
      for (const [file, text] of Object.entries(files)) writeFileSync(join(path, file), text);
      if (owners !== undefined) recordOwners(path, owners);
      if (ageMs > 0) utimesSync(path, new Date(Date.now() - ageMs), new Date(Date.now() - ageMs));
      return path;
    };
    /** The owners file as recordOwners wrote it, with `changes` over it (another place). */
    const moved = (path: string, changes: Record<string, string>): string => {
      const file = join(path, 'owners.json');
      writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), ...changes }));
      return path;
    };
    const ports = (pid: number) => ({ [`nats-server_${pid}.ports`]: '{"nats":["nats://127.0.0.1:4222"]}', store: '' });
    const left = make('keel-up-nats-left', ports(gone), { starter: gone, server: gone });
    const zombieServer = make('keel-up-nats-zombie', ports(zombie), { starter: gone, server: zombie });
    // An earlier boot: another boot id, and last changed before this boot began (an hour before it).
    const bootedAt = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]) * 1000;
    const earlierBoot = moved(make('keel-up-nats-boot', ports(process.pid), { starter: process.pid }), { boot: 'an-earlier-boot' });
    utimesSync(earlierBoot, new Date(bootedAt - 3_600_000), new Date(bootedAt - 3_600_000));
    // Another boot id, changed since this boot began: a sandbox of its own sharing the folder.
    const otherKernel = moved(make('keel-up-nats-kernel', ports(gone), { starter: gone, server: gone }), { boot: 'a-sandbox-kernel' });
    const unreadableOld = make('keel-up-nats-unreadable-old', { 'owners.json': '{"host":' }, undefined, 11 * 60_000);
    const starterRuns = make('keel-up-nats-starter', ports(gone), { starter: process.pid, server: gone });
    const serverRuns = make('keel-up-nats-server', {}, { starter: gone, server: process.pid });
    const portsServerRuns = make('keel-up-nats-ports-running', ports(process.pid), { starter: gone });
    const otherNamespace = moved(make('keel-up-nats-namespace', ports(gone), { starter: gone, server: gone }), { pidNamespace: 'pid:[1]' });
    const otherHost = moved(make('keel-up-nats-host', ports(gone), { starter: gone, server: gone }), { host: 'another-host', boot: 'another-boot' });
    const olderKeel = make('keel-up-nats-older', ports(gone), undefined, 11 * 60_000); // no owners file, as keel wrote before it
    const unreadableNew = make('keel-up-nats-writing', { 'owners.json': '' }); // being written
    const other = make('not-keel-nats', ports(gone), { starter: gone });
    writeFileSync(join(parent, 'keel-up-nats-file'), 'a file');

    const removed = [left, zombieServer, earlierBoot];
    expect(removeLeftFolders(parent).sort()).toEqual(removed.sort());
    for (const path of removed) expect(existsSync(path), path).toBe(false);
    for (const path of [starterRuns, serverRuns, portsServerRuns, otherNamespace, otherHost, otherKernel, olderKeel, unreadableOld, unreadableNew, other, join(parent, 'keel-up-nats-file')]) {
      expect(existsSync(path), path).toBe(true);
    }
    expect(removeLeftFolders(join(parent, 'missing')), 'no such parent: nothing to do').toEqual([]);
  });
});
