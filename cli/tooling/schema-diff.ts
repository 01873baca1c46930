/**
 * Compares two JSON Schemas (as zod 4's `z.toJSONSchema` writes them) and says, for each
 * difference, whether the new schema accepts more values (wider), fewer (narrower), or
 * different ones (both). Whether that breaks anyone depends on who reads the value: a wider
 * input is compatible, a wider output is not. Anything not understood counts as both.
 * Reading one schema (references, types, union members, canonical text) is in json-schema.ts.
 */
import { IGNORED, alternativesOf, canonical, resolveRef, typesOf, type JsonSchema, type SchemaObject } from './json-schema.js';

export type { JsonSchema } from './json-schema.js';

/** Where a schema sits: callers write inputs; callers read outputs, event payloads and error data. */
export const SchemaPosition = {
  /** Values the module receives (operation input). Narrowing breaks callers. */
  INPUT: 'input',
  /** Values the module sends (operation output, event payload, error data). Widening breaks readers. */
  OUTPUT: 'output',
} as const;

/** A {@link SchemaPosition} value. */
export type SchemaPosition = (typeof SchemaPosition)[keyof typeof SchemaPosition];

/** How the set of valid values changed. */
export type Direction = 'wider' | 'narrower' | 'both';

/** One difference between two schemas. */
export interface SchemaDifference {
  /** JSON-path-like location inside the schema's value, such as `.lines[].quantity`. */
  readonly path: string;
  readonly direction: Direction;
  /** What changed, in words: `new required field "giftWrap"`. */
  readonly what: string;
}

/** True when a difference at this position breaks existing callers or readers. */
export function isBreaking(direction: Direction, position: SchemaPosition): boolean {
  if (direction === 'both') return true;
  return position === SchemaPosition.INPUT ? direction === 'narrower' : direction === 'wider';
}

const LOWER_BOUNDS = ['minimum', 'exclusiveMinimum', 'minLength', 'minItems', 'minProperties'];
const UPPER_BOUNDS = ['maximum', 'exclusiveMaximum', 'maxLength', 'maxItems', 'maxProperties'];
const HANDLED = new Set([
  ...IGNORED,
  ...LOWER_BOUNDS,
  ...UPPER_BOUNDS,
  'type',
  'enum',
  'const',
  'properties',
  'required',
  'additionalProperties',
  'propertyNames',
  'items',
  'prefixItems',
  'anyOf',
  'oneOf',
  'pattern',
  'format',
  'contentEncoding',
  'contentMediaType',
  'multipleOf',
  'uniqueItems',
  '$ref',
]);

interface Context {
  readonly oldRoot: JsonSchema;
  readonly newRoot: JsonSchema;
  readonly position: SchemaPosition;
  readonly out: SchemaDifference[];
  /** Pairs of `$ref`s being compared, to stop on recursive schemas. */
  readonly active: Set<string>;
}

/**
 * Lists the differences between an old and a new schema.
 *
 * @example
 * ```ts
 * const old = z.toJSONSchema(z.object({ sku: z.string() }), { io: 'input' });
 * const next = z.toJSONSchema(z.object({ sku: z.string(), note: z.string() }), { io: 'input' });
 * diffSchemas(old, next, 'input'); // [{ path: '.note', direction: 'narrower', what: 'new required field "note"' }]
 * ```
 */
export function diffSchemas(oldSchema: JsonSchema, newSchema: JsonSchema, position: SchemaPosition): SchemaDifference[] {
  const context: Context = { oldRoot: oldSchema, newRoot: newSchema, position, out: [], active: new Set() };
  compare(oldSchema, newSchema, '', context);
  return context.out;
}

function record(context: Context, path: string, direction: Direction, what: string): void {
  context.out.push({ path, direction, what });
}

function describeType(root: JsonSchema, node: JsonSchema): string {
  const resolved = resolveRef(root, node).node;
  if (typeof resolved === 'boolean') return resolved ? 'anything' : 'nothing';
  if (resolved['const'] !== undefined) return JSON.stringify(resolved['const']);
  const types = typesOf(resolved);
  return types ? [...types].join(' | ') : 'a schema';
}

/** A key pairing union members across versions: the type, plus `const` discriminators of objects. */
function variantKey(root: JsonSchema, node: JsonSchema): string {
  const resolved = resolveRef(root, node).node;
  if (typeof resolved === 'boolean') return String(resolved);
  const types = typesOf(resolved);
  const type = types ? [...types].sort().join('|') : resolved['const'] !== undefined ? 'const' : '?';
  const properties = resolved['properties'] as Record<string, JsonSchema> | undefined;
  if (!properties) return type;
  const discriminators = Object.entries(properties)
    .map(([name, schema]) => [name, resolveRef(root, schema).node] as const)
    .filter(([, schema]) => typeof schema === 'object' && schema['const'] !== undefined)
    .map(([name, schema]) => `${name}=${JSON.stringify((schema as SchemaObject)['const'])}`)
    .sort();
  return `${type}${discriminators.length > 0 ? `(${discriminators.join(',')})` : ''}`;
}

function compare(oldNode: JsonSchema, newNode: JsonSchema, path: string, context: Context): void {
  const oldResolved = resolveRef(context.oldRoot, oldNode);
  const newResolved = resolveRef(context.newRoot, newNode);
  if (oldResolved.ref !== undefined || newResolved.ref !== undefined) {
    const key = `${oldResolved.ref ?? path}|${newResolved.ref ?? path}`;
    if (context.active.has(key)) return;
    context.active.add(key);
    try {
      compareResolved(oldResolved.node, newResolved.node, path, context);
    } finally {
      context.active.delete(key);
    }
    return;
  }
  compareResolved(oldResolved.node, newResolved.node, path, context);
}

function compareResolved(oldNode: JsonSchema, newNode: JsonSchema, path: string, context: Context): void {
  if (canonical(context.oldRoot, oldNode) === canonical(context.newRoot, newNode)) return;
  if (typeof oldNode === 'boolean' || typeof newNode === 'boolean') {
    if (oldNode === true) record(context, path, 'narrower', 'was any value, now restricted');
    else if (newNode === true) record(context, path, 'wider', 'now accepts any value');
    else record(context, path, 'both', 'schema replaced');
    return;
  }
  const oldAlternatives = alternativesOf(context.oldRoot, oldNode);
  const newAlternatives = alternativesOf(context.newRoot, newNode);
  if (oldAlternatives.length > 1 || newAlternatives.length > 1) {
    compareUnions(oldAlternatives, newAlternatives, path, context);
    return;
  }
  compareTypes(oldNode, newNode, path, context);
  compareEnums(oldNode, newNode, path, context);
  compareBounds(oldNode, newNode, path, context);
  compareStringRules(oldNode, newNode, path, context);
  compareObjects(oldNode, newNode, path, context);
  compareArrays(oldNode, newNode, path, context);
  const unknown = new Set([...Object.keys(oldNode), ...Object.keys(newNode)].filter((key) => !HANDLED.has(key)));
  for (const keyword of unknown) {
    if (canonical(context.oldRoot, oldNode[keyword]) !== canonical(context.newRoot, newNode[keyword])) {
      record(context, path, 'both', `"${keyword}" changed`);
    }
  }
}

function compareUnions(oldAlternatives: JsonSchema[], newAlternatives: JsonSchema[], path: string, context: Context): void {
  const remainingNew = [...newAlternatives];
  const unmatchedOld: JsonSchema[] = [];
  for (const alternative of oldAlternatives) {
    const text = canonical(context.oldRoot, alternative);
    const index = remainingNew.findIndex((candidate) => canonical(context.newRoot, candidate) === text);
    if (index >= 0) remainingNew.splice(index, 1);
    else unmatchedOld.push(alternative);
  }
  for (const alternative of unmatchedOld) {
    const key = variantKey(context.oldRoot, alternative);
    const index = remainingNew.findIndex((candidate) => variantKey(context.newRoot, candidate) === key);
    if (index >= 0) {
      const [partner] = remainingNew.splice(index, 1);
      const label = oldAlternatives.length > 1 ? `${path}<${key}>` : path;
      compare(alternative, partner as JsonSchema, label, context);
    } else {
      record(context, path, 'narrower', `variant ${describeVariant(context.oldRoot, alternative, key)} removed`);
    }
  }
  for (const alternative of remainingNew) {
    record(context, path, 'wider', `variant ${describeVariant(context.newRoot, alternative, variantKey(context.newRoot, alternative))} added`);
  }
}

function describeVariant(root: JsonSchema, node: JsonSchema, key: string): string {
  const type = describeType(root, node);
  return key.includes('(') ? key : type;
}

function compareTypes(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  const oldTypes = typesOf(oldNode);
  const newTypes = typesOf(newNode);
  if (oldTypes === undefined && newTypes === undefined) return;
  if (oldTypes === undefined) {
    record(context, path, 'narrower', `type restricted to ${[...(newTypes as Set<string>)].join(' | ')}`);
    return;
  }
  if (newTypes === undefined) {
    record(context, path, 'wider', `type no longer restricted (was ${[...oldTypes].join(' | ')})`);
    return;
  }
  const covers = (types: Set<string>, type: string) => types.has(type) || (type === 'integer' && types.has('number'));
  const lost = [...oldTypes].filter((type) => !covers(newTypes, type));
  const gained = [...newTypes].filter((type) => !covers(oldTypes, type));
  const change = `type ${[...oldTypes].join(' | ')} → ${[...newTypes].join(' | ')}`;
  if (lost.length > 0 && gained.length > 0) record(context, path, 'both', change);
  else if (lost.length > 0) record(context, path, 'narrower', lost.includes('null') && lost.length === 1 ? 'no longer nullable' : change);
  else if (gained.length > 0) record(context, path, 'wider', gained.includes('null') && gained.length === 1 ? 'now nullable' : change);
}

function compareEnums(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  const oldValues = valuesOf(oldNode);
  const newValues = valuesOf(newNode);
  if (oldValues === undefined && newValues === undefined) return;
  if (oldValues === undefined) {
    record(context, path, 'narrower', `restricted to ${[...(newValues as Set<string>)].join(', ')}`);
    return;
  }
  if (newValues === undefined) {
    record(context, path, 'wider', `no longer restricted to ${[...oldValues].join(', ')}`);
    return;
  }
  const removed = [...oldValues].filter((value) => !newValues.has(value));
  const added = [...newValues].filter((value) => !oldValues.has(value));
  if (removed.length > 0) record(context, path, 'narrower', `value${removed.length === 1 ? '' : 's'} ${removed.join(', ')} removed`);
  if (added.length > 0) record(context, path, 'wider', `value${added.length === 1 ? '' : 's'} ${added.join(', ')} added`);
}

function valuesOf(node: SchemaObject): Set<string> | undefined {
  if (node['const'] !== undefined) return new Set([JSON.stringify(node['const'])]);
  if (Array.isArray(node['enum'])) return new Set((node['enum'] as unknown[]).map((value) => JSON.stringify(value)));
  return undefined;
}

function compareBounds(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  for (const [keywords, lower] of [
    [LOWER_BOUNDS, true],
    [UPPER_BOUNDS, false],
  ] as const) {
    for (const keyword of keywords) {
      const before = oldNode[keyword];
      const after = newNode[keyword];
      if (before === after) continue;
      if (typeof before !== 'number') {
        record(context, path, 'narrower', `${keyword} ${String(after)} added`);
      } else if (typeof after !== 'number') {
        record(context, path, 'wider', `${keyword} ${before} removed`);
      } else {
        const tighter = lower ? after > before : after < before;
        record(context, path, tighter ? 'narrower' : 'wider', `${keyword} ${before} → ${after}`);
      }
    }
  }
  if (oldNode['multipleOf'] !== newNode['multipleOf']) {
    const before = oldNode['multipleOf'];
    const after = newNode['multipleOf'];
    if (typeof before !== 'number') record(context, path, 'narrower', `multipleOf ${String(after)} added`);
    else if (typeof after !== 'number') record(context, path, 'wider', `multipleOf ${before} removed`);
    else if (after % before === 0) record(context, path, 'narrower', `multipleOf ${before} → ${after}`);
    else if (before % after === 0) record(context, path, 'wider', `multipleOf ${before} → ${after}`);
    else record(context, path, 'both', `multipleOf ${before} → ${after}`);
  }
  if (Boolean(oldNode['uniqueItems']) !== Boolean(newNode['uniqueItems'])) {
    record(context, path, newNode['uniqueItems'] ? 'narrower' : 'wider', newNode['uniqueItems'] ? 'items must now be unique' : 'items may now repeat');
  }
}

function compareStringRules(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  for (const keyword of ['pattern', 'format', 'contentEncoding', 'contentMediaType']) {
    const before = oldNode[keyword];
    const after = newNode[keyword];
    if (before === after) continue;
    if (before === undefined) record(context, path, 'narrower', `${keyword} ${JSON.stringify(after)} added`);
    else if (after === undefined) record(context, path, 'wider', `${keyword} ${JSON.stringify(before)} removed`);
    else record(context, path, 'both', `${keyword} ${JSON.stringify(before)} → ${JSON.stringify(after)}`);
  }
}

function closed(node: SchemaObject): boolean {
  return node['additionalProperties'] === false;
}

function compareObjects(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  const oldProperties = (oldNode['properties'] ?? {}) as Record<string, JsonSchema>;
  const newProperties = (newNode['properties'] ?? {}) as Record<string, JsonSchema>;
  const oldRequired = new Set((oldNode['required'] ?? []) as string[]);
  const newRequired = new Set((newNode['required'] ?? []) as string[]);
  const input = context.position === SchemaPosition.INPUT;
  const names = [...new Set([...Object.keys(oldProperties), ...Object.keys(newProperties)])];
  for (const name of names) {
    const at = `${path}.${name}`;
    const before = oldProperties[name];
    const after = newProperties[name];
    if (before === undefined && after !== undefined) {
      if (!input) record(context, at, 'narrower', `new field "${name}"`);
      else if (newRequired.has(name)) record(context, at, 'narrower', `new required field "${name}"`);
      else record(context, at, 'wider', `new optional field "${name}"`);
    } else if (before !== undefined && after === undefined) {
      if (!input) record(context, at, 'wider', `field "${name}" removed`);
      else if (closed(newNode)) record(context, at, 'narrower', `field "${name}" removed, and unknown fields are refused`);
      else record(context, at, 'wider', `field "${name}" removed (ignored when old callers still send it)`);
    } else if (before !== undefined && after !== undefined) {
      if (oldRequired.has(name) && !newRequired.has(name)) {
        record(context, at, 'wider', input ? `field "${name}" is now optional` : `field "${name}" may now be missing`);
      } else if (!oldRequired.has(name) && newRequired.has(name)) {
        record(context, at, 'narrower', input ? `field "${name}" is now required` : `field "${name}" is now always present`);
      }
      compare(before, after, at, context);
    }
  }
  const oldExtra = oldNode['additionalProperties'];
  const newExtra = newNode['additionalProperties'];
  const isSchema = (value: unknown) => typeof value === 'object' && value !== null;
  if (isSchema(oldExtra) || isSchema(newExtra)) {
    // Records: the values' schema.
    compare((oldExtra ?? true) as JsonSchema, (newExtra ?? true) as JsonSchema, `${path}{}`, context);
  } else if (input && closed(oldNode) !== closed(newNode)) {
    // Outputs: readers ignore unknown fields, so only inputs care whether extra fields are refused.
    record(context, path, closed(newNode) ? 'narrower' : 'wider', closed(newNode) ? 'unknown fields are now refused' : 'unknown fields are now accepted');
  }
  const oldNames = oldNode['propertyNames'];
  const newNames = newNode['propertyNames'];
  if (oldNames !== undefined || newNames !== undefined) {
    compare((oldNames ?? true) as JsonSchema, (newNames ?? true) as JsonSchema, `${path}{key}`, context);
  }
}

function compareArrays(oldNode: SchemaObject, newNode: SchemaObject, path: string, context: Context): void {
  const oldItems = oldNode['items'];
  const newItems = newNode['items'];
  if (oldItems !== undefined || newItems !== undefined) {
    compare((oldItems ?? true) as JsonSchema, (newItems ?? true) as JsonSchema, `${path}[]`, context);
  }
  const oldPrefix = (oldNode['prefixItems'] ?? []) as JsonSchema[];
  const newPrefix = (newNode['prefixItems'] ?? []) as JsonSchema[];
  const length = Math.max(oldPrefix.length, newPrefix.length);
  for (let index = 0; index < length; index++) {
    const before = oldPrefix[index];
    const after = newPrefix[index];
    if (before !== undefined && after !== undefined) compare(before, after, `${path}[${index}]`, context);
  }
}
