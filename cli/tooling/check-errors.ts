/**
 * The `undeclared-error` rule: a handler that throws or rethrows another module's declared
 * error which its own operation does not declare. The kernel sends an error only when the
 * operation declares it; any other becomes INTERNAL (HTTP 500), so the caller loses it.
 *
 * Read from the source, where it shows: in a handler (a function under a key named after one of
 * the module's operations, in an object whose keys are all operations),
 * - `throw new UnknownBook(…)` where `UnknownBook` comes from another module's contract;
 * - `catch (error) { … throw error; }` around a call on a dependency's client, and
 *   `.catch((error) => { … throw error; })` on such a call: each error the called operation
 *   declares may come back out, unless the catch block names it (`instanceof UnknownBook`,
 *   `isKeelError(error, 'UNKNOWN_BOOK')`), which is taken as handling it.
 * A dependency call left uncaught is not reported: whether its errors can happen is the
 * author's knowledge, not the source's.
 */
import type { AnyContract } from 'keel';
import type { LoadedContract } from './contract-loader.js';
import { CheckRule, type Violation } from './check-rules.js';
import { contractFolderOf, type ModuleFacts, type OperationCall } from './module-facts.js';
import { ProjectLayout, type ProjectFile, type SourceTree } from './source-tree.js';
import { isNode, keyName, unwrap, walk, type AstNode } from './source.js';

/** A declared error class as a contract holds it. */
interface ErrorClass {
  readonly code: string;
}

/** One handler found in the source: the operation it serves and its function. */
interface HandlerSite {
  readonly file: ProjectFile;
  readonly operation: string;
  readonly body: AstNode;
}

const FUNCTION_TYPES = new Set(['ArrowFunctionExpression', 'FunctionExpression']);

function isErrorClass(value: unknown): value is ErrorClass {
  return typeof value === 'function' && typeof (value as { code?: unknown }).code === 'string';
}

function declaredErrors(contract: AnyContract, operation: string): readonly ErrorClass[] {
  const definition = (contract.operations as Record<string, { errors?: readonly unknown[] } | undefined>)[operation];
  return (definition?.errors ?? []).filter(isErrorClass);
}

/** Handlers of `operations` in one file: `{ lend: (input) => …, async returnBook(input) { … } }`. */
function handlersIn(file: ProjectFile, operations: ReadonlySet<string>): HandlerSite[] {
  const sites: HandlerSite[] = [];
  walk(file.source.program, (node) => {
    if (node.type !== 'ObjectExpression') return;
    const properties = (node['properties'] as AstNode[]).filter((property) => property.type === 'Property');
    if (properties.length === 0 || properties.length !== (node['properties'] as AstNode[]).length) return;
    const names = properties.map((property) => keyName(property['key']));
    if (!names.every((name) => name !== undefined && operations.has(name))) return;
    for (const property of properties) {
      const value = isNode(property['value']) ? unwrap(property['value']) : undefined;
      if (value !== undefined && FUNCTION_TYPES.has(value.type)) {
        sites.push({ file, operation: keyName(property['key']) as string, body: value });
      }
    }
  });
  return sites;
}

/** The name an identifier was imported under at its origin (`import { A as B }` → `A`), else itself. */
function importedName(file: ProjectFile, local: string): string {
  for (const reference of file.imports) {
    for (const binding of reference.bindings) if (binding.local === local) return binding.imported;
  }
  return local;
}

/** `throw <name>` statements of a block whose argument is the identifier `name`. */
/**
 * A `throw <name>` in a catch block, with the names its enclosing `if` tests give when it is in
 * their consequent (`if (error instanceof UnknownBook) throw error;` rethrows UnknownBook only).
 */
interface Rethrow {
  readonly node: AstNode;
  /** Identifiers and strings of the tests guarding it; empty: it rethrows whatever was caught. */
  readonly guards: ReadonlySet<string>;
}

/** Identifiers and string literals under `node`. */
function namesIn(node: AstNode, into: Set<string> = new Set()): Set<string> {
  walk(node, (inner) => {
    if (inner.type === 'Identifier') into.add(inner['name'] as string);
    else if (inner.type === 'Literal' && typeof inner['value'] === 'string') into.add(inner['value']);
  });
  return into;
}

function rethrowsOf(block: AstNode, name: string): Rethrow[] {
  const found: Rethrow[] = [];
  walk(block, (node, ancestors) => {
    if (node.type !== 'ThrowStatement') return;
    const argument = unwrap(node['argument'] as AstNode);
    if (argument.type !== 'Identifier' || argument['name'] !== name) return;
    const guards = new Set<string>();
    const path = [...ancestors, node];
    for (let index = path.indexOf(block) + 1; index < path.length - 1; index++) {
      const ancestor = path[index] as AstNode;
      if (ancestor.type === 'IfStatement' && ancestor['consequent'] === path[index + 1]) namesIn(ancestor['test'] as AstNode, guards);
    }
    found.push({ node, guards });
  });
  return found;
}

/** The tests of the `if`s that guard a rethrow: naming an error there rethrows it, not handles it. */
function guardTestsOf(block: AstNode, rethrows: readonly Rethrow[]): Set<AstNode> {
  const tests = new Set<AstNode>();
  const throws = new Set(rethrows.map((rethrow) => rethrow.node));
  walk(block, (node) => {
    if (node.type !== 'IfStatement') return;
    let guardsARethrow = false;
    walk(node['consequent'] as AstNode, (inner) => {
      if (throws.has(inner)) guardsARethrow = true;
    });
    if (guardsARethrow) tests.add(node['test'] as AstNode);
  });
  return tests;
}

/**
 * Checks every module's handlers for declared errors of other modules that their own
 * operation does not declare.
 *
 * @example
 * ```ts
 * const violations = undeclaredErrors(tree, readModuleFacts(tree), (await loadContracts(root)).contracts);
 * ```
 */
export function undeclaredErrors(
  tree: SourceTree,
  facts: ReadonlyMap<string, ModuleFacts>,
  contracts: readonly LoadedContract[],
): Violation[] {
  const byFolder = new Map(contracts.map((loaded) => [loaded.folder, loaded]));
  // The name an error class is exported under, preferring the folder it is reached from.
  const nameOf = (error: ErrorClass, folder: string): string => {
    const exportsOf = (loaded: LoadedContract | undefined) =>
      Object.entries(loaded?.exports ?? {}).find(([, value]) => value === error)?.[0];
    return exportsOf(byFolder.get(folder)) ?? contracts.map(exportsOf).find((name) => name !== undefined) ?? error.code;
  };
  const violations: Violation[] = [];
  for (const [folder, moduleFacts] of facts) {
    const own = byFolder.get(folder);
    if (own === undefined) continue;
    const operations = new Set(Object.keys(own.contract.operations));
    if (operations.size === 0) continue;
    const moduleName = own.contract.name;
    for (const file of tree.files.values()) {
      if (file.moduleFolder !== folder || file.path.endsWith(`/${ProjectLayout.CONTRACT_FILE}`)) continue;
      const calls = moduleFacts.calls.filter((call) => call.file === file.path);
      for (const handler of handlersIn(file, operations)) {
        const declared = new Set(declaredErrors(own.contract, handler.operation).map((error) => error.code));
        const report = (node: AstNode, error: ErrorClass, name: string, from: string, how: string): void => {
          if (declared.has(error.code)) return;
          const { line, column } = file.source.position(node.start);
          violations.push({
            rule: CheckRule.UNDECLARED_ERROR,
            file: file.path,
            line,
            column,
            code: file.source.text.slice(node.start, node.end),
            message:
              `${moduleName}.${handler.operation} ${how} ${name} (${error.code}, declared by ${from}), which ${handler.operation} does not declare: ` +
              `its callers would get INTERNAL (HTTP 500) instead. Either declare it in ${handler.operation}'s errors ` +
              `(errors: [..., ${name}] in ${own.file}), or map it to an error of ${moduleName}'s own ` +
              `(catch it and throw one that ${handler.operation} declares).`,
          });
        };
        const dependencyErrors = (inside: AstNode): Array<{ error: ErrorClass; call: OperationCall }> =>
          calls
            .filter((call) => call.start >= inside.start && call.start < inside.end)
            .flatMap((call) => {
              const dependency = byFolder.get(call.folder);
              return dependency === undefined ? [] : declaredErrors(dependency.contract, call.operation).map((error) => ({ error, call }));
            });
        const reportRethrows = (guarded: AstNode, handlerBlock: AstNode, parameter: unknown): void => {
          const name = isNode(parameter) && parameter.type === 'Identifier' ? (parameter['name'] as string) : undefined;
          if (name === undefined) return;
          const rethrows = rethrowsOf(handlerBlock, name);
          if (rethrows.length === 0) return;
          // What the catch block names (identifiers and strings, not comments) outside the tests
          // that guard a rethrow: an error named there is handled (mapped, logged, answered).
          const guardTests = guardTestsOf(handlerBlock, rethrows);
          const named = new Set<string>();
          walk(handlerBlock, (inner, ancestors) => {
            if (guardTests.has(inner) || ancestors.some((ancestor) => guardTests.has(ancestor))) return;
            if (inner.type === 'Identifier') named.add(inner['name'] as string);
            else if (inner.type === 'Literal' && typeof inner['value'] === 'string') named.add(inner['value']);
          });
          const seen = new Set<string>();
          for (const { error, call } of dependencyErrors(guarded)) {
            const name = nameOf(error, call.folder);
            if (seen.has(error.code)) continue;
            seen.add(error.code);
            for (const rethrow of rethrows) {
              const rethrown =
                rethrow.guards.size > 0 ? rethrow.guards.has(name) || rethrow.guards.has(error.code) : !named.has(name) && !named.has(error.code);
              if (rethrown) report(rethrow.node, error, name, `${byFolder.get(call.folder)?.contract.name ?? call.folder}.${call.operation}`, 'rethrows');
            }
          }
        };
        walk(handler.body, (node) => {
          if (node.type === 'ThrowStatement') {
            const argument = unwrap(node['argument'] as AstNode);
            if (argument.type !== 'NewExpression') return;
            const callee = unwrap(argument['callee'] as AstNode);
            if (callee.type !== 'Identifier') return;
            const origin = contractFolderOf(tree, file, callee);
            if (origin === undefined || origin === folder) return;
            const name = importedName(file, callee['name'] as string);
            const exported = byFolder.get(origin)?.exports[name];
            if (isErrorClass(exported)) report(node, exported, name, byFolder.get(origin)?.contract.name ?? origin, 'throws');
          } else if (node.type === 'TryStatement' && isNode(node['handler'])) {
            const clause = node['handler'];
            reportRethrows(node['block'] as AstNode, clause['body'] as AstNode, clause['param']);
          } else if (node.type === 'CallExpression') {
            const callee = unwrap(node['callee'] as AstNode);
            if (callee.type !== 'MemberExpression' || callee['computed'] === true || keyName(callee['property']) !== 'catch') return;
            const callback = (node['arguments'] as AstNode[])[0];
            if (callback === undefined || !FUNCTION_TYPES.has(callback.type)) return;
            reportRethrows(callee['object'] as AstNode, callback['body'] as AstNode, (callback['params'] as AstNode[])[0]);
          }
        });
      }
    }
  }
  return violations;
}
