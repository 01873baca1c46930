/**
 * `KEEL_DATABASE_POOL_SIZE`: the connections each module that owns data keeps to its PostgreSQL,
 * read by `keel/databases` (so by `keel start`, `keel up`, `keel db` and the shop's `npm start`),
 * against the machine's real PostgreSQL in a database made for this file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineContract, defineModule, operation, type AnyModule } from 'keel';
import { openDatabases, planDatabases } from 'keel/databases';
import { createTestDatabase, type TestDatabase } from './support/databases.js';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});
const modules: AnyModule[] = [
  defineModule({ contract: ledger, data: { migrations: new URL('./no-migrations/', import.meta.url) }, create: () => ({ handlers: { noop: () => ({}) } }) }),
];

describe('KEEL_DATABASE_POOL_SIZE', () => {
  let database: TestDatabase;

  beforeAll(async () => {
    database = await createTestDatabase();
  });

  afterAll(async () => {
    await database?.drop();
  });

  /** The backends that served six queries sent at once on the module's connection, each holding its connection 200 ms. */
  const backendsOfSixQueries = async (env: Record<string, string>): Promise<number> => {
    const databases = await openDatabases(planDatabases(modules, { env: { DATABASE_URL: database.url, ...env }, root: process.cwd() }), process.cwd());
    try {
      const connection = await databases.engineOf('ledger').connect('ledger');
      try {
        const answers = await Promise.all(
          Array.from({ length: 6 }, () => connection.query<{ pid: number }>('select pg_backend_pid() as pid, pg_sleep(0.2)')),
        );
        return new Set(answers.map((answer) => answer.rows[0]?.pid)).size;
      } finally {
        await connection.close();
      }
    } finally {
      await databases.close();
    }
  };

  it('postgres - six queries at once use 5 connections by default and 2 with KEEL_DATABASE_POOL_SIZE=2, under DATABASE_URL and under the module\'s own DATABASE_URL_LEDGER', async () => {
    expect(await backendsOfSixQueries({})).toBe(5);
    expect(await backendsOfSixQueries({ KEEL_DATABASE_POOL_SIZE: '2' })).toBe(2);
    expect(await backendsOfSixQueries({ DATABASE_URL: '', DATABASE_URL_LEDGER: database.url, KEEL_DATABASE_POOL_SIZE: '3' })).toBe(3);
  });

  it('leaves KEEL_DATABASE_POOL_SIZE alone where no module keeps data in PostgreSQL (the embedded database, or no module that owns data), as it leaves the URLs', () => {
    const plan = planDatabases(modules, { env: { KEEL_DATA_DIR: 'memory', KEEL_DATABASE_POOL_SIZE: '0' }, root: process.cwd() });
    expect(plan.map(({ source }) => source)).toEqual([{ engine: 'pglite', dataDir: undefined }]);
    expect(planDatabases([], { env: { DATABASE_URL: database.url, KEEL_DATABASE_POOL_SIZE: '0' }, root: process.cwd() })).toEqual([]);
  });

  it.each(['0', '101', 'five', '2.5', '-1'])('refuses KEEL_DATABASE_POOL_SIZE=%s with INVALID_CONFIG naming the variable and the range, before opening anything', (value) => {
    expect(() => planDatabases(modules, { env: { DATABASE_URL: database.url, KEEL_DATABASE_POOL_SIZE: value }, root: process.cwd() })).toThrow(
      expect.objectContaining({ code: 'INVALID_CONFIG', message: expect.stringContaining(`KEEL_DATABASE_POOL_SIZE "${value}" is not a whole number of connections from 1 to 100`) }),
    );
  });
});
