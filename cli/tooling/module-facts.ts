/**
 * What the source says about each module, read from the AST: the contracts a `defineModule`
 * call lists in `dependsOn` and `subscribesTo`, the contracts passed to `get(…)`, the
 * operations called on the clients `get` returns, and the events handled.
 */
import { ProjectLayout, type ProjectFile, type SourceTree } from './source-tree.js';
import { isNode, keyName, objectProperties, unwrap, walk, type AstNode } from './source.js';

/** A reference to a contract found in the source. */
export interface ContractReference {
  /** Module folder of the contract (`modules/<folder>/contract.ts`), or undefined when not resolved. */
  readonly folder: string | undefined;
  /** The expression as written, such as `inventory`. */
  readonly text: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
}

/** One `client.operation(…)` call on a dependency's client. */
export interface OperationCall {
  readonly folder: string;
  readonly operation: string;
  readonly file: string;
  readonly line: number;
  /** Offset of the call in its file, to tell which `try` block holds it. */
  readonly start: number;
}

/** The static facts of one module folder. */
export interface ModuleFacts {
  readonly folder: string;
  /** True when `module.ts` holds a `defineModule({ … })` call with an object literal. */
  readonly declared: boolean;
  readonly dependsOn: readonly ContractReference[];
  readonly subscribesTo: readonly ContractReference[];
  /** Entries of `dependsOn`/`subscribesTo` that could not be read statically (spreads, calls). */
  readonly unresolved: readonly ContractReference[];
  /** Every `get(x)` whose argument is another module's contract (any file of the module). */
  readonly gets: readonly ContractReference[];
  readonly calls: readonly OperationCall[];
  /** Handled events by contract folder (`events: { orders: { orderPlaced } }`); by contract name key. */
  readonly handledEvents: ReadonlyMap<string, readonly string[]>;
}

/**
 * Finds which module folder an identifier of `file` comes from, following imports and
 * re-exports through the project's own files, or undefined when it is not a contract export.
 */
export function contractFolderOf(tree: SourceTree, file: ProjectFile, expression: AstNode): string | undefined {
  const node = unwrap(expression);
  if (node.type === 'Identifier') return originOf(tree, file, node['name'] as string, new Set());
  if (node.type === 'MemberExpression' && node['computed'] !== true) {
    const object = unwrap(node['object'] as AstNode);
    if (object.type !== 'Identifier') return undefined;
    const binding = bindingOf(file, object['name'] as string);
    if (binding?.imported !== '*' || binding.target === undefined) return undefined;
    return folderOfContractPath(binding.target) ?? exportOrigin(tree, binding.target, keyName(node['property']) ?? '', new Set());
  }
  return undefined;
}

function folderOfContractPath(path: string): string | undefined {
  const parts = path.split('/');
  return parts.length === 3 && parts[0] === ProjectLayout.MODULES && parts[2] === ProjectLayout.CONTRACT_FILE ? parts[1] : undefined;
}

function bindingOf(file: ProjectFile, local: string): { imported: string; target: string | undefined } | undefined {
  for (const reference of file.imports) {
    for (const binding of reference.bindings) {
      if (binding.local === local) return { imported: binding.imported, target: reference.target };
    }
  }
  return undefined;
}

function originOf(tree: SourceTree, file: ProjectFile, local: string, seen: Set<string>): string | undefined {
  const binding = bindingOf(file, local);
  if (binding?.target === undefined) return undefined;
  return folderOfContractPath(binding.target) ?? exportOrigin(tree, binding.target, binding.imported, seen);
}

/** Follows `export … from` and `import x; export { x }` through project files. */
function exportOrigin(tree: SourceTree, path: string, name: string, seen: Set<string>): string | undefined {
  const key = `${path}#${name}`;
  if (seen.has(key)) return undefined;
  seen.add(key);
  const file = tree.files.get(path);
  if (file === undefined) return undefined;
  for (const reference of file.imports) {
    if (reference.kind !== 're-export' || reference.target === undefined) continue;
    if (reference.exported.includes(name) || reference.exported.includes('*')) {
      const found = folderOfContractPath(reference.target) ?? exportOrigin(tree, reference.target, name, seen);
      if (found !== undefined) return found;
    }
  }
  for (const [local, names] of file.source.localExports) {
    if (names.includes(name)) return originOf(tree, file, local, seen);
  }
  return undefined;
}

function topLevelConstants(program: AstNode): Map<string, AstNode> {
  const constants = new Map<string, AstNode>();
  for (const statement of program['body'] as AstNode[]) {
    const declaration = statement.type === 'ExportNamedDeclaration' ? (statement['declaration'] as AstNode | null) : statement;
    if (declaration?.type !== 'VariableDeclaration' || declaration['kind'] !== 'const') continue;
    for (const declarator of declaration['declarations'] as AstNode[]) {
      const id = declarator['id'] as AstNode;
      const init = declarator['init'] as AstNode | null;
      if (id.type === 'Identifier' && init) constants.set(id['name'] as string, init);
    }
  }
  return constants;
}

function isCallTo(node: AstNode, name: string): boolean {
  if (node.type !== 'CallExpression') return false;
  const callee = unwrap(node['callee'] as AstNode);
  if (callee.type === 'Identifier') return callee['name'] === name;
  return callee.type === 'MemberExpression' && callee['computed'] !== true && keyName(callee['property']) === name;
}

/**
 * Reads the static facts of every module folder of the tree.
 *
 * @example
 * ```ts
 * const facts = readModuleFacts(readSourceTree(root));
 * facts.get('orders')?.dependsOn.map((reference) => reference.folder); // ['catalog', 'inventory', 'payments']
 * ```
 */
export function readModuleFacts(tree: SourceTree): Map<string, ModuleFacts> {
  const result = new Map<string, ModuleFacts>();
  for (const folder of tree.modules.values()) {
    const dependsOn: ContractReference[] = [];
    const subscribesTo: ContractReference[] = [];
    const unresolved: ContractReference[] = [];
    const handledEvents = new Map<string, string[]>();
    let declared = false;
    const moduleFile = tree.files.get(folder.modulePath);
    if (moduleFile !== undefined) {
      const constants = topLevelConstants(moduleFile.source.program);
      const reference = (node: AstNode): ContractReference => {
        const { line, column } = moduleFile.source.position(node.start);
        return {
          folder: contractFolderOf(tree, moduleFile, node),
          text: moduleFile.source.text.slice(node.start, node.end),
          file: moduleFile.path,
          line,
          column,
        };
      };
      const readList = (value: AstNode | undefined, into: ContractReference[]): void => {
        if (value === undefined) return;
        let list = unwrap(value);
        if (list.type === 'Identifier' && constants.has(list['name'] as string)) list = unwrap(constants.get(list['name'] as string) as AstNode);
        if (list.type !== 'ArrayExpression') {
          unresolved.push(reference(list));
          return;
        }
        for (const element of list['elements'] as Array<AstNode | null>) {
          if (element === null) continue;
          const entry = reference(element);
          if (element.type === 'SpreadElement' || entry.folder === undefined) unresolved.push(entry);
          else into.push(entry);
        }
      };
      walk(moduleFile.source.program, (node) => {
        if (!isCallTo(node, 'defineModule')) return;
        const argument = (node['arguments'] as AstNode[])[0];
        if (argument === undefined) return;
        const spec = unwrap(argument);
        if (spec.type !== 'ObjectExpression') return;
        declared = true;
        const properties = objectProperties(spec);
        readList(properties.get('dependsOn')?.['value'] as AstNode | undefined, dependsOn);
        readList(properties.get('subscribesTo')?.['value'] as AstNode | undefined, subscribesTo);
        const create = properties.get('create')?.['value'];
        if (isNode(create)) collectHandledEvents(create, handledEvents);
      });
    }
    const { gets, calls } = collectClientUse(tree, folder.folder);
    result.set(folder.folder, { folder: folder.folder, declared, dependsOn, subscribesTo, unresolved, gets, calls, handledEvents });
  }
  return result;
}

/** `events: { orders: { orderPlaced: …, orderCancelled: { handle } } }` anywhere in `create`. */
function collectHandledEvents(create: AstNode, into: Map<string, string[]>): void {
  walk(create, (node) => {
    if (node.type !== 'Property' || keyName(node['key']) !== 'events') return;
    const value = unwrap(node['value'] as AstNode);
    for (const [contractName, property] of objectProperties(value)) {
      const handlers = unwrap(property['value'] as AstNode);
      const names = [...objectProperties(handlers).keys()];
      const known = into.get(contractName) ?? [];
      into.set(contractName, [...known, ...names.filter((name) => !known.includes(name))]);
    }
  });
}

/**
 * Finds `get(contract)` calls in every file of a module, and the operations called on the
 * clients they return: `const stock = get(inventory); stock.reserve(…)`, `this.stock = get(inventory)`,
 * and `get(inventory).reserve(…)`. A client passed on to another function or class is also
 * followed when that function's parameter or that class's field is typed `Client<typeof contract>`.
 */
function collectClientUse(tree: SourceTree, folder: string): { gets: ContractReference[]; calls: OperationCall[] } {
  const gets: ContractReference[] = [];
  const calls: OperationCall[] = [];
  for (const file of tree.files.values()) {
    if (file.moduleFolder !== folder || file.path.endsWith(`/${ProjectLayout.CONTRACT_FILE}`)) continue;
    const clientNames = new Map<string, string>();
    const clientFields = new Map<string, string>();
    const getTarget = (node: AstNode): string | undefined => {
      const call = unwrap(node);
      if (!isCallTo(call, 'get')) return undefined;
      const argument = (call['arguments'] as AstNode[])[0];
      if (argument === undefined) return undefined;
      const target = contractFolderOf(tree, file, argument);
      return target !== undefined && target !== folder ? target : undefined;
    };
    const typedClient = (annotation: unknown): string | undefined => {
      // Client<typeof inventory>
      if (!isNode(annotation)) return undefined;
      const type = annotation.type === 'TSTypeAnnotation' ? (annotation['typeAnnotation'] as AstNode) : annotation;
      if (type.type !== 'TSTypeReference' || keyName(type['typeName']) !== 'Client') return undefined;
      const argument = ((type['typeArguments'] as AstNode | null)?.['params'] as AstNode[] | undefined)?.[0];
      if (argument?.type !== 'TSTypeQuery') return undefined;
      const target = contractFolderOf(tree, file, argument['exprName'] as AstNode);
      return target !== undefined && target !== folder ? target : undefined;
    };
    walk(file.source.program, (node) => {
      if (isCallTo(node, 'get')) {
        const argument = (node['arguments'] as AstNode[])[0];
        const target = argument === undefined ? undefined : contractFolderOf(tree, file, argument);
        if (argument !== undefined && target !== undefined && target !== folder) {
          const { line, column } = file.source.position(node.start);
          gets.push({ folder: target, text: file.source.text.slice(node.start, node.end), file: file.path, line, column });
        }
      }
      if (node.type === 'VariableDeclarator') {
        const id = node['id'] as AstNode;
        const init = node['init'] as AstNode | null;
        const target = (init ? getTarget(init) : undefined) ?? typedClient(id['typeAnnotation']);
        if (id.type === 'Identifier' && target !== undefined) clientNames.set(id['name'] as string, target);
      } else if (node.type === 'AssignmentExpression') {
        const left = node['left'] as AstNode;
        const target = getTarget(node['right'] as AstNode);
        if (target === undefined) return;
        if (left.type === 'Identifier') clientNames.set(left['name'] as string, target);
        else if (left.type === 'MemberExpression' && unwrap(left['object'] as AstNode).type === 'ThisExpression') {
          const field = keyName(left['property']);
          if (field !== undefined) clientFields.set(field, target);
        }
      } else if (
        node.type === 'Identifier' ||
        node.type === 'PropertyDefinition' ||
        node.type === 'TSParameterProperty'
      ) {
        // Parameters and fields typed Client<typeof contract>.
        const holder = node.type === 'TSParameterProperty' ? (node['parameter'] as AstNode) : node;
        const name = node.type === 'PropertyDefinition' ? keyName(node['key']) : keyName(holder);
        const target = typedClient(holder['typeAnnotation']);
        if (name === undefined || target === undefined) return;
        if (node.type === 'Identifier') clientNames.set(name, target);
        else clientFields.set(name, target);
      }
    });
    walk(file.source.program, (node) => {
      if (node.type !== 'CallExpression') return;
      const callee = unwrap(node['callee'] as AstNode);
      if (callee.type !== 'MemberExpression' || callee['computed'] === true) return;
      const operation = keyName(callee['property']);
      if (operation === undefined) return;
      const object = unwrap(callee['object'] as AstNode);
      let target: string | undefined;
      if (object.type === 'Identifier') target = clientNames.get(object['name'] as string);
      else if (object.type === 'MemberExpression' && unwrap(object['object'] as AstNode).type === 'ThisExpression') {
        const field = keyName(object['property']);
        target = field === undefined ? undefined : clientFields.get(field);
      } else target = getTarget(object);
      if (target !== undefined) {
        calls.push({ folder: target, operation, file: file.path, line: file.source.position(node.start).line, start: node.start });
      }
    });
  }
  return { gets, calls };
}
