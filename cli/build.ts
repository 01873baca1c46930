/**
 * `keel build`: compiles an application's TypeScript (the manifest's folder, `topologies/` and
 * the entry files its package.json names) to JavaScript with the application's own `tsc`, so
 * that production runs plain Node with neither tsx nor TypeScript installed.
 *
 * Why tsc rather than a bundler: it is the compiler the application already type-checks with
 * (a build refuses code that does not type-check), it honours the application's tsconfig
 * (decorators included), and it keeps one JavaScript file per source file, so the module
 * boundaries `keel check` enforces and the source maps stay as written. Dependencies
 * stay in node_modules, installed with `npm ci --omit=dev`.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { CONFIG_FILE_NAMES } from './app-config.js';
import { CLIError, CliErrorCode } from './errors.js';
import { BUILD_INFO_FILE, TYPESCRIPT_FILE, keelPackage, projectSettings, readBuildInfo, type BuildInfo, type Project } from './project.js';
import { tsconfigFile } from './templates/app.js';

/** The folder of topology files `keel build` compiles when it exists. */
const TOPOLOGIES_DIR = 'topologies';
const TEST_FILE = /\.(test|spec)\.[cm]?[jt]sx?$/;
const DECLARATION = /\.d\.[cm]?ts$/;

/**
 * Options of {@link buildProject}.
 *
 * @example
 * ```ts
 * const options: BuildOptions = { outDir: 'build/shop' };
 * ```
 */
export interface BuildOptions {
  /** Output folder relative to the project root (default: `keel.outDir` of package.json, else `dist`). */
  readonly outDir?: string | undefined;
}

/**
 * What {@link buildProject} did.
 *
 * @example
 * ```ts
 * const result: BuildResult = await buildProject(project);
 * console.log(`${result.files} files in ${result.outDir}`);
 * ```
 */
export interface BuildResult {
  /** Absolute path of the output folder. */
  readonly outDir: string;
  /** Project-relative paths that were compiled (folders and files). */
  readonly sources: readonly string[];
  /** JavaScript files written. */
  readonly files: number;
  readonly info: BuildInfo;
}

/**
 * Compiles the project into its output folder, replacing an earlier build there. Throws
 * `E_BUILD` when TypeScript is not installed, when tsc reports errors (with its output), or
 * when the output folder holds files that are not a keel build (it is never emptied then).
 *
 * @example
 * ```ts
 * const result = await buildProject(findProject(process.cwd()));
 * // result.outDir: /home/me/shop/dist, holding modules/, topologies/ and keel-build.json
 * ```
 */
export async function buildProject(project: Project, options: BuildOptions = {}): Promise<BuildResult> {
  if (project.build !== undefined) {
    throw new CLIError(CliErrorCode.E_BUILD, `${project.root} holds a build and no sources to build from.`, {
      hint: 'Run `keel build` where the application\'s TypeScript sources are.',
    });
  }
  const settings = projectSettings(project.root);
  if (settings === undefined) throw new CLIError(CliErrorCode.E_NO_PROJECT, `${project.root} has no package.json.`);
  if (project.modulesDir === project.root) {
    throw new CLIError(CliErrorCode.E_BUILD, `keel build compiles the manifest's folder, and ${project.manifestPath} is at the project root.`, {
      hint: 'Keep the manifest in a folder of its own, such as modules/index.ts ("keel.manifest" in package.json).',
    });
  }
  const outDir = outputFolder(project, options.outDir ?? settings.outDir);
  const sources = [relative(project.root, project.modulesDir), ...(existsSync(join(project.root, TOPOLOGIES_DIR)) ? [TOPOLOGIES_DIR] : [])];
  // The application's configuration file travels with the build, where `keel start --build` reads it.
  const configFile = CONFIG_FILE_NAMES.find((name) => existsSync(join(project.root, name)));
  if (configFile !== undefined && TYPESCRIPT_FILE.test(configFile)) sources.push(configFile);
  for (const entry of settings.entry) {
    if (!existsSync(resolve(project.root, entry))) {
      throw new CLIError(CliErrorCode.E_BUILD, `"keel.entry" in package.json names ${entry}, which does not exist.`);
    }
    sources.push(relative(project.root, resolve(project.root, entry)));
  }
  const tsc = typescriptCompiler(project);
  rmSync(outDir, { recursive: true, force: true });
  // The config sits under the project's node_modules, where tsc finds `@types` as for the project itself.
  const scratch = join(project.root, 'node_modules', '.cache', 'keel');
  mkdirSync(scratch, { recursive: true });
  const config = join(scratch, `tsconfig.build.${process.pid}.json`);
  writeFileSync(config, buildConfig(project, outDir, sources));
  try {
    await compile(tsc, config, project.root);
  } catch (error) {
    // tsc emits what it can despite errors: leave no half build behind for `keel start` to find.
    rmSync(outDir, { recursive: true, force: true });
    throw error;
  } finally {
    rmSync(config, { force: true });
  }
  copyAssets(project.root, outDir, sources);
  if (configFile !== undefined && !TYPESCRIPT_FILE.test(configFile)) cpSync(join(project.root, configFile), join(outDir, configFile));
  const manifest = relative(project.root, project.manifestPath).replace(/\.([cm]?)tsx?$/, '.$1js');
  if (!existsSync(join(outDir, manifest))) {
    throw new CLIError(CliErrorCode.E_BUILD, `tsc wrote no ${manifest} into ${relative(project.root, outDir)}/.`, {
      hint: 'Check that the application tsconfig.json does not set `noEmitOnError`, `emitDeclarationOnly` or `outFile`.',
    });
  }
  const info: BuildInfo = { keel: keelPackage().version, builtAt: new Date().toISOString(), manifest: manifest.split(sep).join('/') };
  writeFileSync(join(outDir, BUILD_INFO_FILE), `${JSON.stringify(info, null, 2)}\n`);
  return { outDir, sources, files: countJavaScript(outDir), info };
}

/** The output folder, checked: inside the project, not holding the sources, and either absent, empty or an earlier keel build. */
function outputFolder(project: Project, outDir: string): string {
  const folder = resolve(project.root, outDir);
  const inside = relative(project.root, folder);
  const refuse = (why: string): never => {
    throw new CLIError(CliErrorCode.E_BUILD, `keel build will not write to ${outDir}: ${why}`, {
      hint: 'Choose another folder with --out-dir (or "keel.outDir" in package.json), such as dist.',
    });
  };
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) refuse('it must be a folder inside the project.');
  if (relative(folder, project.modulesDir) === '' || !relative(folder, project.modulesDir).startsWith('..')) {
    refuse('the sources are in it.');
  }
  if (existsSync(folder) && readdirSync(folder).length > 0 && readBuildInfo(folder) === undefined) {
    refuse(`it holds files that keel build did not write (no ${BUILD_INFO_FILE}), and a build empties its folder first.`);
  }
  return folder;
}

/** The application's own tsc: the `typescript` package installed next to its package.json. */
function typescriptCompiler(project: Project): string {
  let packagePath: string;
  try {
    packagePath = createRequire(join(project.root, 'package.json')).resolve('typescript/package.json');
  } catch (error) {
    throw new CLIError(CliErrorCode.E_BUILD, 'keel build compiles with the application\'s own TypeScript, and it is not installed.', {
      cause: error,
      hint: 'Install it: `npm install --save-dev typescript` (production installs need no TypeScript: they run the build).',
    });
  }
  const { bin } = createRequire(import.meta.url)(packagePath) as { bin?: string | Record<string, string> };
  const tscPath = typeof bin === 'string' ? bin : bin?.['tsc'];
  if (tscPath === undefined) throw new CLIError(CliErrorCode.E_BUILD, `${packagePath} names no tsc executable.`);
  return join(dirname(packagePath), tscPath);
}

/**
 * The tsconfig of a build: the application's own (its strictness, decorators and module
 * settings), emitting JavaScript for the sources only (no tests, no declarations).
 */
function buildConfig(project: Project, outDir: string, sources: readonly string[]): string {
  const own = join(project.root, 'tsconfig.json');
  const base = existsSync(own) ? { extends: own } : { compilerOptions: JSON.parse(tsconfigFile()).compilerOptions as object };
  const include = sources.map((source) => {
    const path = resolve(project.root, source);
    return statSync(path).isDirectory() ? join(path, '**', '*') : path;
  });
  const config = {
    ...base,
    compilerOptions: {
      ...('compilerOptions' in base ? base.compilerOptions : {}),
      noEmit: false,
      outDir,
      rootDir: project.root,
      declaration: false,
      declarationMap: false,
      emitDeclarationOnly: false,
      sourceMap: true,
      incremental: false,
      composite: false,
    },
    include,
    // Patterns are relative to this config's folder (under node_modules), so they are absolute here.
    exclude: [
      ...['test', 'spec'].flatMap((kind) => ['ts', 'tsx', 'mts', 'cts'].map((extension) => join(project.root, '**', `*.${kind}.${extension}`))),
      join(project.root, 'node_modules'),
      outDir,
      project.testDir,
    ],
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/** Runs tsc; its diagnostics become the message of an `E_BUILD`. */
async function compile(tsc: string, config: string, cwd: string): Promise<void> {
  const child = spawn(process.execPath, [tsc, '-p', config, '--pretty', 'false'], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const code = await new Promise<number | null>((resolvePromise, reject) => {
    child.once('error', reject);
    child.once('close', resolvePromise);
  });
  if (code === 0) return;
  const lines = output.trim().split('\n');
  const shown = lines.slice(0, 40).join('\n') + (lines.length > 40 ? `\n… ${lines.length - 40} more lines` : '');
  throw new CLIError(CliErrorCode.E_BUILD, `tsc found errors; nothing usable was built:\n${shown}`, {
    hint: 'Fix them (`npx tsc --noEmit` shows the same), then build again.',
  });
}

/** Copies the files of the source folders that tsc does not emit (SQL, JSON, text), tests excepted. */
function copyAssets(root: string, outDir: string, sources: readonly string[]): void {
  for (const source of sources) {
    const from = resolve(root, source);
    if (!statSync(from).isDirectory()) continue;
    const to = join(outDir, relative(root, from));
    mkdirSync(to, { recursive: true });
    cpSync(from, to, {
      recursive: true,
      filter: (path) => {
        if (statSync(path).isDirectory()) return !path.split(sep).includes('node_modules');
        return !TYPESCRIPT_FILE.test(path) && !TEST_FILE.test(path) && !DECLARATION.test(path);
      },
    });
  }
}

function countJavaScript(folder: string): number {
  let count = 0;
  for (const entry of readdirSync(folder, { withFileTypes: true, recursive: true })) {
    if (entry.isFile() && /\.[cm]?js$/.test(entry.name)) count++;
  }
  return count;
}
