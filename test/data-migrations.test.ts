/**
 * A module's migrations as a team evolves them, on both engines (PGlite in memory, and the
 * machine's PostgreSQL in a database made for this file): keel applies the pending ones in one
 * transaction it holds under the schema's lock, so a migration with transaction statements of
 * its own is refused or stopped, naming it and saying what stayed; a failing one says where in
 * the file and what to do; an applied one renamed is refused, not run a second time.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isKeelError } from 'keel';
import { migrate, migrationStatus, readMigrations, type DatabaseEngine, type SchemaConnection, type SqlRunner } from 'keel/transport';
import { createPostgresDatabase } from 'keel/postgres';
import { createTestDatabase, enginesUnderTest, migrationLockKey } from './support/databases.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

/** A migrations folder holding `files` (name to SQL), removed after `work`. */
async function withMigrations<T>(files: Record<string, string>, work: (folder: string) => Promise<T>): Promise<T> {
  const folder = mkdtempSync(join(tmpdir(), 'keel-migrations-'));
  try {
    for (const [name, sql] of Object.entries(files)) writeFileSync(join(folder, name), sql);
    return await work(folder);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}

/** The tables of the schema the connection is in, by name. */
async function tables(connection: SchemaConnection): Promise<string[]> {
  const { rows } = await connection.query<{ name: string }>('select tablename as name from pg_tables where schemaname = current_schema() order by 1');
  return rows.map((row) => row.name).filter((name) => !name.startsWith('keel_'));
}

/** The module's migrations keel_migrations records (keel's own left out). */
async function recorded(connection: SchemaConnection): Promise<string[]> {
  const { rows } = await connection.query<{ name: string }>("select name from keel_migrations where name not like 'keel/%' order by name");
  return rows.map((row) => row.name);
}

/** `work` on a connection to schema "audit" of a fresh database of `engine`, with a migrations folder holding `files`. */
async function inFreshSchema(engine: (typeof engines)[number], files: Record<string, string>, work: (connection: SchemaConnection, folder: string) => Promise<void>): Promise<void> {
  const connection = await (await engine.fresh()).connect('audit');
  try {
    await withMigrations(files, (folder) => work(connection, folder));
  } finally {
    await connection.close();
  }
}

describe.each(engines)('data migrations - $name', (engine) => {
  it('refuses a pending migration that starts with BEGIN, naming it, before applying anything of the run', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations(
        { '001_first.sql': 'create table first (id int);\n', '002_own.sql': '-- ours\nBEGIN;\ncreate table own (id int);\ncommit;\n' },
        async (folder) => {
          const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
          expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
          expect((error as Error).message).toContain('migration 002_own.sql opens a transaction of its own');
          expect((error as Error).message).toContain('remove BEGIN and COMMIT from 002_own.sql');
          // Then the file fixed: the first applies now, so the refusal had applied nothing.
          writeFileSync(join(folder, '002_own.sql'), 'create table own (id int);\n');
          expect(await migrate(connection, 'audit', 'audit', readMigrations('audit', folder))).toContain('001_first.sql');
          expect(await tables(connection)).toEqual(['first', 'own']);
        },
      );
    } finally {
      await connection.close();
    }
  });

  it('stops at a migration whose COMMIT ended keel\'s transaction, naming it and what stayed, and runs nothing after it', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations(
        {
          '001_first.sql': 'create table first (id int);\n',
          '002_commits.sql': 'create table before_commit (id int);\ncommit;\n',
          '003_after.sql': 'create table after (id int);\n',
        },
        async (folder) => {
          const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
          expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
          const message = (error as Error).message;
          expect(message).toContain('migration 002_commits.sql ended the transaction keel applies migrations in (a COMMIT, ROLLBACK or END in the file)');
          expect(message).toContain('002_commits.sql is not recorded as applied');
          expect(message).toContain('of this run, keel_migrations records keel/001_outbox_inbox_idempotency, keel/002_outbox_failed, keel/003_outbox_principal, 001_first.sql.');
          expect(message).not.toContain('Nothing of this run was applied');
          expect(await recorded(connection)).toEqual(['001_first.sql']);
          expect(await tables(connection)).toEqual(['before_commit', 'first']);
        },
      );
    } finally {
      await connection.close();
    }
  });

  it('says of a migration that failed after its COMMIT that what it ran is kept, never that nothing was applied', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations({ '001_first.sql': 'create table first (id int);\n', '002_commits.sql': 'commit;\ninsert into absent values (1);\n' }, async (folder) => {
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('migration 002_commits.sql ended the transaction keel applies migrations in');
        expect((error as Error).message).toContain('then failed: relation "absent" does not exist');
        expect(await recorded(connection)).toEqual(['001_first.sql']);
      });
    } finally {
      await connection.close();
    }
  });

  it('says of a migration that failed in a transaction of its own, after its COMMIT ended keel\'s, that what it committed is kept, never that nothing was applied', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations(
        { '001_first.sql': 'create table first (id int);\n', '002_commits.sql': 'create table kept (id int);\ncommit;\nbegin;\ninsert into absent values (1);\ncommit;\n' },
        async (folder) => {
          const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
          expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
          const message = (error as Error).message;
          expect(message).toContain('migration 002_commits.sql ended the transaction keel applies migrations in');
          expect(message).toContain('then failed: relation "absent" does not exist');
          expect(message).toContain('keel_migrations records keel/001_outbox_inbox_idempotency, keel/002_outbox_failed, keel/003_outbox_principal, 001_first.sql.');
          expect(message).not.toContain('Nothing of this run was applied');
          expect(await recorded(connection)).toEqual(['001_first.sql']);
          expect(await tables(connection)).toEqual(['first', 'kept']);
        },
      );
    } finally {
      await connection.close();
    }
  });

  it('says, of a migration whose ROLLBACK undid the run before it, that keel_migrations records none of the run', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations({ '001_first.sql': 'create table first (id int);\n', '002_undoes.sql': 'rollback;\ncreate table after_rollback (id int);\n' }, async (folder) => {
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('migration 002_undoes.sql ended the transaction keel applies migrations in');
        expect((error as Error).message).toContain('of this run, keel_migrations records none.');
        expect((await connection.query("select to_regclass('keel_migrations')::text as ledger")).rows).toEqual([{ ledger: null }]);
      });
    } finally {
      await connection.close();
    }
  });

  it('names the line of the statement that failed and what to do, and applies nothing of the run', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations({ '001_first.sql': 'create table first (id int);\n', '002_typo.sql': 'create table good (id int);\n\ncreat table oops (id int);\n' }, async (folder) => {
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('migration 002_typo.sql failed in schema "audit" (line 3): syntax error at or near "creat"');
        expect((error as Error).message).toContain('Nothing of this run was applied: fix 002_typo.sql, and start again (or run keel db migrate)');
        // The schema exists (connect made it), and holds none of the run's tables.
        expect(await tables(connection)).toEqual([]);
      });
    } finally {
      await connection.close();
    }
  });

  it('says, of CREATE INDEX CONCURRENTLY, that migrations run in a transaction and how to build the index', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations({ '001_first.sql': 'create table first (id int);\ncreate index concurrently first_id on first (id);\n' }, async (folder) => {
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('CREATE INDEX CONCURRENTLY cannot run inside a transaction block');
        expect((error as Error).message).toContain('keel applies every migration in a transaction: create the index without CONCURRENTLY');
      });
    } finally {
      await connection.close();
    }
  });

  it('refuses an applied migration renamed, naming both names, instead of running it a second time', async () => {
    const connection = await (await engine.fresh()).connect('audit');
    try {
      await withMigrations({ '001_counts.sql': 'create table counts (n int);\n', '002_seed.sql': 'insert into counts values (1);\n' }, async (folder) => {
        await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
        renameSync(join(folder, '002_seed.sql'), join(folder, '002_seed_counts.sql'));
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('migration 002_seed_counts.sql is 002_seed.sql renamed');
        expect((error as Error).message).toContain('rename 002_seed_counts.sql back to 002_seed.sql');
        expect((await connection.query('select n from counts')).rows).toEqual([{ n: 1 }]);
        // keel db status says the same: the applied name missing, renamed as the pending one.
        const states = await migrationStatus(connection, readMigrations('audit', folder));
        expect(states.filter((state) => state.state !== 'applied')).toEqual([
          { name: '002_seed_counts.sql', state: 'pending' },
          { name: '002_seed.sql', state: 'missing', appliedAt: expect.any(String), renamedAs: '002_seed_counts.sql' },
        ]);
        // Named back, it is the applied one again: nothing to apply.
        renameSync(join(folder, '002_seed_counts.sql'), join(folder, '002_seed.sql'));
        expect(await migrate(connection, 'audit', 'audit', readMigrations('audit', folder))).toEqual([]);
      });
    } finally {
      await connection.close();
    }
  });
  it('applies numbered migrations by the value of their numbers, 9_ before 10_, where name order would run 10_ first', async () => {
    await inFreshSchema(engine, { '9_counts.sql': 'create table counts (n int);\n', '10_counts_label.sql': 'alter table counts add column label text;\n' }, async (connection, folder) => {
      const applied = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
      expect(applied.filter((name) => !name.startsWith('keel/'))).toEqual(['9_counts.sql', '10_counts_label.sql']);
      expect(await recorded(connection)).toEqual(['10_counts_label.sql', '9_counts.sql']);
    });
  });

  it('refuses a pending migration that sorts before the last applied one, naming both, and applies nothing of the run', async () => {
    await inFreshSchema(engine, { '001_counts.sql': 'create table counts (n int);\n', '003_labels.sql': 'create table labels (l text);\n' }, async (connection, folder) => {
      await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
      writeFileSync(join(folder, '002_merged.sql'), 'create table merged (m int);\n');
      writeFileSync(join(folder, '004_later.sql'), 'create table later (l int);\n');
      const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
      expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
      expect((error as Error).message).toContain('migration 002_merged.sql is pending but sorts before 003_labels.sql, applied to schema "audit"');
      expect((error as Error).message).toContain('rename 002_merged.sql so that it sorts after 003_labels.sql');
      expect(await tables(connection)).toEqual(['counts', 'labels']);
      // keel db status says so before a deploy does.
      const states = await migrationStatus(connection, readMigrations('audit', folder));
      expect(states.filter((state) => state.state === 'pending')).toEqual([
        { name: '002_merged.sql', state: 'pending', sortsBefore: '003_labels.sql' },
        { name: '004_later.sql', state: 'pending' },
      ]);
      renameSync(join(folder, '002_merged.sql'), join(folder, '005_merged.sql'));
      expect(await migrate(connection, 'audit', 'audit', readMigrations('audit', folder))).toEqual(['004_later.sql', '005_merged.sql']);
    });
  });

  it('takes an applied migration checked out with other line endings (CRLF, LF) as the same, and any other difference as a change', async () => {
    const lf = 'create table counts (n int);\ninsert into counts values (1);\n';
    const crlf = 'create table labels (l text);\r\ninsert into labels values (\'a\');\r\n';
    await inFreshSchema(engine, { '001_counts.sql': lf, '002_labels.sql': crlf }, async (connection, folder) => {
      await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
      writeFileSync(join(folder, '001_counts.sql'), lf.replace(/\n/g, '\r\n'));
      writeFileSync(join(folder, '002_labels.sql'), crlf.replace(/\r\n/g, '\n'));
      expect(await migrate(connection, 'audit', 'audit', readMigrations('audit', folder))).toEqual([]);
      const states = await migrationStatus(connection, readMigrations('audit', folder));
      expect(states.map((state) => state.state)).toEqual(states.map(() => 'applied'));
      writeFileSync(join(folder, '001_counts.sql'), lf.replace('(1)', '(2)').replace(/\n/g, '\r\n'));
      const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
      expect((error as Error).message).toContain('migration 001_counts.sql changed after it was applied');
    });
  });

  it('refuses an applied migration renamed in a checkout with other line endings, as one renamed in the same checkout', async () => {
    await inFreshSchema(engine, { '001_counts.sql': 'create table counts (n int);\n', '002_seed.sql': 'insert into counts values (1);\ninsert into counts values (2);\n' }, async (connection, folder) => {
      await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
      rmSync(join(folder, '002_seed.sql'));
      writeFileSync(join(folder, '002_seed_counts.sql'), 'insert into counts values (1);\r\ninsert into counts values (2);\r\n');
      const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', folder)).catch((caught: unknown) => caught);
      expect((error as Error).message, String(error)).toContain('migration 002_seed_counts.sql is 002_seed.sql renamed');
      expect((await connection.query('select n from counts order by n')).rows).toEqual([{ n: 1 }, { n: 2 }]);
      const states = await migrationStatus(connection, readMigrations('audit', folder));
      expect(states.find((state) => state.name === '002_seed.sql')).toMatchObject({ state: 'missing', renamedAs: '002_seed_counts.sql' });
    });
  });

  it('refuses a migrations folder gone or emptied while the schema has migrations applied, naming them, instead of starting unchecked', async () => {
    await inFreshSchema(engine, { '001_counts.sql': 'create table counts (n int);\n' }, async (connection, folder) => {
      await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
      mkdirSync(join(folder, 'empty'));
      for (const place of [join(folder, 'not-there'), join(folder, 'empty')]) {
        const error = await migrate(connection, 'audit', 'audit', readMigrations('audit', place)).catch((caught: unknown) => caught);
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        expect((error as Error).message).toContain('its migrations folder holds no migration, and schema "audit" has 1 applied (001_counts.sql)');
        expect((error as Error).message).toContain('The .sql files did not come with this build');
      }
      // Deleting one applied file of several is another matter: listed as missing, not refused.
      writeFileSync(join(folder, '002_more.sql'), 'create table more (m int);\n');
      rmSync(join(folder, '001_counts.sql'));
      expect(await migrate(connection, 'audit', 'audit', readMigrations('audit', folder))).toEqual(['002_more.sql']);
    });
  });
});

/** What readMigrations throws for `folder`. */
function readError(folder: string): unknown {
  try {
    return readMigrations('audit', folder);
  } catch (caught) {
    return caught;
  }
}

describe('data migrations - files', () => {
  it('orders names as they read where numbers are not concerned: users.sql before users2.sql, 001_a.sql before 001_a2.sql, 01_x.sql before 1_x.sql', async () => {
    const files = ['users2.sql', '10_late.sql', 'users.sql', '001_a2.sql', '9_early.sql', '001_a.sql', '1_x.sql', '01_x.sql'];
    await withMigrations(Object.fromEntries(files.map((name) => [name, `-- ${name}\n`])), async (folder) => {
      const names = readMigrations('audit', folder)
        .map((migration) => migration.name)
        .filter((name) => !name.startsWith('keel/'));
      // Plain name order but for 9_ and 10_, whose numbers compare by value.
      expect(names).toEqual(['001_a.sql', '001_a2.sql', '01_x.sql', '1_x.sql', '9_early.sql', '10_late.sql', 'users.sql', 'users2.sql']);
    });
  });

  it('refuses a migration named .SQL, naming it and its right name, instead of skipping it', async () => {
    await withMigrations({ '001_first.sql': 'create table first (id int);\n', '002_second.SQL': 'create table second (id int);\n', 'README.md': 'notes\n' }, async (folder) => {
      const error = readError(folder);
      expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
      expect((error as Error).message).toContain('its migration 002_second.SQL');
      expect((error as Error).message).toContain('Rename it to 002_second.sql');
    });
  });

  it('says that a folder named like a migration (002_more.sql/) is no file it can read, naming it, instead of failing as a bug', async () => {
    await withMigrations({ '001_first.sql': 'create table first (id int);\n' }, async (folder) => {
      mkdirSync(join(folder, '002_more.sql'));
      const error = readError(folder);
      expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
      expect((error as Error).message).toContain(`Module "audit": its migration 002_more.sql in ${folder} cannot be read`);
      expect((error as Error).message).toContain('rename or move what is not a migration');
    });
  });
});

describe('data migrations - postgres, instances starting together', () => {
  it('applies a slow migration once when three instances of a module start at once on one database: one applies it, the others wait for the lock, then apply nothing, and none fails', async () => {
    const database = await createTestDatabase();
    const instances = [1, 2, 3].map(() => createPostgresDatabase({ url: database.url }));
    try {
      await withMigrations({ '001_slow.sql': 'select pg_sleep(0.5);\ncreate table once (id int);\ninsert into once values (1);\n' }, async (folder) => {
        const results = await Promise.all(
          instances.map(async (instance) => {
            const connection = await instance.connect('audit');
            try {
              return await migrate(connection, 'audit', 'audit', readMigrations('audit', folder));
            } finally {
              await connection.close();
            }
          }),
        );
        expect(results.filter((applied) => applied.length > 0)).toHaveLength(1);
        expect(results.flat().filter((name) => name === '001_slow.sql')).toEqual(['001_slow.sql']);
        const reader = await instances[0]!.connect('audit');
        expect((await reader.query('select id from once')).rows).toEqual([{ id: 1 }]);
        await reader.close();
      });
    } finally {
      for (const instance of instances) await instance.close();
      await database.drop();
    }
  });

  it('says, once, which database session holds the migration lock an instance waits for, and then applies what is left', async () => {
    const database = await createTestDatabase();
    const [first, second, holder] = [1, 2, 3].map(() => createPostgresDatabase({ url: database.url })) as [DatabaseEngine, DatabaseEngine, DatabaseEngine];
    const gate = await holder.connect('gate');
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    // The test holds lock 4242 until it opens the gate; the first instance's migration waits on it, holding the schema's migration lock.
    const held = gate.transaction(async (tx: SqlRunner) => {
      await tx.query('select pg_advisory_xact_lock(4242)');
      await opened;
    });
    try {
      await withMigrations({ '001_gated.sql': 'select pg_advisory_xact_lock(4242);\ncreate table gated (id int);\n' }, async (folder) => {
        const a = await first.connect('audit');
        const b = await second.connect('audit');
        try {
          const applying = migrate(a, 'audit', 'audit', readMigrations('audit', folder));
          const { rows } = await poll(() => gate.query<{ pid: number }>("select pid from pg_locks where locktype = 'advisory' and objid = 4242 and not granted"));
          const waits: string[] = [];
          const after = migrate(b, 'audit', 'audit', readMigrations('audit', folder), { onLockWait: (message) => waits.push(message) });
          await poll(async () => ({ rows: waits }));
          expect(waits).toHaveLength(1);
          expect(waits[0]).toContain(`Module "audit": waiting for the migration lock of schema "audit", held by database session ${rows[0]!.pid}`);
          expect(waits[0]).toContain(`select pg_terminate_backend(${rows[0]!.pid})`);
          open();
          expect(await applying).toContain('001_gated.sql');
          expect(await after).toEqual([]);
          expect(waits).toHaveLength(1);
        } finally {
          await a.close();
          await b.close();
        }
      });
    } finally {
      open();
      await held;
      await gate.close();
      for (const instance of [first, second, holder]) await instance.close();
      await database.drop();
    }
  });

  it('names no session of another database that migrates a schema of the same name as the holder of the lock it waits for', async () => {
    const [here, there] = [await createTestDatabase(), await createTestDatabase()];
    const [waiter, holderHere, holderThere] = [here, here, there].map(({ url }) => createPostgresDatabase({ url })) as [DatabaseEngine, DatabaseEngine, DatabaseEngine];
    // Schema "audit"'s migration lock: the same key in both databases.
    const key = migrationLockKey('audit');
    const hold = async (engine: DatabaseEngine) => {
      const connection = await engine.connect('gate');
      let open!: () => void;
      const opened = new Promise<void>((resolve) => (open = resolve));
      let pid = 0;
      let taken!: () => void;
      const isTaken = new Promise<void>((resolve) => (taken = resolve));
      const held = connection.transaction(async (tx: SqlRunner) => {
        pid = ((await tx.query<{ pid: number }>('select pg_advisory_xact_lock($1::bigint), pg_backend_pid() as pid', [key])).rows[0] as { pid: number }).pid;
        taken();
        await opened;
      });
      await isTaken;
      return { pid, release: async () => (open(), await held, await connection.close()) };
    };
    const inHere = await hold(holderHere);
    const inThere = await hold(holderThere);
    const connection = await waiter.connect('audit');
    try {
      // The holder here lets go just as the waiter looks for it: the only holder left is the other database's session.
      const looking: SchemaConnection = {
        query: (text, params) => connection.query(text, params),
        exec: (script) => connection.exec(script),
        close: () => connection.close(),
        transaction: (work, first) =>
          connection.transaction(
            (tx, result) =>
              work(
                {
                  query: async (text, params) => {
                    if (text.includes('pg_locks')) await inHere.release();
                    return tx.query(text, params);
                  },
                  exec: (script) => tx.exec(script),
                },
                result,
              ),
            first,
          ),
      };
      const waits: string[] = [];
      await withMigrations({ '001_first.sql': 'create table first (id int);\n' }, async (folder) => {
        expect(await migrate(looking, 'audit', 'audit', readMigrations('audit', folder), { onLockWait: (message) => waits.push(message) })).toContain('001_first.sql');
      });
      expect(waits).toHaveLength(1);
      expect(waits[0]).toContain('held by another database session');
      expect(waits[0]).not.toContain(`database session ${inThere.pid}`);
    } finally {
      await inHere.release().catch(() => undefined);
      await inThere.release();
      await connection.close().catch(() => undefined);
      for (const engine of [waiter, holderHere, holderThere]) await engine.close();
      await here.drop();
      await there.drop();
    }
  });
});

/** `read`'s result once it has a row, read every 20 ms for at most 10 s. */
async function poll<T>(read: () => Promise<{ rows: T[] }>): Promise<{ rows: T[] }> {
  for (const end = Date.now() + 10_000; Date.now() < end; await new Promise((resolve) => setTimeout(resolve, 20))) {
    const result = await read();
    if (result.rows.length > 0) return result;
  }
  throw new Error('nothing came in 10 s');
}
