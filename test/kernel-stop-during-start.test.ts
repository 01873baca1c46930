/**
 * A stop called while the kernel starts (a SIGTERM during a deploy): the stop's clock starts when
 * it is called, not once the start is over. A start that waits for the migration lock another
 * instance holds (unbounded by design) gives that wait up, modules not started yet are never
 * started, and start() rejects with INVALID_STATE. Before, kernel.stop() waited for the start to
 * end: as long as the lock was held.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, type DatabaseEngine } from 'keel';
import { createPostgresDatabase } from 'keel/postgres';
import { within } from 'keel/transport';
import { createTestDatabase, migrationLockKey, type TestDatabase } from './support/databases.js';
import { burst, burstModule } from './support/inbox-kernel.js';
import { linesLogger, type LogLine } from './support/log-lines.js';

let database: TestDatabase | undefined;
let engine: DatabaseEngine | undefined;
let admin: pg.Client | undefined;
afterAll(async () => {
  await admin?.end().catch(() => undefined);
  await engine?.close();
  await database?.drop();
});


const caller = defineContract({ name: 'caller', version: '1.0.0', operations: { ping: operation({ input: z.object({}), output: z.object({}) }) } });

async function until(check: () => boolean): Promise<void> {
  for (let waited = 0; !check(); waited += 20) {
    if (waited > 20_000) throw new Error('the condition did not come true within 20 s');
    await sleep(20);
  }
}

describe('kernel - a stop while the start waits for the migration lock (postgres)', () => {
  it('resolves well within drainTimeoutMs, gives the lock wait up, never starts the modules after it, and start() rejects with INVALID_STATE', { timeout: 60_000 }, async () => {
    database = await createTestDatabase();
    engine = createPostgresDatabase({ url: database.url });
    admin = new pg.Client({ connectionString: database.url });
    await admin.connect();
    // Another instance applying burst's migrations: it holds the schema's lock for as long as this test likes.
    await admin.query('begin');
    await admin.query('select pg_advisory_xact_lock($1::bigint)', [migrationLockKey('burst')]);
    const journal: string[] = [];
    const after = defineModule({
      contract: caller,
      dependsOn: [burst],
      create: () => ({ handlers: { ping: () => ({}) }, start: () => void journal.push('start caller') }),
    });
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [burstModule, after], database: engine, logger: linesLogger(lines), drainTimeoutMs: 30_000 });
    const starting = kernel.start().then(
      () => 'started',
      (error: unknown) => error,
    );
    await until(() => lines.some((line) => line.message.includes('waiting for the migration lock of schema "burst"')));
    const stopped = kernel.stop();
    // The lock stays held: a stop that waited for the start would wait for ever. 15 s: half of drainTimeoutMs, on a loaded machine.
    expect(await within(stopped, 15_000)).toBe(true);
    const error = await starting;
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    expect((error as Error).message).toContain('stopped while it was starting');
    expect(kernel.state).toBe('stopped');
    expect(kernel.ready()).toBe(false);
    expect(journal).toEqual([]);
    // The instance gave the lock up and left nothing behind: once the holder commits, nothing waits for it.
    const { rows } = await admin.query<{ waiting: number }>(
      "select count(*)::int as waiting from pg_locks where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())",
    );
    expect(rows).toEqual([{ waiting: 0 }]);
    await admin.query('rollback');
  });
});

describe('kernel - a stop while a start hook runs', () => {
  it('waits for the hook no longer than drainTimeoutMs, never starts the modules after it, and runs its stop hook when the hook ends late', { timeout: 30_000 }, async () => {
    const journal: string[] = [];
    let endHook!: () => void;
    const hookEnds = new Promise<void>((resolve) => (endHook = resolve));
    const slow = defineContract({ name: 'slow', version: '1.0.0', operations: { ping: operation({ input: z.object({}), output: z.object({}) }) } });
    const slowModule = defineModule({
      contract: slow,
      create: () => ({
        handlers: { ping: () => ({}) },
        start: async () => {
          journal.push('start slow');
          await hookEnds;
        },
        stop: () => void journal.push('stop slow'),
      }),
    });
    const after = defineModule({
      contract: caller,
      dependsOn: [slow],
      create: () => ({ handlers: { ping: () => ({}) }, start: () => void journal.push('start caller') }),
    });
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [slowModule, after], logger: linesLogger(lines), drainTimeoutMs: 300 });
    const starting = kernel.start().then(
      () => 'started',
      (error: unknown) => error,
    );
    await until(() => journal.includes('start slow'));
    // The hook never ends by itself: a stop that waited for the start would wait for ever.
    expect(await within(kernel.stop(), 15_000)).toBe(true);
    expect(kernel.state).toBe('stopped');
    expect(lines.some((line) => line.level === 'error' && line.message.includes('module slow still starting when drainTimeoutMs was over'))).toBe(true);
    endHook();
    const error = await starting;
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    expect((error as Error).message).toContain('stopped while it was starting');
    await until(() => journal.includes('stop slow'));
    expect(journal).toEqual(['start slow', 'stop slow']);
    expect(kernel.status().modules.map((module) => module.state)).toEqual(['stopped', 'created']);
  });
});

describe('kernel - a start that fails on its own while a stop runs', () => {
  it('logs what failed (start() answers INVALID_STATE, its cause the failure)', { timeout: 30_000 }, async () => {
    let breakHook!: () => void;
    const hookFails = new Promise<void>((_, reject) => (breakHook = () => reject(new Error('the start hook found no API_KEY'))));
    let hookRuns = false;
    const broken = defineModule({
      contract: caller,
      create: () => ({
        handlers: { ping: () => ({}) },
        start: () => {
          hookRuns = true;
          return hookFails;
        },
      }),
    });
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [broken], logger: linesLogger(lines), drainTimeoutMs: 10_000 });
    const starting = kernel.start().then(
      () => 'started',
      (error: unknown) => error,
    );
    await until(() => hookRuns);
    const stopped = kernel.stop();
    breakHook();
    const error = await starting;
    await stopped;
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    expect(((error as Error).cause as Error).message).toBe('the start hook found no API_KEY');
    const logged = lines.filter((line) => line.level === 'error' && (line.record['err'] as Error | undefined)?.message === 'the start hook found no API_KEY');
    expect(logged).toHaveLength(1);
  });

  it('a stop during the failed start\'s own stops names no module "still starting", and the kernel ends stopped', { timeout: 30_000 }, async () => {
    let hookStops = false;
    const slow = defineContract({ name: 'slow', version: '1.0.0', operations: { ping: operation({ input: z.object({}), output: z.object({}) }) } });
    // Started first; its stop hook outlasts the stop's wait for the start.
    const first = defineModule({
      contract: slow,
      create: () => ({
        handlers: { ping: () => ({}) },
        stop: async () => {
          hookStops = true;
          await sleep(1_000);
        },
      }),
    });
    const broken = defineModule({
      contract: caller,
      dependsOn: [slow],
      create: () => ({
        handlers: { ping: () => ({}) },
        start: () => {
          throw new Error('caller broke');
        },
      }),
    });
    const lines: LogLine[] = [];
    const kernel = createKernel({ modules: [first, broken], logger: linesLogger(lines), drainTimeoutMs: 200 });
    const starting = kernel.start().then(
      () => 'started',
      (error: unknown) => error,
    );
    await until(() => hookStops);
    await kernel.stop();
    expect(((await starting) as Error).message).toBe('caller broke');
    expect(kernel.state).toBe('stopped');
    expect(lines.filter((line) => line.message.includes('still starting when drainTimeoutMs was over'))).toEqual([]);
    expect(lines.some((line) => line.message.includes('start failed; stopping the modules already started'))).toBe(true);
  });
});
