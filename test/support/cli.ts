/**
 * Runs the `keel` command in process, as the CLI tests do: the runner takes its arguments and
 * streams as parameters, so no test touches `process.argv` or the real stdout.
 */
import { cpSync, mkdirSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { expect } from 'vitest';
import { main, runCli, type OutputStream } from 'keel/cli';

/** An output stream that keeps everything written to it; `waitFor(text)` resolves once the text was written. */
export function collector(): OutputStream & { text: string; waitFor(text: string): Promise<void> } {
  const waiters: { text: string; resolve: () => void }[] = [];
  const stream = {
    text: '',
    write(chunk: string) {
      stream.text += chunk;
      for (const waiter of waiters.filter((entry) => stream.text.includes(entry.text))) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
      return true;
    },
    waitFor(text: string) {
      return stream.text.includes(text) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ text, resolve }));
    },
  };
  return stream;
}

/** One JSON log line of a running `keel start`, parsed. */
export type LogRecord = { readonly msg?: string } & Readonly<Record<string, unknown>>;

/** The text `keel start` writes once ready, in the JSON format it uses when its stdout is no terminal. */
export const READY = '"msg":"ready"';

/**
 * Every line of `text` parsed as a JSON log record; throws, naming the line, at one that is not
 * a JSON object: a running process writes nothing else to stdout.
 */
export function logRecords(text: string): LogRecord[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new Error(`Not a JSON log line: ${line}`);
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`Not a JSON object: ${line}`);
      return value as LogRecord;
    });
}

/**
 * The one record a failed command wrote on `stderr` in JSON format: an error record (level 50)
 * with a `code`, matching `fields` too. Fails when stderr holds anything else.
 */
export function failureRecord(stderr: string, fields: Record<string, unknown> = {}): LogRecord {
  const records = logRecords(stderr);
  expect(records, stderr).toHaveLength(1);
  expect(records[0], stderr).toMatchObject({ level: 50, code: expect.any(String), msg: expect.any(String), ...fields });
  return records[0] as LogRecord;
}

/** The `msg` of every record of `text`, in order. */
export function logMessages(text: string): string[] {
  return logRecords(text).map((record) => record.msg ?? '');
}

/** The URL of the `HTTP gateway on ...` record of `text`, if any. */
export function gatewayUrl(text: string): string | undefined {
  const record = logRecords(text).find((entry) => entry.msg?.startsWith('HTTP gateway on ') === true);
  return record === undefined ? undefined : String(record['url']);
}

/**
 * All `keel deploy` writes on stderr when it succeeds in keel's own repository (whose package is
 * keel): its Dockerfile runs keel from node_modules/keel, which only an application has.
 */
export const KEEL_REPOSITORY_DEPLOY_WARNING =
  /^keel deploy: warning: this is keel's own repository, not an application that depends on keel: the Dockerfile runs keel from node_modules\/keel .*\n$/;

/** What one run of `keel` printed, and its exit code. */
export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `keel <argv>` in `cwd` with `env` as its whole environment (default: empty).
 *
 * @example
 * ```ts
 * const { code, stdout } = await runKeel(['check', '--json'], { cwd: repository });
 * ```
 */
export async function runKeel(argv: readonly string[], options: { readonly cwd: string; readonly env?: Record<string, string> }): Promise<CliRun> {
  const stdout = collector();
  const stderr = collector();
  const code = await runCli(main, argv, { stdout, stderr, cwd: options.cwd, env: options.env ?? {} });
  return { code, stdout: stdout.text, stderr: stderr.text };
}

/** A `keel start` (or any long-running command) running in process, until {@link RunningKeel.stop}. */
export interface RunningKeel {
  readonly stdout: OutputStream & { text: string };
  readonly stderr: OutputStream & { text: string };
  /** The exit code, once the command returns. */
  readonly exit: Promise<number>;
  /** The HTTP gateway's URL it printed, once ready (undefined without a gateway). */
  readonly url: string | undefined;
  /** Signals it as Ctrl-C would, and resolves with its exit code. */
  stop(): Promise<number>;
}

/**
 * Runs `keel <argv>` in process and resolves once it logged its `ready` record; rejects, with what
 * it printed, when it ends before.
 *
 * @example
 * ```ts
 * const running = await startKeel(['start', '--http', '0'], { cwd: app.root, env: { KEEL_DATA_DIR: 'memory' } });
 * await fetch(`${running.url}/readyz`);
 * expect(await running.stop()).toBe(0);
 * ```
 */
export async function startKeel(
  argv: readonly string[],
  options: { readonly cwd: string; readonly env?: Record<string, string> },
): Promise<RunningKeel> {
  const stdout = collector();
  const stderr = collector();
  const controller = new AbortController();
  const exit = runCli(main, argv, { stdout, stderr, cwd: options.cwd, env: options.env ?? {}, signal: controller.signal });
  let ended = false;
  void exit.then(() => (ended = true));
  while (!stdout.text.includes(READY)) {
    if (ended) throw new Error(`keel ${argv.join(' ')} ended (${await exit}) before it was ready:\n${stdout.text}${stderr.text}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    stdout,
    stderr,
    exit,
    url: gatewayUrl(stdout.text),
    stop: () => {
      controller.abort('SIGTERM');
      return exit;
    },
  };
}

/**
 * A copy of the one-module fixture application (whoami, test/fixtures/tooling/up-replicas) in
 * `parent`/app, with keel (this repository) and zod linked into its node_modules. Returns its root.
 *
 * @example
 * ```ts
 * const root = copyWhoamiApp(mkdtempSync(join(tmpdir(), 'keel-config-')));
 * writeFileSync(join(root, 'keel.config.ts'), config);
 * ```
 */
export function copyWhoamiApp(parent: string): string {
  return copyFixtureApp('up-replicas', parent, 'app');
}

/**
 * Copies the fixture application `test/fixtures/tooling/<fixture>` into `parent/<name>`, with
 * `keel` and `zod` resolving to this repository, and returns its root.
 *
 * @example
 * ```ts
 * const root = copyFixtureApp('dev-app', mkdtempSync(join(tmpdir(), 'keel-dev-')));
 * ```
 */
export function copyFixtureApp(fixture: string, parent: string, name: string = fixture): string {
  const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
  const root = join(parent, name);
  cpSync(join(repository, 'test/fixtures/tooling', fixture), root, { recursive: true });
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(repository, join(root, 'node_modules', 'keel'), 'dir');
  symlinkSync(join(repository, 'node_modules', 'zod'), join(root, 'node_modules', 'zod'), 'dir');
  return root;
}
