import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadContracts } from '../cli/tooling/contract-loader.js';
import { ContractVerdict, diffLocks, formatContractsDiff } from '../cli/tooling/contracts-diff.js';
import { buildLock, lockPath, readLock } from '../cli/tooling/contracts-lock.js';
import { before, cases, parcels } from './fixtures/tooling/contracts/changes.js';
import { runKeel, type CliRun } from './support/cli.js';

const repository = fileURLToPath(new URL('..', import.meta.url));
const tree = (name: string) => fileURLToPath(new URL(`./fixtures/tooling/contracts/${name}/`, import.meta.url));

async function keel(argv: string[]): Promise<CliRun> {
  return runKeel(argv, { cwd: repository });
}

async function diffTree(name: string) {
  const root = tree(name);
  const { contracts, failures } = await loadContracts(root);
  expect(failures).toEqual([]);
  return diffLocks(readLock(lockPath(root)), buildLock(contracts.map((loaded) => loaded.contract)));
}

describe('tooling - contracts', () => {
  it.each(cases.map((change) => [change.rule, change.kind, change] as const))('tooling - contracts classifies %s as %s', (_rule, _kind, { after, kind, shows }) => {
    const diff = diffLocks(buildLock([before]), buildLock([after]));
    const [entry] = diff.contracts;
    const described = entry?.changes.map((change) => `${change.where}: ${change.message}`) ?? [];
    const matching = entry?.changes.filter((change) => `${change.where}: ${change.message}`.includes(shows)) ?? [];
    expect(matching, `expected a change showing "${shows}" among:\n${described.join('\n')}`).toHaveLength(1);
    expect(matching[0]?.kind).toBe(kind);
    // Exactly one change was planted: nothing else may be reported as breaking.
    expect(entry?.changes.filter((change) => change.kind === 'breaking').length).toBe(kind === 'breaking' ? 1 : 0);
    expect(entry?.verdict).toBe(kind === 'breaking' ? ContractVerdict.BREAKING : ContractVerdict.COMPATIBLE);
    expect(diff.ok).toBe(kind === 'compatible');
  });

  it('tooling - contracts classifies auth changes: a predicate where any identity was served is breaking; auth removed, or a predicate made required, is compatible', () => {
    const change = (from: Parameters<typeof parcels>[0], to: Parameters<typeof parcels>[0]) =>
      diffLocks(buildLock([parcels(from)]), buildLock([parcels(to)])).contracts[0]?.changes.map((entry) => [entry.kind, entry.message]);
    expect(change({ sendAuth: 'required' }, { sendAuth: 'admins' })).toEqual([
      ['breaking', 'now decided by an auth predicate: callers served today may be refused with FORBIDDEN'],
    ]);
    expect(change({ sendAuth: 'admins' }, {})).toEqual([['compatible', 'no longer needs a caller identity (auth removed)']]);
    expect(change({ sendAuth: 'admins' }, { sendAuth: 'required' })).toEqual([['compatible', "auth predicate replaced by 'required': any caller identity is served"]]);
    // The lock records who may call, never the rule itself: two predicates compare equal.
    expect(buildLock([parcels({ sendAuth: 'admins' })]).contracts['parcels']?.operations['send']?.auth).toBe('predicate');
  });

  it('tooling - contracts: an internal operation is locked as such, and made public again is compatible; a lock without the field reads as public', () => {
    expect(buildLock([parcels({ sendInternal: true })]).contracts['parcels']?.operations['send']?.internal).toBe(true);
    expect(buildLock([parcels()]).contracts['parcels']?.operations['send']).not.toHaveProperty('internal');
    const changes = diffLocks(buildLock([parcels({ sendInternal: true })]), buildLock([parcels()])).contracts[0]?.changes.map((entry) => [entry.kind, entry.message]);
    expect(changes).toEqual([['compatible', 'no longer internal: the HTTP gateway serves it']]);
  });

  it('tooling - contracts allows a breaking change when the major version was raised', async () => {
    const diff = await diffTree('major');
    expect(diff.ok).toBe(true);
    expect(diff.contracts[0]).toMatchObject({ contract: 'parcels', lockedVersion: '1.0.0', version: '2.0.0', verdict: 'major' });
    expect(formatContractsDiff(diff)).toContain('parcels 1.0.0 → 2.0.0: breaking changes, allowed by the new major version');
  });

  it('tooling - contracts fails a breaking change without a major version bump', async () => {
    const diff = await diffTree('breaking');
    expect(diff.ok).toBe(false);
    const text = formatContractsDiff(diff);
    expect(text).toContain('parcels 1.0.0: BREAKING without a major version bump (raise it to 2.0.0 or undo the change)');
    expect(text).toContain('breaking    send input.recipient: new required field "recipient"');
  });

  it('tooling - contracts passes a compatible change and says the lock is behind', async () => {
    const diff = await diffTree('compatible');
    expect(diff).toMatchObject({ ok: true, changed: true });
    expect(formatContractsDiff(diff)).toContain('Run `keel contracts snapshot` to record the changes in the lock.');
  });

  it('tooling - contracts fails when a contract disappears', () => {
    const diff = diffLocks(buildLock([before]), buildLock([]));
    expect(diff.ok).toBe(false);
    expect(diff.contracts[0]?.verdict).toBe(ContractVerdict.REMOVED);
  });

  it('tooling - contracts of the repository have no unannounced breaking change against contracts.lock.json', async () => {
    const { contracts, failures } = await loadContracts(repository);
    expect(failures).toEqual([]);
    const current = buildLock(contracts.map((loaded) => loaded.contract));
    const diff = diffLocks(readLock(lockPath(repository)), current);
    // What CI runs (`keel contracts diff`): no breaking change without a major bump.
    expect(formatContractsDiff(diff)).not.toContain('BREAKING');
    expect(diff.ok).toBe(true);
  });

  it('tooling - contracts lock writes input schemas with io input and outputs with io output', () => {
    const lock = buildLock([before]);
    const send = lock.contracts['parcels']?.operations['send'];
    // `express` has a default: optional for callers (input), and no additionalProperties: false on inputs.
    expect(send?.input).toMatchObject({ type: 'object', required: ['address', 'weightGrams'] });
    expect(send?.input).not.toHaveProperty('additionalProperties');
    expect(send?.output).toMatchObject({ additionalProperties: false });
    expect(Object.keys(send?.errors ?? {})).toEqual(['UNKNOWN_PARCEL']);
  });

  it('tooling - contracts snapshot command writes the lock, then finds it up to date', async () => {
    const lock = join(mkdtempSync(join(tmpdir(), 'keel-lock-')), 'contracts.lock.json');
    const first = await keel(['contracts', 'snapshot', '--root', tree('major'), '--lock', lock]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toContain('keel contracts snapshot: wrote');
    expect(first.stdout).toContain('(parcels@2.0.0)');
    expect(readLock(lock).contracts['parcels']?.version).toBe('2.0.0');
    const written = readFileSync(lock, 'utf8');
    const second = await keel(['contracts', 'snapshot', '--root', tree('major'), '--lock', lock]);
    expect(second.stdout).toContain('is up to date (parcels@2.0.0)');
    expect(readFileSync(lock, 'utf8')).toBe(written);
  });

  it('tooling - contracts diff command exits 1 with E_CONTRACTS on a breaking change only', async () => {
    const breaking = await keel(['contracts', 'diff', '--root', tree('breaking')]);
    expect(breaking.code).toBe(1);
    expect(breaking.stdout).toContain('send input.recipient: new required field "recipient"');
    expect(breaking.stderr).toContain('error E_CONTRACTS: Breaking contract change without a major version bump: parcels.');

    expect((await keel(['contracts', 'diff', '--root', tree('major')])).code).toBe(0);
    expect((await keel(['contracts', 'diff', '--root', tree('compatible')])).code).toBe(0);
    const json = await keel(['contracts', 'diff', '--json', '--root', tree('compatible')]);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, changed: true, contracts: [{ contract: 'parcels', verdict: 'compatible' }] });
  });

  it('tooling - contracts diff --strict also fails on a change the lock has not recorded, and passes a current lock', async () => {
    const compatible = await keel(['contracts', 'diff', '--strict', '--root', tree('compatible')]);
    expect(compatible.code).toBe(1);
    expect(compatible.stderr).toContain('error E_CONTRACTS: The lock is out of date (--strict): parcels changed since it was written.');
    expect(compatible.stderr).toContain('Run `keel contracts snapshot` and commit contracts.lock.json with the change.');
    expect((await keel(['contracts', 'diff', '--strict', '--root', tree('major')])).code).toBe(1);
    // A lock written from the tree itself is current: --strict passes it.
    const lock = join(mkdtempSync(join(tmpdir(), 'keel-lock-')), 'contracts.lock.json');
    await keel(['contracts', 'snapshot', '--root', tree('compatible'), '--lock', lock]);
    expect(await keel(['contracts', 'diff', '--strict', '--root', tree('compatible'), '--lock', lock])).toMatchObject({ code: 0, stderr: '' });
  });

  it('tooling - contracts diff command says what to do when there is no lock', async () => {
    const missing = join(mkdtempSync(join(tmpdir(), 'keel-lock-')), 'contracts.lock.json');
    const { code, stderr } = await keel(['contracts', 'diff', '--root', tree('major'), '--lock', missing]);
    expect(code).toBe(1);
    expect(stderr).toContain('does not exist. Write it with `keel contracts snapshot` and commit it.');
  });

  it('tooling - contracts diff --strict passes on the repository: its lock is current (what CI runs)', async () => {
    const { code, stdout } = await keel(['contracts', 'diff', '--strict']);
    expect(stdout).not.toContain('BREAKING');
    expect(code).toBe(0);
  });
});
