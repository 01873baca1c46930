/**
 * Loopback ports that refuse connections for as long as a test runs, for tests of what a client
 * does when nothing listens. A port found free by `listen(0)` and closed again is the next
 * ephemeral port the system may hand to a server another test file starts beside this one; a
 * privileged port (below 1024) is never handed out that way, and no test binds one.
 */
import { createConnection } from 'node:net';

/** Candidates: ports that no common service uses (tcpmux, compressnet, rje and the unassigned ones); 7 and 9 (echo, discard) left out. */
const CANDIDATES = [1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16];

/** True when a TCP connection to 127.0.0.1:`port` is refused (nothing listens there). */
function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const finish = (refused: boolean): void => {
      socket.destroy();
      resolve(refused);
    };
    socket.setTimeout(1_000, () => finish(false));
    socket.once('connect', () => finish(false));
    socket.once('error', (error: NodeJS.ErrnoException) => finish(error.code === 'ECONNREFUSED'));
  });
}

/**
 * `count` distinct loopback ports that refuse connections now and, since no test or ephemeral
 * allocation can take them, for the rest of the test. Throws, naming them, when fewer refuse.
 *
 * @example
 * ```ts
 * const [port] = await refusedPorts(1);
 * await expect(createNatsTransport({ servers: `nats://127.0.0.1:${port}` })).rejects.toThrow(/Could not connect/);
 * ```
 */
export async function refusedPorts(count: number): Promise<number[]> {
  const found: number[] = [];
  for (const port of CANDIDATES) {
    if (await refuses(port)) found.push(port);
    if (found.length === count) return found;
  }
  throw new Error(
    `Only ${found.length} of the loopback ports ${CANDIDATES.join(', ')} refuse connections, and the test needs ${count}: ` +
      'something on this machine listens on the others. Stop it, or add candidates in test/support/refused-ports.ts.',
  );
}
