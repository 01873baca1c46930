/**
 * Options parsed once, the same way for every public factory (kernel, transports, gateway): an
 * explicit `undefined` means the default, as if the key were absent; types and ranges are
 * checked by a zod schema; unknown keys are refused, with the known key most likely meant. A bad option is one `INVALID_CONFIG` that
 * names every wrong field, what it takes and what it got.
 */
import { z } from 'zod';
import { KeelError, KeelErrorCode } from './errors.js';
import { didYouMean, nearestName } from './nearest-name.js';

const LOGGER_METHODS = ['debug', 'info', 'warn', 'error', 'child'] as const;

/**
 * The zod schema of a `logger` option: an object with the {@link Logger} methods (a pino
 * instance is one). One definition, so every factory says the same thing about a wrong one.
 *
 * @example
 * ```ts
 * const Schema = z.object({ logger: loggerOption().optional() }).strict();
 * ```
 */
export function loggerOption(): z.ZodType {
  return z.custom(
    (value) =>
      typeof value === 'object' &&
      value !== null &&
      LOGGER_METHODS.every((method) => typeof (value as Record<string, unknown>)[method] === 'function'),
    { error: `must be a Logger (${LOGGER_METHODS.join(', ')}), such as createLogger() or a pino instance` },
  );
}

/** Drops keys whose value is `undefined`: for an option, `undefined` means "the default". */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
}

/**
 * Checks `options` against `schema` (a strict zod object) and returns the options given, with
 * `undefined` values dropped so that defaults spread over them. Throws `INVALID_CONFIG`
 * starting with `factory` and naming every wrong field, an unknown key by its full path. The
 * value of a field named in `secrets` is never repeated, only its kind.
 *
 * @example
 * ```ts
 * const Schema = z.object({ port: z.number({ error: 'must be a TCP port, 0 to 65535' }).int().min(0).max(65_535).optional() }).strict();
 * const given = parseOptions('createThing', Schema, options);
 * const resolved = { ...DEFAULTS, ...given };
 * ```
 */
export function parseOptions<T extends object>(
  factory: string,
  schema: z.ZodType,
  options: T,
  secrets: readonly string[] = [],
): Partial<T> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${factory}: the options must be an object, got ${describeValue(options)}.`);
  }
  const given = definedOnly(options);
  const parsed = schema.safeParse(given);
  if (parsed.success) return given;
  const known = knownKeys(schema);
  const problems = parsed.error.issues.flatMap((issue) => branchIssues(issue, given)).map((issue) => {
    const path = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const takes = path.length === 0 ? known : knownKeys(valueAt(schema, ['shape', ...path]) as z.ZodType);
      const named = (key: string): string => `"${[...path, key].join('.')}"`;
      const keys = issue.keys.map(named).join(', ');
      if (takes === undefined) return `unknown option${issue.keys.length > 1 ? 's' : ''} ${keys}`;
      // One list of what the level takes, however many keys are wrong: each guess names its key when there are several.
      const hint = didYouMean(issue.keys, takes, named);
      return `unknown option${issue.keys.length > 1 ? 's' : ''} ${keys} (${hint}it takes ${takes.join(', ')})`;
    }
    const field = path.join('.') || 'the options';
    // A secret's value is never repeated, not even a wrong one: say only what kind of value it was.
    const value = valueAt(given, issue.path);
    const kind = typeof value === 'object' || typeof value === 'function' ? describeValue(value) : `a ${typeof value}`;
    // A secret left out has no value to hide: "got undefined", not "got a undefined (not shown ...)".
    const got = secrets.includes(path[0] ?? '') && value !== undefined ? `${kind} (not shown: it is a secret)` : describeValue(value);
    return `${field} ${issue.message}, got ${got}`;
  });
  throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${factory}: ${problems.join('; ')}.`);
}

/**
 * An option that is one of several kinds (`false` or an object, say) and is none: when the value
 * is of the kind of exactly one of them, that one's issues, below the option's path, so that the
 * message names the wrong field inside ("rateLimit.max must be ..."), not the whole option ("must
 * be false or an object ..., got an object"). Any other issue as it is.
 */
function branchIssues(issue: z.core.$ZodIssue, given: unknown): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union' || issue.errors.length === 0) return [issue];
  const value = valueAt(given, issue.path);
  if (typeof value !== 'object' || value === null) return [issue];
  // A branch of another kind refuses the value itself (an issue at its root); the one of its kind, a field of it.
  const ofItsKind = issue.errors.filter((branch) => branch.length > 0 && branch.every((sub) => sub.path.length > 0 || sub.code === 'unrecognized_keys'));
  if (ofItsKind.length !== 1) return [issue];
  return (ofItsKind[0] ?? []).flatMap((sub) => branchIssues({ ...sub, path: [...issue.path, ...sub.path] } as z.core.$ZodIssue, given));
}

function knownKeys(schema: z.ZodType | undefined): readonly string[] | undefined {
  let inner: unknown = schema;
  // Look through .optional() and friends to the object's shape.
  while (inner !== undefined && (inner as { shape?: unknown }).shape === undefined && typeof (inner as { unwrap?: unknown }).unwrap === 'function') {
    inner = (inner as { unwrap: () => unknown }).unwrap();
  }
  const shape = (inner as { shape?: unknown } | undefined)?.shape;
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

/**
 * The error for a call's `signal` option that is not an AbortSignal (one without
 * `addEventListener` would throw out of the call once it settles); undefined when it is one or
 * left out. For the kernel's client and the HTTP client alike.
 *
 * @example
 * ```ts
 * const refused = signalOptionError(options.signal, 'orders.placeOrder');
 * if (refused !== undefined) return Promise.reject(refused);
 * ```
 */
export function signalOptionError(signal: unknown, label: string): KeelError | undefined {
  if (signal === undefined) return undefined;
  const candidate = signal as Partial<AbortSignal> | null;
  if (
    typeof signal === 'object' &&
    candidate !== null &&
    typeof candidate.addEventListener === 'function' &&
    typeof candidate.removeEventListener === 'function' &&
    typeof candidate.aborted === 'boolean'
  ) {
    return undefined;
  }
  return new KeelError(
    KeelErrorCode.INVALID_INPUT,
    `signal for ${label} must be an AbortSignal, such as new AbortController().signal or AbortSignal.timeout(ms), got ${describeValue(signal)}.`,
  );
}

/**
 * The error for a call option no client knows (a misspelling such as `timeout`, which plain
 * JavaScript would otherwise ignore): names it, the known option it most likely meant (or, for a
 * key of `elsewhere`, what it is for), and the options `known` lists. For the kernel's client and
 * the HTTP client alike.
 *
 * @example
 * ```ts
 * unknownOptionError('timeout', ['timeoutMs', 'signal'], 'orders.placeOrder').message;
 * // 'options for orders.placeOrder have an unknown option "timeout"; a call takes timeoutMs, signal. Did you mean timeoutMs?'
 * ```
 */
export function unknownOptionError(
  key: string,
  known: readonly string[],
  label: string,
  elsewhere: Readonly<Record<string, string>> = {},
): KeelError {
  const near = nearestName(key, known);
  const why = Object.hasOwn(elsewhere, key) ? ` ${elsewhere[key]}.` : near === undefined ? '' : ` Did you mean ${near}?`;
  return new KeelError(
    KeelErrorCode.INVALID_INPUT,
    `options for ${label} have an unknown option ${JSON.stringify(key)}; a call takes ${known.join(', ')}.${why}`,
  );
}
