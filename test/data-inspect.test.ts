/**
 * DatabaseEngine.inspect, on both engines (PGlite in memory, and the machine's PostgreSQL in a
 * database made for this file): a connection that reads a module's schema and changes nothing,
 * what `keel db status` uses.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { query } from './support/data-app.js';
import { createPostgresDatabase } from 'keel/postgres';
import { TEST_POSTGRES_URL, createTestDatabase, enginesUnderTest } from './support/databases.js';

const engines = enginesUnderTest();
/** Module roles made on the test server, which outlive its databases: dropped once the databases are. */
const roles: string[] = [];
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
  for (const role of roles) await query(TEST_POSTGRES_URL, `drop role if exists ${role}`);
});

describe.each(engines)('data - inspect - $name', (underTest) => {
  it('creates neither the schema nor its role; once connect made them, reads the schema by unqualified names and refuses every write', async () => {
    const engine = await underTest.fresh();
    // A name of its own: PostgreSQL's roles belong to the server, not to this test's database.
    const schema = `inspected_${randomBytes(4).toString('hex')}`;
    if (underTest.name === 'postgres') roles.push(`keel_${schema}`);
    const made = async () => {
      const reader = await engine.inspect!(schema);
      try {
        const { rows } = await reader.query<{ name: string }>(
          'select nspname as name from pg_namespace where nspname = $1 union all select rolname from pg_roles where rolname = $2',
          [schema, `keel_${schema}`],
        );
        return rows.map((row) => row.name);
      } finally {
        await reader.close();
      }
    };
    expect(await made()).toEqual([]);

    const connection = await engine.connect(schema);
    await connection.exec('create table items (id integer primary key); insert into items values (1)');
    await connection.close();
    expect(await made()).toEqual([schema, `keel_${schema}`]);

    const reader = await engine.inspect!(schema);
    try {
      expect((await reader.query('select id from items')).rows).toEqual([{ id: 1 }]);
      await expect(reader.query('insert into items values (2)')).rejects.toThrow(/read-only transaction/);
      await expect(reader.transaction((tx) => tx.exec('create table others (id integer)'))).rejects.toThrow(/read-only transaction/);
      expect((await reader.query('select count(*)::int as n from items')).rows).toEqual([{ n: 1 }]);
    } finally {
      await reader.close();
    }
  }, 60_000);
});

describe('data - a DATABASE_URL with its own server options (postgres)', () => {
  it("keeps the URL's options and adds keel's: connect runs as the module's role in its schema, inspect stays read only", async () => {
    const database = await createTestDatabase();
    const schema = `optioned_${randomBytes(4).toString('hex')}`;
    roles.push(`keel_${schema}`);
    const url = new URL(database.url);
    // What managed hosts hand out: a statement timeout set through the URL's options (pg takes
    // the last of repeated parameters, and so does keel).
    url.searchParams.append('options', '-c statement_timeout=1000');
    url.searchParams.append('options', '-c statement_timeout=5000');
    const engine = createPostgresDatabase({ url: url.toString() });
    try {
      const connection = await engine.connect(schema);
      try {
        const { rows } = await connection.query<{ who: string; path: string; timeout: string }>(
          "select current_user as who, current_setting('search_path') as path, current_setting('statement_timeout') as timeout",
        );
        expect(rows).toEqual([{ who: `keel_${schema}`, path: `"${schema}"`, timeout: '5s' }]);
        await connection.exec('create table items (id integer primary key)');
      } finally {
        await connection.close();
      }
      const reader = await engine.inspect!(schema);
      try {
        expect((await reader.query("select current_setting('statement_timeout') as timeout")).rows).toEqual([{ timeout: '5s' }]);
        expect((await reader.query('select count(*)::int as n from items')).rows).toEqual([{ n: 0 }]);
        await expect(reader.query('insert into items values (1)')).rejects.toThrow(/read-only transaction/);
      } finally {
        await reader.close();
      }
    } finally {
      await engine.close();
      await database.drop();
    }
  }, 60_000);
});
