/**
 * `keel contracts snapshot` and `keel contracts diff`: every contract's JSON Schemas in a
 * committed lock file, built from the contracts, written and read back. The classification of
 * every change against it as compatible or breaking is in contracts-diff.ts.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { AnyContract } from 'keel';
import type { JsonSchema } from './schema-diff.js';

/** The lock file's name, at the project root. */
export const CONTRACTS_LOCK_FILE = 'contracts.lock.json';

/** Format version of the lock file. */
export const LOCK_FORMAT_VERSION = 1;

/** One operation in the lock. */
export interface LockedOperation {
  readonly idempotent: boolean;
  /**
   * Who may call it (`auth` of the operation): `required` (any caller identity) or `predicate`
   * (a rule of the identity and input). Absent: anyone, anonymous callers included.
   */
  readonly auth?: 'required' | 'predicate';
  /** `true` for an operation other modules call only, which the HTTP gateway does not serve. Absent: served. */
  readonly internal?: true;
  /** What callers may send (`io: 'input'`: defaulted fields are optional). */
  readonly input: JsonSchema;
  /** What callers receive (`io: 'output'`). */
  readonly output: JsonSchema;
  /** Declared errors by code, with their data schema (`io: 'output'`). */
  readonly errors: Readonly<Record<string, JsonSchema>>;
}

/** One event in the lock. */
export interface LockedEvent {
  readonly delivery: string;
  /** What subscribers receive (`io: 'output'`). */
  readonly payload: JsonSchema;
}

/** One contract in the lock. */
export interface LockedContract {
  readonly version: string;
  readonly operations: Readonly<Record<string, LockedOperation>>;
  readonly events: Readonly<Record<string, LockedEvent>>;
}

/** The lock file. */
export interface ContractsLock {
  readonly $comment?: string;
  readonly lockVersion: number;
  readonly contracts: Readonly<Record<string, LockedContract>>;
}

const COMMENT =
  'Written by `keel contracts snapshot`; commit it. `keel contracts diff` compares the contracts in modules/ with it and fails on a breaking change unless the major version was raised.';

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  delete json['$schema'];
  return json as JsonSchema;
}

function sortedRecord<T>(entries: Array<[string, T]>): Record<string, T> {
  return Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * The lock entry of one contract.
 *
 * @example
 * ```ts
 * lockContract(catalog).operations.getProduct.input; // { type: 'object', properties: { sku: … }, … }
 * ```
 */
export function lockContract(contract: AnyContract): LockedContract {
  return {
    version: contract.version,
    operations: sortedRecord(
      Object.entries(contract.operations).map(([name, operation]) => [
        name,
        {
          idempotent: operation.idempotent,
          ...(operation.auth === undefined ? {} : { auth: operation.auth === 'required' ? ('required' as const) : ('predicate' as const) }),
          // Only when set: locks written before the field read the same.
          ...(operation.internal ? { internal: true as const } : {}),
          input: schemaOf(operation.input, 'input'),
          output: schemaOf(operation.output, 'output'),
          errors: sortedRecord(operation.errors.map((error) => [error.code, schemaOf(error.dataSchema, 'output')])),
        },
      ]),
    ),
    events: sortedRecord(
      Object.entries(contract.events).map(([name, event]) => [name, { delivery: event.delivery, payload: schemaOf(event.payload, 'output') }]),
    ),
  };
}

/**
 * The lock of a set of contracts, keyed and sorted by contract name.
 *
 * @example
 * ```ts
 * const lock = buildLock([catalog, orders]);
 * writeLock('/repo', lock);
 * ```
 */
export function buildLock(contracts: readonly AnyContract[]): ContractsLock {
  return {
    $comment: COMMENT,
    lockVersion: LOCK_FORMAT_VERSION,
    contracts: sortedRecord(contracts.map((contract) => [contract.name, lockContract(contract)])),
  };
}

/** The lock's file text: stable key order, two-space indent, final newline. */
export function serializeLock(lock: ContractsLock): string {
  return `${JSON.stringify(lock, null, 2)}\n`;
}

/**
 * Writes the lock file at `path` and returns whether its content changed.
 *
 * @example
 * ```ts
 * writeLock('/repo/contracts.lock.json', buildLock(contracts));
 * ```
 */
export function writeLock(path: string, lock: ContractsLock): boolean {
  const text = serializeLock(lock);
  const before = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  if (before === text) return false;
  writeFileSync(path, text);
  return true;
}

/**
 * Reads a lock file. Throws an `Error` saying what to do when it is missing or malformed.
 *
 * @example
 * ```ts
 * const lock = readLock(join(root, CONTRACTS_LOCK_FILE));
 * ```
 */
export function readLock(path: string): ContractsLock {
  if (!existsSync(path)) {
    throw new Error(`${path} does not exist. Write it with \`keel contracts snapshot\` and commit it.`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`${path} is not valid JSON (${(error as Error).message}). Restore it from version control, or rewrite it with \`keel contracts snapshot\`.`);
  }
  const lock = parsed as Partial<ContractsLock>;
  if (typeof lock !== 'object' || lock === null || typeof lock.contracts !== 'object' || lock.contracts === null) {
    throw new Error(`${path} is not a contracts lock (no "contracts" object). Rewrite it with \`keel contracts snapshot\`.`);
  }
  if (lock.lockVersion !== LOCK_FORMAT_VERSION) {
    throw new Error(`${path} has lock format ${String(lock.lockVersion)}; this keel reads format ${LOCK_FORMAT_VERSION}. Rewrite it with \`keel contracts snapshot\`.`);
  }
  return lock as ContractsLock;
}

/** The default lock path of a project. */
export function lockPath(root: string): string {
  return join(root, CONTRACTS_LOCK_FILE);
}
