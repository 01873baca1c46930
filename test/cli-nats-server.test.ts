/**
 * The nats-server `keel up` and `keel dev` start (cli/nats-server.ts) does not outlive them: a
 * `keel up` killed with SIGKILL runs no handler, and its server, in a session of its own, used to
 * keep running. A real nats-server, started by a real process that is then killed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const folder = mkdtempSync(join(tmpdir(), 'keel-nats-launch-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

/** Whether something accepts a TCP connection on 127.0.0.1:`port` now. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

describe('cli - the nats-server keel up starts', () => {
  it('cli - stops when the keel process that started it is killed with SIGKILL: its port refuses connections within 10 s', { timeout: 60_000 }, async () => {
    expect(spawnSync('setpriv', ['--version']).status, 'setpriv (util-linux) is missing: install util-linux').toBe(0);
    const script = join(folder, 'launch.mts');
    writeFileSync(
      script,
      `import { launchNatsServer } from ${JSON.stringify(pathToFileURL(join(import.meta.dirname, '../cli/nats-server.ts')).href)};\n` +
        `const server = await launchNatsServer();\nconsole.log(\`launched \${server.url} \${server.pid}\`);\nsetInterval(() => {}, 60_000);\n`,
    );
    const launcher = spawn(process.execPath, ['--import', tsxLoader, script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    const launched = await new Promise<RegExpExecArray>((resolve, reject) => {
      launcher.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString('utf8');
        const match = /launched nats:\/\/127\.0\.0\.1:(\d+) (\d+)/.exec(output);
        if (match !== null) resolve(match);
      });
      launcher.once('exit', (code) => reject(new Error(`the launcher exited with ${code} before the server was up: ${output}`)));
    });
    const port = Number(launched[1]);
    const pid = Number(launched[2]);
    try {
      expect(await accepts(port)).toBe(true);
      launcher.kill('SIGKILL');
      // Bounded: a server that outlives its starter keeps accepting, and the test fails at the deadline.
      const deadline = Date.now() + 10_000;
      while ((await accepts(port)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await accepts(port), `nats-server (pid ${pid}) still accepts connections on ${port} after its starter was killed`).toBe(false);
    } finally {
      launcher.kill('SIGKILL');
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone: what the test expects.
      }
    }
  });
});
