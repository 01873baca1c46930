/**
 * The gateway's answer serializer: per operation, a JSON serializer compiled by
 * fast-json-stringify (fastify's own) from the operation output's JSON Schema, for the shapes it
 * writes exactly as `JSON.stringify` would; `JSON.stringify` itself for every other shape.
 *
 * Why it is faithful: the output was parsed by the operation's zod schema before it gets here
 * (by the callee in process, by the caller over a transport), and zod's parse of an object makes
 * a new object with the schema's keys only, in the schema's order, so the compiled serializer,
 * generated from that same schema (`z.toJSONSchema(schema, { io: 'output' })`), meets no key it
 * does not know and writes the keys in the order `JSON.stringify` would. A schema is compiled only
 * when every part of it is one of the shapes below; anything else (unions other than "or null",
 * records, loose or catch-all objects, tuples, refs and cycles, `z.any()`, dates, bigints,
 * transforms, keys that are array indexes, which `JSON.stringify` writes first, and `__proto__`)
 * falls back.
 */
import { createRequire } from 'node:module';
import { z } from 'zod';

/** Turns an operation's (already validated) output into the JSON body of its answer. */
export type OutputSerializer = (output: unknown) => string;

/** An operation's serializer, and whether it was compiled. */
export interface CompiledSerializer {
  readonly serialize: OutputSerializer;
  /** True when fast-json-stringify writes the output; false when `JSON.stringify` does. */
  readonly compiled: boolean;
  /** Why the schema was not compiled (when `compiled` is false). */
  readonly reason?: string;
}

type JsonSchema = { readonly [key: string]: unknown };
type BuildSerializer = (schema: JsonSchema) => (value: unknown) => string;

// fastify's own fast-json-stringify (a dependency of fastify): the version fastify's response
// schemas use, without pinning a second one.
const requireFromFastify = createRequire(createRequire(import.meta.url).resolve('fastify'));
let build: BuildSerializer | undefined;
const buildSerializer = (): BuildSerializer => (build ??= requireFromFastify('fast-json-stringify') as BuildSerializer);

/** `JSON.stringify`, the fallback (and the reference the compiled serializers are held to). */
const stringify: OutputSerializer = (output) => JSON.stringify(output);

/** A canonical array index ("0", "17"): such keys come first in a JS object, whatever the schema's order. */
const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/** Thrown while reducing a schema: the part that cannot be compiled faithfully. */
class Unsupported extends Error {}

const PRIMITIVES = new Set(['string', 'number', 'integer', 'boolean', 'null']);

/**
 * The part of `schema` fast-json-stringify needs (types, properties, required, items), with
 * validation keywords left out (zod has validated) and `integer` written as `number` (the same
 * digits for the integers zod lets through); throws {@link Unsupported} for any other shape.
 */
function reduce(schema: unknown, path: string): JsonSchema {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Unsupported(`${path} is not a schema`);
  const node = schema as JsonSchema;
  for (const keyword of ['$ref', '$defs', 'oneOf', 'allOf', 'not', 'if', 'prefixItems', 'patternProperties', 'propertyNames', 'dependentSchemas']) {
    if (keyword in node) throw new Unsupported(`${path} has ${keyword}`);
  }
  if (Array.isArray(node.anyOf)) {
    // zod's nullable of a non-primitive: anyOf [schema, { type: 'null' }].
    const options = node.anyOf as unknown[];
    const nulls = options.filter((option) => isNullSchema(option));
    const others = options.filter((option) => !isNullSchema(option));
    if (options.length !== 2 || nulls.length !== 1 || others.length !== 1 || Object.keys(node).length !== 1) {
      throw new Unsupported(`${path} is a union`);
    }
    const inner = reduce(others[0], path);
    if (Array.isArray(inner.type)) throw new Unsupported(`${path} is a union`);
    return { ...inner, type: [inner.type, 'null'] };
  }
  const type = node.type;
  if (Array.isArray(type)) {
    // zod's nullable of a primitive: type [t, 'null'].
    const [first, second, ...rest] = type as unknown[];
    if (rest.length > 0 || second !== 'null' || typeof first !== 'string' || !PRIMITIVES.has(first) || first === 'null') {
      throw new Unsupported(`${path} is a union of ${type.join(', ')}`);
    }
    return { type: [first === 'integer' ? 'number' : first, 'null'] };
  }
  switch (type) {
    case 'string':
    case 'boolean':
    case 'null':
    case 'number':
      return { type };
    case 'integer':
      return { type: 'number' };
    case 'array': {
      if (node.items === undefined || typeof node.items === 'boolean') throw new Unsupported(`${path} is an array of anything`);
      return { type: 'array', items: reduce(node.items, `${path}[]`) };
    }
    case 'object': {
      if (node.additionalProperties !== false) throw new Unsupported(`${path} is an object that keeps unknown keys`);
      const given = (node.properties ?? {}) as JsonSchema;
      const properties: Record<string, JsonSchema> = {};
      for (const key of Object.keys(given)) {
        if (ARRAY_INDEX.test(key)) throw new Unsupported(`${path} has key "${key}", an array index`);
        // Assigning "__proto__" sets an object's prototype, not a key: leave such an object to JSON.stringify.
        if (key === '__proto__') throw new Unsupported(`${path} has key "__proto__"`);
        properties[key] = reduce(given[key], `${path}.${key}`);
      }
      // fast-json-stringify writes the keys listed in `required` before the others (a stable sort,
      // index.js's buildInnerObject), where JSON.stringify keeps the schema's order; so only the
      // leading run of required keys is passed as required, and a required key after an optional
      // one is written as optional: skipped when undefined, which zod's parse has ruled out.
      const listed = new Set(Array.isArray(node.required) ? (node.required as string[]) : []);
      const keys = Object.keys(properties);
      const lead = keys.findIndex((key) => !listed.has(key));
      const required = lead === -1 ? keys : keys.slice(0, lead);
      return { type: 'object', properties, required, additionalProperties: false };
    }
    default:
      throw new Unsupported(`${path} has no single type`);
  }
}

function isNullSchema(schema: unknown): boolean {
  return typeof schema === 'object' && schema !== null && (schema as JsonSchema).type === 'null' && Object.keys(schema).length === 1;
}

/**
 * The serializer of an operation whose output schema is `schema`: compiled by fast-json-stringify
 * when the schema is one it writes faithfully, else `JSON.stringify`. A compiled serializer that
 * throws on a value (it never should, for a value the schema parsed) falls back to
 * `JSON.stringify` for that value.
 */
export function compileOutputSerializer(schema: z.ZodType): CompiledSerializer {
  let reduced: JsonSchema;
  try {
    const generated = z.toJSONSchema(schema, { io: 'output', unrepresentable: 'throw', cycles: 'throw', reused: 'inline' });
    reduced = reduce(generated, 'output');
  } catch (error) {
    return { serialize: stringify, compiled: false, reason: error instanceof Error ? error.message : String(error) };
  }
  let compiled: (value: unknown) => string;
  try {
    compiled = buildSerializer()(reduced);
  } catch (error) {
    return { serialize: stringify, compiled: false, reason: `fast-json-stringify refused it: ${error instanceof Error ? error.message : String(error)}` };
  }
  const serialize: OutputSerializer = (output) => {
    try {
      return compiled(output);
    } catch {
      return JSON.stringify(output);
    }
  };
  return { serialize, compiled: true };
}
