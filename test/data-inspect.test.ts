/**
 * DatabaseEngine.inspect, on both engines (PGlite in memory, and the machine's PostgreSQL in a
 * database made for this file): a connection that reads a module's schema and changes nothing,
 * what `keel db status` uses.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { query } from './support/data-app.js';
import { TEST_POSTGRES_URL, enginesUnderTest } from './support/databases.js';

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
