/**
 * Source reading for the architecture tools: every file is parsed with oxc-parser (a real
 * TypeScript parser producing an ESTree AST), never scanned with regular expressions.
 *
 * Why oxc-parser: the installed `typescript` is TypeScript 7 (the native compiler), whose
 * package no longer exposes the JavaScript compiler API (`ts.createSourceFile`), and
 * `@typescript-eslint/typescript-estree` is built on that very API. es-module-lexer sees
 * imports only, while the checks also read `defineModule({ dependsOn })` and `get(contract)`
 * calls. oxc-parser parses TypeScript natively, keeps up with the language, returns a
 * standard ESTree/TS-ESTree tree plus the import and export records the checks need.
 */
import { readFileSync } from 'node:fs';
import { parseSync, visitorKeys } from 'oxc-parser';

/** An AST node as oxc-parser returns it (ESTree with `start`/`end` UTF-16 offsets). */
export interface AstNode {
  readonly type: string;
  readonly start: number;
  readonly end: number;
  readonly [key: string]: unknown;
}

/** How a file refers to another one. */
export const ImportKind = {
  /** `import … from '…'` or a side-effect `import '…'`. */
  IMPORT: 'import',
  /** `export … from '…'`. */
  REEXPORT: 're-export',
  /** `import('…')`. */
  DYNAMIC: 'dynamic',
  /** `require('…')`. */
  REQUIRE: 'require',
} as const;

/** An {@link ImportKind} value. */
export type ImportKind = (typeof ImportKind)[keyof typeof ImportKind];

/** One name an import binds locally. */
export interface ImportBinding {
  /** The local name. */
  readonly local: string;
  /** The imported name: an export name, `default`, or `*` for a namespace import. */
  readonly imported: string;
  readonly typeOnly: boolean;
}

/** One reference from a file to another module specifier. */
export interface ImportReference {
  readonly kind: ImportKind;
  /** The specifier as written, or `undefined` for a dynamic import whose specifier is computed. */
  readonly specifier: string | undefined;
  /** The source text of the whole statement or call, for messages. */
  readonly text: string;
  readonly line: number;
  readonly column: number;
  /** True when the whole reference is erased at compile time (`import type`, `export type`). */
  readonly typeOnly: boolean;
  readonly bindings: readonly ImportBinding[];
  /** For re-exports: the names exported (`*` for `export * from`). */
  readonly exported: readonly string[];
}

/** A parsed source file. */
export interface SourceFile {
  /** Path relative to the project root, with `/` separators. */
  readonly path: string;
  readonly absolutePath: string;
  readonly text: string;
  readonly program: AstNode;
  readonly imports: readonly ImportReference[];
  /** Local names exported by `export { a, b as c }` without `from` (local name → exported names). */
  readonly localExports: ReadonlyMap<string, readonly string[]>;
  /** Syntax errors, if the file does not parse cleanly. */
  readonly errors: readonly string[];
  /** 1-based line and column of a UTF-16 offset. */
  position(offset: number): { line: number; column: number };
}

/**
 * Parses one file.
 *
 * @example
 * ```ts
 * const file = parseSource('/repo', 'modules/orders/module.ts');
 * for (const reference of file.imports) console.log(reference.specifier, reference.line);
 * ```
 */
export function parseSource(root: string, path: string, text?: string): SourceFile {
  const absolutePath = `${root.replace(/\/$/, '')}/${path}`;
  const source = text ?? readFileSync(absolutePath, 'utf8');
  const result = parseSync(path, source, { sourceType: 'module', preserveParens: false });
  const program = result.program as unknown as AstNode;
  const lineStarts = [0];
  for (let index = 0; index < source.length; index++) {
    if (source.charCodeAt(index) === 10) lineStarts.push(index + 1);
  }
  const position = (offset: number): { line: number; column: number } => {
    let low = 0;
    let high = lineStarts.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if ((lineStarts[middle] as number) <= offset) low = middle;
      else high = middle - 1;
    }
    return { line: low + 1, column: offset - (lineStarts[low] as number) + 1 };
  };
  const { imports, localExports } = collectReferences(program, source, position);
  return {
    path,
    absolutePath,
    text: source,
    program,
    imports,
    localExports,
    errors: result.errors.map((error) => error.message),
    position,
  };
}

/**
 * Visits every node of a tree, depth first, with the chain of its ancestors (nearest last).
 *
 * @example
 * ```ts
 * walk(file.program, (node) => { if (node.type === 'CallExpression') count++; });
 * ```
 */
export function walk(root: AstNode, visit: (node: AstNode, ancestors: readonly AstNode[]) => void): void {
  const ancestors: AstNode[] = [];
  const visitNode = (node: AstNode): void => {
    visit(node, ancestors);
    const keys = (visitorKeys as Record<string, readonly string[] | undefined>)[node.type];
    if (keys === undefined) return;
    ancestors.push(node);
    for (const key of keys) {
      const child = node[key];
      if (Array.isArray(child)) {
        for (const item of child) if (isNode(item)) visitNode(item);
      } else if (isNode(child)) {
        visitNode(child);
      }
    }
    ancestors.pop();
  };
  visitNode(root);
}

/** True for an AST node. */
export function isNode(value: unknown): value is AstNode {
  return typeof value === 'object' && value !== null && typeof (value as AstNode).type === 'string';
}

/** The value of a string literal or of a template literal without expressions. */
export function stringValue(node: unknown): string | undefined {
  if (!isNode(node)) return undefined;
  if (node.type === 'Literal' && typeof node['value'] === 'string') return node['value'];
  if (node.type === 'TemplateLiteral') {
    const expressions = node['expressions'] as unknown[];
    const quasis = node['quasis'] as Array<{ value: { cooked: string | null } }>;
    if (expressions.length === 0 && quasis.length === 1) return quasis[0]?.value.cooked ?? undefined;
  }
  return undefined;
}

/** The name of an identifier, a string-literal key, or a non-computed property key. */
export function keyName(node: unknown): string | undefined {
  if (!isNode(node)) return undefined;
  if (node.type === 'Identifier') return node['name'] as string;
  return stringValue(node);
}

/** Strips TypeScript wrappers (`x as const`, `x satisfies T`, `x!`) and parentheses. */
export function unwrap(node: AstNode): AstNode {
  let current = node;
  for (;;) {
    if (
      current.type === 'TSAsExpression' ||
      current.type === 'TSSatisfiesExpression' ||
      current.type === 'TSNonNullExpression' ||
      current.type === 'ParenthesizedExpression'
    ) {
      current = current['expression'] as AstNode;
    } else {
      return current;
    }
  }
}

/** The properties of an object literal, by key (spreads and computed keys are skipped). */
export function objectProperties(node: AstNode): Map<string, AstNode> {
  const properties = new Map<string, AstNode>();
  if (node.type !== 'ObjectExpression') return properties;
  for (const property of node['properties'] as AstNode[]) {
    if (property.type !== 'Property' || property['computed'] === true) continue;
    const name = keyName(property['key']);
    if (name !== undefined) properties.set(name, property);
  }
  return properties;
}

function moduleExportName(node: unknown): string {
  return keyName(node) ?? 'default';
}

function collectReferences(
  program: AstNode,
  text: string,
  position: (offset: number) => { line: number; column: number },
): { imports: ImportReference[]; localExports: Map<string, string[]> } {
  const imports: ImportReference[] = [];
  const localExports = new Map<string, string[]>();
  const snippet = (node: AstNode): string => text.slice(node.start, node.end).replace(/\s+/g, ' ').trim();
  const at = (node: AstNode) => position(node.start);

  for (const statement of program['body'] as AstNode[]) {
    if (statement.type === 'ImportDeclaration') {
      const typeOnly = statement['importKind'] === 'type';
      const bindings: ImportBinding[] = [];
      for (const specifier of statement['specifiers'] as AstNode[]) {
        const local = (specifier['local'] as AstNode)['name'] as string;
        const specifierTypeOnly = typeOnly || specifier['importKind'] === 'type';
        if (specifier.type === 'ImportNamespaceSpecifier') bindings.push({ local, imported: '*', typeOnly: specifierTypeOnly });
        else if (specifier.type === 'ImportDefaultSpecifier') bindings.push({ local, imported: 'default', typeOnly: specifierTypeOnly });
        else bindings.push({ local, imported: moduleExportName(specifier['imported']), typeOnly: specifierTypeOnly });
      }
      const allTypes = typeOnly || (bindings.length > 0 && bindings.every((binding) => binding.typeOnly));
      imports.push({
        kind: ImportKind.IMPORT,
        specifier: stringValue(statement['source']),
        text: snippet(statement),
        ...at(statement),
        typeOnly: allTypes,
        bindings,
        exported: [],
      });
    } else if (statement.type === 'ExportAllDeclaration' && statement['source'] !== null) {
      const exported = statement['exported'];
      imports.push({
        kind: ImportKind.REEXPORT,
        specifier: stringValue(statement['source']),
        text: snippet(statement),
        ...at(statement),
        typeOnly: statement['exportKind'] === 'type',
        bindings: [],
        exported: [exported ? moduleExportName(exported) : '*'],
      });
    } else if (statement.type === 'ExportNamedDeclaration') {
      const typeOnly = statement['exportKind'] === 'type';
      const specifiers = statement['specifiers'] as AstNode[];
      if (statement['source'] !== null && statement['source'] !== undefined) {
        const names = specifiers.map((specifier) => ({
          name: moduleExportName(specifier['exported']),
          typeOnly: typeOnly || specifier['exportKind'] === 'type',
        }));
        imports.push({
          kind: ImportKind.REEXPORT,
          specifier: stringValue(statement['source']),
          text: snippet(statement),
          ...at(statement),
          typeOnly: typeOnly || (names.length > 0 && names.every((name) => name.typeOnly)),
          bindings: [],
          exported: names.map((name) => name.name),
        });
      } else {
        for (const specifier of specifiers) {
          const local = keyName(specifier['local']);
          if (local === undefined) continue;
          const names = localExports.get(local) ?? [];
          names.push(moduleExportName(specifier['exported']));
          localExports.set(local, names);
        }
      }
    }
  }

  walk(program, (node) => {
    if (node.type === 'ImportExpression') {
      const source = node['source'] as AstNode;
      imports.push({
        kind: ImportKind.DYNAMIC,
        specifier: stringValue(source),
        text: snippet(node),
        ...at(node),
        typeOnly: false,
        bindings: [],
        exported: [],
      });
    } else if (node.type === 'CallExpression') {
      const callee = node['callee'] as AstNode;
      const args = node['arguments'] as AstNode[];
      if (callee.type === 'Identifier' && callee['name'] === 'require' && args.length === 1) {
        imports.push({
          kind: ImportKind.REQUIRE,
          specifier: stringValue(args[0]),
          text: snippet(node),
          ...at(node),
          typeOnly: false,
          bindings: [],
          exported: [],
        });
      }
    } else if (node.type === 'TSImportType') {
      // `typeof import('../inventory/store.js')` in a type position: erased, but still a reach
      // into another module's files.
      const argument = node['argument'] as AstNode | undefined;
      const literal = argument?.type === 'TSLiteralType' ? argument['literal'] : argument;
      const specifier = stringValue(literal) ?? stringValue(node['source']);
      if (specifier !== undefined) {
        imports.push({
          kind: ImportKind.DYNAMIC,
          specifier,
          text: snippet(node),
          ...at(node),
          typeOnly: true,
          bindings: [],
          exported: [],
        });
      }
    }
  });
  return { imports, localExports };
}
