/**
 * `keel contracts diff`: a classification of every change between the committed lock and the
 * current contracts as compatible or breaking, with a verdict per contract. A breaking change
 * passes only when the contract's major version was raised. The lock itself (its shape,
 * building, reading and writing) is in contracts-lock.ts.
 */
import { majorOf } from 'keel/transport';
import type { ContractsLock, LockedContract, LockedOperation } from './contracts-lock.js';
import { SchemaPosition, diffSchemas, isBreaking } from './schema-diff.js';

/** Whether a change breaks existing callers, subscribers or readers. */
export const ChangeKind = {
  COMPATIBLE: 'compatible',
  BREAKING: 'breaking',
} as const;

/** A {@link ChangeKind} value. */
export type ChangeKind = (typeof ChangeKind)[keyof typeof ChangeKind];

/** One classified change of a contract. */
export interface ContractChange {
  readonly kind: ChangeKind;
  /** Where: `placeOrder input.lines[].quantity`, `event orderPlaced`, `version`. */
  readonly where: string;
  readonly message: string;
}

/** The verdict on one contract. */
export const ContractVerdict = {
  UNCHANGED: 'unchanged',
  COMPATIBLE: 'compatible',
  /** Breaking changes, and the major version was raised: allowed. */
  MAJOR: 'major',
  /** Breaking changes without a major version bump: fails. */
  BREAKING: 'breaking',
  ADDED: 'added',
  /** The contract disappeared: fails until the lock is rewritten on purpose. */
  REMOVED: 'removed',
} as const;

/** A {@link ContractVerdict} value. */
export type ContractVerdict = (typeof ContractVerdict)[keyof typeof ContractVerdict];

/** The diff of one contract. */
export interface ContractDiff {
  readonly contract: string;
  readonly lockedVersion: string | undefined;
  readonly version: string | undefined;
  readonly verdict: ContractVerdict;
  readonly changes: readonly ContractChange[];
}

/** What {@link diffLocks} returns. */
export interface ContractsDiff {
  /** False when a contract has a breaking change without a major bump, or was removed. */
  readonly ok: boolean;
  /** True when the lock differs from the contracts at all (run `keel contracts snapshot` to update it). */
  readonly changed: boolean;
  readonly contracts: readonly ContractDiff[];
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
  );
}

const canonicalText = (value: unknown) => JSON.stringify(sortKeys(value));

/**
 * Compares the locked contracts with the current ones and classifies every change.
 *
 * @example
 * ```ts
 * const diff = diffLocks(readLock(lockPath(root)), buildLock(contracts));
 * if (!diff.ok) process.exitCode = 1;
 * ```
 */
export function diffLocks(locked: ContractsLock, current: ContractsLock): ContractsDiff {
  const names = [...new Set([...Object.keys(locked.contracts), ...Object.keys(current.contracts)])].sort();
  const contracts = names.map((name) => diffContract(name, locked.contracts[name], current.contracts[name]));
  return {
    ok: contracts.every((entry) => entry.verdict !== ContractVerdict.BREAKING && entry.verdict !== ContractVerdict.REMOVED),
    changed: contracts.some((entry) => entry.verdict !== ContractVerdict.UNCHANGED),
    contracts,
  };
}

function diffContract(name: string, before: LockedContract | undefined, after: LockedContract | undefined): ContractDiff {
  if (before === undefined) {
    return { contract: name, lockedVersion: undefined, version: after?.version, verdict: ContractVerdict.ADDED, changes: [] };
  }
  if (after === undefined) {
    return {
      contract: name,
      lockedVersion: before.version,
      version: undefined,
      verdict: ContractVerdict.REMOVED,
      changes: [
        {
          kind: ChangeKind.BREAKING,
          where: 'contract',
          message: `contract ${name} removed; its callers and subscribers break. If that is intended, rewrite the lock with \`keel contracts snapshot\`.`,
        },
      ],
    };
  }
  const changes: ContractChange[] = [];
  const add = (kind: ChangeKind, where: string, message: string) => changes.push({ kind, where, message });

  const removedOperations = Object.keys(before.operations).filter((operation) => !(operation in after.operations));
  const addedOperations = Object.keys(after.operations).filter((operation) => !(operation in before.operations));
  for (const operation of removedOperations) {
    const definition = canonicalText(before.operations[operation]);
    const renamed = addedOperations.find((candidate) => canonicalText(after.operations[candidate]) === definition);
    add(
      ChangeKind.BREAKING,
      operation,
      renamed
        ? `operation ${operation} renamed to ${renamed}; callers of ${operation} find no responder`
        : `operation ${operation} removed; its callers find no responder`,
    );
  }
  for (const operation of addedOperations) add(ChangeKind.COMPATIBLE, operation, `new operation ${operation}`);
  for (const [operation, old] of Object.entries(before.operations)) {
    const next = after.operations[operation];
    if (next === undefined) continue;
    diffOperation(operation, old, next, add);
  }

  const removedEvents = Object.keys(before.events).filter((event) => !(event in after.events));
  const addedEvents = Object.keys(after.events).filter((event) => !(event in before.events));
  for (const event of removedEvents) {
    const definition = canonicalText(before.events[event]);
    const renamed = addedEvents.find((candidate) => canonicalText(after.events[candidate]) === definition);
    add(
      ChangeKind.BREAKING,
      `event ${event}`,
      renamed ? `event ${event} renamed to ${renamed}; its subscribers never hear of it again` : `event ${event} removed; its subscribers never hear of it again`,
    );
  }
  for (const event of addedEvents) add(ChangeKind.COMPATIBLE, `event ${event}`, `new event ${event}`);
  for (const [event, old] of Object.entries(before.events)) {
    const next = after.events[event];
    if (next === undefined) continue;
    if (old.delivery !== next.delivery) {
      const weaker = next.delivery !== 'durable' && old.delivery === 'durable';
      add(
        weaker ? ChangeKind.BREAKING : ChangeKind.COMPATIBLE,
        `event ${event}`,
        `delivery ${old.delivery} → ${next.delivery}${weaker ? ': subscribers relying on redelivery may lose events' : ''}`,
      );
    }
    for (const difference of diffSchemas(old.payload, next.payload, SchemaPosition.OUTPUT)) {
      add(kindOf(difference.direction, SchemaPosition.OUTPUT), `event ${event} payload${difference.path}`, outputMessage(difference.what, difference.direction, 'subscribers'));
    }
  }

  const lockedMajor = majorOf(before.version);
  const major = majorOf(after.version);
  if (major < lockedMajor) add(ChangeKind.BREAKING, 'version', `version lowered from ${before.version} to ${after.version}`);
  const breaking = changes.some((change) => change.kind === ChangeKind.BREAKING);
  const verdict =
    changes.length === 0 && before.version === after.version
      ? ContractVerdict.UNCHANGED
      : breaking
        ? major > lockedMajor
          ? ContractVerdict.MAJOR
          : ContractVerdict.BREAKING
        : ContractVerdict.COMPATIBLE;
  return { contract: name, lockedVersion: before.version, version: after.version, verdict, changes };
}

function kindOf(direction: 'wider' | 'narrower' | 'both', position: SchemaPosition): ChangeKind {
  return isBreaking(direction, position) ? ChangeKind.BREAKING : ChangeKind.COMPATIBLE;
}

function diffOperation(
  operation: string,
  old: LockedOperation,
  next: LockedOperation,
  add: (kind: ChangeKind, where: string, message: string) => void,
): void {
  for (const difference of diffSchemas(old.input, next.input, SchemaPosition.INPUT)) {
    add(kindOf(difference.direction, SchemaPosition.INPUT), `${operation} input${difference.path}`, inputMessage(difference.what, difference.direction));
  }
  for (const difference of diffSchemas(old.output, next.output, SchemaPosition.OUTPUT)) {
    add(kindOf(difference.direction, SchemaPosition.OUTPUT), `${operation} output${difference.path}`, outputMessage(difference.what, difference.direction));
  }
  for (const code of Object.keys(next.errors)) {
    if (!(code in old.errors)) add(ChangeKind.COMPATIBLE, `${operation} errors`, `new declared error ${code}`);
  }
  for (const [code, data] of Object.entries(old.errors)) {
    const nextData = next.errors[code];
    if (nextData === undefined) {
      add(ChangeKind.COMPATIBLE, `${operation} errors`, `declared error ${code} removed (callers handling it simply never see it)`);
      continue;
    }
    for (const difference of diffSchemas(data, nextData, SchemaPosition.OUTPUT)) {
      add(kindOf(difference.direction, SchemaPosition.OUTPUT), `${operation} error ${code} data${difference.path}`, outputMessage(difference.what, difference.direction));
    }
  }
  diffAuth(old.auth, next.auth, operation, add);
  if (old.idempotent && !next.idempotent) {
    add(ChangeKind.BREAKING, operation, 'no longer idempotent: callers that retry it after a timeout may now run it twice');
  } else if (!old.idempotent && next.idempotent) {
    add(ChangeKind.COMPATIBLE, operation, 'now idempotent');
  }
  // Compatible by the version rule, which is about the callers that match contracts by their major
  // (modules, over the wire): they still call it. A major bump would cost a rolling deploy its
  // module calls and events, and protect no HTTP client, which negotiates no version. Said, so
  // that a reviewer tells the HTTP clients.
  if (old.internal !== true && next.internal === true) {
    add(ChangeKind.COMPATIBLE, operation, 'now internal: modules still call it, but the HTTP gateway no longer serves it (an HTTP client calling it gets 404)');
  } else if (old.internal === true && next.internal !== true) {
    add(ChangeKind.COMPATIBLE, operation, 'no longer internal: the HTTP gateway serves it');
  }
}

/**
 * Who may call an operation, before and after. A caller refused today that was served before is
 * a breaking change; a predicate's own rule cannot be compared (it is code), so a changed rule
 * is for the reviewer.
 */
function diffAuth(
  old: LockedOperation['auth'],
  next: LockedOperation['auth'],
  operation: string,
  add: (kind: ChangeKind, where: string, what: string) => void,
): void {
  if (old === next) return;
  if (old === undefined) {
    add(ChangeKind.BREAKING, operation, `now needs a caller identity (auth: ${next}): anonymous callers are refused with UNAUTHENTICATED`);
  } else if (next === undefined) {
    add(ChangeKind.COMPATIBLE, operation, 'no longer needs a caller identity (auth removed)');
  } else if (next === 'predicate') {
    add(ChangeKind.BREAKING, operation, 'now decided by an auth predicate: callers served today may be refused with FORBIDDEN');
  } else {
    add(ChangeKind.COMPATIBLE, operation, "auth predicate replaced by 'required': any caller identity is served");
  }
}

function inputMessage(what: string, direction: 'wider' | 'narrower' | 'both'): string {
  if (direction === 'narrower' && !what.startsWith('new required')) return `${what} (narrowed: some inputs callers send today are refused)`;
  if (direction === 'both') return `${what} (changed: some inputs callers send today are refused)`;
  return what;
}

/** What a change to what readers receive (an output, an event's payload, an error's data) does to them. */
function outputMessage(what: string, direction: 'wider' | 'narrower' | 'both', readers: 'callers' | 'subscribers' = 'callers'): string {
  if (direction === 'wider' && !what.includes('removed')) return `${what} (widened: ${readers} may receive values they do not expect)`;
  if (direction === 'both') return `${what} (changed: ${readers} may receive values they do not expect)`;
  return what;
}

/**
 * Human-readable diff.
 *
 * @example
 * ```ts
 * process.stdout.write(formatContractsDiff(diffLocks(locked, current)));
 * ```
 */
export function formatContractsDiff(diff: ContractsDiff): string {
  const lines: string[] = [];
  for (const entry of diff.contracts) {
    const versions =
      entry.lockedVersion === undefined
        ? `${entry.version}`
        : entry.version === undefined
          ? `${entry.lockedVersion}`
          : entry.lockedVersion === entry.version
            ? entry.version
            : `${entry.lockedVersion} → ${entry.version}`;
    lines.push(`${entry.contract} ${versions}: ${verdictText(entry)}`);
    for (const change of entry.changes) {
      lines.push(`  ${change.kind === ChangeKind.BREAKING ? 'breaking  ' : 'compatible'}  ${change.where}: ${change.message}`);
    }
  }
  const failing = diff.contracts.filter((entry) => entry.verdict === ContractVerdict.BREAKING || entry.verdict === ContractVerdict.REMOVED);
  if (lines.length > 0) lines.push('');
  if (failing.length > 0) {
    lines.push(
      `keel contracts diff: breaking changes in ${failing.map((entry) => entry.contract).join(', ')}. Undo them, or raise the major version and run \`keel contracts snapshot\`.`,
    );
  } else if (diff.changed) {
    lines.push('keel contracts diff: no unannounced breaking change. Run `keel contracts snapshot` to record the changes in the lock.');
  } else {
    lines.push('keel contracts diff: the contracts match the lock.');
  }
  return `${lines.join('\n')}\n`;
}

function verdictText(entry: ContractDiff): string {
  switch (entry.verdict) {
    case ContractVerdict.UNCHANGED:
      return 'unchanged';
    case ContractVerdict.COMPATIBLE:
      return 'compatible changes';
    case ContractVerdict.MAJOR:
      return 'breaking changes, allowed by the new major version';
    case ContractVerdict.BREAKING:
      return `BREAKING without a major version bump (raise it to ${majorOf(entry.lockedVersion ?? '0') + 1}.0.0 or undo the change)`;
    case ContractVerdict.ADDED:
      return 'new contract';
    case ContractVerdict.REMOVED:
      return 'REMOVED';
  }
}
