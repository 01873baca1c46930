/**
 * The checks a contract is defined with: a spec that is no object, an operation's deadline, flags,
 * auth and call policies, and a whole contract's name, version, member names, declared errors and
 * the wire-safety of every schema, each refused with an `INVALID_CONTRACT` error that names the
 * field and says how to fix it.
 */
import { checkOperationPolicies } from './call-policy.js';
import type { z } from 'zod';
import type { AnyEvent, AnyOperation, ContractSpec, OperationSpec } from './contract.js';
import type { AnyErrorClass } from './declared-errors.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { checkAuth } from './principal.js';
import { assertWireSafe } from './schema-walk.js';
import { describeValue } from './options.js';

const NAME_PATTERN = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const MEMBER_PATTERN = /^[a-zA-Z][a-zA-Z0-9]*$/;
const SEMVER_PATTERN = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Refuses a spec that is no object (an INVALID_CONTRACT naming the call), rather than a TypeError reading its fields. */
export function specObject(spec: unknown, call: string): void {
  if (typeof spec !== 'object' || spec === null) {
    throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `${call} takes an object such as ${call.slice(call.indexOf('(') + 1, -1)}, got ${describeValue(spec)}.`);
  }
}

/** Refuses an operation spec whose `timeoutMs`, `idempotent`, `auth`, `retry` or `hedge` is out of shape. */
export function checkOperationSpec<Input extends z.ZodType, Output extends z.ZodType, Errors extends readonly AnyErrorClass[]>(
  spec: OperationSpec<Input, Output, Errors>,
): void {
  specObject(spec, 'operation({ input, output })');
  if (spec.timeoutMs !== undefined && !(typeof spec.timeoutMs === 'number' && spec.timeoutMs > 0 && spec.timeoutMs <= 2 ** 31 - 1)) {
    throw new KeelError(
      KeelErrorCode.INVALID_CONTRACT,
      `timeoutMs must be a number of milliseconds above 0 and at most ${2 ** 31 - 1}, got ${describeValue(spec.timeoutMs)}.`,
    );
  }
  for (const flag of ['idempotent', 'internal'] as const) {
    if (spec[flag] !== undefined && typeof spec[flag] !== 'boolean') {
      throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `${flag} must be true or false, got ${describeValue(spec[flag])}.`);
    }
  }
  checkAuth(spec.auth, 'operation');
  checkOperationPolicies(spec);
}

/**
 * Refuses a contract spec whose name is not lower-kebab-case, whose version is not semver, whose
 * members are misnamed or not built with `operation` and `event`, whose operation declares an
 * error twice, or whose schemas JSON cannot carry faithfully across a process.
 */
export function checkContractSpec<
  Name extends string,
  Operations extends Record<string, AnyOperation>,
  Events extends Record<string, AnyEvent>,
>(spec: ContractSpec<Name, Operations, Events>): void {
  specObject(spec, 'defineContract({ name, version, operations })');
  const fail = (message: string): never => {
    throw new KeelError(KeelErrorCode.INVALID_CONTRACT, `Contract "${spec.name}": ${message}`);
  };
  if (typeof spec.name !== 'string' || !NAME_PATTERN.test(spec.name)) {
    fail('the name must be lower-kebab-case, such as "order-history".');
  }
  if (typeof spec.version !== 'string' || !SEMVER_PATTERN.test(spec.version)) {
    fail(`version "${String(spec.version)}" is not semver; use something like "1.0.0".`);
  }
  const operations = spec.operations ?? ({} as Operations);
  const events = spec.events ?? ({} as Events);
  for (const [name, op] of Object.entries(operations)) {
    if (!MEMBER_PATTERN.test(name)) fail(`operation name "${name}" must be camelCase letters and digits.`);
    if (op?.kind !== 'operation') fail(`operations.${name} must be built with operation({ input, output }).`);
    assertWireSafe(op.input, `${spec.name}.${name} input`, fail);
    assertWireSafe(op.output, `${spec.name}.${name} output`, fail);
    const codes = new Set<string>();
    for (const error of op.errors) {
      if (typeof error !== 'function' || typeof error.code !== 'string') {
        fail(`operations.${name}.errors must list classes made with defineError().`);
      }
      if (codes.has(error.code)) fail(`operation ${name} declares error ${error.code} twice.`);
      codes.add(error.code);
      assertWireSafe(error.dataSchema, `${spec.name}.${name} error ${error.code} data`, fail);
    }
  }
  for (const [name, ev] of Object.entries(events)) {
    if (!MEMBER_PATTERN.test(name)) fail(`event name "${name}" must be camelCase letters and digits.`);
    if (ev?.kind !== 'event') fail(`events.${name} must be built with event({ payload }).`);
    assertWireSafe(ev.payload, `${spec.name} event ${name} payload`, fail);
  }
}
