/**
 * Benchmark peers: a script run with `tsx` in a second process, so that what is measured crosses
 * a process boundary. Like the benchmark itself, a peer imports keel from its build (`dist/`,
 * which `npm run bench` makes first), the JavaScript production runs: not the TypeScript sources
 * (`--conditions=keel-source`), which tsx compiles with esbuild's `keepNames`, adding a
 * `__name()` call for every closure and class field made on the call path. A peer prints `ready` (or any line) when
 * it serves, answers commands written to its stdin one line each, and exits when its stdin closes. `KEEL_BENCH_PROFILE=<dir>` runs peers with
 * `--cpu-prof` into that folder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';

const TSX = new URL('../node_modules/.bin/tsx', import.meta.url).pathname;

/** A running peer process. */
export interface Peer {
  /** The first line the peer printed (`ready`, or what it announces, such as its URL). */
  readonly greeting: string;
  /** Sends one command line and resolves with the peer's next line of output. */
  ask(command: string): Promise<string>;
  /** Closes its stdin and waits for it to exit (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `script` (a path relative to bench/) with `args`; resolves once it printed its first line. */
export async function startPeer(script: string, args: readonly string[], startTimeoutMs = 30_000): Promise<Peer> {
  const profile = process.env['KEEL_BENCH_PROFILE'];
  const nodeFlags = profile === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`];
  const child: ChildProcess = spawn(
    TSX,
    [...nodeFlags, new URL(script, import.meta.url).pathname, ...args],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = once(child, 'exit');
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const stop = async (graceMs = 10_000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.stdin?.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  let timer: NodeJS.Timeout | undefined;
  const first = await Promise.race([
    lines.next(),
    new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), startTimeoutMs);
    }),
    exited.then(() => 'exited' as const),
  ]);
  clearTimeout(timer);
  if (first === 'timeout' || first === 'exited' || first.done === true) {
    await stop(0);
    throw new Error(`benchmark peer ${script} ${args.join(' ')} did not start (${first === 'timeout' ? 'timed out' : 'it exited'})`);
  }
  const ask = async (command: string): Promise<string> => {
    child.stdin!.write(`${command}\n`);
    const answer = await lines.next();
    if (answer.done === true) throw new Error(`benchmark peer ${script} exited instead of answering "${command}"`);
    return answer.value;
  };
  return { greeting: first.value, ask, stop };
}

/**
 * The peer's side: prints `greeting` (its first line), answers `cpu` on stdin with the CPU time
 * this process spent so far (µs, user + system), and each of `answers` by name with what it
 * returns (one line), and runs `stop` then exits when stdin closes.
 */
export function servePeer(greeting: string, stop: () => Promise<void>, answers: Readonly<Record<string, () => string>> = {}): void {
  const commands = createInterface({ input: process.stdin });
  commands.on('line', (line) => {
    const command = line.trim();
    if (command === 'cpu') {
      const { user, system } = process.cpuUsage();
      process.stdout.write(`${user + system}\n`);
    } else if (Object.hasOwn(answers, command)) {
      process.stdout.write(`${answers[command]!()}\n`);
    }
  });
  commands.once('close', () => {
    void stop().finally(() => process.exit(0));
  });
  process.stdout.write(`${greeting}\n`);
}

/**
 * `count` peers running the same script: a process's speed is partly luck (what V8 made of its
 * warm-up, where the OS placed it), so a configuration measured in one process can be 20 % off
 * another process of the same code. A group answers the mean of its members.
 */
export interface PeerGroup {
  /** Asks every member `command` in turn; resolves with the mean of their numeric answers. */
  mean(command: string): Promise<number>;
  /** Asks every member `command` in turn (answers ignored). */
  tell(command: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a {@link PeerGroup} of `count` peers of `script` with `args`. */
export async function startPeerGroup(count: number, script: string, args: readonly string[]): Promise<PeerGroup> {
  const peers: Peer[] = [];
  try {
    for (let index = 0; index < count; index += 1) peers.push(await startPeer(script, args));
  } catch (error) {
    for (const peer of peers) await peer.stop();
    throw error;
  }
  return {
    mean: async (command) => {
      let sum = 0;
      for (const peer of peers) sum += Number(await peer.ask(command));
      return sum / peers.length;
    },
    tell: async (command) => {
      for (const peer of peers) await peer.ask(command);
    },
    stop: async () => {
      for (const peer of peers) await peer.stop();
    },
  };
}
