// A throwaway nats-server on a free loopback port for the profiling scripts (nats.mjs,
// nats-cpu.mjs, events.mjs): started, and resolved once it accepts connections.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';

/** A free TCP port on loopback. */
function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once `port` accepts a TCP connection (polled every 20 ms, for at most 5 s). */
async function listening(port) {
  for (let attempt = 0; attempt < 250; attempt += 1) {
    const open = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`nats-server did not listen on 127.0.0.1:${port} within 5 s`);
}

/** Starts nats-server (the Debian package's when `nats-server` is not on PATH): its `url`, and `nats`, the child to kill. */
export async function startLocalNatsServer() {
  const port = await freePort();
  const binary = existsSync('/usr/sbin/nats-server') && spawnSync('which', ['nats-server']).status !== 0 ? '/usr/sbin/nats-server' : 'nats-server';
  const nats = spawn(binary, ['-a', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  await listening(port);
  return { url: `nats://127.0.0.1:${port}`, nats };
}
