/**
 * Options parsed once, the same way for every public factory (kernel, transports, gateway): an
 * explicit `undefined` means the default, as if the key were absent; types and ranges are
 * checked by a zod schema; unknown keys are refused. A bad option is one `INVALID_CONFIG` that
 * names every wrong field, what it takes and what it got.
 */
import type { z } from 'zod';
import { KeelError, KeelErrorCode } from './errors.js';

/** Drops keys whose value is `undefined`: for an option, `undefined` means "the default". */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * Checks `options` against `schema` (a strict zod object) and returns the options given, with
 * `undefined` values dropped so that defaults spread over them. Throws `INVALID_CONFIG`
 * starting with `factory` and naming every wrong field.
 *
 * @example
 * ```ts
 * const Schema = z.object({ port: z.number({ error: 'must be a TCP port, 0 to 65535' }).int().min(0).max(65_535).optional() }).strict();
 * const given = parseOptions('createThing', Schema, options);
 * const resolved = { ...DEFAULTS, ...given };
 * ```
 */
export function parseOptions<T extends object>(factory: string, schema: z.ZodType, options: T): Partial<T> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${factory}: the options must be an object, got ${describeValue(options)}.`);
  }
  const given = definedOnly(options);
  const parsed = schema.safeParse(given);
  if (parsed.success) return given;
  const known = knownKeys(schema);
  const problems = parsed.error.issues.map((issue) =>
    issue.code === 'unrecognized_keys'
      ? `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => `"${key}"`).join(', ')}` +
        (known === undefined ? '' : ` (it takes ${known.join(', ')})`)
      : `${issue.path.map(String).join('.') || 'the options'} ${issue.message}, got ${describeValue(valueAt(given, issue.path))}`,
  );
  throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${factory}: ${problems.join('; ')}.`);
}

function knownKeys(schema: z.ZodType): readonly string[] | undefined {
  const shape = (schema as { shape?: unknown }).shape;
  return typeof shape === 'object' && shape !== null ? Object.keys(shape) : undefined;
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>((current, key) => (current as Record<PropertyKey, unknown> | undefined)?.[key], value);
}

/** A short description of a wrong value for an error message: never a whole object. */
export function describeValue(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
