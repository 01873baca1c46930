/**
 * `keel db status`: where each module that owns data stands: its schema, its database, and
 * each migration applied (with its time), pending, changed since it was applied, or applied and
 * missing from the files. Fails (`E_MIGRATIONS`) on a changed or missing one, or a pending one
 * that sorts before the last applied one (which `keel start` refuses), so that CI can gate on it; pending ones are what `keel db migrate` and `keel start` apply. Changes nothing:
 * a schema that does not exist yet (nor its role, nor the embedded database's folder) is shown
 * as such, every migration pending, and is not created; read-only database rights suffice.
 */
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { noDataModule, inspectEachModuleDatabase, migrationStatus, placeLine, type MigrationState } from '../migrations.js';

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
    module: { type: 'string', description: 'Only this module (default: every module that owns data, of $KEEL_MODULES when set)', valueHint: 'name' },
    json: { type: 'boolean', description: 'Print the status as JSON; the exit code is the same', default: false },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const modules = await inspectEachModuleDatabase(cli, args.module, async ({ connection, migrations }) => ({
      schemaExists: connection !== undefined,
      migrations:
        connection === undefined ? migrations.map(({ name }): MigrationState => ({ name, state: 'pending' })) : await migrationStatus(connection, migrations),
    }));
    const problems = modules.flatMap(({ place, result }) =>
      result.migrations
        .filter(({ state, sortsBefore }) => PROBLEM[state] !== undefined || sortsBefore !== undefined)
        .map(({ name, state, renamedAs, sortsBefore }) =>
          sortsBefore !== undefined
            ? `${place.module}: ${name} is pending and sorts before ${sortsBefore}, applied (keel start refuses it; rename it to sort after ${sortsBefore})`
            : `${place.module}: ${name} ${PROBLEM[state]}${renamedAs === undefined ? '' : ` (${renamedAs} has its content: renamed, which keel start refuses; name it back ${name})`}`,
        ),
    );
    if (args.json) {
      const report = { ok: problems.length === 0, modules: modules.map(({ place, result }) => ({ ...place, ...result })) };
      cli.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else if (modules.length === 0) {
      cli.stdout.write(`keel db: ${noDataModule(cli.env)}\n`);
    } else {
      const text = modules.flatMap(({ place, result }) => [
        placeLine(place),
        ...(result.schemaExists ? [] : [`  schema ${place.schema} does not exist yet (keel db migrate or keel start creates it)`]),
        ...result.migrations.map(stateLine),
      ]);
      cli.stdout.write(`${text.join('\n')}\n`);
    }
    if (problems.length > 0) {
      throw new CLIError(CliErrorCode.E_MIGRATIONS, `Applied migrations no longer match the files: ${problems.join('; ')}.`, {
        hint: 'An applied migration is history: restore the file as it was applied, and put a change in a new migration.',
      });
    }
  },
});
