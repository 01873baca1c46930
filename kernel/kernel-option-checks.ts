/**
 * The checks of the kernel's options ({@link KernelOptions}, kernel-options.ts), done once by
 * {@link parseKernelOptions}: an explicit `undefined` means the default, as if the key were
 * absent; types and ranges checked; unknown keys refused. A bad option is an `INVALID_CONFIG`
 * naming the field and what it takes. The zod schemas of the options a configuration carries to
 * a kernel (`DataOptionsSchema`, `ResilienceOptionsSchema`) are the ones checked here.
 */
import { z } from 'zod';
import { MAX_TIMEOUT_MS } from './timeouts.js';
import { isContract } from './contract.js';
import { checkPrincipalSchema } from './principal.js';
import { CircuitBreakerPolicySchema, HedgePolicySchema, RetryBudgetPolicySchema, RetryPolicySchema } from './call-policy.js';
import { loggerOption, parseOptions } from './options.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { KernelOptions } from './kernel-options.js';

const milliseconds = (what: string) =>
  z
    .number({ error: `must be ${what}` })
    .refine((value) => Number.isFinite(value) && value > 0 && value <= MAX_TIMEOUT_MS, `must be ${what}`);

const TIMEOUT = `a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;

const wholeOrInfinity = (value: unknown, least: number): boolean =>
  value === Number.POSITIVE_INFINITY || (Number.isSafeInteger(value) && (value as number) >= least);
const MAX_CONCURRENT = 'must be a whole number of handler runs, 1 or more, or Infinity (no limit)';
const MAX_QUEUED = 'must be a whole number of calls, 0 (refuse at once) or more, or Infinity (never refuse)';
const bulkheadLimits = z
  .union(
    [
      z.literal(false),
      z
        .object({
          // z.number() refuses Infinity, which turns a limit off here.
          maxConcurrent: z.unknown().refine((value) => wholeOrInfinity(value, 1), MAX_CONCURRENT).optional(),
          maxQueued: z.unknown().refine((value) => wholeOrInfinity(value, 0), MAX_QUEUED).optional(),
        })
        .strict(),
    ],
    { error: 'must be false (no bulkhead) or { maxConcurrent, maxQueued }' },
  )
  .optional();

const outboxWindowOption = z
  .number({ error: 'must be a whole number of events, 1 to 1000' })
  .refine((value) => Number.isSafeInteger(value) && value >= 1 && value <= 1_000, 'must be a whole number of events, 1 to 1000')
  .optional();

// Each inbox event's savepoint takes one of the 64 subtransaction ids PostgreSQL keeps per
// transaction in memory; past them, every snapshot of every session looks them up on disk.
const INBOX_BATCH = 'must be a whole number of events, 1 to 64';
const inboxBatchOption = z
  .number({ error: INBOX_BATCH })
  .refine((value) => Number.isSafeInteger(value) && value >= 1 && value <= 64, INBOX_BATCH)
  .optional();
const INBOX_BATCH_MS = 'must be a number of milliseconds above 0, at most 60000';
const inboxBatchMsOption = z
  .number({ error: INBOX_BATCH_MS })
  .refine((value) => Number.isFinite(value) && value > 0 && value <= 60_000, INBOX_BATCH_MS)
  .optional();
const DATABASE_CHECK_MS = 'must be a number of milliseconds, 100 to 600000';
const databaseCheckMsOption = z
  .number({ error: DATABASE_CHECK_MS })
  .refine((value) => Number.isFinite(value) && value >= 100 && value <= 600_000, DATABASE_CHECK_MS)
  .optional();

/**
 * The zod schema of the kernel's options for modules that own data (`outboxWindow`,
 * `inboxBatch`, `inboxBatchMs`, `databaseCheckMs`), as
 * {@link createKernel} checks them: for a configuration that carries them to a kernel
 * (keel.config.ts's `data`), so that a wrong one is refused where it is written, naming its field.
 *
 * @example
 * ```ts
 * import { DataOptionsSchema, parseOptions } from 'keel/transport';
 *
 * parseOptions('settings.json: data', DataOptionsSchema, { outboxWindow: 1, inboxBatch: 1 });
 * ```
 */
export const DataOptionsSchema = z
  .object({ outboxWindow: outboxWindowOption, inboxBatch: inboxBatchOption, inboxBatchMs: inboxBatchMsOption, databaseCheckMs: databaseCheckMsOption })
  .strict();

/**
 * The zod schema of the kernel's resilience options (`retry`, `hedge`, `circuitBreaker`,
 * `retryBudget`, `bulkhead`, `bulkheads`), as {@link createKernel} checks them: for a
 * configuration that carries them to a kernel (keel.config.ts's `resilience`), so that a wrong
 * one is refused where it is written, naming its field.
 *
 * @example
 * ```ts
 * import { ResilienceOptionsSchema, parseOptions } from 'keel/transport';
 *
 * parseOptions('settings.json: resilience', ResilienceOptionsSchema, { retry: { maxAttempts: 3 } });
 * ```
 */
export const ResilienceOptionsSchema = z
  .object({
    retry: RetryPolicySchema.optional(),
    hedge: HedgePolicySchema.optional(),
    circuitBreaker: CircuitBreakerPolicySchema.optional(),
    retryBudget: RetryBudgetPolicySchema.optional(),
    bulkhead: bulkheadLimits,
    bulkheads: z.record(z.string(), bulkheadLimits, { error: 'must be an object of bulkheads by module name' }).optional(),
  })
  .strict();

const TRANSPORT_METHODS = ['call', 'serve', 'publish', 'subscribe', 'status', 'close'] as const;

const KernelOptionsSchema = z
  .object({
    modules: z.array(z.unknown(), { error: 'must be an array of modules made with defineModule()' }).optional(),
    topology: z
      .object(
        {
          host: z
            .array(z.string({ error: 'must be a module name' }), { error: 'must be an array of module names, such as ["orders", "payments"]' })
            .optional(),
          transport: z
            .custom((value) => typeof value === 'object' && value !== null && TRANSPORT_METHODS.every((method) => typeof (value as Record<string, unknown>)[method] === 'function'), {
              error: `must be a Transport (${TRANSPORT_METHODS.join(', ')}), such as await createNatsTransport()`,
            })
            .optional(),
        },
        { error: 'must be { host?, transport? }' },
      )
      .strict()
      .optional(),
    contracts: z
      .array(z.custom((value) => isContract(value), { error: 'must be a contract made with defineContract()' }), {
        error: 'must be an array of contracts made with defineContract()',
      })
      .optional(),
    defaultTimeoutMs: milliseconds(TIMEOUT).optional(),
    eventTimeoutMs: milliseconds(TIMEOUT).optional(),
    maxDeliveryAttempts: z
      .number({ error: 'must be a whole number of deliveries, 1 or more' })
      .refine((value) => Number.isSafeInteger(value) && value >= 1, 'must be a whole number of deliveries, 1 or more')
      .optional(),
    outboxWindow: outboxWindowOption,
    inboxBatch: inboxBatchOption,
    inboxBatchMs: inboxBatchMsOption,
    drainTimeoutMs: z
      .number({ error: `must be a number of milliseconds, 0 (do not wait) to ${MAX_TIMEOUT_MS}` })
      .refine((value) => Number.isFinite(value) && value >= 0 && value <= MAX_TIMEOUT_MS, `must be a number of milliseconds, 0 (do not wait) to ${MAX_TIMEOUT_MS}`)
      .optional(),
    logger: loggerOption().optional(),
    onDeadLetter: z.custom((value) => typeof value === 'function', { error: 'must be a function of a DeadLetter' }).optional(),
    database: z
      .custom(
        (value) =>
          typeof value === 'function' ||
          (typeof value === 'object' && value !== null && typeof (value as { connect?: unknown }).connect === 'function'),
        { error: 'must be a DatabaseEngine, such as createPGliteDatabase() or createPostgresDatabase({ url }), or a function of a module name returning one' },
      )
      .optional(),
    databaseCheckMs: databaseCheckMsOption,
    principal: z
      .custom((value) => typeof value === 'object' && value !== null && '_zod' in value, {
        error: 'must be a zod schema of the principal, such as z.object({ sub: z.string(), roles: z.array(z.string()) })',
      })
      .optional(),
    ...ResilienceOptionsSchema.shape,
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
  if (given.principal !== undefined) checkPrincipalSchema(given.principal);
  if (given.retryBudget !== undefined && given.retryBudget !== false && given.circuitBreaker === false) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      "createKernel: retryBudget is counted in each dependency's circuit breaker, and circuitBreaker is false: turn the breaker on, or set retryBudget: false.",
    );
  }
  if (given.bulkheads !== undefined) {
    const names = (given.modules ?? []).map((module) => (module as { name?: unknown } | undefined)?.name);
    const unknown = Object.keys(given.bulkheads).filter((name) => !names.includes(name));
    if (unknown.length > 0) {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `createKernel: ${unknown.map((name) => `bulkheads.${name}`).join(', ')} ${unknown.length > 1 ? 'name' : 'names'} no module of the manifest ` +
          `(its modules: ${names.map(String).join(', ') || 'none'}); use a module's name.`,
      );
    }
  }
  return { ...defaults, ...(given as unknown as KernelOptions) };
}
