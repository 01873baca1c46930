/**
 * `keel check`'s cycle rules: modules that depend on each other in a circle through
 * `dependsOn`, and files of several modules that import each other in a circle at run time.
 */
import type { ModuleFacts } from './module-facts.js';
import { ProjectLayout, type ProjectFile, type ResolvedImport, type SourceTree } from './source-tree.js';
import { CheckRule, at, type Violation } from './check-rules.js';
import { components, cycleThrough } from './strongly-connected.js';

/** Circles through `dependsOn`, one violation per strongly connected group of modules. */
export function dependencyCycles(facts: ReadonlyMap<string, ModuleFacts>): Violation[] {
  const edges = (folder: string): string[] =>
    (facts.get(folder)?.dependsOn ?? []).flatMap((reference) => (reference.folder === undefined ? [] : [reference.folder]));
  const nodes = [...facts.keys()].sort();
  const violations: Violation[] = [];
  for (const component of components(nodes, edges)) {
    const start = [...component].sort()[0] as string;
    if (component.length === 1 && !edges(start).includes(start)) continue;
    const chain = cycleThrough(start, new Set(component), edges);
    const next = chain[1] as string;
    const entry = facts.get(start)?.dependsOn.find((reference) => reference.folder === next);
    violations.push({
      rule: CheckRule.DEPENDENCY_CYCLE,
      file: entry?.file ?? `${ProjectLayout.MODULES}/${start}/${ProjectLayout.MODULE_FILE}`,
      line: entry?.line ?? 1,
      column: entry?.column ?? 1,
      code: entry?.text,
      chain,
      message: `Dependency cycle through dependsOn: ${chain.join(' → ')}. No start order exists; break it by turning one call into an event (subscribesTo) or by moving the shared part into its own module.`,
    });
  }
  return violations;
}

/** Circles of run-time imports between files of different modules. */
export function importCycles(tree: SourceTree): Violation[] {
  const moduleFiles = tree.filesUnder(ProjectLayout.MODULES).filter((file) => file.moduleFolder !== undefined);
  const known = new Set(moduleFiles.map((file) => file.path));
  const runtimeImports = (path: string): ResolvedImport[] =>
    (tree.files.get(path)?.imports ?? []).filter(
      (reference) => !reference.typeOnly && reference.kind !== 'dynamic' && reference.target !== undefined && known.has(reference.target),
    );
  const edges = (path: string): string[] => runtimeImports(path).map((reference) => reference.target as string);
  const violations: Violation[] = [];
  for (const component of components([...known].sort(), edges)) {
    const folders = new Set(component.map((path) => tree.moduleOf(path)));
    if (folders.size < 2) continue;
    const start = [...component].sort()[0] as string;
    const chain = cycleThrough(start, new Set(component), edges);
    const reference = runtimeImports(start).find((candidate) => candidate.target === chain[1]);
    const file = tree.files.get(start) as ProjectFile;
    violations.push({
      rule: CheckRule.IMPORT_CYCLE,
      ...(reference ? at(file, reference) : { file: start, line: 1, column: 1 }),
      chain,
      message: `Import cycle between modules ${[...folders].join(', ')}: ${chain.join(' → ')}. At load time one of these files sees the other's exports undefined. Contracts must not import each other in a circle; move the shared schema into one of them.`,
    });
  }
  return violations;
}
