/**
 * Reading a JSON Schema as zod 4's `z.toJSONSchema` writes it, for schema-diff.ts: following
 * `$ref`s inside the root, the `type` keyword as a set, the members of a union, and a
 * canonical text that makes two schemas comparable for equality.
 */

/** A JSON Schema node (or a boolean schema). */
export type JsonSchema = boolean | { readonly [keyword: string]: unknown };

/** A schema object (not a boolean schema). */
export type SchemaObject = { readonly [keyword: string]: unknown };

/** Keywords that do not change which values are valid (annotations, definitions). */
export const IGNORED = new Set(['$schema', '$id', '$defs', 'definitions', 'title', 'description', 'default', 'examples', '$comment', 'deprecated', 'readOnly', 'writeOnly']);

/** The node a chain of `$ref`s points to, and the last `$ref` followed (undefined when none). */
export function resolveRef(root: JsonSchema, node: JsonSchema): { node: JsonSchema; ref: string | undefined } {
  let current = node;
  let ref: string | undefined;
  for (let hops = 0; hops < 32 && typeof current === 'object' && typeof current['$ref'] === 'string'; hops++) {
    ref = current['$ref'] as string;
    current = lookup(root, ref) ?? {};
  }
  return { node: current, ref };
}

function lookup(root: JsonSchema, ref: string): JsonSchema | undefined {
  if (!ref.startsWith('#')) return undefined;
  let current: unknown = root;
  for (const part of ref.slice(1).split('/').filter(Boolean)) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return current as JsonSchema | undefined;
}

/** The `type` keyword as a set, undefined when the node does not restrict the type. */
export function typesOf(node: SchemaObject): Set<string> | undefined {
  const type = node['type'];
  if (typeof type === 'string') return new Set([type]);
  if (Array.isArray(type)) return new Set(type as string[]);
  return undefined;
}

/** The members of a union (`anyOf`/`oneOf`, nested ones flattened), else the node itself. */
export function alternativesOf(root: JsonSchema, node: JsonSchema): JsonSchema[] {
  const resolved = resolveRef(root, node).node;
  if (typeof resolved !== 'object') return [resolved];
  const options = (resolved['anyOf'] ?? resolved['oneOf']) as JsonSchema[] | undefined;
  if (!Array.isArray(options)) return [node];
  const rest = Object.keys(resolved).filter((key) => key !== 'anyOf' && key !== 'oneOf' && !IGNORED.has(key));
  if (rest.length > 0) return [node];
  return options.flatMap((option) => alternativesOf(root, option));
}

/** A canonical text of a schema with references inlined (recursion cut), for equality tests. */
export function canonical(root: JsonSchema, node: unknown, stack: readonly string[] = []): string {
  if (typeof node !== 'object' || node === null) return JSON.stringify(node);
  if (Array.isArray(node)) return `[${node.map((item) => canonical(root, item, stack)).join(',')}]`;
  const object = node as SchemaObject;
  if (typeof object['$ref'] === 'string') {
    const ref = object['$ref'] as string;
    if (stack.includes(ref)) return `{"$recursive":${stack.length - stack.indexOf(ref)}}`;
    return canonical(root, lookup(root, ref) ?? {}, [...stack, ref]);
  }
  const keys = Object.keys(object)
    .filter((key) => !IGNORED.has(key))
    .sort();
  return `{${keys.map((key) => `${JSON.stringify(key)}:${canonical(root, object[key], stack)}`).join(',')}}`;
}
