/**
 * The kernel's options, parsed once by {@link parseKernelOptions}: defaults filled in (an
 * explicit `undefined` means the default, as if the key were absent), types and ranges checked,
 * unknown keys refused. A bad option is an `INVALID_CONFIG` naming the field and what it takes.
 */
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from './client.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { KernelOptions } from './kernel.js';

const milliseconds = (what: string) =>
  z
    .number({ error: `must be ${what}` })
    .refine((value) => Number.isFinite(value) && value > 0 && value <= MAX_TIMEOUT_MS, `must be ${what}`);

const TIMEOUT = `a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;

const KernelOptionsSchema = z
  .object({
    modules: z.array(z.unknown(), { error: 'must be an array of modules made with defineModule()' }),
    topology: z.unknown().optional(),
    defaultTimeoutMs: milliseconds(TIMEOUT).optional(),
    eventTimeoutMs: milliseconds(TIMEOUT).optional(),
    maxDeliveryAttempts: z
      .number({ error: 'must be a whole number of deliveries, 1 or more' })
      .refine((value) => Number.isSafeInteger(value) && value >= 1, 'must be a whole number of deliveries, 1 or more')
      .optional(),
    drainTimeoutMs: z
      .number({ error: `must be a number of milliseconds, 0 (do not wait) to ${MAX_TIMEOUT_MS}` })
      .refine((value) => Number.isFinite(value) && value >= 0 && value <= MAX_TIMEOUT_MS, `must be a number of milliseconds, 0 (do not wait) to ${MAX_TIMEOUT_MS}`)
      .optional(),
    logger: z
      .custom((value) => typeof value === 'object' && value !== null && typeof (value as { info?: unknown }).info === 'function', {
        error: 'must be a Logger (debug, info, warn, error, child), such as createLogger() or a pino instance',
      })
      .optional(),
    onDeadLetter: z.custom((value) => typeof value === 'function', { error: 'must be a function of a DeadLetter' }).optional(),
  })
  .strict();

/** Drops keys whose value is `undefined`: for an option, `undefined` means "the default". */
function definedOnly(options: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
}

/**
 * Checks `options` once and returns them with `defaults` filled in. Throws `INVALID_CONFIG`
 * naming every wrong field (an unknown key included) and what it takes.
 *
 * @example
 * ```ts
 * const resolved = parseKernelOptions({ modules, defaultTimeoutMs: undefined }, DEFAULT_KERNEL_OPTIONS);
 * resolved.defaultTimeoutMs; // 10_000
 * ```
 */
export function parseKernelOptions<D extends Partial<KernelOptions>>(options: KernelOptions, defaults: D): KernelOptions & D {
  const given = definedOnly(options);
  const parsed = KernelOptionsSchema.safeParse(given);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) =>
      issue.code === 'unrecognized_keys'
        ? `unknown option${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((key) => `"${key}"`).join(', ')} (it takes modules, topology, defaultTimeoutMs, eventTimeoutMs, maxDeliveryAttempts, drainTimeoutMs, logger, onDeadLetter)`
        : `${issue.path.join('.')} ${issue.message}, got ${describe(valueAt(given, issue.path))}`,
    );
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `createKernel: ${problems.join('; ')}.`);
  }
  return { ...defaults, ...(given as unknown as KernelOptions) };
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  return path.reduce<unknown>((current, key) => (current as Record<PropertyKey, unknown> | undefined)?.[key], value);
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) return Array.isArray(value) ? 'an array' : 'an object';
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
