/**
 * The command runner: citty's `defineCommand` for each command, and {@link runCli}, which takes
 * its argument list and its streams as parameters so that tests never touch `process.argv`.
 */
import { stripVTControlCharacters } from 'node:util';
import { renderUsage, runCommand, type ArgsDef, type CommandDef, type CommandMeta, type Resolvable } from 'citty';
import { isKeelError } from 'keel';
import { checkArguments, resolve, resolveCommand, type Resolved } from './command-arguments.js';
import { ExitCode, isCliError } from './errors.js';

/**
 * Where a command writes. `process.stdout` satisfies it; so does a string collector in tests.
 *
 * @example
 * ```ts
 * import { main, runCli, type OutputStream } from 'keel/cli';
 *
 * let output = '';
 * const stdout: OutputStream = { write: (text) => (output += text) };
 * await runCli(main, ['graph'], { stdout });
 * ```
 */
export interface OutputStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
}

/**
 * How to start this very CLI again in a child process (used by `keel up`).
 *
 * @example
 * ```ts
 * const self: SelfCommand = { command: process.execPath, args: [...process.execArgv, process.argv[1] ?? ''] }; // the default
 * spawn(self.command, [...self.args, 'start', '--modules', 'orders']);
 * ```
 */
export interface SelfCommand {
  /** The executable, normally `process.execPath`. */
  readonly command: string;
  /** Arguments before the CLI's own arguments (node flags, then the CLI script). */
  readonly args: readonly string[];
}

/**
 * A message a `keel start` process sends to the `keel up` that runs it.
 *
 * @example
 * ```ts
 * const ready: SupervisorMessage = { type: 'ready', modules: host.kernel.hosted, httpUrl: host.httpUrl };
 * cli.supervisor?.send(ready);
 * ```
 */
export type SupervisorMessage =
  | { readonly type: 'ready'; readonly modules: readonly string[]; readonly httpUrl?: string | undefined }
  | { readonly type: 'stopping' }
  | {
      readonly type: 'failed';
      /** The error's code (`INVALID_CONFIG`, `E_USAGE`, `UNAVAILABLE`...). */
      readonly code: string;
      readonly message: string;
      /**
       * False when starting it again unchanged would fail the same way: a bad option or variable
       * of `keel start`, a configuration it refuses, a port another process holds, NATS refusing
       * its credentials.
       */
      readonly retry: boolean;
      /** What to do about it, when the error says (a `CLIError`'s hint). */
      readonly hint?: string | undefined;
      /**
       * What a caller may act on, as plain JSON: a `KeelError`'s details (the NATS transport's
       * `nats` and `servers` when it cannot connect), or for `E_HTTP_LISTEN` the `port` and `errno`.
       */
      readonly details?: Readonly<Record<string, unknown>> | undefined;
    };

/**
 * The channel to a supervising `keel up` (Node's IPC channel in a child process).
 *
 * @example
 * ```ts
 * const supervisor: SupervisorChannel | undefined =
 *   process.send === undefined ? undefined : { send: (message) => void process.send?.(message) };
 * process.exitCode = await runCli(main, process.argv.slice(2), { supervisor });
 * ```
 */
export interface SupervisorChannel {
  send(message: SupervisorMessage): void;
}

/**
 * What every command receives besides its parsed arguments.
 *
 * @example
 * ```ts
 * run: async ({ data }) => {
 *   const cli: CliContext = contextOf(data);
 *   const project = findProject(cli.cwd);
 *   cli.stdout.write(`manifest: ${project.manifestPath}\n`);
 * },
 * ```
 */
export interface CliContext {
  /** Directory relative paths are resolved against. */
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdout: OutputStream;
  readonly stderr: OutputStream;
  /** Aborted on Ctrl-C or SIGTERM: long-running commands drain and return when it fires. */
  readonly signal: AbortSignal;
  readonly self: SelfCommand;
  /** The `keel up` supervising this process, if any. */
  readonly supervisor?: SupervisorChannel | undefined;
  /**
   * Whether the command owns its process, as the `keel` executable does: then it may act on the
   * process as a whole (`keel start` hands back its start-up memory once ready). Default false: a
   * command run inside another program leaves that program's process alone.
   */
  readonly ownsProcess?: boolean | undefined;
}

/**
 * What {@link runCli} takes; every field defaults to the current process.
 *
 * @example
 * ```ts
 * const options: RunCliOptions = { cwd: '/home/me/shop', env: { ...process.env, KEEL_NATS_URL: undefined } };
 * const code = await runCli(main, ['check'], options);
 * ```
 */
export type RunCliOptions = Partial<CliContext>;

/**
 * A command's metadata: citty's, plus examples shown under `--help`.
 *
 * @example
 * ```ts
 * const meta: KeelCommandMeta = {
 *   name: 'graph',
 *   description: 'Draw the modules, their calls and events',
 *   examples: ['keel graph', 'keel graph --format dot | dot -Tsvg > graph.svg'],
 * };
 * ```
 */
export interface KeelCommandMeta extends CommandMeta {
  /** Command lines shown under EXAMPLES, without the leading `$ `. */
  readonly examples?: readonly string[];
}

/**
 * A command definition: citty's, with {@link KeelCommandMeta}.
 *
 * @example
 * ```ts
 * const hello: KeelCommandDef = {
 *   meta: { name: 'hello', description: 'Say hello', examples: ['keel hello'] },
 *   run: ({ data }) => void contextOf(data).stdout.write('hello\n'),
 * };
 * ```
 */
export type KeelCommandDef<T extends ArgsDef = ArgsDef> = Omit<CommandDef<T>, 'meta'> & {
  readonly meta?: Resolvable<KeelCommandMeta>;
};

/**
 * Defines one command (one per file; sub-commands are loaded lazily by their parent).
 * A thin, typed wrapper over citty's `defineCommand` that adds `meta.examples`.
 *
 * @example
 * ```ts
 * export default defineCommand({
 *   meta: { name: 'graph', description: 'Print the module dependency graph', examples: ['keel graph --format dot'] },
 *   args: { format: { type: 'enum', options: ['mermaid', 'dot'], default: 'mermaid' } },
 *   run: ({ args, data }) => {
 *     const cli = contextOf(data);
 *     cli.stdout.write(`format: ${args.format}\n`);
 *   },
 * });
 * ```
 */
export function defineCommand<const T extends ArgsDef = ArgsDef>(def: KeelCommandDef<T>): CommandDef<T> {
  return def as CommandDef<T>;
}

/**
 * The {@link CliContext} of a running command, from citty's `context.data`.
 *
 * @example
 * ```ts
 * run: ({ data }) => contextOf(data).stdout.write('done\n'),
 * ```
 */
export function contextOf(data: unknown): CliContext {
  const context = data as CliContext | undefined;
  if (context === undefined || typeof context.stdout?.write !== 'function') {
    throw new Error('This command must be run through runCli(), which provides its context.');
  }
  return context;
}

const HEADING = (title: string): string => `\u001B[4m\u001B[1m${title}\u001B[22m\u001B[24m`;

/**
 * The `--help` text of a command: citty's usage plus an EXAMPLES section, with the full
 * command path (`keel generate module`) as its name.
 *
 * @example
 * ```ts
 * const text = await renderHelp(main, ['generate', 'module']);
 * ```
 */
export async function renderHelp(root: CommandDef, argv: readonly string[] = []): Promise<string> {
  const target = await resolveCommand(root, [...argv]);
  return stripVTControlCharacters(await renderResolved(target));
}

async function renderResolved(target: Resolved): Promise<string> {
  const meta = (await resolve(target.command.meta ?? {})) as KeelCommandMeta;
  const parentName = target.path.slice(0, -1).join(' ');
  const named: CommandDef = { ...target.command, meta: { ...meta, name: target.path.at(-1) as string } };
  const usage = await renderUsage(named, parentName ? ({ meta: { name: parentName } } as CommandDef) : undefined);
  let text = usage.replace(/[^\S\n]+$/gm, '').trimEnd();
  if (meta.examples && meta.examples.length > 0) {
    text += `\n\n${HEADING('EXAMPLES')}\n\n${meta.examples.map((example) => `  $ ${example}`).join('\n')}`;
  }
  return `${text}\n`;
}

function defaultContext(options: RunCliOptions): CliContext {
  return {
    cwd: options.cwd ?? process.cwd(),
    env: options.env ?? process.env,
    stdout: options.stdout ?? process.stdout,
    stderr: options.stderr ?? process.stderr,
    signal: options.signal ?? new AbortController().signal,
    self: options.self ?? { command: process.execPath, args: [...process.execArgv, process.argv[1] ?? ''] },
    supervisor: options.supervisor,
    ownsProcess: options.ownsProcess ?? false,
  };
}

function write(stream: OutputStream, text: string): void {
  stream.write(stream.isTTY ? text : stripVTControlCharacters(text));
}

/**
 * Runs a command with an explicit argument list and returns the process exit code: 0 on
 * success, 2 for a usage error, 1 for any other failure. Errors are printed to `stderr` as
 * `error E_CODE: message`; nothing here calls `process.exit`.
 *
 * @example
 * ```ts
 * import { main, runCli } from 'keel/cli';
 *
 * const lines: string[] = [];
 * const code = await runCli(main, ['generate', 'module', 'billing', '--dry-run'], {
 *   cwd: '/tmp/my-shop',
 *   stdout: { write: (text) => lines.push(text) },
 * });
 * ```
 */
export async function runCli(root: CommandDef, argv: readonly string[], options: RunCliOptions = {}): Promise<number> {
  const context = defaultContext(options);
  const rawArgs = [...argv];
  const beforeDashes = rawArgs.includes('--') ? rawArgs.slice(0, rawArgs.indexOf('--')) : rawArgs;
  try {
    if (beforeDashes.length === 1 && (beforeDashes[0] === '--version' || beforeDashes[0] === '-v')) {
      const meta = await resolve(root.meta ?? {});
      write(context.stdout, `${meta?.version ?? 'unknown'}\n`);
      return ExitCode.OK;
    }
    const target = await resolveCommand(root, rawArgs);
    const isGroup = Object.keys(await resolve(target.command.subCommands ?? {})).length > 0;
    if (beforeDashes.includes('--help') || beforeDashes.includes('-h') || (isGroup && target.command.run === undefined)) {
      write(context.stdout, await renderResolved(target));
      return ExitCode.OK;
    }
    await checkArguments(target);
    await runCommand(target.command, { rawArgs: target.rawArgs, data: context });
    return ExitCode.OK;
  } catch (error) {
    return report(error, context);
  }
}

/** Errors a command has written itself, in its own format, by run: {@link runCli} prints nothing more of them. */
const reportedErrors = new WeakMap<CliContext, WeakSet<object>>();

/**
 * Marks an error the command run by `context` has already written to stderr in its own format
 * (`keel up` in JSON format writes it as an error record): {@link runCli} returns its exit code
 * and prints nothing. Only that run's report is silenced: the same error object thrown again in
 * another run (a cached rejection) is printed there. Returns the error, to be thrown.
 *
 * @example
 * ```ts
 * logger.error({ code: error.code }, error.message);
 * throw markReported(error, cli);
 * ```
 */
export function markReported<T extends object>(error: T, context: CliContext): T {
  let reported = reportedErrors.get(context);
  if (reported === undefined) reportedErrors.set(context, (reported = new WeakSet()));
  reported.add(error);
  return error;
}

function report(error: unknown, context: CliContext): number {
  const reported = typeof error === 'object' && error !== null && reportedErrors.get(context)?.has(error) === true;
  const say = (text: string): void => {
    if (!reported) write(context.stderr, text);
  };
  if (isCliError(error)) {
    say(`error ${error.code}: ${error.message}\n${error.hint ? `  ${error.hint}\n` : ''}`);
    return error.exitCode;
  }
  if (isKeelError(error)) {
    say(`error ${error.code}: ${error.message}\n`);
    return ExitCode.FAILURE;
  }
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  say(`error: unexpected failure (a bug in keel or in the application):\n${detail}\n`);
  return ExitCode.FAILURE;
}
