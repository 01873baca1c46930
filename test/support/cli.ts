/**
 * Runs the `keel` command in process, as the CLI tests do: the runner takes its arguments and
 * streams as parameters, so no test touches `process.argv` or the real stdout.
 */
import { main, runCli, type OutputStream } from 'keel/cli';

/** An output stream that keeps everything written to it. */
export function collector(): OutputStream & { text: string } {
  const stream = {
    text: '',
    write(chunk: string) {
      stream.text += chunk;
      return true;
    },
  };
  return stream;
}

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
