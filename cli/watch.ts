/**
 * The watching behind `keel dev`: which files of a project count as a change, bursts of changes
 * gathered into one, and which processes a change restarts.
 */
import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { ModuleNode } from './project.js';

/** Options of {@link watchProject}. */
export interface WatchProjectOptions {
  /** The project's folder. */
  readonly root: string;
  /** Folders, relative to the root, whose changes never restart anything (the build's output, the tests). */
  readonly ignore: readonly string[];
  /** Quiet time after the last change before `onChange` is called with all of them (default 150 ms). */
  readonly debounceMs?: number;
  /** Called with the changed paths (relative to the root, `/`-separated), once a burst of changes is over. */
  readonly onChange: (paths: readonly string[]) => void;
  /** Told when a folder stops being watched (removed, or its watch failed), and when it is watched again. */
  readonly warn?: (line: string) => void;
}

/** Defaults of {@link WatchProjectOptions}. */
export const DEFAULT_WATCH_OPTIONS = { debounceMs: 150 } as const satisfies Partial<WatchProjectOptions>;

/** A running watch; {@link ProjectWatch.close} ends it. */
export interface ProjectWatch {
  close(): void;
}

/**
 * Top-level folders that tools write to, never watched: test coverage (`coverage/`, nyc's
 * hidden `.nyc_output/`) and test reports (`test-results/`).
 */
export const TOOL_OUTPUT_FOLDERS: readonly string[] = ['coverage', '.nyc_output', 'test-results'];

/** Source, data and migration files; not an editor's swap, backup or lock files. */
const WATCHED_FILE = /\.(?:[cm]?[jt]sx?|json|sql)$/;

/**
 * True when a change of `path` (relative to the root, `/`-separated) counts: a source, JSON or
 * SQL file outside `node_modules`, hidden folders (`.git`, `.keel`), the tools' output
 * ({@link TOOL_OUTPUT_FOLDERS}) and the `ignore`d folders, and no test file.
 *
 * @example
 * ```ts
 * countsAsChange('modules/orders/module.ts', ['dist', 'test']); // true
 * countsAsChange('modules/orders/module.test.ts', ['dist', 'test']); // false
 * ```
 */
export function countsAsChange(path: string, ignore: readonly string[]): boolean {
  const segments = path.split('/');
  if (segments.some((segment) => segment.startsWith('.') || segment === 'node_modules')) return false;
  if (segments.length > 1 && TOOL_OUTPUT_FOLDERS.includes(segments[0] as string)) return false;
  if (ignore.some((folder) => path === folder || path.startsWith(`${folder}/`))) return false;
  return WATCHED_FILE.test(path) && !/\.(?:test|spec)\.[cm]?[jt]sx?$/.test(path);
}

/**
 * Watches the project's files, with one recursive `fs.watch` per top-level folder (never
 * `node_modules`, hidden folders, the tools' output or the `ignore`d ones) and one on the root
 * for its own files and its folders, and calls `onChange` once per burst of changes.
 *
 * A top-level folder created while it runs is watched from then on. One removed (or replaced,
 * as `git checkout` may do) is reported through `warn`, and watched again once it is back; its
 * return counts as a change of `<folder>/`. A watch that fails is reported, and made again
 * once the folder is created again.
 *
 * @example
 * ```ts
 * const watcher = watchProject({ root, ignore: ['dist', 'test'], onChange: (paths) => console.log(paths) });
 * // ... later
 * watcher.close();
 * ```
 */
export function watchProject(options: WatchProjectOptions): ProjectWatch {
  const debounceMs = options.debounceMs ?? DEFAULT_WATCH_OPTIONS.debounceMs;
  const warn = options.warn ?? (() => {});
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const flushLater = (): void => {
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      const paths = [...pending].sort();
      pending.clear();
      options.onChange(paths);
    }, debounceMs);
  };
  const changed = (path: string): void => {
    const shown = path.split(sep).join('/');
    if (!countsAsChange(shown, options.ignore)) return;
    pending.add(shown);
    flushLater();
  };
  const watchable = (name: string): boolean =>
    !name.startsWith('.') && name !== 'node_modules' && !TOOL_OUTPUT_FOLDERS.includes(name) && !options.ignore.includes(name);
  /** The inode of a folder of the root, or undefined when it is not one (now). */
  const folderInode = (name: string): number | undefined => {
    try {
      const stats = statSync(join(options.root, name));
      return stats.isDirectory() ? stats.ino : undefined;
    } catch {
      return undefined;
    }
  };
  // One recursive watch per top-level folder, with the inode it watches: on Linux, a watch on a
  // folder that was removed stays open and silent, so the root's events tell it has gone.
  const folders = new Map<string, { readonly watcher: FSWatcher; readonly inode: number }>();
  /** Folders that were watched, and are to be watched again (and count as changed) once they are back. */
  const gone = new Set<string>();
  const drop = (name: string): void => {
    folders.get(name)?.watcher.close();
    folders.delete(name);
  };
  const arm = (name: string, inode: number): void => {
    const folder = join(options.root, name);
    let watcher: FSWatcher;
    try {
      watcher = watch(folder, { recursive: true }, (_event, file) => {
        if (file !== null) changed(relative(options.root, join(folder, file.toString())));
      });
    } catch (error) {
      warn(`cannot watch ${name}/ (${(error as Error).message}): its changes restart nothing until it is created again`);
      return;
    }
    // Not re-armed at once (a watch that keeps failing would loop): once the folder is created again.
    watcher.on('error', (error) => {
      if (folders.get(name)?.watcher !== watcher) return;
      drop(name);
      gone.add(name);
      warn(`stopped watching ${name}/ (${error.message}): its changes restart nothing until it is created again`);
    });
    folders.set(name, { watcher, inode });
  };
  /** Brings the watch of a top-level entry in line with what is there now. */
  const review = (name: string): void => {
    if (closed || !watchable(name)) return;
    const inode = folderInode(name);
    const current = folders.get(name);
    if (current !== undefined && current.inode === inode) return;
    if (current !== undefined) {
      drop(name);
      if (inode === undefined) {
        warn(`${name}/ was removed: its changes restart nothing until it is back`);
        gone.add(name);
        return;
      }
    }
    if (inode === undefined) return;
    arm(name, inode);
    if (current !== undefined || gone.delete(name)) {
      warn(`${name}/ is back: watching it again`);
      pending.add(`${name}/`);
      flushLater();
    }
  };
  const root = watch(options.root, (_event, name) => {
    if (name === null) return;
    const entry = name.toString();
    changed(entry);
    if (!entry.includes(sep)) review(entry);
  });
  root.on('error', (error) => warn(`stopped watching ${options.root} itself (${error.message}): restart keel dev`));
  for (const entry of readdirSync(options.root, { withFileTypes: true })) {
    if (entry.isDirectory()) review(entry.name);
  }
  return {
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      root.close();
      for (const name of [...folders.keys()]) drop(name);
    },
  };
}

/**
 * What a change restarts: every process, and why; or those hosting the modules named, and, when
 * a contract changed (`contracts`: the modules whose contract it is), those serving every
 * module's operations over HTTP.
 */
export type ChangeImpact =
  | { readonly all: true; readonly reason: string }
  | { readonly all: false; readonly modules: ReadonlySet<string>; readonly contracts: ReadonlySet<string> };

/**
 * Which modules a set of changed paths concerns. A file in a module's folder concerns that
 * module; its contract (`contract.ts`) also concerns the modules that depend on it or subscribe
 * to it. Any other file (the manifest, `keel.config.ts`, shared code, `package.json`) concerns
 * every process.
 *
 * @example
 * ```ts
 * impactOf(['modules/catalog/contract.ts'], 'modules', graph); // { all: false, modules: Set { 'catalog', 'orders' } }
 * impactOf(['keel.config.ts'], 'modules', graph); // { all: true, reason: 'keel.config.ts' }
 * ```
 */
export function impactOf(paths: readonly string[], modulesDir: string, graph: readonly ModuleNode[]): ChangeImpact {
  const names = new Set(graph.map((node) => node.name));
  const modules = new Set<string>();
  const contracts = new Set<string>();
  for (const path of paths) {
    const inModules = modulesDir === '' ? path : path.startsWith(`${modulesDir}/`) ? path.slice(modulesDir.length + 1) : undefined;
    const [folder, ...rest] = inModules?.split('/') ?? [];
    if (folder === undefined || rest.length === 0 || !names.has(folder)) return { all: true, reason: path };
    modules.add(folder);
    if (rest.length === 1 && /^contract\.[cm]?[jt]s$/.test(rest[0] as string)) {
      contracts.add(folder);
      for (const node of graph) {
        if (node.dependsOn.includes(folder) || node.subscribesTo.includes(folder)) modules.add(node.name);
      }
    }
  }
  return { all: false, modules, contracts };
}

/** What {@link processesToRestart} needs of a process. */
export interface WatchedProcess {
  readonly name: string;
  readonly modules: readonly string[];
  /** It may serve every module's operations over HTTP (a gateway): its routes and schemas come from every contract. */
  readonly servesAllOperations: boolean;
}

/**
 * The processes a change restarts: every one, or those hosting a module it concerns, and, when a
 * contract changed, every process serving every module's operations over HTTP (a gateway
 * exposes the operations of modules hosted elsewhere, from the contracts it read as it started);
 * and every process named in `givenUp` (stopped after failing to start), whatever the change: it
 * may have failed on a file of a module it does not host, and this change may be the fix.
 *
 * @example
 * ```ts
 * const impact = impactOf(['modules/payments/contract.ts'], 'modules', graph);
 * processesToRestart(impact, processes).map((process) => process.name); // ['back-office', 'storefront']
 * ```
 */
export function processesToRestart<P extends WatchedProcess>(
  impact: ChangeImpact,
  processes: readonly P[],
  givenUp: ReadonlySet<string> = new Set(),
): P[] {
  if (impact.all) return [...processes];
  return processes.filter(
    (process) =>
      givenUp.has(process.name) ||
      process.modules.some((module) => impact.modules.has(module)) ||
      (impact.contracts.size > 0 && process.servesAllOperations),
  );
}
