/**
 * The source tree as the architecture tools see it: the files of `modules/`, `kernel/` and
 * `adapters/`, parsed, with every relative import resolved to a project path, and each file
 * placed in its module.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { parseSource, type ImportReference, type SourceFile } from './source.js';

/** Folders of a keel project, relative to its root. */
export const ProjectLayout = {
  MODULES: 'modules',
  KERNEL: 'kernel',
  ADAPTERS: 'adapters',
  /** The application manifest. */
  MANIFEST: 'modules/index.ts',
  /** The one public file of a module, relative to its folder. */
  CONTRACT_FILE: 'contract.ts',
  /** The module's wiring, relative to its folder. */
  MODULE_FILE: 'module.ts',
} as const;

const SOURCE_EXTENSIONS = ['.ts', '.tsx', '.mts', '.cts', '.js', '.mjs', '.cjs', '.jsx'];
const SKIPPED_DIRECTORIES = new Set(['node_modules', 'dist', '.git']);

/** An import with its target resolved. */
export interface ResolvedImport extends ImportReference {
  /** Project-relative path of the target for relative specifiers (even when the file is missing). */
  readonly target: string | undefined;
}

/** A parsed file of the project. */
export interface ProjectFile {
  readonly source: SourceFile;
  readonly path: string;
  /** The module folder the file belongs to (`modules/<name>/…`), if any. */
  readonly moduleFolder: string | undefined;
  readonly imports: readonly ResolvedImport[];
}

/** A module folder: `modules/<folder>/`. */
export interface ModuleFolder {
  /** The folder name under `modules/`. */
  readonly folder: string;
  readonly contractPath: string;
  readonly modulePath: string;
  readonly hasContract: boolean;
  readonly hasModule: boolean;
  readonly files: readonly string[];
}

/** Every parsed file of a project. */
export interface SourceTree {
  readonly root: string;
  readonly files: ReadonlyMap<string, ProjectFile>;
  readonly modules: ReadonlyMap<string, ModuleFolder>;
  /** The module folder of a project path, if it lies in one. */
  moduleOf(path: string): string | undefined;
  /** Files under a project folder such as `kernel`. */
  filesUnder(folder: string): ProjectFile[];
}

/**
 * Reads and parses the project at `root`.
 *
 * @example
 * ```ts
 * const tree = readSourceTree(process.cwd());
 * console.log([...tree.modules.keys()]); // ['catalog', 'inventory', …]
 * ```
 */
export function readSourceTree(root: string): SourceTree {
  const paths = [ProjectLayout.MODULES, ProjectLayout.KERNEL, ProjectLayout.ADAPTERS].flatMap((folder) =>
    listSources(root, folder),
  );
  const moduleOf = (path: string): string | undefined => {
    const parts = path.split('/');
    return parts[0] === ProjectLayout.MODULES && parts.length >= 3 ? parts[1] : undefined;
  };
  const files = new Map<string, ProjectFile>();
  for (const path of paths) {
    const source = parseSource(root, path);
    files.set(path, {
      source,
      path,
      moduleFolder: moduleOf(path),
      imports: source.imports.map((reference) => ({ ...reference, target: resolveSpecifier(root, path, reference.specifier) })),
    });
  }
  const modules = new Map<string, ModuleFolder>();
  const modulesRoot = posix.join(root, ProjectLayout.MODULES);
  if (existsSync(modulesRoot)) {
    for (const entry of readdirSync(modulesRoot, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (!entry.isDirectory() || SKIPPED_DIRECTORIES.has(entry.name)) continue;
      const contractPath = `${ProjectLayout.MODULES}/${entry.name}/${ProjectLayout.CONTRACT_FILE}`;
      const modulePath = `${ProjectLayout.MODULES}/${entry.name}/${ProjectLayout.MODULE_FILE}`;
      const folderFiles = paths.filter((path) => moduleOf(path) === entry.name);
      if (folderFiles.length === 0) continue;
      modules.set(entry.name, {
        folder: entry.name,
        contractPath,
        modulePath,
        hasContract: files.has(contractPath),
        hasModule: files.has(modulePath),
        files: folderFiles,
      });
    }
  }
  return {
    root,
    files,
    modules,
    moduleOf,
    filesUnder: (folder) => [...files.values()].filter((file) => file.path.startsWith(`${folder}/`)),
  };
}

function listSources(root: string, folder: string): string[] {
  const found: string[] = [];
  const visit = (relative: string): void => {
    const absolute = posix.join(root, relative);
    if (!existsSync(absolute)) return;
    for (const entry of readdirSync(absolute, { withFileTypes: true })) {
      const child = `${relative}/${entry.name}`;
      if (entry.isDirectory()) {
        if (!SKIPPED_DIRECTORIES.has(entry.name)) visit(child);
      } else if (isSourceFile(entry.name)) {
        found.push(child);
      }
    }
  };
  visit(folder);
  return found.sort();
}

function isSourceFile(name: string): boolean {
  if (name.endsWith('.d.ts') || name.endsWith('.d.mts') || name.endsWith('.d.cts')) return false;
  return SOURCE_EXTENSIONS.some((extension) => name.endsWith(extension));
}

/**
 * Resolves a relative specifier the way NodeNext resolution meets TypeScript sources: `./x.js`
 * is `./x.ts` when that exists. Returns a project-relative path, or `undefined` for bare
 * specifiers (`keel`, `zod`) and computed ones.
 */
export function resolveSpecifier(root: string, fromPath: string, specifier: string | undefined): string | undefined {
  if (specifier === undefined || !(specifier.startsWith('./') || specifier.startsWith('../') || specifier === '.' || specifier === '..')) {
    return undefined;
  }
  const joined = posix.normalize(posix.join(posix.dirname(fromPath), specifier));
  const candidates: string[] = [];
  const extension = posix.extname(joined);
  const stem = joined.slice(0, joined.length - extension.length);
  if (extension === '.js' || extension === '.jsx') candidates.push(`${stem}.ts`, `${stem}.tsx`, joined);
  else if (extension === '.mjs') candidates.push(`${stem}.mts`, joined);
  else if (extension === '.cjs') candidates.push(`${stem}.cts`, joined);
  else if (extension === '') candidates.push(`${joined}.ts`, `${joined}/index.ts`, `${joined}.js`, `${joined}/index.js`, joined);
  else candidates.push(joined);
  for (const candidate of candidates) {
    const absolute = posix.join(root, candidate);
    if (existsSync(absolute) && statSync(absolute).isFile()) return candidate;
  }
  return candidates[0];
}
