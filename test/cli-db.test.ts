/**
 * `keel db migrate` and `keel db status`: the migrations of the modules that own data, in the
 * databases `keel start` would use with the same environment, without starting the
 * application; the embedded database's folder held by one process. On a small application
 * (test/support/data-app.ts) and the machine's PostgreSQL (a database per test that needs one,
 * dropped after).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { afterAll, describe, expect, it } from 'vitest';
import { main, renderHelp } from 'keel/cli';
import { runKeel, startKeel, type CliRun } from './support/cli.js';
import { dataTestbed, query } from './support/data-app.js';
import { TEST_POSTGRES_URL } from './support/databases.js';

const testbed = dataTestbed();
/** Roles made on the test server (a server's roles outlive its databases): dropped once the databases are. */
const roles: string[] = [];
afterAll(async () => {
  await testbed.cleanup();
  for (const role of roles) await query(TEST_POSTGRES_URL, `drop role if exists ${role}`);
});

/**
 * An application whose one module owns data and has a name of its own (`probe` and random hex):
 * PostgreSQL's roles belong to the server, so a module role another test made must not be
 * mistaken for one this test's command made. Its role is dropped after the file.
 */
function probeApp(): { root: string; module: string } {
  const app = testbed.app();
  const module = `probe${randomBytes(4).toString('hex')}`;
  roles.push(`keel_${module}`);
  mkdirSync(join(app.root, 'modules/probe/migrations'), { recursive: true });
  writeFileSync(join(app.root, 'modules/probe/migrations/001_items.sql'), 'create table items (id integer primary key);\n');
  writeFileSync(
    join(app.root, 'modules/probe.ts'),
    [
      "import { z } from 'zod';",
      "import { defineContract, defineModule, operation } from 'keel';",
      `const probe = defineContract({ name: '${module}', version: '1.0.0', operations: { count: operation({ input: z.object({}), output: z.object({ n: z.number() }), idempotent: true }) } });`,
      "export const probeModule = defineModule({ contract: probe, data: { migrations: new URL('./probe/migrations/', import.meta.url) }, create: () => ({ handlers: { count: () => ({ n: 0 }) } }) });",
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(app.root, 'modules/index.ts'),
    ["import type { AnyModule } from 'keel';", "import { probeModule } from './probe.js';", 'export const modules: readonly AnyModule[] = [probeModule];', ''].join('\n'),
  );
  return { root: app.root, module };
}

/** The schema and the role of `module` that exist in the database at `url`: [] when neither does. */
async function schemaAndRole(url: string, module: string): Promise<string[]> {
  const schemas = await query(url, `select schema_name as name from information_schema.schemata where schema_name = '${module}'`);
  const roles = await query(url, `select rolname as name from pg_roles where rolname = 'keel_${module}'`);
  return [...schemas, ...roles].map((row) => row.name);
}

const PROBE_PENDING = [' pending keel/001_outbox_inbox_idempotency', ' pending keel/002_outbox_failed', ' pending keel/003_outbox_principal', ' pending 001_items.sql'];

/** Output lines with runs of spaces made one, so that a test need not count the padding. */
const lines = (run: CliRun): string[] => run.stdout.trimEnd().split('\n').map((line) => line.replace(/ {2,}/g, ' '));

const ISO_TIME = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z/;

describe('cli - keel db', () => {
  it('cli - the embedded database is in .keel/data/<process> by default: app, or the process group keel up names', async () => {
    const app = testbed.app();
    const alone = await runKeel(['db', 'migrate', '--json'], { cwd: app.root });
    expect(alone.code, alone.stderr).toBe(0);
    expect(JSON.parse(alone.stdout).modules.map((entry: any) => entry.location)).toEqual(['in .keel/data/app', 'in .keel/data/app']);
    const grouped = await runKeel(['db', 'migrate', '--json'], { cwd: app.root, env: { KEEL_PROCESS_NAME: 'storefront' } });
    expect(grouped.code, grouped.stderr).toBe(0);
    expect(JSON.parse(grouped.stdout).modules.map((entry: any) => entry.location)).toEqual(['in .keel/data/storefront', 'in .keel/data/storefront']);
    expect(existsSync(join(app.root, '.keel/data/app/PG_VERSION'))).toBe(true);
    expect(existsSync(join(app.root, '.keel/data/storefront/PG_VERSION'))).toBe(true);
    const status = await runKeel(['db', 'status', '--json'], { cwd: app.root, env: { KEEL_PROCESS_NAME: 'checkout' } });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout).modules.map((entry: any) => entry.location)).toEqual(['in .keel/data/checkout', 'in .keel/data/checkout']);
    expect(existsSync(join(app.root, '.keel/data/checkout'))).toBe(false);
  }, 60_000);

  it('cli - keel db status on a fresh PostgreSQL creates no schema and no role: it says the schema does not exist yet, every migration pending; after keel db migrate, applied', async () => {
    const { root, module } = probeApp();
    const database = await testbed.database();
    const env = { DATABASE_URL: database.url };
    const before = await runKeel(['db', 'status'], { cwd: root, env });
    expect(before.code, before.stderr).toBe(0);
    expect(await schemaAndRole(database.url, module)).toEqual([]);
    expect(lines(before)).toEqual([
      `${module}: schema ${module}, postgres at ${database.location} (DATABASE_URL)`,
      ` schema ${module} does not exist yet (keel db migrate or keel start creates it)`,
      ...PROBE_PENDING,
    ]);
    const json = JSON.parse((await runKeel(['db', 'status', '--json'], { cwd: root, env })).stdout);
    expect(json.modules.map((entry: any) => [entry.schemaExists, entry.migrations.map((migration: any) => migration.state)])).toEqual([[false, Array(4).fill('pending')]]);
    expect(await schemaAndRole(database.url, module)).toEqual([]);

    const migrated = await runKeel(['db', 'migrate'], { cwd: root, env });
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(await schemaAndRole(database.url, module)).toEqual([module, `keel_${module}`]);
    const after = await runKeel(['db', 'status'], { cwd: root, env });
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).not.toContain('does not exist');
    expect(lines(after).slice(1).map((line) => line.replace(ISO_TIME, 'TIME'))).toEqual(PROBE_PENDING.map((line) => line.replace(' pending', ' applied TIME')));
    expect(JSON.parse((await runKeel(['db', 'status', '--json'], { cwd: root, env })).stdout).modules[0].schemaExists).toBe(true);
  }, 60_000);

  it('cli - keel db status runs as a read-only PostgreSQL user (no CREATE, no CREATEROLE); a schema it may not read is FORBIDDEN, naming the grants', async () => {
    const { root, module } = probeApp();
    const database = await testbed.database();
    const reader = `keel_test_reader_${randomBytes(4).toString('hex')}`;
    roles.push(reader);
    await query(TEST_POSTGRES_URL, `create role ${reader} login`);
    const readerUrl = new URL(database.url);
    readerUrl.username = reader;
    const env = { DATABASE_URL: readerUrl.toString() };
    expect(await query(database.url, `select rolcreaterole, has_database_privilege('${reader}', current_database(), 'CREATE') as creates from pg_roles where rolname = '${reader}'`)).toEqual([
      { rolcreaterole: false, creates: false },
    ]);

    const fresh = await runKeel(['db', 'status'], { cwd: root, env });
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(lines(fresh).slice(1)).toEqual([` schema ${module} does not exist yet (keel db migrate or keel start creates it)`, ...PROBE_PENDING]);
    expect(await schemaAndRole(database.url, module)).toEqual([]);

    expect((await runKeel(['db', 'migrate'], { cwd: root, env: { DATABASE_URL: database.url } })).code).toBe(0);
    const refused = await runKeel(['db', 'status'], { cwd: root, env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`error FORBIDDEN: The database user ${reader} may not read the migrations of schema "${module}" at ${database.location}.`);
    expect(refused.stderr).toContain(`grant pg_read_all_data to ${reader}`);

    await query(database.url, `grant usage on schema ${module} to ${reader}`);
    const noSelect = await runKeel(['db', 'status'], { cwd: root, env });
    expect(noSelect.code).toBe(1);
    expect(noSelect.stderr).toContain(`error FORBIDDEN: The database user ${reader} may not read the migrations of schema "${module}"`);

    // USAGE and SELECT on the ledger, the pair docs/cli.md names, is enough.
    await query(database.url, `grant select on ${module}.keel_migrations to ${reader}`);
    const granted = await runKeel(['db', 'status', '--json'], { cwd: root, env });
    expect(granted.code, granted.stderr).toBe(0);
    expect(JSON.parse(granted.stdout).modules.map((entry: any) => [entry.schemaExists, entry.migrations.map((migration: any) => migration.state)])).toEqual([[true, Array(4).fill('applied')]]);

    await query(database.url, `revoke select on ${module}.keel_migrations from ${reader}`);
    await query(database.url, `revoke usage on schema ${module} from ${reader}`);
    await query(database.url, `grant pg_read_all_data to ${reader}`);
    const allowed = await runKeel(['db', 'status', '--json'], { cwd: root, env });
    expect(allowed.code, allowed.stderr).toBe(0);
    expect(JSON.parse(allowed.stdout).modules.map((entry: any) => [entry.schemaExists, entry.migrations.map((migration: any) => migration.state)])).toEqual([[true, Array(4).fill('applied')]]);
  }, 60_000);

  it('cli - keel db status on an embedded database not made yet creates no folder; on one made, a schema not made yet is shown as such and stays unmade', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    const none = await runKeel(['db', 'status', '--json'], { cwd: app.root, env });
    expect(none.code, none.stderr).toBe(0);
    expect(existsSync(join(app.root, 'data'))).toBe(false);
    expect(JSON.parse(none.stdout).modules.map((entry: any) => [entry.module, entry.location, entry.schemaExists])).toEqual([
      ['audit', 'in data', false],
      ['ledger', 'in data', false],
    ]);

    expect((await runKeel(['db', 'migrate', '--module', 'ledger'], { cwd: app.root, env })).code).toBe(0);
    const half = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(half.code, half.stderr).toBe(0);
    expect(lines(half).slice(0, 7)).toEqual([
      'audit: schema audit, pglite in data',
      ' schema audit does not exist yet (keel db migrate or keel start creates it)',
      ' pending keel/001_outbox_inbox_idempotency',
      ' pending keel/002_outbox_failed',
      ' pending keel/003_outbox_principal',
      ' pending 001_entries.sql',
      ' pending 002_counter.sql',
    ]);
    expect(lines(half).slice(7).map((line) => line.replace(ISO_TIME, 'TIME'))).toEqual([
      'ledger: schema ledger, pglite in data',
      ' applied TIME keel/001_outbox_inbox_idempotency',
      ' applied TIME keel/002_outbox_failed',
      ' applied TIME keel/003_outbox_principal',
      ' applied TIME 001_entries.sql',
    ]);
    const pglite = await PGlite.create({ dataDir: join(app.root, 'data') });
    try {
      const made = await pglite.query<{ name: string }>(
        "select schema_name as name from information_schema.schemata where schema_name in ('audit', 'ledger') union all select rolname from pg_roles where rolname in ('keel_audit', 'keel_ledger') order by 1",
      );
      expect(made.rows.map((row) => row.name)).toEqual(['keel_ledger', 'ledger']);
    } finally {
      await pglite.close();
    }
  }, 60_000);

  it('cli - keel db status shows pending migrations, keel db migrate applies them and says which, then status shows each applied with its time', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    const before = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(before.code, before.stderr).toBe(0);
    expect(lines(before)).toEqual([
      'audit: schema audit, pglite in data',
      ' schema audit does not exist yet (keel db migrate or keel start creates it)',
      ' pending keel/001_outbox_inbox_idempotency',
      ' pending keel/002_outbox_failed',
      ' pending keel/003_outbox_principal',
      ' pending 001_entries.sql',
      ' pending 002_counter.sql',
      'ledger: schema ledger, pglite in data',
      ' schema ledger does not exist yet (keel db migrate or keel start creates it)',
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

  it('cli - keel db migrate --json still records the modules it migrated when a later one fails, naming the one that failed; keel db status fails on a pending migration merged below an applied one', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    writeFileSync(join(app.migrationsOf('ledger'), '002_broken.sql'), 'select * from no_such_table;\n');
    const failed = await runKeel(['db', 'migrate', '--json'], { cwd: app.root, env });
    expect(failed.code).toBe(1);
    expect(failed.stderr).toContain('error INVALID_MODULE: Module "ledger": migration 002_broken.sql failed in schema "ledger"');
    const report = JSON.parse(failed.stdout);
    expect(report.modules.map((entry: any) => [entry.module, entry.applied.filter((name: string) => !name.startsWith('keel/'))])).toEqual([
      ['audit', ['001_entries.sql', '002_counter.sql']],
    ]);
    expect(report.failed).toMatchObject({ module: 'ledger', schema: 'ledger', code: 'INVALID_MODULE', message: expect.stringContaining('002_broken.sql') });

    rmSync(join(app.migrationsOf('ledger'), '002_broken.sql'));
    // A module that fails before its migrations run (a file it refuses to read) is named too.
    writeFileSync(join(app.migrationsOf('ledger'), '002_upper.SQL'), 'create table upper_case (id int);\n');
    const unread = await runKeel(['db', 'migrate', '--json'], { cwd: app.root, env });
    expect(unread.code).toBe(1);
    expect(JSON.parse(unread.stdout)).toMatchObject({ modules: [{ module: 'audit', applied: [] }], failed: { module: 'ledger', code: 'INVALID_MODULE' } });
    rmSync(join(app.migrationsOf('ledger'), '002_upper.SQL'));
    expect((await runKeel(['db', 'migrate'], { cwd: app.root, env })).code).toBe(0);
    writeFileSync(join(app.migrationsOf('audit'), '000_merged.sql'), 'create table merged (id int);\n');
    const status = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(status.code).toBe(1);
    expect(status.stderr).toContain('audit: 000_merged.sql is pending and sorts before 002_counter.sql, applied (keel start refuses it; rename it to sort after 002_counter.sql)');
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

  it("cli - keel db works on the data of KEEL_MODULES' modules, as the process keel deploy names would; another module is refused where the embedded database is this process's, allowed in a shared PostgreSQL", async () => {
    const app = testbed.app();
    // The environment keel deploy gives its `books` process: the embedded database in .keel/data/books holds ledger's data alone.
    const env = { KEEL_PROCESS_NAME: 'books', KEEL_MODULES: 'ledger,echo' };
    const migrated = await runKeel(['db', 'migrate', '--json'], { cwd: app.root, env });
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(JSON.parse(migrated.stdout).modules.map((entry: any) => [entry.module, entry.location])).toEqual([['ledger', 'in .keel/data/books']]);
    const status = await runKeel(['db', 'status'], { cwd: app.root, env });
    expect(status.code, status.stderr).toBe(0);
    expect(lines(status)[0]).toBe('ledger: schema ledger, pglite in .keel/data/books');
    expect(status.stdout).not.toContain('audit');

    const elsewhere = await runKeel(['db', 'status', '--module', 'audit'], { cwd: app.root, env });
    expect(elsewhere.code).toBe(2);
    expect(elsewhere.stderr).toContain(
      'error E_USAGE: Module "audit" is not hosted by this process (KEEL_MODULES is "ledger,echo"), and the embedded database this environment names holds the data of its own modules only.',
    );
    const none = await runKeel(['db', 'status', '--module', 'audit'], { cwd: app.root, env: { KEEL_MODULES: ' none ' } });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('(KEEL_MODULES is none: it hosts no module)');
    // In a shared PostgreSQL, audit's schema is where it is whichever process asks.
    const database = await testbed.database();
    const shared = await runKeel(['db', 'migrate', '--module', 'audit'], { cwd: app.root, env: { ...env, DATABASE_URL: database.url } });
    expect(shared.code, shared.stderr).toBe(0);
    expect(lines(shared)[0]).toBe(`audit: schema audit, postgres at ${database.location} (DATABASE_URL)`);

    const unknown = await runKeel(['db', 'status'], { cwd: app.root, env: { KEEL_MODULES: 'ledger,billing' } });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('error E_UNKNOWN_MODULE: KEEL_MODULES names "billing", which is no module of the manifest (it has: audit, ledger, echo).');
    const empty = await runKeel(['db', 'status'], { cwd: app.root, env: { KEEL_MODULES: ' , ' } });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toContain('error E_USAGE: KEEL_MODULES "," names no module; name at least one');
    const dataless = await runKeel(['db', 'migrate'], { cwd: app.root, env: { KEEL_MODULES: 'echo' } });
    expect(dataless.code, dataless.stderr).toBe(0);
    expect(dataless.stdout).toBe('keel db: no module of KEEL_MODULES (echo) owns data (a module owns data when its defineModule() declares data: { migrations })\n');
  }, 60_000);

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

        --module=<name>    Only this module (default: every module that owns data, of $KEEL_MODULES when set)
                 --json    Print what was applied as JSON (Default: false)

      EXAMPLES

        $ keel db migrate
        $ keel db migrate --module orders
        $ KEEL_PROCESS_NAME=storefront KEEL_MODULES=catalog,orders keel db migrate --json
      "
    `);
    expect(await renderHelp(main, ['db', 'status'])).toMatchInlineSnapshot(`
      "Show each migration of the modules that own data: applied, pending, changed or missing (keel db status)

      USAGE keel db status [OPTIONS]

      OPTIONS

        --module=<name>    Only this module (default: every module that owns data, of $KEEL_MODULES when set)
                 --json    Print the status as JSON; the exit code is the same (Default: false)

      EXAMPLES

        $ keel db status
        $ keel db status --module orders --json
      "
    `);
  });
});
