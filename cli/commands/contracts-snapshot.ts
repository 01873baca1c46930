/**
 * `keel contracts snapshot`: writes every contract's JSON Schemas to the lock file.
 */
import { relative, resolve } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { ROOT_ARG, importerFor, projectAt } from '../tooling/command-support.js';
import { loadContracts } from '../tooling/contract-loader.js';
import { buildLock, lockPath, writeLock } from '../tooling/contracts-lock.js';

export default defineCommand({
  meta: {
    name: 'snapshot',
    description: "Write every contract's JSON Schemas to contracts.lock.json (commit it)",
    examples: ['keel contracts snapshot'],
  },
  args: {
    lock: { type: 'string', description: 'Lock file (default: contracts.lock.json at the project root)', valueHint: 'file' },
    root: ROOT_ARG,
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = projectAt(cli.cwd, args.root);
    const { contracts, failures } = await loadContracts(project.root, importerFor(project));
    if (failures.length > 0) {
      const list = failures.map((failure) => `  ${failure.file}: ${(failure.error as Error).message ?? String(failure.error)}`).join('\n');
      throw new CLIError(CliErrorCode.E_CONTRACTS, `Cannot snapshot: ${failures.length} contract file(s) failed to load:\n${list}`, {
        hint: 'Fix them first (`keel check` says more).',
      });
    }
    const path = args.lock === undefined ? lockPath(project.root) : resolve(cli.cwd, args.lock);
    const changed = writeLock(path, buildLock(contracts.map((loaded) => loaded.contract)));
    const shown = relative(cli.cwd, path) || path;
    const names = contracts.map((loaded) => `${loaded.contract.name}@${loaded.contract.version}`).join(', ');
    cli.stdout.write(changed ? `keel contracts snapshot: wrote ${shown} (${names}).\n` : `keel contracts snapshot: ${shown} is up to date (${names}).\n`);
  },
});
