/**
 * `keel db migrate` and `keel db status`: the migrations of the modules that own data, in the
 * databases `keel start` would use with the same environment, without starting the
 * application; the embedded database's folder held by one process. On a small application
 * (test/support/data-app.ts) and the machine's PostgreSQL (a database per test that needs one,
 * dropped after).
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { main, renderHelp } from 'keel/cli';
import { runKeel, startKeel, type CliRun } from './support/cli.js';
import { dataTestbed, query } from './support/data-app.js';

const testbed = dataTestbed();
afterAll(() => testbed.cleanup());

/** Output lines with runs of spaces made one, so that a test need not count the padding. */
const lines = (run: CliRun): string[] => run.stdout.trimEnd().split('\n').map((line) => line.replace(/ {2,}/g, ' '));

const ISO_TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/;

describe('cli - keel db', () => {
  it('cli - the embedded database is in .keel/data/<process> by default: app, or the process group keel up names', async () => {
    const app = testbed.app();
    const alone = await runKeel(['db', 'status', '--json'], { cwd: app.root });
    expect(alone.code, alone.stderr).toBe(0);
    expect(JSON.parse(alone.stdout).modules.map((entry: any) => entry.location)).toEqual(['in .keel/data/app', 'in .keel/data/app']);
    const grouped = await runKeel(['db', 'status', '--json'], { cwd: app.root, env: { KEEL_PROCESS_NAME: 'storefront' } });
    expect(grouped.code, grouped.stderr).toBe(0);
    expect(JSON.parse(grouped.stdout).modules.map((entry: any) => entry.location)).toEqual(['in .keel/data/storefront', 'in .keel/data/storefront']);
    expect(existsSync(join(app.root, '.keel/data/app/PG_VERSION'))).toBe(true);
    expect(existsSync(join(app.root, '.keel/data/storefront/PG_VERSION'))).toBe(true);
  }, 60_000);

  it('cli - keel db status shows pending migrations, keel db migrate applies them and says which, then status shows each applied with its time', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    const before = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(before.code, before.stderr).toBe(0);
    expect(lines(before)).toEqual([
      'audit: schema audit, pglite in data',
      ' pending keel/001_outbox_inbox_idempotency',
      ' pending keel/002_outbox_failed',
      ' pending keel/003_outbox_principal',
      ' pending 001_entries.sql',
      ' pending 002_counter.sql',
      'ledger: schema ledger, pglite in data',
      ' pending keel/001_outbox_inbox_idempotency',
      ' pending keel/002_outbox_failed',
      ' pending keel/003_outbox_principal',
      ' pending 001_entries.sql',
    ]);

    const migrated = await runKeel(['db', 'migrate'], { cwd: app.root, env });
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(lines(migrated)).toEqual([
      'audit: schema audit, pglite in data',
      ' applied keel/001_outbox_inbox_idempotency',
      ' applied keel/002_outbox_failed',
      ' applied keel/003_outbox_principal',
      ' applied 001_entries.sql',
      ' applied 002_counter.sql',
      'ledger: schema ledger, pglite in data',
      ' applied keel/001_outbox_inbox_idempotency',
      ' applied keel/002_outbox_failed',
      ' applied keel/003_outbox_principal',
      ' applied 001_entries.sql',
    ]);
    const again = await runKeel(['db', 'migrate'], { cwd: app.root, env });
    expect(lines(again)).toEqual([
      'audit: schema audit, pglite in data',
      ' nothing to apply (5 applied before)',
      'ledger: schema ledger, pglite in data',
      ' nothing to apply (4 applied before)',
    ]);

    const after = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(after.code, after.stderr).toBe(0);
    const states = lines(after).filter((line) => line.startsWith(' '));
    expect(states).toHaveLength(9);
    for (const line of states) expect(line).toMatch(new RegExp(`^ applied ${ISO_TIME.source} \\S+$`));

    const json = await runKeel(['db', 'status', '--json', '--module', 'ledger'], { cwd: app.root, env });
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(true);
    expect(report.modules).toHaveLength(1);
    expect(report.modules[0]).toMatchObject({ module: 'ledger', schema: 'ledger', engine: 'pglite', location: 'in data' });
    expect(report.modules[0].migrations.map((entry: any) => [entry.name, entry.state])).toEqual([
      ['keel/001_outbox_inbox_idempotency', 'applied'],
      ['keel/002_outbox_failed', 'applied'],
      ['keel/003_outbox_principal', 'applied'],
      ['001_entries.sql', 'applied'],
    ]);
    expect(report.modules[0].migrations[0].appliedAt).toMatch(ISO_TIME);
  }, 60_000);

  it('cli - keel db status fails on a changed or a missing migration, naming each, and keel db migrate refuses a changed one', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    expect((await runKeel(['db', 'migrate'], { cwd: app.root, env })).code).toBe(0);
    appendFileSync(join(app.migrationsOf('audit'), '002_counter.sql'), '-- edited after it was applied\n');

    const changed = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(changed.code).toBe(1);
    expect(lines(changed)).toContainEqual(expect.stringMatching(new RegExp(`^ changed ${ISO_TIME.source} 002_counter.sql$`)));
    expect(changed.stderr).toContain('error E_MIGRATIONS: Applied migrations no longer match the files: audit: 002_counter.sql changed after it was applied.\n');
    const json = await runKeel(['db', 'status', '--json'], { cwd: app.root, env });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).ok).toBe(false);

    const refused = await runKeel(['db', 'migrate'], { cwd: app.root, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error INVALID_MODULE: Module "audit": migration 002_counter.sql changed after it was applied to schema "audit".');

    rmSync(join(app.migrationsOf('ledger'), '001_entries.sql'));
    const missing = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(missing.code).toBe(1);
    expect(lines(missing)).toContainEqual(expect.stringMatching(new RegExp(`^ missing ${ISO_TIME.source} 001_entries.sql$`)));
    expect(missing.stderr).toContain(
      'Applied migrations no longer match the files: audit: 002_counter.sql changed after it was applied; ledger: 001_entries.sql was applied and is no longer a file.',
    );
  }, 60_000);

  it('cli - keel db migrate --module migrates that module only, and refuses a module that is not there or owns no data', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'memory' };
    const one = await runKeel(['db', 'migrate', '--module', 'ledger'], { cwd: app.root, env });
    expect(one.code, one.stderr).toBe(0);
    expect(lines(one)[0]).toBe('ledger: schema ledger, pglite in memory');
    expect(one.stdout).not.toContain('audit');
    const unknown = await runKeel(['db', 'migrate', '--module', 'billing'], { cwd: app.root, env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('error E_UNKNOWN_MODULE: No module named "billing" in the manifest (it has: audit, ledger, echo).');
    const dataless = await runKeel(['db', 'status', '--module', 'echo'], { cwd: app.root, env });
    expect(dataless.code).toBe(2);
    expect(dataless.stderr).toContain('error E_USAGE: Module "echo" owns no data');
    expect(dataless.stderr).toContain('Modules that own data: audit, ledger.');
  });

  it('cli - keel db migrate and status use DATABASE_URL as keel start does', async () => {
    const app = testbed.app();
    const database = await testbed.database();
    const env = { DATABASE_URL: database.url };
    const migrated = await runKeel(['db', 'migrate'], { cwd: app.root, env });
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(lines(migrated)).toContain(`audit: schema audit, postgres at ${database.location} (DATABASE_URL)`);
    expect(await query(database.url, 'select count(*)::int as applied from audit.keel_migrations')).toEqual([{ applied: 5 }]);
    const status = await runKeel(['db', 'status', '--json'], { cwd: app.root, env });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).modules.flatMap((entry: any) => entry.migrations.map((migration: any) => migration.state))).toEqual(
      Array(9).fill('applied'),
    );
    expect(existsSync(join(app.root, '.keel'))).toBe(false);
  });

  it('cli - keel db refuses a database URL that is not PostgreSQL\'s, naming the variable and never showing its value', async () => {
    const app = testbed.app();
    const own = await runKeel(['db', 'status'], { cwd: app.root, env: { DATABASE_URL_LEDGER: 'db.internal:5432' } });
    expect(own.code).toBe(1);
    expect(own.stderr).toContain('error INVALID_CONFIG: DATABASE_URL_LEDGER is not a PostgreSQL URL: it is a "db.internal:" URL.');
    const unparsable = await runKeel(['db', 'migrate'], { cwd: app.root, env: { DATABASE_URL: 'postgres://keel:pa#ss@db:5432/shop' } });
    expect(unparsable.code).toBe(1);
    expect(unparsable.stderr).toContain('error INVALID_CONFIG: DATABASE_URL is not a PostgreSQL URL: it does not parse as a URL');
    expect(unparsable.stderr).not.toContain('pa#ss');
    expect(existsSync(join(app.root, '.keel'))).toBe(false);
  });

  it('cli - the embedded database folder serves one process: keel db refuses it while keel start holds it; a lock left by an ended process is taken over', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    const running = await startKeel(['start', '--http', 'off'], { cwd: app.root, env });
    const refused = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('error UNAVAILABLE: The embedded database in data is open in this process already, and PGlite serves one process at a time.');
    expect(await running.stop()).toBe(0);

    const lock = join(app.root, 'data/keel.lock');
    writeFileSync(lock, `${process.ppid}\n`);
    const elsewhere = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toContain(`The embedded database in data is open in process ${process.ppid}`);
    expect(elsewhere.stderr).toContain(`If process ${process.ppid} is not keel, delete data/keel.lock.`);

    const ended = spawnSync(process.execPath, ['-e', '']).pid;
    writeFileSync(lock, `${ended}\n`);
    const taken = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(taken.code, taken.stderr).toBe(0);
    expect(existsSync(lock)).toBe(false);
  }, 60_000);

  it('cli - help explains keel db and its sub-commands', async () => {
    expect(await renderHelp(main, ['db'])).toMatchInlineSnapshot(`
      "Apply and show the migrations of the modules that own data (keel db)

      USAGE keel db migrate|status

      COMMANDS

        migrate    Apply the pending migrations of the modules that own data, without starting the application
         status    Show each migration of the modules that own data: applied, pending, changed or missing

      Use keel db <command> --help for more information about a command.

      EXAMPLES

        $ keel db status
        $ keel db migrate
        $ DATABASE_URL=postgres://keel@db.internal:5432/shop keel db migrate --module orders
      "
    `);
    expect(await renderHelp(main, ['db', 'migrate'])).toMatchInlineSnapshot(`
      "Apply the pending migrations of the modules that own data, without starting the application (keel db migrate)

      USAGE keel db migrate [OPTIONS]

      OPTIONS

        --module=<name>    Only this module (default: every module that owns data)
                 --json    Print what was applied as JSON (Default: false)

      EXAMPLES

        $ keel db migrate
        $ keel db migrate --module orders
        $ KEEL_PROCESS_NAME=storefront keel db migrate --json
      "
    `);
    expect(await renderHelp(main, ['db', 'status'])).toMatchInlineSnapshot(`
      "Show each migration of the modules that own data: applied, pending, changed or missing (keel db status)

      USAGE keel db status [OPTIONS]

      OPTIONS

        --module=<name>    Only this module (default: every module that owns data)
                 --json    Print the status as JSON; the exit code is the same (Default: false)

      EXAMPLES

        $ keel db status
        $ keel db status --module orders --json
      "
    `);
  });
});
