/**
 * `keel db status`: where each module that owns data stands: its schema, its database, and
 * each migration applied (with its time), pending, changed since it was applied, or applied and
 * missing from the files. Fails (`E_MIGRATIONS`) on a changed or missing one, so that CI can
 * gate on it; pending ones are what `keel db migrate` and `keel start` apply.
 */
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { NO_DATA_MODULE, eachModuleDatabase, migrationStatus, placeLine, type MigrationState } from '../migrations.js';

/** Why a state fails the status, as the error names it. */
const PROBLEM: Partial<Record<MigrationState['state'], string>> = {
  changed: 'changed after it was applied',
  missing: 'was applied and is no longer a file',
};

/** `  applied  2026-11-30T10:00:00.000Z  001_entries.sql`: state, time applied (blank when pending), name. */
function stateLine({ name, state, appliedAt }: MigrationState): string {
  return `  ${state.padEnd(8)} ${(appliedAt ?? '').padEnd(24)}  ${name}`;
}

export default defineCommand({
  meta: {
    name: 'status',
    description: 'Show each migration of the modules that own data: applied, pending, changed or missing',
    examples: ['keel db status', 'keel db status --module orders --json'],
  },
  args: {
    module: { type: 'string', description: 'Only this module (default: every module that owns data)', valueHint: 'name' },
    json: { type: 'boolean', description: 'Print the status as JSON; the exit code is the same', default: false },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const modules = await eachModuleDatabase(cli, args.module, ({ connection, migrations }) => migrationStatus(connection, migrations));
    const problems = modules.flatMap(({ place, result }) =>
      result.filter(({ state }) => PROBLEM[state] !== undefined).map(({ name, state }) => `${place.module}: ${name} ${PROBLEM[state]}`),
    );
    if (args.json) {
      const report = { ok: problems.length === 0, modules: modules.map(({ place, result }) => ({ ...place, migrations: result })) };
      cli.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else if (modules.length === 0) {
      cli.stdout.write(`keel db: ${NO_DATA_MODULE}\n`);
    } else {
      cli.stdout.write(`${modules.flatMap(({ place, result }) => [placeLine(place), ...result.map(stateLine)]).join('\n')}\n`);
    }
    if (problems.length > 0) {
      throw new CLIError(CliErrorCode.E_MIGRATIONS, `Applied migrations no longer match the files: ${problems.join('; ')}.`, {
        hint: 'An applied migration is history: restore the file as it was applied, and put a change in a new migration.',
      });
    }
  },
});
