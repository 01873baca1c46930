/**
 * What the architecture commands share: finding the project root, loading its TypeScript
 * files the way the rest of the CLI does, and reading topology files.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CLIError, CliErrorCode } from '../errors.js';
import { DEFAULT_PROJECT_SETTINGS, findProject, importProjectFile, loadManifest, type Project } from '../project.js';
import { loadTopology, type TopologyFile } from '../topology.js';
import type { ImportFile } from './contract-loader.js';

/** The `--root` option every architecture command takes. */
export const ROOT_ARG = {
  type: 'string',
  description: 'Project root (default: the nearest folder above with package.json and modules/index.ts)',
  valueHint: 'dir',
} as const;

/**
 * The project to work on: `--root` when given (any folder holding `modules/`, `kernel/` or
 * `adapters/`), else the project containing `cwd`.
 *
 * @example
 * ```ts
 * const project = projectAt(cli.cwd, args.root);
 * ```
 */
export function projectAt(cwd: string, root: string | undefined): Project {
  if (root === undefined) return findProject(cwd);
  const folder = resolve(cwd, root);
  if (!['modules', 'kernel', 'adapters'].some((name) => existsSync(join(folder, name)))) {
    throw new CLIError(CliErrorCode.E_NO_PROJECT, `${folder} holds none of modules/, kernel/ or adapters/: nothing to check there.`, {
      hint: 'Point --root at the folder holding modules/, or leave it out to use the project around the current directory.',
    });
  }
  const manifestPath = join(folder, DEFAULT_PROJECT_SETTINGS.manifest);
  return { root: folder, manifestPath, modulesDir: join(folder, 'modules'), testDir: join(folder, DEFAULT_PROJECT_SETTINGS.testDir) };
}

/**
 * Loads project files as the rest of the CLI does (registering tsx when needed).
 *
 * @example
 * ```ts
 * const { contracts } = await loadContracts(project.root, importerFor(project));
 * ```
 */
export function importerFor(project: Project): ImportFile {
  return (path) => importProjectFile(project, path);
}

/**
 * Reads a `keel up` topology file, checked against the application's manifest.
 *
 * @example
 * ```ts
 * const topology = await topologyAt(project, cli.cwd, args.topology);
 * ```
 */
export async function topologyAt(project: Project, cwd: string, file: string): Promise<TopologyFile> {
  const names = (await loadManifest(project)).map((module) => module.name as string);
  return loadTopology(project, resolve(cwd, file), names);
}
