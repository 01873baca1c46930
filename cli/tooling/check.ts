/**
 * `keel check`: the architecture rules, checked on the parsed source (and, for contract
 * schemas, on the loaded contracts). Each rule reports file, line and the offending import or
 * chain.
 */
import { isBuiltin } from 'node:module';
import { isKeelError } from 'keel';
import { loadContracts, importWithNode, type ImportFile } from './contract-loader.js';
import { readModuleFacts, type ModuleFacts } from './module-facts.js';
import { ProjectLayout, readSourceTree, type ProjectFile, type ResolvedImport, type SourceTree } from './source-tree.js';
import { walk, type AstNode } from './source.js';

/** Every rule `keel check` applies. */
export const CheckRule = {
  /** A module imports a file of another module that is not its `contract.ts`. */
  DEEP_IMPORT: 'deep-import',
  /** A `contract.ts` imports or re-exports a private file of its own module, leaking it to every caller. */
  CONTRACT_EXPOSES_INTERNALS: 'contract-exposes-internals',
  /** A module imports with a computed specifier, which no tool can check. */
  DYNAMIC_IMPORT: 'dynamic-import',
  /** Modules depend on each other in a circle through `dependsOn`. */
  DEPENDENCY_CYCLE: 'dependency-cycle',
  /** Files of several modules import each other in a circle (at run time, one sees the other undefined). */
  IMPORT_CYCLE: 'import-cycle',
  /** A module uses another module's contract without listing it in `dependsOn` or `subscribesTo`. */
  UNDECLARED_DEPENDENCY: 'undeclared-dependency',
  /** The kernel imports an adapter or a transport library. */
  KERNEL_IMPORTS_ADAPTER: 'kernel-imports-adapter',
  /** The kernel imports a package that is not one of its own few dependencies. */
  KERNEL_IMPORTS_PACKAGE: 'kernel-imports-package',
  /** A module imports `keel/transport`, the door for adapter and tooling authors, instead of `keel`. */
  MODULE_IMPORTS_TRANSPORT_PORT: 'module-imports-transport-port',
  /** An adapter imports kernel files instead of `keel`. */
  ADAPTER_IMPORTS_KERNEL_INTERNALS: 'adapter-imports-kernel-internals',
  /** An adapter imports another adapter's files instead of its public entry. */
  ADAPTER_IMPORTS_ADAPTER_INTERNALS: 'adapter-imports-adapter-internals',
  /** A contract cannot be defined: `defineContract` refused it (a schema that cannot cross a process, …). */
  INVALID_CONTRACT: 'invalid-contract',
  /** A contract file failed to load for another reason. */
  CONTRACT_LOAD_FAILED: 'contract-load-failed',
  /** A file does not parse. */
  SYNTAX_ERROR: 'syntax-error',
} as const;

/** A {@link CheckRule} value. */
export type CheckRule = (typeof CheckRule)[keyof typeof CheckRule];

/** One broken rule. */
export interface Violation {
  readonly rule: CheckRule;
  /** Project-relative path. */
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** What is wrong and what to do. */
  readonly message: string;
  /** The offending statement or call, as written. */
  readonly code?: string;
  /** For cycles: the chain of modules or files, ending where it starts. */
  readonly chain?: readonly string[];
}

/** What {@link runCheck} returns. */
export interface CheckReport {
  readonly ok: boolean;
  readonly root: string;
  readonly modules: readonly string[];
  readonly filesChecked: number;
  readonly contractsLoaded: number;
  readonly violations: readonly Violation[];
}

/** Options of {@link runCheck}. */
export interface CheckOptions {
  /** Loads TypeScript files (contracts) at run time. Default: `import()`. */
  readonly importFile?: ImportFile;
  /** Load contracts and apply `defineContract`'s checks (default true). */
  readonly loadContracts?: boolean;
}

/** Defaults of {@link CheckOptions}. */
export const DEFAULT_CHECK_OPTIONS = {
  importFile: importWithNode,
  loadContracts: true,
} as const satisfies CheckOptions;

const TRANSPORT_PACKAGES = [/^nats($|\/)/, /^@nats-io\//, /^keel\/nats($|\/)/, /^keel\/http($|\/)/];

/**
 * The packages a `kernel/` file may import besides Node's built-in modules: the kernel's own
 * dependencies. Anything else (fastify, prom-client, a utility library) would travel into every
 * application through `keel`, whatever transport it uses.
 */
const KERNEL_PACKAGES: readonly string[] = ['zod', 'inversify', 'reflect-metadata', 'pino'];

/** `zod` of `zod/v4`, `@scope/name` of `@scope/name/sub`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/**
 * Checks the architecture rules of the project at `root`.
 *
 * @example
 * ```ts
 * const report = await runCheck('/repo');
 * for (const violation of report.violations) console.log(`${violation.file}:${violation.line} ${violation.message}`);
 * process.exitCode = report.ok ? 0 : 1;
 * ```
 */
export async function runCheck(root: string, options: CheckOptions = {}): Promise<CheckReport> {
  const settings = { ...DEFAULT_CHECK_OPTIONS, ...options };
  const tree = readSourceTree(root);
  const facts = readModuleFacts(tree);
  const violations: Violation[] = [
    ...syntaxErrors(tree),
    ...moduleBoundaries(tree),
    ...undeclaredDependencies(tree, facts),
    ...dependencyCycles(facts),
    ...importCycles(tree),
    ...layering(tree),
  ];
  let contractsLoaded = 0;
  if (settings.loadContracts) {
    const loaded = await loadContracts(root, settings.importFile);
    contractsLoaded = loaded.contracts.length;
    for (const failure of loaded.failures) {
      const file = tree.files.get(failure.file);
      const at = file ? definitionPosition(file) : { line: 1, column: 1 };
      const message = failure.error instanceof Error ? failure.error.message : String(failure.error);
      violations.push(
        isKeelError(failure.error, 'INVALID_CONTRACT')
          ? { rule: CheckRule.INVALID_CONTRACT, file: failure.file, ...at, message: `${message.replace(/\.$/, '')} (refused by defineContract when the contract file loads).` }
          : {
              rule: CheckRule.CONTRACT_LOAD_FAILED,
              file: failure.file,
              ...at,
              message: `The contract file failed to load: ${message}`,
            },
      );
    }
  }
  violations.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.column - b.column || a.rule.localeCompare(b.rule));
  return {
    ok: violations.length === 0,
    root,
    modules: [...tree.modules.keys()],
    filesChecked: tree.files.size,
    contractsLoaded,
    violations: dedupe(violations),
  };
}

function dedupe(violations: Violation[]): Violation[] {
  const seen = new Set<string>();
  return violations.filter((violation) => {
    const key = `${violation.rule}|${violation.file}|${violation.line}|${violation.column}|${violation.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Where `defineContract(` is called, else the top of the file. */
function definitionPosition(file: ProjectFile): { line: number; column: number } {
  let found: { line: number; column: number } | undefined;
  walk(file.source.program, (node) => {
    if (found || node.type !== 'CallExpression') return;
    const callee = node['callee'] as AstNode;
    if (callee.type === 'Identifier' && callee['name'] === 'defineContract') found = file.source.position(node.start);
  });
  return found ?? { line: 1, column: 1 };
}

function at(file: ProjectFile, reference: ResolvedImport): Pick<Violation, 'file' | 'line' | 'column' | 'code'> {
  return { file: file.path, line: reference.line, column: reference.column, code: reference.text };
}

function syntaxErrors(tree: SourceTree): Violation[] {
  return [...tree.files.values()].flatMap((file) =>
    file.source.errors.map((message) => ({
      rule: CheckRule.SYNTAX_ERROR,
      file: file.path,
      line: 1,
      column: 1,
      message: `${message}. The other rules may miss problems in this file until it parses.`,
    })),
  );
}

function describeKind(reference: ResolvedImport): string {
  switch (reference.kind) {
    case 're-export':
      return 're-exports';
    case 'dynamic':
      return reference.typeOnly ? 'refers by type to' : 'dynamically imports';
    case 'require':
      return 'requires';
    default:
      return reference.typeOnly ? 'imports types from' : 'imports';
  }
}

/** The entry of keel for adapter and tooling authors; application modules import 'keel'. */
const TRANSPORT_ENTRY = 'keel/transport';

function moduleBoundaries(tree: SourceTree): Violation[] {
  const violations: Violation[] = [];
  for (const file of tree.filesUnder(ProjectLayout.MODULES)) {
    const from = file.moduleFolder;
    const isManifest = file.path === ProjectLayout.MANIFEST;
    const isContract = from !== undefined && file.path === `${ProjectLayout.MODULES}/${from}/${ProjectLayout.CONTRACT_FILE}`;
    const who = from ?? file.path;
    for (const reference of file.imports) {
      if (reference.specifier === undefined) {
        if (from !== undefined || isManifest) {
          violations.push({
            rule: CheckRule.DYNAMIC_IMPORT,
            ...at(file, reference),
            message: `${who} imports a computed specifier (${reference.text}), which cannot be checked. Import other modules' contracts statically, by a literal path.`,
          });
        }
        continue;
      }
      if (reference.specifier === TRANSPORT_ENTRY) {
        violations.push({
          rule: CheckRule.MODULE_IMPORTS_TRANSPORT_PORT,
          ...at(file, reference),
          message:
            `${who} ${describeKind(reference)} '${TRANSPORT_ENTRY}', the door for adapter and tooling authors (transports, gateways, observers). ` +
            `Everything a module needs is in 'keel' (type Transport too): import it from there, and write what needs '${TRANSPORT_ENTRY}' as an adapter.`,
        });
        continue;
      }
      const target = reference.target;
      if (target === undefined || !target.startsWith(`${ProjectLayout.MODULES}/`)) continue;
      const to = tree.moduleOf(target);
      if (to === undefined) {
        if (target === ProjectLayout.MANIFEST && from !== undefined) {
          violations.push({
            rule: CheckRule.DEEP_IMPORT,
            ...at(file, reference),
            message: `${from} ${describeKind(reference)} the application manifest (${reference.specifier}), which pulls in every module's implementation. A module may import other modules' contract.ts files only.`,
          });
        }
        continue;
      }
      const contractPath = `${ProjectLayout.MODULES}/${to}/${ProjectLayout.CONTRACT_FILE}`;
      const modulePath = `${ProjectLayout.MODULES}/${to}/${ProjectLayout.MODULE_FILE}`;
      if (to === from) {
        if (isContract && target !== contractPath) {
          const smuggles = reference.kind === 're-export';
          violations.push({
            rule: CheckRule.CONTRACT_EXPOSES_INTERNALS,
            ...at(file, reference),
            message: smuggles
              ? `The contract of ${from} re-exports ${target}, a private file: every module importing the contract gets the internals too. Define what callers need in contract.ts itself (plain zod schemas, errors), and keep implementation out.`
              : `The contract of ${from} ${describeKind(reference)} ${target}, a private file: the contract is the module's public door and must stay plain data that imports no implementation. Move the shared schema into contract.ts, and let the private file import it from there.`,
          });
        }
        continue;
      }
      if (target === contractPath) continue;
      if (isManifest && target === modulePath) continue;
      violations.push({
        rule: CheckRule.DEEP_IMPORT,
        ...at(file, reference),
        message: `${who} ${describeKind(reference)} ${target}, a private file of ${to}. Only modules/${to}/contract.ts is public: call ${to} through its contract (dependsOn + get), or move what is shared into that contract.`,
      });
    }
  }
  return violations;
}

function undeclaredDependencies(tree: SourceTree, facts: ReadonlyMap<string, ModuleFacts>): Violation[] {
  const violations: Violation[] = [];
  for (const fact of facts.values()) {
    if (!fact.declared) continue;
    const dependsOn = new Set(fact.dependsOn.map((reference) => reference.folder));
    const subscribesTo = new Set(fact.subscribesTo.map((reference) => reference.folder));
    const declared = (folder: string) => dependsOn.has(folder) || subscribesTo.has(folder);
    for (const file of tree.files.values()) {
      if (file.moduleFolder !== fact.folder || file.path === `${ProjectLayout.MODULES}/${fact.folder}/${ProjectLayout.CONTRACT_FILE}`) continue;
      for (const reference of file.imports) {
        const target = reference.target;
        if (target === undefined) continue;
        const to = tree.moduleOf(target);
        if (to === undefined || to === fact.folder || target !== `${ProjectLayout.MODULES}/${to}/${ProjectLayout.CONTRACT_FILE}`) continue;
        if (declared(to)) continue;
        violations.push({
          rule: CheckRule.UNDECLARED_DEPENDENCY,
          ...at(file, reference),
          message: `${fact.folder} ${describeKind(reference)} the contract of ${to} but its defineModule lists ${to} neither in dependsOn (to call it) nor in subscribesTo (to handle its events). Declare it in ${ProjectLayout.MODULES}/${fact.folder}/${ProjectLayout.MODULE_FILE}, or drop the import.`,
        });
      }
    }
    for (const use of fact.gets) {
      if (use.folder === undefined || dependsOn.has(use.folder)) continue;
      violations.push({
        rule: CheckRule.UNDECLARED_DEPENDENCY,
        file: use.file,
        line: use.line,
        column: use.column,
        code: use.text,
        message: subscribesTo.has(use.folder)
          ? `${fact.folder} asks for the client of ${use.folder} with ${use.text}, but lists ${use.folder} only in subscribesTo; get() gives clients of dependsOn contracts. Add ${use.folder} to dependsOn.`
          : `${fact.folder} asks for the client of ${use.folder} with ${use.text} without listing ${use.folder} in dependsOn; the kernel refuses it at start (UNDECLARED_DEPENDENCY). Add ${use.folder} to dependsOn.`,
      });
    }
  }
  return violations;
}

/** Strongly connected components (Tarjan), each in discovery order. */
function components(nodes: readonly string[], edges: (node: string) => readonly string[]): string[][] {
  let index = 0;
  const indices = new Map<string, number>();
  const lowLinks = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const result: string[][] = [];
  const connect = (node: string): void => {
    indices.set(node, index);
    lowLinks.set(node, index);
    index++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges(node)) {
      if (!indices.has(next)) {
        connect(next);
        lowLinks.set(node, Math.min(lowLinks.get(node) as number, lowLinks.get(next) as number));
      } else if (onStack.has(next)) {
        lowLinks.set(node, Math.min(lowLinks.get(node) as number, indices.get(next) as number));
      }
    }
    if (lowLinks.get(node) === indices.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop() as string;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      result.push(component.reverse());
    }
  };
  for (const node of nodes) if (!indices.has(node)) connect(node);
  return result;
}

/** One cycle through `start` inside a component, ending at `start`. */
function cycleThrough(start: string, members: ReadonlySet<string>, edges: (node: string) => readonly string[]): string[] {
  const path: string[] = [];
  const visited = new Set<string>();
  const search = (node: string): boolean => {
    path.push(node);
    for (const next of edges(node)) {
      if (!members.has(next)) continue;
      if (next === start) {
        path.push(start);
        return true;
      }
      if (!visited.has(next)) {
        visited.add(next);
        if (search(next)) return true;
      }
    }
    path.pop();
    return false;
  };
  search(start);
  return path;
}

function dependencyCycles(facts: ReadonlyMap<string, ModuleFacts>): Violation[] {
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

function importCycles(tree: SourceTree): Violation[] {
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

function layering(tree: SourceTree): Violation[] {
  const violations: Violation[] = [];
  for (const file of tree.filesUnder(ProjectLayout.KERNEL)) {
    for (const reference of file.imports) {
      const specifier = reference.specifier ?? '';
      const intoAdapters = reference.target?.startsWith(`${ProjectLayout.ADAPTERS}/`) ?? false;
      if (!intoAdapters && !TRANSPORT_PACKAGES.some((pattern) => pattern.test(specifier))) {
        const isPackage = reference.specifier !== undefined && !specifier.startsWith('.') && !specifier.startsWith('/');
        if (!isPackage || isBuiltin(specifier) || KERNEL_PACKAGES.includes(packageName(specifier))) continue;
        violations.push({
          rule: CheckRule.KERNEL_IMPORTS_PACKAGE,
          ...at(file, reference),
          message: `The kernel ${describeKind(reference)} '${specifier}', which is not one of its own dependencies (${KERNEL_PACKAGES.join(', ')} and node: built-ins). Every application gets what the kernel imports; put this code in an adapter${packageName(specifier) === 'keel' ? ', or import the kernel file by its relative path' : ''}.`,
        });
        continue;
      }
      violations.push({
        rule: CheckRule.KERNEL_IMPORTS_ADAPTER,
        ...at(file, reference),
        message: `The kernel ${describeKind(reference)} ${intoAdapters ? reference.target : `'${specifier}'`}; the kernel must not know any transport. Put the code in an adapter, and let the kernel reach it through the Transport port.`,
      });
    }
  }
  for (const file of tree.filesUnder(ProjectLayout.ADAPTERS)) {
    const adapter = file.path.split('/')[1];
    for (const reference of file.imports) {
      const target = reference.target;
      if (target === undefined) continue;
      if (target.startsWith(`${ProjectLayout.KERNEL}/`)) {
        violations.push({
          rule: CheckRule.ADAPTER_IMPORTS_KERNEL_INTERNALS,
          ...at(file, reference),
          message: `The ${adapter} adapter ${describeKind(reference)} ${target}, a kernel file. Adapters depend on the public doors only: import from 'keel' or 'keel/transport' (and export what is missing from kernel/index.ts or kernel/transport-entry.ts).`,
        });
      } else if (target.startsWith(`${ProjectLayout.ADAPTERS}/`) && target.split('/')[1] !== adapter) {
        const other = target.split('/')[1];
        violations.push({
          rule: CheckRule.ADAPTER_IMPORTS_ADAPTER_INTERNALS,
          ...at(file, reference),
          message: `The ${adapter} adapter ${describeKind(reference)} ${target}, a file of the ${other} adapter. Import from 'keel/${other}' instead.`,
        });
      }
    }
  }
  return violations;
}

/**
 * Human-readable report: one block per violation, then a summary line.
 *
 * @example
 * ```ts
 * process.stdout.write(formatCheckReport(await runCheck('/repo')));
 * ```
 */
export function formatCheckReport(report: CheckReport): string {
  const lines: string[] = [];
  for (const violation of report.violations) {
    lines.push(`${violation.file}:${violation.line}:${violation.column}  ${violation.rule}`);
    if (violation.code !== undefined) lines.push(`  ${truncate(violation.code)}`);
    lines.push(`  ${violation.message}`, '');
  }
  const scope = `${plural(report.modules.length, 'module')}, ${plural(report.filesChecked, 'file')}, ${plural(report.contractsLoaded, 'contract')} loaded`;
  const count = report.violations.length;
  lines.push(count === 0 ? `keel check: no problems (${scope}).` : `keel check: ${count} problem${count === 1 ? '' : 's'} (${scope}).`);
  return `${lines.join('\n')}\n`;
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function truncate(code: string): string {
  return code.length > 160 ? `${code.slice(0, 157)}...` : code;
}
