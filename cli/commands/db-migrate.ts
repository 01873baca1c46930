/**
 * `keel db migrate`: applies the pending migrations of every module that owns data (or of the
 * one named) in the databases `keel start` would use with the same environment, without
 * starting the application, and prints what it applied per module. With `--json`, a module that
 * fails still leaves the record of those applied before it on stdout (`failed` names it).
 */
import { contextOf, defineCommand } from '../command.js';
import { noDataModule, eachModuleDatabase, migrate, placeLine, type ModuleDatabasePlace } from '../migrations.js';

export default defineCommand({
  meta: {
    name: 'migrate',
    description: 'Apply the pending migrations of the modules that own data, without starting the application',
    examples: ['keel db migrate', 'keel db migrate --module orders', 'KEEL_PROCESS_NAME=storefront KEEL_MODULES=catalog,orders keel db migrate --json'],
  },
  args: {
    module: { type: 'string', description: 'Only this module (default: every module that owns data, of $KEEL_MODULES when set)', valueHint: 'name' },
    json: { type: 'boolean', description: 'Print what was applied as JSON', default: false },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const done: (ModuleDatabasePlace & { applied: string[] })[] = [];
    let current: ModuleDatabasePlace | undefined;
    const modules = await eachModuleDatabase(cli, args.module, async ({ place, connection, migrations }) => {
      const applied = await migrate(connection, place.module, place.schema, migrations, {
        onLockWait: (message) => cli.stderr.write(`keel db: ${message}\n`),
      });
      done.push({ ...place, applied });
      if (!args.json) {
        const lines = applied.length > 0 ? applied.map((name) => `  applied  ${name}`) : [`  nothing to apply (${migrations.length} applied before)`];
        cli.stdout.write(`${[placeLine(place), ...lines].join('\n')}\n`);
      }
      return applied;
    }, (place) => (current = place)).catch((error: unknown) => {
      // The record of what this run applied, before the module that failed: the error itself goes to stderr.
      if (args.json && (current !== undefined || done.length > 0)) {
        // No module to name when every one was migrated and what failed came after (the databases' close).
        const where = current !== undefined && !done.some((entry) => entry.module === current?.module) ? current : {};
        const failed = { ...where, code: (error as { code?: unknown }).code ?? 'INTERNAL', message: (error as Error).message };
        cli.stdout.write(`${JSON.stringify({ modules: done, failed }, null, 2)}\n`);
      }
      throw error;
    });
    if (args.json) {
      cli.stdout.write(`${JSON.stringify({ modules: modules.map(({ place, result }) => ({ ...place, applied: result })) }, null, 2)}\n`);
    } else if (modules.length === 0) {
      cli.stdout.write(`keel db: ${noDataModule(cli.env)}\n`);
    }
  },
});
