/**
 * `keel check`: the architecture rules, checked on the parsed source (and, for contract
 * schemas, on the loaded contracts). Each rule reports file, line and the offending import or
 * chain. This file runs the rules and formats the report; the rules live in check-boundaries.ts
 * (what modules import), check-cycles.ts (circles), check-layering.ts (kernel and adapters) and
 * check-errors.ts (declared errors a handler lets through undeclared),
 * and their vocabulary (CheckRule, Violation) in check-rules.ts.
 */
import { isKeelError } from 'keel';
import { loadContracts, importWithNode, type ImportFile } from './contract-loader.js';
import { readModuleFacts } from './module-facts.js';
import { readSourceTree, type ProjectFile, type SourceTree } from './source-tree.js';
import { walk, type AstNode } from './source.js';
import { CheckRule, type Violation } from './check-rules.js';
import { moduleBoundaries, undeclaredDependencies } from './check-boundaries.js';
import { dependencyCycles, importCycles } from './check-cycles.js';
import { layering } from './check-layering.js';
import { undeclaredErrors } from './check-errors.js';

export { CheckRule, type Violation } from './check-rules.js';

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
    violations.push(...undeclaredErrors(tree, facts, loaded.contracts));
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
