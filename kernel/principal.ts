/**
 * Caller identity: the principal an application declares (a zod schema given to the kernel, its
 * type registered once by module augmentation), the `auth` an operation may require, and the one
 * check that turns a principal from a wire into a validated, frozen value.
 */
import type { z } from 'zod';
import { KeelError, KeelErrorCode, plainIssues } from './errors.js';
import { assertWireSafe } from './schema-walk.js';

/**
 * Where an application registers its types with keel, by module augmentation. Registering
 * `principal` types `context.principal` in every handler, the `auth` predicates of every
 * contract, the `principal` call option and the HTTP gateway's `authenticate` hook; the kernel's
 * `principal` option must then be a schema of that type.
 *
 * @example
 * ```ts
 * import { z } from 'zod';
 *
 * export const Principal = z.object({ sub: z.string(), roles: z.array(z.string()) });
 *
 * declare module 'keel' {
 *   interface Register {
 *     principal: z.output<typeof Principal>;
 *   }
 * }
 * ```
 */
export interface Register {}

/**
 * The application's principal type: what it registered in {@link Register}, else `unknown`.
 *
 * @example
 * ```ts
 * import type { Principal } from 'keel';
 *
 * const isAdmin = (principal: Principal): boolean => principal.roles.includes('admin');
 * ```
 */
export type Principal = Register extends { principal: infer P } ? P : unknown;

/**
 * The schema the kernel's `principal` option takes: one whose output is the registered
 * {@link Principal}.
 */
export type PrincipalSchema = z.ZodType<Principal>;

/**
 * What an operation's `auth` takes: `'required'` (any valid principal), or a predicate of the
 * principal and the validated input that must return `true` (a principal is then required too).
 * Without `auth`, an operation serves callers with or without a principal.
 *
 * @example
 * ```ts
 * setPrice: operation({
 *   input: z.object({ sku: Sku, priceCents: z.number().int().positive() }),
 *   output: Product,
 *   auth: (principal) => principal.roles.includes('admin'),
 * }),
 * ```
 */
export type OperationAuth<Input = unknown> = 'required' | AuthPredicate<Input>;

// Method syntax, so that a predicate of one operation's input is assignable to one of any input
// (an operation of a contract must be an AnyOperation).
type AuthPredicate<Input> = { predicate(principal: Principal, input: Input): boolean }['predicate'];

/** Refuses an `auth` that is neither `'required'` nor a function; throws `INVALID_CONTRACT`. */
export function checkAuth(auth: unknown, where: string): void {
  if (auth === undefined || auth === 'required' || typeof auth === 'function') return;
  throw new KeelError(
    KeelErrorCode.INVALID_CONTRACT,
    `${where}: auth must be 'required' or a function (principal, input) => boolean, got ${typeof auth === 'string' ? JSON.stringify(auth) : typeof auth}.`,
  );
}

/** Refuses a principal schema that could not cross a process as JSON; throws `INVALID_CONFIG`. */
export function checkPrincipalSchema(schema: unknown): void {
  assertWireSafe(schema, 'createKernel: principal', (message) => {
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${message} The principal travels as JSON in every call and event.`);
  });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}

/**
 * A principal from outside the kernel (a caller's option, a wire header, an outbox row),
 * validated against `schema` and frozen, so that every module may share it without copying;
 * `UNAUTHENTICATED` when it does not match, or when this kernel declares no schema.
 */
export function validPrincipal(schema: PrincipalSchema | undefined, value: unknown, where: string, correlationId?: string): Principal {
  if (schema === undefined) {
    throw new KeelError(
      KeelErrorCode.UNAUTHENTICATED,
      `${where} carries a principal, but this kernel declares none: give createKernel({ principal }) the application's principal schema.`,
      { correlationId },
    );
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new KeelError(
      KeelErrorCode.UNAUTHENTICATED,
      `${where} carries a principal that does not match the application's principal schema; authenticate again.`,
      { correlationId, details: { issues: plainIssues(parsed.error.issues) } },
    );
  }
  return deepFreeze(parsed.data);
}

/** The refusal of a call without a principal to an operation whose contract declares `auth`. */
export function unauthenticated(contract: string, operation: string, context: { readonly correlationId: string }): KeelError {
  return new KeelError(
    KeelErrorCode.UNAUTHENTICATED,
    `${contract}.${operation} needs a caller identity and the call carries none. Nothing ran: authenticate (over HTTP, send credentials such as a bearer token) and call again.`,
    { correlationId: context.correlationId },
  );
}

/** The refusal of a call whose principal the operation's `auth` predicate did not allow. */
export function forbidden(contract: string, operation: string, context: { readonly correlationId: string }): KeelError {
  return new KeelError(
    KeelErrorCode.FORBIDDEN,
    `${contract}.${operation} is not allowed for this principal (its contract's auth refused it). Nothing ran; calling again as the same principal fails again.`,
    { correlationId: context.correlationId },
  );
}
