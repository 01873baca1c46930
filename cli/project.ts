/**
 * Finding and loading a keel project: the folder holding the application manifest
 * (`modules/index.ts` by default, or `keel.manifest` in package.json), and the manifest's modules.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyContract, AnyModule } from 'keel';
import { CLIError, CliErrorCode } from './errors.js';

/**
 * A keel application on disk: its TypeScript sources, or the JavaScript `keel build` wrote.
 *
 * @example
 * ```ts
 * const project: Project = findProject(process.cwd());
 * console.log(project.root, project.manifestPath, project.modulesDir, project.testDir);
 * if (project.build) console.log(`running the build of ${project.build.info.builtAt}`);
 * ```
 */
export interface Project {
  /** The folder holding package.json. */
  readonly root: string;
  /** Absolute path of the manifest, the file exporting `modules` (in the build when {@link build} is set). */
  readonly manifestPath: string;
  /** Folder holding one folder per module (the manifest's folder). */
  readonly modulesDir: string;
  /** Folder where module tests go. */
  readonly testDir: string;
  /** Set when the project runs from its build rather than from its sources. */
  readonly build?: ProjectBuild | undefined;
}

/** What a project may set under `"keel"` in its package.json. */
export interface ProjectSettings {
  /** Manifest path relative to the project root (default `modules/index.ts`). */
  readonly manifest?: string;
  /** Test folder relative to the project root (default `test`). */
  readonly testDir?: string;
  /** Folder `keel build` writes, relative to the project root (default `dist`). */
  readonly outDir?: string;
  /** Files or folders `keel build` compiles besides the manifest's folder and `topologies/`, such as a custom entry. */
  readonly entry?: readonly string[];
}

/** Defaults of {@link ProjectSettings}. */
export const DEFAULT_PROJECT_SETTINGS = {
  manifest: 'modules/index.ts',
  testDir: 'test',
  outDir: 'dist',
  entry: [],
} as const satisfies ProjectSettings;

/** The file `keel build` writes at the top of its output, describing the build. */
export const BUILD_INFO_FILE = 'keel-build.json';

/**
 * What `keel build` records in {@link BUILD_INFO_FILE}.
 *
 * @example
 * ```ts
 * const info: BuildInfo = { keel: '0.1.0', builtAt: '2026-11-30T10:00:00.000Z', manifest: 'modules/index.js' };
 * ```
 */
export interface BuildInfo {
  /** keel's version that built it. */
  readonly keel: string;
  /** When it was built (ISO 8601). */
  readonly builtAt: string;
  /** The compiled manifest, relative to the build folder. */
  readonly manifest: string;
}

/** A project's build, as {@link findProject} found it. */
export interface ProjectBuild {
  /** Absolute path of the build folder. */
  readonly outDir: string;
  readonly info: BuildInfo;
}

/** {@link ProjectSettings} with the defaults filled in. */
export type ResolvedProjectSettings = { readonly [K in keyof ProjectSettings]-?: NonNullable<ProjectSettings[K]> };

/**
 * The `"keel"` settings of the package.json in `folder`, defaults filled in, or undefined when
 * the folder has no package.json. Throws `E_NO_PROJECT` naming the field that is wrong.
 *
 * @example
 * ```ts
 * projectSettings('/home/me/shop')?.outDir; // 'dist'
 * ```
 */
export function projectSettings(folder: string): ResolvedProjectSettings | undefined {
  const packagePath = join(folder, 'package.json');
  if (!existsSync(packagePath)) return undefined;
  let settings: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(readFileSync(packagePath, 'utf8')) as { keel?: unknown };
    if (typeof parsed.keel === 'object' && parsed.keel !== null) settings = parsed.keel as Record<string, unknown>;
  } catch (error) {
    throw new CLIError(CliErrorCode.E_NO_PROJECT, `${packagePath} is not valid JSON; fix it first.`, { cause: error });
  }
  const wrong = (field: string, what: string): never => {
    throw new CLIError(CliErrorCode.E_NO_PROJECT, `${packagePath}: "keel.${field}" must be ${what}.`);
  };
  for (const field of ['manifest', 'testDir', 'outDir'] as const) {
    const value = settings[field];
    if (value !== undefined && (typeof value !== 'string' || value.trim() === '')) wrong(field, 'a path relative to the project root');
  }
  const entry = settings['entry'];
  if (entry !== undefined && !(Array.isArray(entry) && entry.every((item) => typeof item === 'string' && item.trim() !== ''))) {
    wrong('entry', 'an array of paths relative to the project root, such as ["app/main.ts"]');
  }
  return { ...DEFAULT_PROJECT_SETTINGS, ...(settings as ProjectSettings) };
}

/**
 * Reads the {@link BUILD_INFO_FILE} of a build folder, or undefined when there is none.
 *
 * @example
 * ```ts
 * readBuildInfo('/home/me/shop/dist')?.builtAt;
 * ```
 */
export function readBuildInfo(outDir: string): BuildInfo | undefined {
  const path = join(outDir, BUILD_INFO_FILE);
  if (!existsSync(path)) return undefined;
  let parsed: Partial<BuildInfo> = {};
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<BuildInfo>;
  } catch {
    // Not JSON: refused below like any other record keel did not write.
  }
  if (typeof parsed?.manifest !== 'string' || typeof parsed.builtAt !== 'string') {
    throw new CLIError(CliErrorCode.E_BUILD, `${path} is not a build record keel wrote.`, {
      hint: `If ${outDir} is an old build, delete it and run \`keel build\` again; if it holds other files, build elsewhere (--out-dir).`,
    });
  }
  return { keel: parsed.keel ?? 'unknown', builtAt: parsed.builtAt, manifest: parsed.manifest };
}

/** Options of {@link findProject}. */
export interface FindProjectOptions {
  /** Run from the build even when the sources are there (`keel start --build`). */
  readonly fromBuild?: boolean;
}

/**
 * Finds the keel project containing `cwd`: the nearest folder upwards with a package.json and
 * either a manifest or a build. A folder holding both runs its sources, unless `fromBuild` asks
 * for the build. Throws `E_NO_PROJECT` when there is none, `E_BUILD` when a build is asked for
 * and missing.
 *
 * @example
 * ```ts
 * const project = findProject(process.cwd());
 * console.log(project.manifestPath); // /home/me/shop/modules/index.ts
 * findProject('/srv/shop', { fromBuild: true }).manifestPath; // /srv/shop/dist/modules/index.js
 * ```
 */
export function findProject(cwd: string, options: FindProjectOptions = {}): Project {
  let folder = resolve(cwd);
  for (;;) {
    const settings = projectSettings(folder);
    if (settings !== undefined) {
      const manifestPath = join(folder, settings.manifest);
      const testDir = join(folder, settings.testDir);
      const hasSources = existsSync(manifestPath);
      const outDir = resolve(folder, settings.outDir);
      const info = hasSources && !options.fromBuild ? undefined : readBuildInfo(outDir);
      if (info !== undefined) {
        const builtManifest = join(outDir, info.manifest);
        return { root: folder, manifestPath: builtManifest, modulesDir: dirname(builtManifest), testDir, build: { outDir, info } };
      }
      if (hasSources && options.fromBuild) {
        throw new CLIError(CliErrorCode.E_BUILD, `${folder} has no build in ${settings.outDir}/ to start.`, {
          hint: 'Build it first with `keel build` (or `npm run build`).',
        });
      }
      if (hasSources) return { root: folder, manifestPath, modulesDir: dirname(manifestPath), testDir };
    }
    const parent = dirname(folder);
    if (parent === folder) break;
    folder = parent;
  }
  throw new CLIError(
    CliErrorCode.E_NO_PROJECT,
    `No keel application found in ${resolve(cwd)} or above it: no package.json next to ${DEFAULT_PROJECT_SETTINGS.manifest} or a build of it.`,
    { hint: 'Run this inside an application, or create one with `keel new <dir>`.' },
  );
}

/**
 * True when the CLI runs from its own TypeScript sources: then a TypeScript loader (tsx, or
 * vitest's) is already in this process, and it loads the project's `.ts` files the same way.
 * The installed CLI is JavaScript and registers tsx itself before it imports any `.ts` file.
 */
const CLI_RUNS_FROM_SOURCE = import.meta.url.endsWith('.ts');

/**
 * TypeScript files of any module flavour: what tsx loads for the CLI, and what `keel build`
 * compiles rather than copies.
 */
export const TYPESCRIPT_FILE = /\.[cm]?tsx?$/;

let loaderRegistered = false;

/**
 * Registers tsx's ESM loader once, before the first `.ts` file is imported. The decision never
 * depends on an import failing first: Node 22.18 and later strip types themselves, but they
 * neither map `./x.js` to `./x.ts` nor compile decorators, so a first native attempt can fail
 * half-way with any error, or leave a failed module cached for the next import to meet again.
 */
async function ensureTypeScriptLoader(project: Project, path: string): Promise<void> {
  if (loaderRegistered || CLI_RUNS_FROM_SOURCE) return;
  const candidates = [join(project.root, 'package.json'), import.meta.url];
  for (const from of candidates) {
    const apiPath = tsxEsmApi(from);
    if (apiPath === undefined) continue;
    const api = (await import(pathToFileURL(apiPath).href)) as {
      register: (options?: { tsconfig?: string | false }) => unknown;
    };
    const tsconfig = join(project.root, 'tsconfig.json');
    api.register(existsSync(tsconfig) ? { tsconfig } : {});
    loaderRegistered = true;
    return;
  }
  throw new CLIError(
    CliErrorCode.E_LOADER,
    `${relative(project.root, path) || path} is TypeScript, and tsx (which loads it) is not installed.`,
    {
      hint:
        'In development, install it in the application (`npm install --save-dev tsx`). ' +
        'In production, build the application with `keel build` and start the build (`keel start --build`).',
    },
  );
}

/** The ESM entry of `tsx/esm/api` as installed next to `from`, read from tsx's exports map. */
function tsxEsmApi(from: string): string | undefined {
  let packagePath: string;
  try {
    packagePath = createRequire(from).resolve('tsx/package.json');
  } catch {
    return undefined;
  }
  const exportsMap = (JSON.parse(readFileSync(packagePath, 'utf8')) as { exports?: Record<string, unknown> }).exports;
  const entry = exportsMap?.['./esm/api'] as { import?: { default?: string } | string } | undefined;
  const target = typeof entry?.import === 'string' ? entry.import : entry?.import?.default;
  return target === undefined ? undefined : join(dirname(packagePath), target);
}

/**
 * Imports a TypeScript or JavaScript file of the project. Before the first TypeScript file, the
 * installed CLI registers tsx (the application's own, else the one next to keel), on every Node
 * line alike; JavaScript (a build from `keel build`) is imported by Node alone.
 *
 * @example
 * ```ts
 * const topology = await importProjectFile(project, '/home/me/shop/topologies/split.ts');
 * ```
 */
export async function importProjectFile(
  project: Project,
  path: string,
  options: { readonly fresh?: boolean } = {},
): Promise<Record<string, unknown>> {
  if (TYPESCRIPT_FILE.test(path)) await ensureTypeScriptLoader(project, path);
  // A fresh import reads the file as it is now, not as an earlier import in this process saw it.
  const url = `${pathToFileURL(path).href}${options.fresh ? `?keel-load=${++loads}` : ''}`;
  return (await import(url)) as Record<string, unknown>;
}

let loads = 0;

/**
 * Imports the project's manifest and returns its `modules` array. Throws `E_MANIFEST` when the
 * file does not load or does not export an array of modules.
 *
 * @example
 * ```ts
 * const modules = await loadManifest(findProject(process.cwd()));
 * const kernel = createKernel({ modules });
 * ```
 */
export async function loadManifest(project: Project): Promise<readonly AnyModule[]> {
  const shown = relative(project.root, project.manifestPath) || project.manifestPath;
  let exports: Record<string, unknown>;
  try {
    exports = await importProjectFile(project, project.manifestPath, { fresh: true });
  } catch (error) {
    if (error instanceof CLIError) throw error;
    throw new CLIError(CliErrorCode.E_MANIFEST, `Loading ${shown} failed: ${(error as Error).message}`, {
      cause: error,
      hint: 'Fix the error above (run `npx tsc --noEmit` for details), then try again.',
    });
  }
  const modules = exports['modules'] ?? exports['default'];
  if (!Array.isArray(modules) || modules.some((module) => (module as AnyModule | undefined)?.kind !== 'module')) {
    throw new CLIError(
      CliErrorCode.E_MANIFEST,
      `${shown} must export \`modules\`: an array of values made with defineModule() (an import cycle can leave one undefined).`,
    );
  }
  return modules as AnyModule[];
}

/** One module of the manifest as the CLI sees it: its name and the names it depends on. */
export interface ModuleNode {
  readonly name: string;
  readonly dependsOn: readonly string[];
  readonly subscribesTo: readonly string[];
}

/**
 * The manifest's dependency graph as plain names.
 *
 * @example
 * ```ts
 * moduleGraph(modules); // [{ name: 'orders', dependsOn: ['catalog'], subscribesTo: [] }, ...]
 * ```
 */
export function moduleGraph(modules: readonly AnyModule[]): ModuleNode[] {
  return modules.map((module) => ({
    name: module.name as string,
    dependsOn: (module.dependsOn as readonly AnyContract[]).map((contract) => contract.name),
    subscribesTo: (module.subscribesTo as readonly AnyContract[]).map((contract) => contract.name),
  }));
}

/**
 * The first dependency cycle in a graph, as a chain of names ending where it starts, or
 * undefined when there is none.
 *
 * @example
 * ```ts
 * findCycle([{ name: 'a', dependsOn: ['b'], subscribesTo: [] }, { name: 'b', dependsOn: ['a'], subscribesTo: [] }]);
 * // ['a', 'b', 'a']
 * ```
 */
export function findCycle(nodes: readonly ModuleNode[]): string[] | undefined {
  const byName = new Map(nodes.map((node) => [node.name, node]));
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]): string[] | undefined => {
    const mark = state.get(name);
    if (mark === 'done') return undefined;
    if (mark === 'visiting') return [...chain.slice(chain.indexOf(name)), name];
    state.set(name, 'visiting');
    for (const dependency of byName.get(name)?.dependsOn ?? []) {
      const cycle = visit(dependency, [...chain, name]);
      if (cycle) return cycle;
    }
    state.set(name, 'done');
    return undefined;
  };
  for (const node of nodes) {
    const cycle = visit(node.name, []);
    if (cycle) return cycle;
  }
  return undefined;
}

interface KeelPackage {
  readonly version: string;
  /** The Node.js range keel runs on (`engines.node`). */
  readonly engines: string;
  readonly dependencies: Readonly<Record<string, string>>;
  readonly devDependencies: Readonly<Record<string, string>>;
}

/**
 * keel's own package.json (version and dependency ranges), read from the installed package.
 *
 * @example
 * ```ts
 * keelPackage().version; // '0.1.0'
 * ```
 */
export function keelPackage(): KeelPackage {
  const path = createRequire(import.meta.url).resolve('keel/package.json');
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<Omit<KeelPackage, 'engines'>> & { engines?: { node?: string } };
  return {
    version: parsed.version ?? '0.0.0',
    engines: parsed.engines?.node ?? '>=22.12.0',
    dependencies: parsed.dependencies ?? {},
    devDependencies: parsed.devDependencies ?? {},
  };
}
