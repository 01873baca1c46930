/**
 * Starts a local `nats-server` for `keel up`: from PATH (or `KEEL_NATS_SERVER_BIN`), on a
 * loopback port it picks itself, with JetStream in a temporary store that is removed when it stops.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CLIError, CliErrorCode } from './errors.js';
import { NATS_FOLDER_PREFIX, groupRunsBeyondZombies, recordOwners, removeLeftFolders } from './nats-server-leftovers.js';

/** Options of {@link launchNatsServer}. */
export interface NatsServerLaunchOptions {
  /** The binary (default `nats-server` from PATH). */
  readonly binary?: string;
  /** How long to wait until it accepts connections (default 15 000 ms). */
  readonly startTimeoutMs?: number;
  /** How long `stop()` waits before SIGKILL (default 10 000 ms). */
  readonly stopTimeoutMs?: number;
  /**
   * Configuration added to the server's (such as the `authorization` block of
   * `natsAuthorization`, cli/deploy/nats-config.ts): with users, anonymous clients are refused.
   */
  readonly extraConfig?: string;
}

/** Defaults of {@link NatsServerLaunchOptions}. */
export const DEFAULT_NATS_SERVER_LAUNCH_OPTIONS = {
  binary: 'nats-server',
  startTimeoutMs: 15_000,
  stopTimeoutMs: 10_000,
} as const satisfies NatsServerLaunchOptions;

/** A running local NATS server. */
export interface LaunchedNatsServer {
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  /** Its temporary folder (mode 0700), removed when it stops: a place for files that hold its secrets. */
  readonly directory: string;
  /**
   * The id of the process keel up started, and of its process group: the server's, or that of a
   * wrapper named in KEEL_NATS_SERVER_BIN that runs the server as its child.
   */
  readonly pid: number;
  /**
   * The folders of earlier servers removed before this one started: those a killed `keel up` or
   * `keel dev` left behind, whose starter and server are both gone.
   */
  readonly removedLeftovers: readonly string[];
  /**
   * Settles, with how it ended (`it was ended by SIGKILL`), when the server exits without
   * {@link stop} having been called: killed, crashed, or stopped from outside. Never settles otherwise.
   */
  readonly lost: Promise<string>;
  /** Stops the server and removes its store. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A free TCP port on 127.0.0.1.
 *
 * @example
 * ```ts
 * const port = await freePort();
 * ```
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no free port'))));
    });
  });
}

/**
 * True when a NATS server on 127.0.0.1:`port` accepts a TCP connection and greets it with its
 * `INFO` line within a second; false when nothing listens, something else answers, it is
 * silent, or it closes the connection first (a server shutting down). The socket is closed either way.
 *
 * @example
 * ```ts
 * while (!(await acceptsConnections(port))) await sleep(50);
 * ```
 */
export function acceptsConnections(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('data', (chunk) => finish(chunk.toString('utf8').startsWith('INFO')));
    // A server shutting down may accept and close without a word: the close clears the timer
    // above, and without this the promise would never settle.
    socket.once('close', () => finish(false));
  });
}

/**
 * Starts `nats-server` with JetStream on a loopback port, from a configuration file in a
 * temporary folder (with `extraConfig` added). Throws `E_NATS_SERVER` when the binary is
 * missing or the server does not come up, with what to do about it.
 *
 * The server picks its port itself (`listen: 127.0.0.1:-1`) and writes it to a ports file in
 * that folder (`ports_file_dir`) once it listens. No port is found free here and bound later by
 * the server, which another process could take in between; and the port waited for is the one
 * this server listens on, never another listener's.
 *
 * @example
 * ```ts
 * const server = await launchNatsServer();
 * console.log(server.url); // nats://127.0.0.1:41873
 * await server.stop();
 * ```
 */
export async function launchNatsServer(options: NatsServerLaunchOptions = {}): Promise<LaunchedNatsServer> {
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  const resolved = { ...DEFAULT_NATS_SERVER_LAUNCH_OPTIONS, ...defined } as Required<NatsServerLaunchOptions>;
  const probe = spawnSync(resolved.binary, ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new CLIError(
      CliErrorCode.E_NATS_SERVER,
      `Cannot run "${resolved.binary}" (${probe.error?.message ?? probe.stderr.trim()}), and this topology needs NATS.`,
      {
        hint:
          'Install nats-server (Debian: `apt-get install nats-server`; or put the release binary on PATH), ' +
          'point KEEL_NATS_SERVER_BIN at it, or pass --nats <url> of a running server.',
      },
    );
  }
  const removedLeftovers = removeLeftFolders(tmpdir());
  const directory = mkdtempSync(join(tmpdir(), NATS_FOLDER_PREFIX));
  recordOwners(directory, { starter: process.pid });
  const config = join(directory, 'nats-server.conf');
  const lines = [
    'listen: "127.0.0.1:-1"',
    `ports_file_dir: ${JSON.stringify(directory)}`,
    `jetstream { store_dir: ${JSON.stringify(join(directory, 'store'))} }`,
  ];
  if (options.extraConfig !== undefined) lines.push(options.extraConfig);
  writeFileSync(config, `${lines.join('\n')}\n`, { mode: 0o600 });
  // Its own process group, as every process keel up starts: a Ctrl-C in the terminal reaches keel up
  // only, which stops the server last, once the modules using it have drained. Where `setpriv` can,
  // the server gets SIGTERM when this process dies, even by SIGKILL, when no handler of ours runs.
  const [command, args] = withParentDeathSignal(resolved.binary, ['-c', config]);
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const collect = (chunk: Buffer): void => {
    if (output.length < 16_384) output += chunk.toString('utf8');
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let exited = false;
  let ending = '';
  let stopping = false;
  let lose: (how: string) => void = () => {};
  const lost = new Promise<string>((resolve) => (lose = resolve));
  const group = child.pid as number;
  // Named while it may run, so that a later launch leaves its folder alone until both are gone.
  if (child.pid !== undefined) recordOwners(directory, { starter: process.pid, server: group });
  // Its whole process group: a wrapper named in KEEL_NATS_SERVER_BIN that runs the server as its
  // child (rather than exec it) is in the group too, and a signal to the wrapper alone would leave
  // the server running.
  const signal = (name: NodeJS.Signals): void => {
    try {
      process.kill(-group, name);
    } catch {
      child.kill(name);
    }
  };
  /**
   * True while any process of the group is left (a wrapper's server may outlive the wrapper),
   * zombies aside: an orphaned server that exited is reaped by PID 1, and where PID 1 reaps no
   * orphans (some containers) it would stay one for good.
   */
  const groupLeft = (): boolean => {
    try {
      process.kill(-group, 0);
      return groupRunsBeyondZombies(group);
    } catch (error) {
      return (error as NodeJS.ErrnoException).code === 'EPERM';
    }
  };
  let gone = false;
  // Outside this process's group, nothing else stops it: an exit that skipped stop() (a second
  // Ctrl-C, an uncaught error) ends it here, synchronously. Kept until the whole group is gone.
  const killOnExit = (): void => {
    if (!gone) signal('SIGKILL');
    // And its folder, which holds the credentials of its users: nothing else would remove it before the next launch.
    // Never a throw (a file the dying server still writes): the exit listeners after this one must run too.
    try {
      rmSync(directory, { recursive: true, force: true, maxRetries: 2 });
    } catch {
      // The next launch removes what is left, once the server is gone.
    }
  };
  process.once('exit', killOnExit);
  const markGone = (): void => {
    gone = true;
    process.removeListener('exit', killOnExit);
  };
  child.once('exit', (code, signalName) => {
    exited = true;
    ending = signalName === null ? `it exited with code ${code}` : `it was ended by ${signalName}`;
    if (!groupLeft()) markGone();
    if (!stopping) lose(ending);
  });
  /** Waits until the group is empty, or `until`; true when it is. */
  const groupEnded = async (until: number): Promise<boolean> => {
    while (!exited || groupLeft()) {
      if (Date.now() >= until) return false;
      await sleep(20);
    }
    return true;
  };
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping = true;
    stopped ??= (async () => {
      if (!gone) {
        signal('SIGTERM');
        if (!(await groupEnded(Date.now() + resolved.stopTimeoutMs))) {
          signal('SIGKILL');
          await groupEnded(Date.now() + 2_000);
        }
        markGone();
      }
      rmSync(directory, { recursive: true, force: true });
    })();
    return stopped;
  };
  const deadline = Date.now() + resolved.startTimeoutMs;
  let port: number | undefined;
  while (Date.now() < deadline && !exited) {
    port ??= listeningPort(directory);
    if (port !== undefined && (await acceptsConnections(port))) return { url: `nats://127.0.0.1:${port}`, directory, pid: group, removedLeftovers, lost, stop };
    await sleep(50);
  }
  const wasExited = exited;
  await stop();
  const what = wasExited
    ? `nats-server stopped before it accepted connections (${ending})`
    : `nats-server did not accept connections within ${resolved.startTimeoutMs} ms (${port === undefined ? 'it wrote no ports file' : `on 127.0.0.1:${port}`})`;
  throw new CLIError(CliErrorCode.E_NATS_SERVER, `${what}. Its output:\n${output}`, {
    hint:
      'Its output above says why. KEEL_NATS_SERVER_BIN, when set, must name a nats-server 2.x, ' +
      'or a wrapper that runs one with the same arguments (with exec, so that it stops when keel up is killed).',
  });
}

/**
 * The client port in the ports file nats-server writes to `directory` once it listens
 * (`<binary>_<pid>.ports`: `{"nats":["nats://127.0.0.1:41873"]}`), or undefined while there is none.
 * Any name: a wrapper named in KEEL_NATS_SERVER_BIN may start the server under another pid.
 */
function listeningPort(directory: string): number | undefined {
  const file = readdirSync(directory).find((name) => name.endsWith('.ports'));
  if (file === undefined) return undefined;
  try {
    const urls = (JSON.parse(readFileSync(join(directory, file), 'utf8')) as { nats?: unknown }).nats;
    const port = Array.isArray(urls) && typeof urls[0] === 'string' ? Number(new URL(urls[0]).port) : Number.NaN;
    return Number.isInteger(port) && port > 0 ? port : undefined;
  } catch {
    return undefined; // still being written
  }
}

let setprivWorks: boolean | undefined;

/**
 * `binary args` run so that the kernel sends it SIGTERM when this process ends, however it ends:
 * through util-linux's `setpriv --pdeathsig` (Linux's `PR_SET_PDEATHSIG`), which then runs the
 * binary in its own place (same pid, so signals to the child reach the server). Modules started by
 * keel up stop on their own when it dies (their IPC channel closes); nats-server has no such
 * channel, and a `keel up` killed with SIGKILL used to leave it running. Where `setpriv` is
 * missing (macOS, a minimal image), the binary runs as it is, and only a SIGKILL leaves it behind.
 * The signal comes when the *thread* that spawned it ends: call it from the main thread only (a
 * worker's end would stop the server).
 */
function withParentDeathSignal(binary: string, args: readonly string[]): [string, string[]] {
  setprivWorks ??=
    process.platform === 'linux' && spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return setprivWorks ? ['setpriv', ['--pdeathsig', 'TERM', '--', binary, ...args]] : [binary, [...args]];
}
