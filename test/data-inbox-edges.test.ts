/**
 * The inbox's edges, on both engines (PGlite in memory, and the machine's PostgreSQL in a database
 * made for this file): a second delivery of an event in the same transaction; events that run
 * alone; what a handler leaves running or changes for the next event (a nested transaction, the
 * search_path); ids the inbox cannot record, and ids with quotes; an engine written before
 * `first`; engines' `connections`; which deliveries run alone; `ownTransaction`'s check. The
 * shared transactions themselves are in test/data-inbox.test.ts, with the same means
 * (test/support/inbox.ts).
 */
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createKernel, defineModule, isKeelError, silentLogger, type DatabaseEngine } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { createPostgresDatabase } from 'keel/postgres';
import { runsAlone } from '../kernel/inbox.js';
import { audit, auditModule, ledger, ledgerModule } from './fixtures/data/modules.js';
import { TEST_POSTGRES_URL, enginesUnderTest } from './support/databases.js';
import { gate, inboxOn, together, type Connection } from './support/inbox.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

/** `connection`, with a transaction that hands `work` no result: it runs `first` itself when `runsFirst` (a wrapper that drops the result), else ignores it. */
function resultless(runsFirst: boolean): (connection: Connection) => Connection {
  return (connection) => ({
    query: (text, params) => connection.query(text, params),
    exec: (script) => connection.exec(script),
    close: () => connection.close(),
    transaction: (work, first) =>
      connection.transaction(async (tx) => {
        if (runsFirst && first !== undefined) await tx.exec(first);
        return work(tx);
      }),
  });
}

describe.each(engines)('data - the inbox on $name, at its edges', (engine) => {
  it('fails a copy of an event whose handler caught a failed statement, as its original', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    const { outcomes } = await together(inbox, ['u0', 'u1', 'u1', 'u2'], async (id) => {
      if (id === 'u1') await db.query('select 1 / 0').catch(() => undefined);
    });
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect(String((outcomes[2] as PromiseRejectedResult).reason)).toContain('its error was caught');
    expect(await count('keel_inbox')).toBe(2);
  });

  it('gives up on a handler still running handlerMs after it started, inside a nested db.transaction: its work rolled back, its event failed with TIMEOUT, the events around it committed, its every later use of db refused', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh, { handlerMs: 1000 });
    const held = gate();
    let reportLate!: (uses: unknown[]) => void;
    const lateUses = new Promise<unknown[]>((resolve) => (reportLate = resolve));
    const outcome = (use: Promise<unknown>) => use.then(() => 'kept', (error: unknown) => error);
    const { outcomes } = await together(inbox, ['h0', 'h1', 'h2'], async (id) => {
      await db.query('insert into entries (label) values ($1)', [id]);
      if (id !== 'h1') return;
      const nested = await outcome(
        db.transaction(async () => {
          await db.query("insert into entries (label) values ('h1-nested')");
          await held.pass();
        }),
      );
      const after = await Promise.all([
        outcome(db.query("insert into entries (label) values ('h1-query')")),
        outcome(db.exec("insert into entries (label) values ('h1-exec')")),
        outcome(db.transaction(() => db.query("insert into entries (label) values ('h1-transaction')"))),
      ]);
      reportLate([nested, ...after]);
    });
    expect(outcomes.map((settled) => settled.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const reason = (outcomes[1] as PromiseRejectedResult).reason;
    expect(isKeelError(reason, 'TIMEOUT')).toBe(true);
    expect(String(reason)).toContain('durable event ledger.entryAdded (h1) in module "audit" was still running 1000 ms after it started');
    held.open();
    const uses = await lateUses;
    expect(uses.map((use) => isKeelError(use, 'TIMEOUT'))).toEqual([true, true, true, true]);
    expect((await db.query<{ label: string }>('select label from entries order by label')).rows).toEqual([{ label: 'h0' }, { label: 'h2' }]);
    expect(await count('keel_inbox')).toBe(2);
  });

  it('gives up on the last event of a shared transaction, committing those before it, and fails a copy of it with the same TIMEOUT', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh, { handlerMs: 1000 });
    const held = gate();
    const { outcomes } = await together(inbox, ['g0', 'g1', 'g2', 'g2'], async (id) => {
      await db.query('insert into entries (label) values ($1)', [id]);
      if (id === 'g2') await held.pass();
    });
    held.open();
    expect(outcomes.map((settled) => settled.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'rejected']);
    expect((outcomes[3] as PromiseRejectedResult).reason).toBe((outcomes[2] as PromiseRejectedResult).reason);
    expect(isKeelError((outcomes[2] as PromiseRejectedResult).reason, 'TIMEOUT')).toBe(true);
    expect((await db.query<{ label: string }>('select label from entries order by label')).rows).toEqual([{ label: 'g0' }, { label: 'g1' }]);
    expect(await count('keel_inbox')).toBe(2);
  });

  it("records the next event in the module's own inbox when a handler before it moved the search_path", async () => {
    const { db, inbox } = await inboxOn(engine.fresh);
    const { outcomes } = await together(inbox, ['w0', 'w1'], async (id) => {
      if (id === 'w0') await db.query('set local search_path to pg_catalog');
    });
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 'handled' },
      { status: 'fulfilled', value: 'handled' },
    ]);
    expect((await db.query<{ event_id: string }>('select event_id from audit.keel_inbox order by event_id')).rows).toEqual([{ event_id: 'w0' }, { event_id: 'w1' }]);
  });

  it('settles a second delivery of an event in the same transaction after the commit, as its original: a duplicate once handled, failed when it failed', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    const ran: string[] = [];
    const handled = await together(inbox, ['k1', 'k2', 'k1'], async (id, index) => {
      ran.push(`${id}#${index}`);
      await db.query('insert into entries (label) values ($1)', [id]);
    });
    expect(handled.outcomes).toEqual([
      { status: 'fulfilled', value: 'handled' },
      { status: 'fulfilled', value: 'handled' },
      { status: 'fulfilled', value: 'duplicate' },
    ]);
    expect(ran).toEqual(['k1#0', 'k2#1']);
    const failed = await together(inbox, ['m0', 'm1', 'm2', 'm1'], async (id, index) => {
      ran.push(`${id}#${index}`);
      if (id === 'm1') throw new Error('m1 failed');
    });
    expect(failed.outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    expect((failed.outcomes[3] as PromiseRejectedResult).reason).toEqual(new Error('m1 failed'));
    expect(ran.slice(2)).toEqual(['m0#0', 'm1#1', 'm2#2']);
    expect(await count('keel_inbox')).toBe(4);
  });

  it('runs an event asked to run alone (the kernel asks it for a redelivery, a last attempt, ownTransaction) in a transaction of its own', async () => {
    const { inbox, txOf } = await inboxOn(engine.fresh);
    const transactionOf = new Map<string, string>();
    await together(inbox, ['r0', 'r1', 'r2'], async (id) => void transactionOf.set(id, await txOf()), (id) => id === 'r1');
    expect(new Set(transactionOf.values()).size).toBe(3);
    const plain = new Map<string, string>();
    await together(inbox, ['s0', 's1', 's2'], async (id) => void plain.set(id, await txOf()));
    expect(new Set(plain.values()).size).toBe(1);
  });

  it.each([
    { ending: 'fails', end: (): Promise<unknown> => Promise.reject(new Error('late')), late: (outcome: unknown) => expect(outcome).toEqual(new Error('late')) },
    // Its release would also release the next event's savepoint: it is refused instead.
    { ending: 'ends well', end: (): Promise<unknown> => Promise.resolve('done'), late: (outcome: unknown) => expect(isKeelError(outcome, 'INVALID_STATE')).toBe(true) },
  ])('keeps the next event of a shared transaction whole when a db.transaction left running by the handler before it $ending', async ({ end, late }) => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    const nextRunning = gate();
    let settledLate!: (outcome: unknown) => void;
    const endedLate = new Promise<unknown>((resolve) => (settledLate = resolve));
    const { outcomes } = await together(inbox, ['n1', 'n2'], async (id) => {
      if (id === 'n1') {
        // Not awaited: it outlives n1's handler, and ends while n2 runs.
        void db
          .transaction(async () => {
            await nextRunning.waiting;
            return end();
          })
          .then(settledLate, settledLate);
        return;
      }
      await db.query('insert into entries (label) values ($1)', [id]);
      nextRunning.open();
      void nextRunning.pass();
      late(await endedLate);
    });
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 'handled' },
      { status: 'fulfilled', value: 'handled' },
    ]);
    expect(await count('keel_inbox')).toBe(2);
    expect((await db.query<{ label: string }>('select label from entries')).rows).toEqual([{ label: 'n2' }]);
  });

  it("fails alone an event whose record the inbox's index cannot hold, in a shared transaction, and refuses an id with a NUL as INVALID_EVENT", async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    // Past the btree's 2 704 bytes a row, and not compressible below it.
    const tooLong = randomBytes(4_000).toString('hex');
    const { outcomes } = await together(inbox, ['l1', tooLong, 'l3'], async (id) => {
      await db.query('insert into entries (label) values ($1)', [id.slice(0, 8)]);
    });
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((outcomes[1] as PromiseRejectedResult).reason)).toMatch(/index row|exceeds/i);
    expect(await count('keel_inbox')).toBe(2);
    expect(await count('entries')).toBe(2);
    const refused = await inbox.handle('nul\0id', 'ledger', 'entryAdded', false, async () => undefined).catch((error: unknown) => error);
    expect(isKeelError(refused, 'INVALID_EVENT')).toBe(true);
    expect(String((refused as Error).message)).toContain('NUL');
  });

  it('records ids with quotes and backslashes as they are, and knows them again', async () => {
    const { db, inbox } = await inboxOn(engine.fresh);
    const id = "it's a \\ back'slash \\' id";
    expect(await inbox.handle(id, "le'dger", 'entry\\Added', false, async () => undefined)).toBe('handled');
    const { rows } = await db.query<{ event_id: string; source: string; event: string }>('select event_id, source, event from keel_inbox');
    expect(rows).toEqual([{ event_id: id, source: "le'dger", event: 'entry\\Added' }]);
    expect(await inbox.handle(id, "le'dger", 'entry\\Added', false, async () => undefined)).toBe('duplicate');
  });

  it('works on an engine written before firstStatement: the inbox sends it no first script, and opens each event itself', async () => {
    // As such an engine: no firstStatement, and a transaction that runs work alone, handing it no result.
    const { db, inbox, count } = await inboxOn(engine.fresh, {}, resultless(false), { firstStatement: undefined });
    await db.query("insert into keel_inbox (event_id, source, event) values ('o0', 'ledger', 'entryAdded')");
    const ran: string[] = [];
    expect(await inbox.handle('o0', 'ledger', 'entryAdded', false, async () => void ran.push('o0'))).toBe('duplicate');
    const { outcomes } = await together(inbox, ['o1', 'o2'], async (id) => {
      ran.push(id);
      await db.query('insert into entries (label) values ($1)', [id]);
    });
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled']);
    expect(ran).toEqual(['o1', 'o2']);
    expect(await count('keel_inbox')).toBe(3);
  });

  it('fails, keeping nothing, on an engine that says firstStatement but hands no result: the record may or may not be there', async () => {
    const ran: string[] = [];
    const { inbox, count } = await inboxOn(engine.fresh, {}, resultless(true));
    const refused = await inbox.handle('x1', 'ledger', 'entryAdded', false, async () => void ran.push('x1')).catch((error: unknown) => error);
    expect(isKeelError(refused, 'INTERNAL')).toBe(true);
    expect(String((refused as Error).message)).toContain('firstStatement');
    expect(ran).toEqual([]);
    expect(await count('keel_inbox')).toBe(0);
  });
});

describe('data - engines say how many transactions they can hold at once', () => {
  it('PostgreSQL: its pool size (poolSize, default 5); PGlite: one', async () => {
    const sized = createPostgresDatabase({ url: TEST_POSTGRES_URL, poolSize: 3 });
    const unsized = createPostgresDatabase({ url: TEST_POSTGRES_URL });
    const embedded = await createPGliteDatabase();
    try {
      expect([sized.connections, unsized.connections, embedded.connections]).toEqual([3, 5, 1]);
    } finally {
      await Promise.all([sized.close(), unsized.close(), embedded.close()]);
    }
  });
});

describe('data - which deliveries run in an inbox transaction of their own', () => {
  it('a redelivery, a last attempt (every attempt when maxAttempts is 1), and every event of a handler with ownTransaction; no other', () => {
    expect(runsAlone(1, 5, false)).toBe(false);
    expect(runsAlone(2, 5, false)).toBe(true);
    expect(runsAlone(5, 5, false)).toBe(true);
    expect(runsAlone(1, 1, false)).toBe(true);
    expect(runsAlone(1, 5, true)).toBe(true);
  });
});

describe('data - ownTransaction', () => {
  it('refuses a handler whose ownTransaction is not a boolean at start, naming the module, the event and the option', async () => {
    const wrong = defineModule({
      contract: audit,
      subscribesTo: [ledger],
      data: { migrations: new URL('./fixtures/data/audit/migrations/', import.meta.url) },
      create: () => ({
        handlers: { seen: async () => ({ labels: [], handled: 0 }) },
        events: { ledger: { entryAdded: { handle: async () => undefined, ownTransaction: 'yes' as unknown as boolean } } },
      }),
    });
    const database = await createPGliteDatabase();
    try {
      const kernel = createKernel({ modules: [wrong, ledgerModule], database, logger: silentLogger });
      const refused = await kernel.start().catch((error: unknown) => error);
      expect(isKeelError(refused, 'INVALID_MODULE')).toBe(true);
      expect(String((refused as Error).message)).toMatch(/audit.*ledger\.entryAdded.*ownTransaction "yes"/);
      await kernel.stop();
    } finally {
      await database.close();
    }
  });

  it('refuses ownTransaction in a module without data, where it would change nothing', async () => {
    const withoutData = defineModule({
      contract: audit,
      subscribesTo: [ledger],
      create: () => ({
        handlers: { seen: async () => ({ labels: [], handled: 0 }) },
        events: { ledger: { entryAdded: { handle: async () => undefined, ownTransaction: true } } },
      }),
    });
    const database = await createPGliteDatabase();
    try {
      const kernel = createKernel({ modules: [withoutData, ledgerModule], database, logger: silentLogger });
      const refused = await kernel.start().catch((error: unknown) => error);
      expect(isKeelError(refused, 'INVALID_MODULE')).toBe(true);
      expect(String((refused as Error).message)).toContain('ownTransaction on the handler of ledger.entryAdded would change nothing');
      expect(String((refused as Error).message)).toContain('declares no data');
      await kernel.stop();
    } finally {
      await database.close();
    }
  });
});

describe('data - an engine whose connections make no sense', () => {
  it('refuses to start a module that owns data on it, naming the engine and the field', async () => {
    const database = await createPGliteDatabase();
    try {
      const confused: DatabaseEngine = Object.assign(Object.create(database) as DatabaseEngine, { connections: Number.NaN });
      const kernel = createKernel({ modules: [ledgerModule, auditModule], database: confused, logger: silentLogger });
      const refused = await kernel.start().catch((error: unknown) => error);
      expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
      expect(String((refused as Error).message)).toContain('"pglite" says it holds NaN connections');
      await kernel.stop();
    } finally {
      await database.close();
    }
  });
});
