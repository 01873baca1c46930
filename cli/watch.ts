/**
 * The watching behind `keel dev`: which files of a project count as a change, bursts of changes
 * gathered into one, and which processes a change restarts.
 */
import { readdirSync, watch, type FSWatcher } from 'node:fs';
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
}

/** Defaults of {@link WatchProjectOptions}. */
export const DEFAULT_WATCH_OPTIONS = { debounceMs: 150 } as const satisfies Partial<WatchProjectOptions>;

/** A running watch; {@link ProjectWatch.close} ends it. */
export interface ProjectWatch {
  close(): void;
}

/** Source, data and migration files; not an editor's swap, backup or lock files. */
const WATCHED_FILE = /\.(?:[cm]?[jt]sx?|json|sql)$/;

/**
 * True when a change of `path` (relative to the root, `/`-separated) counts: a source, JSON or
 * SQL file outside `node_modules`, hidden folders (`.git`, `.keel`) and the `ignore`d folders,
 * and no test file.
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
  if (ignore.some((folder) => path === folder || path.startsWith(`${folder}/`))) return false;
  return WATCHED_FILE.test(path) && !/\.(?:test|spec)\.[cm]?[jt]sx?$/.test(path);
}

/**
 * Watches the project's files, with one recursive `fs.watch` per top-level folder (never
 * `node_modules`, hidden folders or the `ignore`d ones) and one on the root for its own files,
 * and calls `onChange` once per burst of changes.
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
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  const changed = (path: string): void => {
    const shown = path.split(sep).join('/');
    if (!countsAsChange(shown, options.ignore)) return;
    pending.add(shown);
    if (timer !== undefined) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = undefined;
      const paths = [...pending].sort();
      pending.clear();
      options.onChange(paths);
    }, debounceMs);
  };
  const watchers: FSWatcher[] = [];
  const root = watch(options.root, (_event, name) => {
    if (name !== null) changed(name.toString());
  });
  watchers.push(root);
  for (const entry of readdirSync(options.root, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.') || entry.name === 'node_modules' || options.ignore.includes(entry.name)) continue;
    const folder = join(options.root, entry.name);
    watchers.push(
      watch(folder, { recursive: true }, (_event, name) => {
        if (name !== null) changed(relative(options.root, join(folder, name.toString())));
      }),
    );
  }
  for (const watcher of watchers) watcher.on('error', () => {});
  return {
    close() {
      if (timer !== undefined) clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}

/** What a change restarts: every process, or those hosting the modules named, and why. */
export type ChangeImpact = { readonly all: true; readonly reason: string } | { readonly all: false; readonly modules: ReadonlySet<string> };

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
  for (const path of paths) {
    const inModules = modulesDir === '' ? path : path.startsWith(`${modulesDir}/`) ? path.slice(modulesDir.length + 1) : undefined;
    const [folder, ...rest] = inModules?.split('/') ?? [];
    if (folder === undefined || rest.length === 0 || !names.has(folder)) return { all: true, reason: path };
    modules.add(folder);
    if (rest.length === 1 && /^contract\.[cm]?[jt]s$/.test(rest[0] as string)) {
      for (const node of graph) {
        if (node.dependsOn.includes(folder) || node.subscribesTo.includes(folder)) modules.add(node.name);
      }
    }
  }
  return { all: false, modules };
}
