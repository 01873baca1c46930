/**
 * `keel contracts diff`: compares the contracts with the lock file, classifies every change as
 * compatible or breaking, and fails on a breaking change unless the major version was raised.
 */
import { resolve } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { ROOT_ARG, importerFor, projectAt } from '../tooling/command-support.js';
import { loadContracts } from '../tooling/contract-loader.js';
import { diffLocks, formatContractsDiff } from '../tooling/contracts-diff.js';
import { buildLock, lockPath, readLock, type ContractsLock } from '../tooling/contracts-lock.js';

export default defineCommand({
  meta: {
    name: 'diff',
    description: 'Classify contract changes against contracts.lock.json; fail on an unannounced breaking change',
    examples: ['keel contracts diff', 'keel contracts diff --strict', 'keel contracts diff --json'],
  },
  args: {
    lock: { type: 'string', description: 'Lock file (default: contracts.lock.json at the project root)', valueHint: 'file' },
    strict: {
      type: 'boolean',
      description: 'Also fail on a change the lock has not recorded (run `keel contracts snapshot`)',
      default: false,
    },
    json: { type: 'boolean', description: 'Print the diff as JSON', default: false },
    root: ROOT_ARG,
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = projectAt(cli.cwd, args.root);
    const path = args.lock === undefined ? lockPath(project.root) : resolve(cli.cwd, args.lock);
    let locked: ContractsLock;
    try {
      locked = readLock(path);
    } catch (error) {
      throw new CLIError(CliErrorCode.E_CONTRACTS, (error as Error).message, { cause: error });
    }
    const { contracts, failures } = await loadContracts(project.root, importerFor(project));
    if (failures.length > 0) {
      const list = failures.map((failure) => `  ${failure.file}: ${(failure.error as Error).message ?? String(failure.error)}`).join('\n');
      throw new CLIError(CliErrorCode.E_CONTRACTS, `Cannot diff: ${failures.length} contract file(s) failed to load:\n${list}`, {
        hint: 'Fix them first (`keel check` says more).',
      });
    }
    const diff = diffLocks(locked, buildLock(contracts.map((loaded) => loaded.contract)));
    cli.stdout.write(args.json ? `${JSON.stringify(diff, null, 2)}\n` : formatContractsDiff(diff));
    if (!diff.ok) {
      const failing = diff.contracts.filter((entry) => entry.verdict === 'breaking' || entry.verdict === 'removed').map((entry) => entry.contract);
      throw new CLIError(CliErrorCode.E_CONTRACTS, `Breaking contract change without a major version bump: ${failing.join(', ')}.`, {
        hint: 'Undo the change, or raise the major version (callers must upgrade) and run `keel contracts snapshot`.',
      });
    }
    if (args.strict && diff.changed) {
      // A contract the lock does not hold, or holds as it was, is guarded against nothing: a later
      // breaking change to it would pass. --strict makes CI insist that the lock is kept current.
      const unrecorded = diff.contracts.filter((entry) => entry.verdict !== 'unchanged').map((entry) => entry.contract);
      throw new CLIError(CliErrorCode.E_CONTRACTS, `The lock is out of date (--strict): ${unrecorded.join(', ')} changed since it was written.`, {
        hint: 'Run `keel contracts snapshot` and commit contracts.lock.json with the change.',
      });
    }
  },
});
