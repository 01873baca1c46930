/**
 * Reading the application's configuration file (`keel.config.ts`, see keel/config): found at
 * the project root, or compiled into the build that runs; checked once, with the file and the
 * field named in any error.
 */
import { existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { z } from 'zod';
import { isKeelError } from 'keel';
import { DataOptionsSchema, ResilienceOptionsSchema, parseOptions } from 'keel/transport';
import { LOG_LEVELS, type KeelConfig } from './config.js';
import { CLIError, CliErrorCode } from './errors.js';
import { importProjectFile, type Project } from './project.js';

/** The names the configuration file may have, in the order they are looked for. */
export const CONFIG_FILE_NAMES = ['keel.config.ts', 'keel.config.mts', 'keel.config.js', 'keel.config.mjs'] as const;

/** What {@link loadAppConfig} found: the file (undefined when there is none) and its checked configuration. */
export interface LoadedConfig {
  /** Absolute path of the file read, or undefined: no file, every default. */
  readonly path: string | undefined;
  readonly config: KeelConfig;
}

const firstExisting = (folder: string, names: readonly string[]): string | undefined =>
  names.map((name) => join(folder, name)).find((path) => existsSync(path));

/** Options of {@link loadAppConfig}. */
export interface LoadConfigOptions {
  /**
   * Check the `gateway` section (default true). A process that serves no HTTP passes false: it
   * does not load the gateway's code only to check options it does not use (`keel up` and
   * `keel deploy` check them for every process first).
   */
  readonly checkGateway?: boolean;
}

/**
 * Reads and checks the project's configuration file: the one in the build when the project runs
 * from its build, else the one at its root. Throws `E_CONFIG` when it does not load, has no
 * default export, names a field keel does not know or gives one a wrong value, or when the
 * sources have a configuration file the build that runs lacks (build again).
 *
 * @example
 * ```ts
 * const { path, config } = await loadAppConfig(findProject(process.cwd()));
 * const gateway = await createHttpGateway({ ...config.gateway, kernel, port: 3000 });
 * ```
 */
export async function loadAppConfig(project: Project, options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const source = firstExisting(project.root, CONFIG_FILE_NAMES);
  const path = project.build === undefined ? source : firstExisting(project.build.outDir, ['keel.config.js', 'keel.config.mjs']);
  if (path === undefined) {
    if (source !== undefined) {
      throw new CLIError(CliErrorCode.E_CONFIG, `${relative(project.root, source)} is not in the build that runs (${relative(project.root, project.build?.outDir ?? '')}/).`, {
        hint: 'Build again with `keel build`: it compiles the configuration file with the application.',
      });
    }
    return { path: undefined, config: {} };
  }
  const shown = relative(project.root, path) || path;
  let exports: Record<string, unknown>;
  try {
    exports = await importProjectFile(project, path, { fresh: true });
  } catch (error) {
    if (error instanceof CLIError) throw error;
    throw new CLIError(CliErrorCode.E_CONFIG, `Loading ${shown} failed: ${(error as Error).message}`, {
      cause: error,
      hint: 'Fix the error above (run `npx tsc --noEmit` for details), then try again.',
    });
  }
  const config = exports['default'];
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new CLIError(CliErrorCode.E_CONFIG, `${shown} must export its configuration as default: \`export default defineConfig({ ... })\`.`, {
      hint: "defineConfig comes from 'keel/config'; docs/cli.md shows a whole file.",
    });
  }
  // The gateway's own schema checks its section: a gateway option added to keel/http is one here too.
  const gatewaySchema = options.checkGateway === false ? z.object({}).loose() : (await import('keel/http')).HttpGatewayConfigSchema;
  const ConfigSchema = z
    .object({
      gateway: gatewaySchema.optional(),
      principal: z.custom((value) => value instanceof z.ZodType, { error: 'must be a zod schema of the caller identity, such as z.object({ sub: z.string() })' }).optional(),
      // The kernel's own schema of these options: a wrong one is refused here, naming the file and the field.
      resilience: ResilienceOptionsSchema.optional(),
      data: DataOptionsSchema.optional(),
      logging: z
        .object({ level: z.enum(LOG_LEVELS), format: z.enum(['json', 'pretty']) })
        .partial()
        .strict()
        .optional(),
    })
    .strict();
  try {
    parseOptions(shown, ConfigSchema, config);
  } catch (error) {
    if (!isKeelError(error, 'INVALID_CONFIG')) throw error;
    throw new CLIError(CliErrorCode.E_CONFIG, error.message, {
      cause: error,
      hint: 'docs/cli.md ("The configuration file") lists what each section takes; docs/http.md the gateway options.',
    });
  }
  const checked = config as KeelConfig;
  // createHttpGateway refuses it too, at start, but names createKernel, which a keel start user never calls.
  if (options.checkGateway !== false && checked.gateway?.authenticate !== undefined && checked.principal === undefined) {
    throw new CLIError(
      CliErrorCode.E_CONFIG,
      `${shown} gives gateway.authenticate but no principal: the kernel would refuse every principal the hook makes, and each signed-in request would be a 401.`,
      { hint: "Add principal, the zod schema of what the hook returns: defineConfig({ principal: z.object({ sub: z.string() }), gateway: { authenticate } }) (docs/security.md)." },
    );
  }
  return { path, config: checked };
}

/**
 * The environment a process logs by: `env`, with `KEEL_LOG_LEVEL` and `KEEL_LOG_FORMAT` taken
 * from the configuration's `logging` where `env` leaves them unset or blank (an environment
 * variable wins over the file).
 *
 * @example
 * ```ts
 * const logEnv = loggingEnv(cli.env, config);
 * const logger = createLogger({ env: logEnv, destination: cli.stdout, format: logFormatOf(logEnv, cli.stdout) });
 * ```
 */
export function loggingEnv(env: Readonly<Record<string, string | undefined>>, config: KeelConfig): Readonly<Record<string, string | undefined>> {
  const level = env['KEEL_LOG_LEVEL']?.trim() || config.logging?.level;
  const format = env['KEEL_LOG_FORMAT']?.trim() || config.logging?.format;
  return {
    ...env,
    ...(level === undefined ? {} : { KEEL_LOG_LEVEL: level }),
    ...(format === undefined ? {} : { KEEL_LOG_FORMAT: format }),
  };
}
