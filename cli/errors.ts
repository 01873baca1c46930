/**
 * The CLI's one error class. Every failure the `keel` command reports on purpose is a
 * {@link CLIError} with a stable `E_*` code, a message that says what to do next and an exit code.
 */

/**
 * Every code a {@link CLIError} can carry. Stable: scripts may match on them.
 *
 * @example
 * ```ts
 * throw new CLIError(CliErrorCode.E_MODULE_EXISTS, 'Module "orders" already exists in modules/index.ts.');
 * ```
 */
export const CliErrorCode = {
  /** The command line itself is wrong: a missing argument, a bad value, an unknown option. */
  E_USAGE: 'E_USAGE',
  /** No such command or sub-command. */
  E_UNKNOWN_COMMAND: 'E_UNKNOWN_COMMAND',
  /** A module, application or topology name is not lower-kebab-case. */
  E_INVALID_NAME: 'E_INVALID_NAME',
  /** `keel new`, or `keel deploy --out` without `--force`, was pointed at a directory that is not empty. */
  E_TARGET_EXISTS: 'E_TARGET_EXISTS',
  /** The module to generate is already in the manifest or its folder already exists. */
  E_MODULE_EXISTS: 'E_MODULE_EXISTS',
  /** A `--depends-on` (or `--modules`) name is not a module of the manifest. */
  E_UNKNOWN_MODULE: 'E_UNKNOWN_MODULE',
  /** The dependency graph would contain a cycle. */
  E_DEPENDENCY_CYCLE: 'E_DEPENDENCY_CYCLE',
  /** No keel project here: no manifest was found. */
  E_NO_PROJECT: 'E_NO_PROJECT',
  /** The manifest could not be loaded, or has a shape the generator cannot edit safely. */
  E_MANIFEST: 'E_MANIFEST',
  /** A topology file is missing or invalid. */
  E_TOPOLOGY: 'E_TOPOLOGY',
  /** TypeScript files cannot be loaded: tsx is missing. */
  E_LOADER: 'E_LOADER',
  /** The application's configuration file (`keel.config.ts`) does not load, or a field of it is wrong. */
  E_CONFIG: 'E_CONFIG',
  /** `keel build` failed (no TypeScript, type errors, an output folder it may not replace), or a build asked for is missing. */
  E_BUILD: 'E_BUILD',
  /** nats-server is not on PATH or did not start, or the one keel up or keel dev started stopped while it ran. */
  E_NATS_SERVER: 'E_NATS_SERVER',
  /** The HTTP gateway cannot listen on its address: the port is in use, or not allowed. */
  E_HTTP_LISTEN: 'E_HTTP_LISTEN',
  /** A supervised process group could not be kept running. */
  E_PROCESS: 'E_PROCESS',
  /** `keel dev` cannot watch the project's files. */
  E_WATCH: 'E_WATCH',
  /** `keel check` found architecture rules broken. */
  E_CHECK: 'E_CHECK',
  /** `keel contracts`: a breaking contract change without a major version bump, or no usable lock file. */
  E_CONTRACTS: 'E_CONTRACTS',
  /** `keel status`: NATS is unreachable, or a module the topology expects has no running instance. */
  E_STATUS: 'E_STATUS',
  /** `keel db status`: a migration changed after it was applied, or one applied is no longer a file. */
  E_MIGRATIONS: 'E_MIGRATIONS',
} as const;

/** A {@link CliErrorCode} value. */
export type CliErrorCode = (typeof CliErrorCode)[keyof typeof CliErrorCode];

/**
 * Process exit codes the CLI uses.
 *
 * @example
 * ```ts
 * process.exitCode = error instanceof CLIError ? error.exitCode : ExitCode.FAILURE;
 * ```
 */
export const ExitCode = {
  OK: 0,
  /** The command failed. */
  FAILURE: 1,
  /** The command line was wrong (usage errors). */
  USAGE: 2,
} as const;

/** An {@link ExitCode} value. */
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

const USAGE_CODES: ReadonlySet<CliErrorCode> = new Set<CliErrorCode>([
  CliErrorCode.E_USAGE,
  CliErrorCode.E_UNKNOWN_COMMAND,
  CliErrorCode.E_INVALID_NAME,
]);

/**
 * Options of {@link CLIError}.
 *
 * @example
 * ```ts
 * throw new CLIError(CliErrorCode.E_MANIFEST, `Loading modules/index.ts failed: ${(error as Error).message}`, {
 *   cause: error,
 *   hint: 'Fix the error above (run `npx tsc --noEmit` for details), then try again.',
 * });
 * ```
 */
export interface CLIErrorOptions {
  readonly cause?: unknown;
  /** A hint printed under the message, such as the command to run next. */
  readonly hint?: string;
}

/**
 * A failure the CLI reports on purpose: printed as `error E_CODE: message` without a stack,
 * exiting with 2 for usage errors and 1 otherwise.
 *
 * @example
 * ```ts
 * if (!NAME.test(name)) {
 *   throw new CLIError(CliErrorCode.E_INVALID_NAME, `"${name}" is not lower-kebab-case; try "order-history".`);
 * }
 * ```
 */
export class CLIError extends Error {
  override readonly name = 'CLIError';
  readonly code: CliErrorCode;
  readonly hint: string | undefined;

  constructor(code: CliErrorCode, message: string, options: CLIErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }

  /** The process exit code for this error. */
  get exitCode(): ExitCode {
    return USAGE_CODES.has(this.code) ? ExitCode.USAGE : ExitCode.FAILURE;
  }
}

/**
 * Type guard for {@link CLIError}, optionally for one code. Checks the shape, so an error from
 * another copy of keel still matches.
 *
 * @example
 * ```ts
 * if (isCliError(error, 'E_MODULE_EXISTS')) console.error(error.message);
 * ```
 */
export function isCliError(error: unknown, code?: CliErrorCode): error is CLIError {
  if (!(error instanceof Error) || error.name !== 'CLIError') return false;
  const actual = (error as { code?: unknown }).code;
  return typeof actual === 'string' && (code === undefined || actual === code);
}
