/**
 * keel/contract — the door for contract files and for the code that only calls a module: what
 * `modules/<name>/contract.ts` needs ({@link defineContract}, {@link operation}, {@link event},
 * {@link defineError}, {@link ErrorKind}, and {@link text} for a string a database stores) and
 * what a caller catches ({@link KeelError}, {@link isKeelError}). Its whole import graph is zod
 * and a few kernel files with no Node.js built-in and no server library (no pino, no inversify,
 * no AsyncLocalStorage), so a contract bundles for a browser, a worker or a script as it is.
 *
 * Every name here is the very same value as in `'keel'`: a class declared with
 * {@link defineError} matches with `instanceof` wherever it was imported from.
 *
 * @example
 * ```ts
 * import { z } from 'zod';
 * import { ErrorKind, defineContract, defineError, operation } from 'keel/contract';
 *
 * export const UnknownBook = defineError({ code: 'UNKNOWN_BOOK', kind: ErrorKind.NOT_FOUND, data: z.object({ isbn: z.string() }) });
 *
 * export const books = defineContract({
 *   name: 'books',
 *   version: '1.0.0',
 *   operations: {
 *     getBook: operation({ input: z.object({ isbn: z.string() }), output: z.object({ title: z.string() }), errors: [UnknownBook], idempotent: true }),
 *   },
 * });
 * ```
 *
 * @module
 */

// Contracts. Contract, OperationDefinition and EventDefinition are what defineContract, operation
// and event return: a project that emits declarations must be able to name them (TS2883).
export {
  defineContract,
  event,
  operation,
  type AnyContract,
  type Contract,
  type EventDefinition,
  type OperationDefinition,
} from './contract.js';

// A string a database can store: what a contract's free-text input fields are made of.
export { text } from './text-schema.js';

// Errors: declared ones (defineError, ErrorKind) and the framework's (KeelError), which a caller catches.
export { ErrorKind, defineError, type AnyErrorClass, type ErrorClass } from './declared-errors.js';
export { KeelError, KeelErrorCode, isKeelError } from './errors.js';

// What an operation's auth, retry and hedge take (named for TS2883, as above).
export type { OperationAuth, Principal } from './principal.js';
export type { HedgePolicy, RetryPolicy } from './call-policy.js';
