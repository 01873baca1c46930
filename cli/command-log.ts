/**
 * A command's own lines and its failure, in the format it logs in. `keel up` and `keel dev`,
 * which run other processes: `keel up: ...` lines on stdout in pretty format; in JSON format,
 * records of keel's logger (as `keel start` writes them) whose `process` is the command. `keel
 * start`, whose lines are its logger's already, uses only its failure. In JSON format a failure
 * is an error record on stderr, so that every line the command writes is a JSON object.
 */
import { isKeelError, type Logger } from 'keel';
import { LogFormat, createLogger } from 'keel/transport';
import { markReported, type CliContext } from './command.js';
import { isCliError } from './errors.js';
import type { ProcessExit, SupervisorLogLevel } from './supervisor.js';

/** What {@link createCommandLog} returns. */
export interface CommandLog {
  /**
   * Writes one line of the command's own, at `level` (default info; a pretty line shows no level).
   * A record's `msg` leaves out the line's indentation, which lays out pretty lines only.
   */
  readonly log: (line: string, level?: SupervisorLogLevel, fields?: Readonly<Record<string, unknown>>) => void;
  /** True once its lines are JSON records. */
  readonly json: boolean;
  /**
   * Sets the format, once known, and the environment whose `KEEL_LOG_LEVEL` its records follow.
   * Until then lines are pretty.
   */
  use(format: LogFormat, env: Readonly<Record<string, string | undefined>>): void;
  /**
   * In JSON format, writes `error` as an error record on stderr and marks it reported (runCli
   * prints nothing more). Returns it, to be thrown again.
   */
  failed(error: unknown): unknown;
  /**
   * Runs the command: JSON from the start when `KEEL_LOG_FORMAT=json` is in `cli.env`, and a
   * failure of `work` (or of making its loggers: a `KEEL_LOG_LEVEL` that is not a level) written
   * by {@link CommandLog.failed} before it is thrown again.
   */
  run(work: () => Promise<void>): Promise<void>;
  /** Says how each process ended once stopped: `stopped cleanly` or `stopped while starting` (info), else its exit code or signal (warn). */
  exits(exits: readonly ProcessExit[]): void;
}

/**
 * The log of the command that owns this process (`CliContext.ownsProcess`, as the `keel`
 * executable runs it), while it runs: where the process's own notices go.
 */
let processLog: CommandLog | undefined;

/**
 * Writes a notice of the process itself, not of its command (the executable's "Ctrl-C again",
 * a warning Node emits): a warning record of the command's log while the command that owns the
 * process logs JSON, else `keel: <text>` on stderr.
 *
 * @example
 * ```ts
 * processNotice('Ctrl-C again, exiting without waiting for work in flight.');
 * ```
 */
export function processNotice(text: string, fields: Readonly<Record<string, unknown>> = {}): void {
  if (processLog?.json) processLog.log(text, 'warn', fields);
  else process.stderr.write(`keel: ${text}\n`);
}

/**
 * The arguments of a `NODE_OPTIONS` value, split as Node splits it: on spaces, except inside
 * double quotes, where a backslash keeps the next character as it is (`--disable-warning="My
 * Warning"` is one argument, `--disable-warning=My Warning`). Node refuses to start on an
 * unterminated quote, so one never reaches here; what follows it is read as one argument.
 *
 * @example
 * ```ts
 * nodeOptionsArgs('--no-deprecation --disable-warning="My Warning"'); // ['--no-deprecation', '--disable-warning=My Warning']
 * ```
 */
export function nodeOptionsArgs(value: string): string[] {
  const args: string[] = [];
  let current = '';
  let started = false;
  let quoted = false;
  for (let index = 0; index < value.length; index++) {
    const char = value[index] as string;
    if (quoted && char === '\\' && index + 1 < value.length) {
      current += value[++index];
      started = true;
    } else if (char === '"') {
      quoted = !quoted;
    } else if (char === ' ' && !quoted) {
      if (started) args.push(current);
      current = '';
      started = false;
    } else {
      current += char;
      started = true;
    }
  }
  if (started) args.push(current);
  return args;
}

/**
 * The warning codes and names `--disable-warning` turns off, on Node's command line or in
 * `NODE_OPTIONS`: Node's printer skips them (the listeners still get them), and so must a record.
 */
function disabledWarnings(): ReadonlySet<string> {
  const args = [...process.execArgv, ...nodeOptionsArgs(process.env['NODE_OPTIONS'] ?? '')];
  const disabled = new Set<string>();
  for (let index = 0; index < args.length; index++) {
    const arg = args[index] as string;
    if (arg.startsWith('--disable-warning=')) disabled.add(arg.slice('--disable-warning='.length));
    else if (arg === '--disable-warning' && index + 1 < args.length) disabled.add(args[++index] as string);
  }
  return disabled;
}

/**
 * Makes the warnings Node emits in this process ({@link process.emitWarning}: deprecations,
 * experimental features, too many listeners) records of the owning command's log while it logs
 * JSON; otherwise Node prints them as it would. Node prints nothing with `--no-warnings`, and
 * neither does this; a warning `--disable-warning` names is no record either. For the `keel`
 * executable, once.
 */
export function routeProcessWarnings(): void {
  // Node's own printer, absent with --no-warnings.
  const print = process.listeners('warning');
  if (print.length === 0) return;
  const disabled = disabledWarnings();
  process.removeAllListeners('warning');
  process.on('warning', (warning) => {
    if (processLog?.json !== true) {
      for (const listener of print) listener(warning);
      return;
    }
    const code = (warning as { code?: unknown }).code;
    if (disabled.has(warning.name) || (typeof code === 'string' && disabled.has(code))) return;
    processLog.log(`${warning.name}: ${warning.message}`, 'warn', {
      warning: warning.name,
      ...(typeof code === 'string' ? { code } : {}),
      // --trace-warnings: where it was emitted, as Node would print it.
      ...((process as { traceProcessWarnings?: boolean }).traceProcessWarnings === true && warning.stack !== undefined ? { stack: warning.stack } : {}),
    });
  });
}

/** Options of {@link createCommandLog}. */
export interface CommandLogOptions {
  /**
   * The `process` of its records: `command` (the default), the command's name (`keel up`);
   * `environment`, `KEEL_PROCESS_NAME` when set (`keel start`, whose records name the process
   * of a topology it runs as, as its logger's do).
   */
  readonly processName?: 'command' | 'environment' | undefined;
}

/**
 * The own lines of `command` (`keel up`, `keel dev`, `keel start`), pretty until
 * {@link CommandLog.use} says otherwise. `KEEL_LOG_FORMAT=json` in `cli.env` makes them JSON
 * from the start; the configuration file can only say so once it is read.
 *
 * @example
 * ```ts
 * const own = createCommandLog(cli, 'keel up');
 * await own.run(async () => {
 *   own.log('started nats-server on nats://127.0.0.1:4222');
 * });
 * ```
 */
export function createCommandLog(cli: CliContext, command: string, options: CommandLogOptions = {}): CommandLog {
  /** In JSON format: the failure's logger, and how to make the lines' one on first use. */
  let json: { stderr: Logger; env: Readonly<Record<string, string | undefined>>; stdout: Logger | undefined } | undefined;
  const use = (format: LogFormat, env: Readonly<Record<string, string | undefined>>): void => {
    if (format !== LogFormat.JSON) {
      json = undefined;
      return;
    }
    const loggerEnv = options.processName === 'environment' ? env : { ...env, KEEL_PROCESS_NAME: command };
    // The failure is written whatever the level (runCli, which it replaces, always says it), so
    // made first: a KEEL_LOG_LEVEL that is not a level still fails as a record.
    json = { stderr: createLogger({ env: loggerEnv, destination: cli.stderr, format, level: 'error' }), env: loggerEnv, stdout: undefined };
    if (options.processName !== 'environment') json.stdout = createLogger({ env: loggerEnv, destination: cli.stdout, format });
  };
  const log = (line: string, level: SupervisorLogLevel = 'info', fields: Readonly<Record<string, unknown>> = {}): void => {
    if (json === undefined) {
      cli.stdout.write(`${command}: ${line}\n`);
      return;
    }
    json.stdout ??= createLogger({ env: json.env, destination: cli.stdout, format: LogFormat.JSON });
    json.stdout[level]({ ...fields }, line.trimStart());
  };
  const failed = (error: unknown): unknown => {
    if (json === undefined || typeof error !== 'object' || error === null) return error;
    if (isCliError(error)) json.stderr.error({ code: error.code, ...(error.hint ? { hint: error.hint } : {}) }, error.message);
    else if (isKeelError(error)) json.stderr.error({ code: error.code }, error.message);
    else json.stderr.error({ err: error }, 'unexpected failure (a bug in keel or in the application)');
    return markReported(error, cli);
  };
  const commandLog: CommandLog = {
    log,
    get json() {
      return json !== undefined;
    },
    use,
    failed,
    run: async (work) => {
      if (cli.ownsProcess === true) processLog = commandLog;
      try {
        if (cli.env['KEEL_LOG_FORMAT']?.trim() === LogFormat.JSON) use(LogFormat.JSON, cli.env);
        await work();
      } catch (error) {
        throw failed(error);
      } finally {
        if (processLog === commandLog) processLog = undefined;
      }
    },
    exits: (exits) => {
      for (const exit of exits) {
        const clean = exit.code === 0 || exit.beforeReady === true;
        const how = exit.code === 0 ? 'stopped cleanly' : exit.beforeReady ? 'stopped while starting' : `ended with ${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`}`;
        log(`  ${exit.name} ${how}`, clean ? 'info' : 'warn');
      }
    },
  };
  return commandLog;
}
