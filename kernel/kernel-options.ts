/**
 * The kernel's options, parsed once by {@link parseKernelOptions}: defaults filled in (an
 * explicit `undefined` means the default, as if the key were absent), types and ranges checked,
 * unknown keys refused. A bad option is an `INVALID_CONFIG` naming the field and what it takes.
 */
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from './client.js';
import type { KernelOptions } from './kernel.js';
import { parseOptions } from './options.js';

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
  const given = parseOptions('createKernel', KernelOptionsSchema, options);
  return { ...defaults, ...(given as unknown as KernelOptions) };
}
