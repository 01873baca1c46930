/**
 * `keel start` and `keel up` on module-owned data: the modules that own data get a database
 * from the environment (the embedded PGlite in a folder by default, PostgreSQL from
 * DATABASE_URL, a module's own from DATABASE_URL_<MODULE>), closed on stop; `keel up` gives each
 * process its own folder. On a small application (test/support/data-app.ts) and the machine's
 * PostgreSQL (a database per test that needs one, dropped after).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { failureRecord, logMessages, logRecords, runKeel, startKeel, type LogRecord } from './support/cli.js';
import { call, dataTestbed, query, until } from './support/data-app.js';
import { migrationLockKey } from './support/databases.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const testbed = dataTestbed();
afterAll(() => testbed.cleanup());

describe('cli - keel start on module data', () => {
  it('cli - keel start keeps the data of the modules that own it in the embedded database across a restart', async () => {
    const app = testbed.app();
    const env = { KEEL_DATA_DIR: 'data' };
    const first = await startKeel(['start', '--http', '0'], { cwd: app.root, env });
    const messages = logMessages(first.stdout.text);
    expect(messages.slice(messages.indexOf('hosting audit, ledger, echo'))).toEqual(expect.arrayContaining(['data of audit, ledger: pglite in data']));
    await call(first.url, 'ledger/add', { label: 'kept' });
    await until(async () => (await call(first.url, 'audit/seen', {})).handled === 1, 'the audit to record the entry');
    expect(await first.stop()).toBe(0);
    expect(existsSync(join(app.root, 'data/keel.lock')), 'the folder is released on stop').toBe(false);

    const second = await startKeel(['start', '--http', '0'], { cwd: app.root, env });
    expect(await call(second.url, 'ledger/labels', {})).toEqual({ labels: ['kept'] });
    expect(await call(second.url, 'audit/seen', {})).toEqual({ labels: ['kept'], handled: 1 });
    expect(await second.stop()).toBe(0);
    expect(existsSync(join(app.root, '.keel')), 'KEEL_DATA_DIR replaces the default folder').toBe(false);
  }, 60_000);

  it('cli - keel start with DATABASE_URL keeps the data in PostgreSQL, each module in its own schema', async () => {
    const app = testbed.app();
    const database = await testbed.database();
    const running = await startKeel(['start', '--http', '0'], { cwd: app.root, env: { DATABASE_URL: database.url } });
    expect(logMessages(running.stdout.text)).toContain(`data of audit, ledger: postgres at ${database.location} (DATABASE_URL)`);
    await call(running.url, 'ledger/add', { label: 'in-postgres' });
    await until(async () => (await call(running.url, 'audit/seen', {})).handled === 1, 'the audit to record the entry');
    expect(await running.stop()).toBe(0);

    expect(await query(database.url, 'select label from ledger.entries')).toEqual([{ label: 'in-postgres' }]);
    expect(await query(database.url, 'select label from audit.entries')).toEqual([{ label: 'in-postgres' }]);
    expect(await query(database.url, 'select name from ledger.keel_migrations order by name')).toEqual([
      { name: '001_entries.sql' },
      { name: 'keel/001_outbox_inbox_idempotency' },
      { name: 'keel/002_outbox_failed' },
      { name: 'keel/003_outbox_principal' },
    ]);
    expect(existsSync(join(app.root, '.keel')), 'nothing embedded was opened').toBe(false);
  });

  it('cli - DATABASE_URL_<MODULE> gives that module a database of its own; the others keep theirs, and events cross between them', async () => {
    const app = testbed.app();
    const database = await testbed.database();
    const running = await startKeel(['start', '--http', '0'], {
      cwd: app.root,
      env: { DATABASE_URL_AUDIT: database.url, KEEL_DATA_DIR: 'memory' },
    });
    expect(logMessages(running.stdout.text)).toEqual(
      expect.arrayContaining([`data of audit: postgres at ${database.location} (DATABASE_URL_AUDIT)`, 'data of ledger: pglite in memory']),
    );
    await call(running.url, 'ledger/add', { label: 'crossing' });
    await until(async () => (await call(running.url, 'audit/seen', {})).handled === 1, 'the audit to record the entry');
    expect(await running.stop()).toBe(0);
    expect(await query(database.url, 'select label from audit.entries')).toEqual([{ label: 'crossing' }]);
    expect(await query(database.url, "select to_regnamespace('ledger') as ledger")).toEqual([{ ledger: null }]);
  });

  it('cli - a DATABASE_URL that is not PostgreSQL\'s is refused before anything starts, naming the variable and never showing its value', async () => {
    const app = testbed.app();
    const start = await runKeel(['start', '--http', '0'], { cwd: app.root, env: { DATABASE_URL: 'mysql://root:s3cret@db.internal/shop' } });
    expect(start.code).toBe(1);
    // Its output is no terminal: the refusal is one JSON error record on stderr.
    const records = logRecords(start.stderr);
    expect(records, start.stderr).toEqual([
      expect.objectContaining({
        level: 50,
        code: 'INVALID_CONFIG',
        msg: expect.stringContaining('DATABASE_URL is not a PostgreSQL URL: it is a "mysql:" URL. It takes postgres://user:password@host:5432/database'),
      }),
    ]);
    expect(start.stderr).not.toContain('s3cret');
    expect(start.stdout).toBe('');
    expect(existsSync(join(app.root, '.keel'))).toBe(false);
  });

  it('cli - keel up gives each process of a split topology its own embedded database, .keel/data/<process>', async () => {
    const app = testbed.app();
    const topology = join(app.root, 'split.json');
    writeFileSync(topology, JSON.stringify({ processes: { writer: { modules: ['ledger', 'echo'], http: 0 }, reader: { modules: ['audit'] } } }));
    // keel up from source, as `npm run keel -- up` runs it; it starts nats-server and both processes.
    const up = spawn(
      process.execPath,
      ['--import', pathToFileURL(require.resolve('tsx')).href, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'up', topology],
      { cwd: app.root, env: { ...process.env, KEEL_LOG_LEVEL: 'info' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    up.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    up.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = once(up, 'exit');
    try {
      // Its output is no terminal: it and its processes write JSON records, each naming its process.
      await until(async () => output.includes('"msg":"ready: all') || up.exitCode !== null, 'keel up to be ready', 60_000);
      expect(output).toContain('"process":"keel up","name":"keel","msg":"ready: all 2 processes (writer, reader)"');
      const url = /^\{.*"process":"writer".*"msg":"HTTP gateway on (http:\/\/[^" ]+)/m.exec(output)?.[1];
      await call(url, 'ledger/add', { label: 'split' });
      await until(async () => (await call(url, 'audit/seen', {})).handled === 1, 'the audit, in the other process, to record the entry');
    } finally {
      up.kill('SIGTERM');
      await exited;
    }
    expect(output).toMatch(/^\{.*"process":"writer".*"msg":"data of ledger: pglite in \.keel\/data\/writer"\}$/m);
    expect(output).toMatch(/^\{.*"process":"reader".*"msg":"data of audit: pglite in \.keel\/data\/reader"\}$/m);
    expect(readdirSync(join(app.root, '.keel/data')).sort()).toEqual(['reader', 'writer']);
    for (const folder of ['reader', 'writer']) expect(existsSync(join(app.root, '.keel/data', folder, 'keel.lock')), folder).toBe(false);
  }, 90_000);

  it('cli - keel up refuses a topology whose processes would share an embedded database folder, or each keep a copy of one module\'s data', async () => {
    // Its output is no terminal: each refusal is one JSON error record on stderr.
    const refusal = (stderr: string): LogRecord => failureRecord(stderr, { process: 'keel up' });
    const app = testbed.app();
    const split = join(app.root, 'split.json');
    writeFileSync(split, JSON.stringify({ processes: { writer: { modules: ['ledger', 'echo'] }, reader: { modules: ['audit'] } } }));
    const shared = await runKeel(['up', split], { cwd: app.root, env: { KEEL_DATA_DIR: 'data' } });
    expect(shared.code).toBe(1);
    expect(refusal(shared.stderr)).toMatchObject({
      code: 'E_TOPOLOGY',
      msg: expect.stringContaining('Processes "writer" and "reader" host modules that own data, and both would open the embedded database in data: PGlite serves one process.'),
    });
    const replicated = join(app.root, 'replicated.json');
    writeFileSync(replicated, JSON.stringify({ processes: { app: { modules: ['*'], replicas: 2 } } }));
    const replicas = await runKeel(['up', replicated], { cwd: app.root });
    expect(replicas.code).toBe(1);
    expect(refusal(replicas.stderr)).toMatchObject({
      code: 'E_TOPOLOGY',
      msg: expect.stringContaining('Process "app" runs 2 replicas of modules that own data, and they would share the embedded database in .keel/data/app'),
    });
    const twice = join(app.root, 'twice.json');
    writeFileSync(twice, JSON.stringify({ processes: { writer: { modules: ['ledger', 'echo'] }, reader: { modules: ['ledger', 'audit'] } } }));
    const copies = await runKeel(['up', twice], { cwd: app.root });
    expect(copies.code).toBe(1);
    expect(refusal(copies.stderr)).toMatchObject({
      code: 'E_TOPOLOGY',
      msg: expect.stringContaining('Module "ledger" owns data and runs in processes "writer" and "reader", with an embedded database (in .keel/data/writer, in .keel/data/reader)'),
    });
    const badUrl = await runKeel(['up', split], { cwd: app.root, env: { DATABASE_URL: 'mysql://db/shop' } });
    expect(badUrl.code).toBe(1);
    expect(refusal(badUrl.stderr)).toMatchObject({ code: 'INVALID_CONFIG', msg: expect.stringContaining('DATABASE_URL is not a PostgreSQL URL') });
  });

  it('cli - keel db migrate and keel start on a PostgreSQL that cannot be reached exit 1 with UNAVAILABLE, saying so and what to check', async () => {
    const app = testbed.app();
    // Port 1 of the loopback: nothing listens there, the connection is refused at once.
    const env = { DATABASE_URL: 'postgres://keel:secret@127.0.0.1:1/shop' };
    const migrated = await runKeel(['db', 'migrate'], { cwd: app.root, env });
    expect(migrated.code).toBe(1);
    expect(migrated.stderr).toContain('error UNAVAILABLE: PostgreSQL at 127.0.0.1:1/shop cannot be reached to set up schema "audit": connect ECONNREFUSED 127.0.0.1:1.');
    expect(migrated.stderr).toContain('Check DATABASE_URL, that the server runs and takes connections from here');
    expect(migrated.stderr).not.toContain('CREATEROLE');
    expect(migrated.stderr).not.toContain('secret');
    const started = await runKeel(['start', '--http', '0'], { cwd: app.root, env });
    expect(started.code).toBe(1);
    expect(failureRecord(started.stderr, { code: 'UNAVAILABLE' }).msg).toContain('PostgreSQL at 127.0.0.1:1/shop cannot be reached to set up schema "audit"');
  });

  it('cli - keel db migrate, db status and keel start against a database that does not exist, or a user the server refuses, exit 1 with INVALID_CONFIG naming it, not UNAVAILABLE', async () => {
    const app = testbed.app();
    const cases = [
      { url: 'postgres://postgres@127.0.0.1:5432/keel_no_such_database', says: 'database "keel_no_such_database" does not exist', advice: 'Create that database' },
      { url: 'postgres://keel_no_such_role@127.0.0.1:5432/postgres', says: 'role "keel_no_such_role" does not exist', advice: 'Check the user and the password in DATABASE_URL' },
    ];
    for (const { url, says, advice } of cases) {
      const env = { DATABASE_URL: url };
      for (const command of [['db', 'migrate'], ['db', 'status']]) {
        const run = await runKeel(command, { cwd: app.root, env });
        expect(run.code, run.stderr).toBe(1);
        expect(run.stderr).toContain('error INVALID_CONFIG: PostgreSQL at 127.0.0.1:5432/');
        expect(run.stderr).toContain(says);
        expect(run.stderr).toContain(advice);
      }
      const started = await runKeel(['start', '--http', '0'], { cwd: app.root, env });
      expect(started.code).toBe(1);
      expect(failureRecord(started.stderr, { code: 'INVALID_CONFIG' }).msg).toContain(says);
    }
  });
});


describe('cli - keel start stopped before it is ready', () => {
  it('cli - a SIGTERM while the start waits for the migration lock another instance holds runs the kernel\'s stop: the started module drains, the lock wait is given up, exit 0 with no start failure', { timeout: 90_000 }, async () => {
    const app = testbed.app();
    const database = await testbed.database();
    // Another instance applying the ledger's migrations: it holds the schema's lock for as long as this test likes.
    // The audit, which the ledger depends on, starts first and is started when the ledger waits.
    const holder = new pg.Client({ connectionString: database.url });
    await holder.connect();
    let output = '';
    try {
      await holder.query('begin');
      await holder.query('select pg_advisory_xact_lock($1::bigint)', [migrationLockKey('ledger')]);
      // keel start as its own process, as a deploy runs it: the signal reaches it through its own handlers.
      const child = spawn(
        process.execPath,
        ['--import', pathToFileURL(require.resolve('tsx')).href, '--conditions=keel-source', join(repository, 'cli/bin.ts'), 'start', '--http', '0'],
        { cwd: app.root, env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: 'json', DATABASE_URL: database.url }, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      try {
        await until(async () => output.includes('waiting for the migration lock of schema \\"ledger\\"') || child.exitCode !== null, 'the ledger to wait for its migration lock', 60_000);
        expect(child.exitCode, output).toBeNull();
        child.kill('SIGTERM');
        // Bounded: the lock stays held, and a stop that waited for the start would wait for ever.
        const ended = await Promise.race([exited, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 30_000).unref())]);
        expect(ended, output).toEqual([0, null]);
      } finally {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
    } finally {
      await holder.query('rollback').catch(() => undefined);
      await holder.end();
    }
    const records = logRecords(output);
    const messages = records.map((record) => record.msg);
    expect(messages, output).not.toContain('ready');
    // The kernel's stop ran (it writes this once every module it started is stopped), after the stop's own line.
    const stopping = messages.indexOf('stopping before ready: the modules started drain, the others never start');
    expect(stopping, output).toBeGreaterThan(messages.findIndex((message) => message?.includes('waiting for the migration lock of schema "ledger"') === true));
    expect(records.find((record) => record.msg === 'kernel stopped'), output).toMatchObject({ hosted: ['audit', 'ledger', 'echo'] });
    expect(messages.indexOf('kernel stopped')).toBeGreaterThan(stopping);
    expect(messages.at(-1)).toBe('stopped');
    // No start failure: no error record (the start's INVALID_STATE is the stop's doing), nothing on stderr as text.
    expect(records.filter((record) => (record['level'] as number) >= 50), output).toEqual([]);
    expect(output).not.toContain('INVALID_STATE');
    // The audit had started (its migrations applied); the ledger gave its wait up and applied nothing.
    expect(await query(database.url, "select count(*)::int as applied from audit.keel_migrations where name = '001_entries.sql'")).toEqual([{ applied: 1 }]);
    expect(await query(database.url, "select to_regclass('ledger.entries') as entries")).toEqual([{ entries: null }]);
  });
});
