/**
 * The idempotency keys of a module that owns data are deleted once past retention, on PGlite and
 * on PostgreSQL: finished requests a day after they finished, and claims whose process died
 * before finishing (never completed nor abandoned) a day after their deadline. Younger keys,
 * and the claim of a request still running, stay.
 */
import { afterAll, describe, expect, it } from 'vitest';
import type { SchemaConnection } from '../kernel/database.js';
import { SqlIdempotencyStore } from '../kernel/idempotency.js';
import { migrate, readMigrations } from '../kernel/migrations.js';
import { pgliteUnderTest, postgresUnderTest } from './support/databases.js';

const engines = [pgliteUnderTest(), postgresUnderTest()];
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

const HOUR = 3_600_000;

describe.each(engines)('idempotency - keys past retention are deleted ($name)', (engine) => {
  it('idempotency - the sweep deletes a dead claim (never completed nor abandoned) a day after its deadline, and a finished key a day after it finished; it keeps younger ones and a running claim', async () => {
    const connection: SchemaConnection = await (await engine.fresh()).connect('tally');
    try {
      await migrate(connection, 'tally', 'tally', readMigrations('tally', '/nonexistent-keel-migrations'));
      const store = new SqlIdempotencyStore(connection);
      const now = Date.now();
      // Claims made through the store, then aged by moving their times back.
      for (const key of ['died-long-ago', 'died-recently', 'still-running', 'finished-long-ago', 'finished-recently']) {
        expect((await store.claim('add', key, 'hash', now + 60_000)).kind).toBe('run');
      }
      const age = (key: string, set: string, hoursAgo: number) =>
        connection.query(`update keel_idempotency set ${set} where key = $1`, [key, new Date(now - hoursAgo * HOUR).toISOString()]);
      await age('died-long-ago', 'expires_at = $2::timestamptz', 25);
      await age('died-recently', 'expires_at = $2::timestamptz', 23);
      await age('finished-long-ago', "state = 'completed', outcome = '{}', completed_at = $2::timestamptz", 25);
      await age('finished-recently', "state = 'completed', outcome = '{}', completed_at = $2::timestamptz", 23);

      await store.sweep();

      const { rows } = await connection.query<{ key: string }>('select key from keel_idempotency order by key');
      expect(rows.map((row) => row.key)).toEqual(['died-recently', 'finished-recently', 'still-running']);
    } finally {
      await connection.close();
    }
  });
});
