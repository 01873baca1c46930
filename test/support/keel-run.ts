/**
 * Runs a long-running `keel` command (`keel up`, `keel dev`) from source in a child process, in
 * pretty format, as `npm run keel -- <command>` does, and collects its output; every wait is bounded.
 */
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;

/** How long any one awaited line, or the exit, may take before the test fails rather than hangs. */
export const WAIT_MS = 30_000;

/**
 * `keel <command> ...argv` in `cwd`, its modules' data in memory and no NATS URL from the shell
 * (`env` over that); `detached` gives it a process group of its own, as a terminal's foreground command
 * (`process.kill(-pid, 'SIGINT')` is then a Ctrl-C).
 *
 * @example
 * ```ts
 * const up = runKeelCommand('up', ['topologies/replicas.json'], root);
 * await up.waitFor('keel up: ready: all 2 processes');
 * ```
 */
export function runKeelCommand(
  command: 'up' | 'dev',
  argv: readonly string[],
  cwd: string,
  options: { readonly detached?: boolean; readonly env?: Readonly<Record<string, string>> } = {},
) {
  const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', join(repository, 'cli/bin.ts'), command, ...argv], {
    cwd,
    env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: 'pretty', DATABASE_URL: '', KEEL_DATA_DIR: 'memory', KEEL_NATS_URL: '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
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
    /** Its stdout and stderr, as they came. */
    output: () => output,
    /** Its stderr alone. */
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
    /** SIGKILL, unless it has exited: for a test's `finally`. */
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
