/**
 * The schema walker of `defineContract`: refuses, at the field, what JSON cannot carry
 * faithfully across a process (a Date, a bigint, a transform, a loose object, a shared default)
 * and says how to fix it. Reads zod's internal definitions (`_zod.def`), so it needs no import
 * of zod itself.
 */
const REFUSED: Record<string, string> = {
  bigint: 'bigint does not survive JSON; use z.string() with a digits regex or z.number().int()',
  date: 'Date does not survive JSON; use z.iso.datetime() (an ISO-8601 string)',
  map: 'Map does not survive JSON; use z.record() or an array of entries',
  set: 'Set does not survive JSON; use z.array()',
  symbol: 'symbols cannot cross a process',
  function: 'functions cannot cross a process',
  promise: 'promises cannot cross a process',
  undefined: 'undefined is dropped by JSON; use .optional() or z.null()',
  void: 'void is dropped by JSON; use z.null() or an empty object',
  nan: 'NaN becomes null in JSON',
  file: 'files cannot cross as JSON; send a URL or base64 string',
  custom: 'custom and instanceof schemas accept class instances that JSON cannot rebuild',
  any: 'any may hold values JSON cannot carry; use z.json() for arbitrary JSON',
  unknown: 'unknown may hold values JSON cannot carry; use z.json() for arbitrary JSON',
  transform: 'transforms make the wire shape differ from the type; keep contracts to plain shapes and transform inside the module',
  pipe: 'pipes and transforms make the wire shape differ from the type; keep contracts to plain shapes',
  prefault: 'prefault transforms the input; use .default() instead',
  catch: 'catch hides invalid data; validate strictly at the boundary',
};

type ZodInternals = {
  _zod: { def: Record<string, unknown> & { type: string } };
};

function isJsonValue(value: unknown): boolean {
  if (value === null) return true;
  const type = typeof value;
  if (type === 'string' || type === 'boolean') return true;
  if (type === 'number') return Number.isFinite(value as number);
  if (Array.isArray(value)) return value.every(isJsonValue);
  if (type === 'object') {
    const proto = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return false;
    return Object.values(value as object).every(isJsonValue);
  }
  return false;
}

/** True when two reads of a default share a nested object or array (a literal default). */
function sharesNestedValues(first: unknown, second: unknown): boolean {
  if (typeof first !== 'object' || first === null || typeof second !== 'object' || second === null) return false;
  for (const key of Object.keys(first)) {
    const a = (first as Record<string, unknown>)[key];
    const b = (second as Record<string, unknown>)[key];
    if (typeof a === 'object' && a !== null && (a === b || sharesNestedValues(a, b))) return true;
  }
  return false;
}

/**
 * Walks a zod schema and refuses what JSON cannot carry faithfully, calling `fail` with the
 * path of the first refused node and how to fix it. `z.json()` is allowed (it is made of lazy
 * unions of JSON values).
 *
 * @example
 * ```ts
 * assertWireSafe(z.object({ at: z.date() }), 'orders.place input', (message) => {
 *   throw new KeelError(KeelErrorCode.INVALID_CONTRACT, message);
 * });
 * // orders.place input.at cannot cross a process boundary: Date does not survive JSON; …
 * ```
 */
export function assertWireSafe(schema: unknown, where: string, fail: (message: string) => never): void {
  const seen = new Set<unknown>();
  const visit = (node: unknown, path: string): void => {
    if (seen.has(node)) return;
    if (typeof node !== 'object' || node === null || !('_zod' in node)) {
      fail(`${where}${path}: expected a zod schema.`);
    }
    seen.add(node);
    const def = (node as ZodInternals)._zod.def;
    const at = `${where}${path || ''}`;
    const refused = REFUSED[def.type];
    if (refused !== undefined) fail(`${at} cannot cross a process boundary: ${refused}.`);
    switch (def.type) {
      case 'object': {
        const shape = def['shape'] as Record<string, unknown>;
        for (const [key, child] of Object.entries(shape)) visit(child, `${path}.${key}`);
        const catchall = def['catchall'] as ZodInternals | undefined;
        if (catchall && (catchall._zod.def.type === 'unknown' || catchall._zod.def.type === 'any')) {
          fail(
            `${at} cannot cross a process boundary: a loose object (z.looseObject() or .passthrough()) lets unknown ` +
              'keys through uncopied and unchecked; use z.object() (unknown keys are dropped) or add ' +
              'a field such as extra: z.record(z.string(), z.json()).',
          );
        }
        if (catchall && catchall._zod.def.type !== 'never') visit(catchall, `${path}.*`);
        return;
      }
      case 'array':
        return visit(def['element'], `${path}[]`);
      case 'tuple': {
        (def['items'] as unknown[]).forEach((item, index) => visit(item, `${path}[${index}]`));
        if (def['rest']) visit(def['rest'], `${path}[...]`);
        return;
      }
      case 'record':
        visit(def['keyType'], `${path}{key}`);
        return visit(def['valueType'], `${path}{value}`);
      case 'union':
        (def['options'] as unknown[]).forEach((option) => visit(option, path));
        return;
      case 'intersection':
        visit(def['left'], path);
        return visit(def['right'], path);
      case 'optional':
      case 'nullable':
      case 'nonoptional':
      case 'readonly':
        return visit(def['innerType'], path);
      case 'default': {
        const first = (def as { defaultValue?: unknown }).defaultValue;
        if (first !== undefined && !isJsonValue(first)) fail(`${at}: default value is not plain JSON.`);
        if (sharesNestedValues(first, (def as { defaultValue?: unknown }).defaultValue)) {
          fail(
            `${at}: the default value holds nested objects or arrays that every call would share (zod copies only ` +
              'the top level), so one caller could change what the next one gets. Use a function: .default(() => ({ ... })).',
          );
        }
        return visit(def['innerType'], path);
      }
      case 'lazy':
        return visit((def['getter'] as () => unknown)(), path);
      case 'literal': {
        for (const value of def['values'] as unknown[]) {
          if (!isJsonValue(value)) fail(`${at}: literal ${String(value)} cannot cross a process boundary as JSON.`);
        }
        return;
      }
      case 'enum':
      case 'string':
      case 'number':
      case 'int':
      case 'boolean':
      case 'null':
      case 'never':
      case 'template_literal':
      case 'success':
        return;
      default:
        fail(`${at}: zod type "${def.type}" is not supported in contracts.`);
    }
  };
  visit(schema, '');
}
