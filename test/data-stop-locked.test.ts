/**
 * A stop while a module's statements wait for a lock another session holds (an operator's
 * `lock table`, a long migration elsewhere), on PostgreSQL: once the module's drain is over, the
 * stop must not wait for the lock. The module's pool used to wait for every statement still
 * running (pg's Pool.end), so `kernel.stop()` lasted as long as the lock: without end, silently,
 * after its "stopping the module anyway".
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger, type DatabaseEngine } from 'keel';
import { createPostgresDatabase } from 'keel/postgres';
import { within } from 'keel/transport';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { burst, burstModule } from './support/inbox-kernel.js';

let database: TestDatabase | undefined;
let engine: DatabaseEngine | undefined;
let admin: pg.Client | undefined;
afterAll(async () => {
  await admin?.query('rollback').catch(() => undefined);
  await admin?.end().catch(() => undefined);
  await engine?.close();
  await database?.drop();
});

describe('data - a stop while a statement waits for a lock another session holds (postgres)', () => {
  it("ends soon after drainTimeoutMs, ending the connections that wait; the waiting transaction's work is not kept", { timeout: 60_000 }, async () => {
    database = await createTestDatabase();
    engine = createPostgresDatabase({ url: database.url });
    const kernel = createKernel({ modules: [burstModule], database: engine, logger: silentLogger, drainTimeoutMs: 200 });
    await kernel.start();
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    await admin.query('begin');
    await admin.query('lock table burst.keel_outbox in access exclusive mode');
    // Its transaction inserts into the locked outbox (emit), and waits there.
    const call = kernel.client(burst).write({ labels: ['held'] }, { timeoutMs: 30_000 }).then(
      () => 'written',
      (error: unknown) => error,
    );
    await sleep(500);
    const stopped = kernel.stop();
    // drainTimeoutMs (200 ms), then at most the close's grace (2 s): well within 15 s on a loaded machine.
    expect(await within(stopped, 15_000)).toBe(true);
    expect(await call).not.toBe('written');
    await admin.query('rollback');
    const { rows } = await admin.query<{ n: number }>('select count(*)::int as n from burst.entries');
    expect(rows).toEqual([{ n: 0 }]);
  });
});
