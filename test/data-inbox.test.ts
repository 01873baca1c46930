/**
 * The inbox's shared transactions, on both engines (PGlite in memory, and the machine's PostgreSQL
 * in a database made for this file), driven directly: durable events that wait together are
 * handled in one transaction, each in a savepoint opened with its inbox record. One handler's
 * failure undoes its own work only; a handler that caught a failed statement is failed, not
 * committed; a duplicate is skipped; a commit that fails fails every event it held; each handler
 * runs in its own event's async context. On PostgreSQL, several transactions at once, and one
 * whose connection dies. The edges (copies, events that run alone, handlers' leftovers, ids,
 * older engines, the options) are in test/data-inbox-edges.test.ts.
 *
 * The inbox runs one transaction at a time here, and the first event's handler waits on a gate
 * until the others are queued, so that they join its transaction: `txid_current()` in each
 * handler shows which transaction it ran in.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { isKeelError } from 'keel';
import { DEFAULT_INBOX_OPTIONS } from '../kernel/inbox.js';
import { TEST_POSTGRES_URL, enginesUnderTest } from './support/databases.js';
import { gate, inboxOn, together } from './support/inbox.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

describe.each(engines)('data - the inbox on $name', (engine) => {
  it('handles events that wait together in one transaction, each recorded once in the inbox, and resolves them once it committed', async () => {
    const { db, inbox, count, txOf } = await inboxOn(engine.fresh);
    const transactions = new Map<string, string>();
    let seenAtFirstResolution: number | undefined;
    const held = gate();
    const ids = ['a1', 'a2', 'a3', 'a4', 'a5'];
    const run = async (id: string) => {
      transactions.set(id, await txOf());
      await db.query('insert into entries (label) values ($1)', [id]);
    };
    const first = inbox.handle('a0', 'ledger', 'entryAdded', false, async () => {
      await held.pass();
      await run('a0');
    });
    // Read outside the transaction when the first event resolves: committed by then, with every event's work.
    const resolvedFirst = first.then(async (outcome) => {
      seenAtFirstResolution = await count('entries');
      return outcome;
    });
    await held.waiting;
    const others = ids.map((id) => inbox.handle(id, 'ledger', 'entryAdded', false, () => run(id)));
    held.open();
    expect(await Promise.all([resolvedFirst, ...others])).toEqual(Array(6).fill('handled'));
    expect(seenAtFirstResolution).toBe(6);
    expect(new Set(transactions.values()).size).toBe(1);
    expect(await count('keel_inbox')).toBe(6);
  });

  it('undoes the work of a handler that throws in a shared transaction, rejects its event alone with its error, and commits the others', async () => {
    const { db, inbox, count, txOf } = await inboxOn(engine.fresh);
    const transactions = new Set<string>();
    const { outcomes } = await together(inbox, ['b1', 'b2', 'b3', 'b4'], async (id) => {
      transactions.add(await txOf());
      await db.query('insert into entries (label) values ($1)', [id]);
      if (id === 'b3') throw new Error('b3 failed after its insert');
    });
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect((outcomes[2] as PromiseRejectedResult).reason).toEqual(new Error('b3 failed after its insert'));
    expect(transactions.size).toBe(1);
    const labels = (await db.query<{ label: string }>('select label from entries order by label')).rows.map((row) => row.label);
    expect(labels).toEqual(['b1', 'b2', 'b4']);
    const recorded = (await db.query<{ event_id: string }>('select event_id from keel_inbox order by event_id')).rows.map((row) => row.event_id);
    expect(recorded).toEqual(['b1', 'b2', 'b4']);
    expect(await count('entries')).toBe(3);
  });

  it('fails a handler that caught a failed statement, in the middle and at the end of a shared transaction, and commits the others', async () => {
    const { db, inbox } = await inboxOn(engine.fresh);
    const { outcomes } = await together(inbox, ['c1', 'c2', 'c3', 'c4'], async (id) => {
      await db.query('insert into entries (label) values ($1)', [id]);
      if (id === 'c2' || id === 'c4') await db.query('select 1 / 0').catch(() => undefined);
    });
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    for (const index of [1, 3]) {
      const reason = (outcomes[index] as PromiseRejectedResult).reason;
      expect(isKeelError(reason)).toBe(true);
      expect(String((reason as Error).message)).toContain('its error was caught, so its work was rolled back');
    }
    const labels = (await db.query<{ label: string }>('select label from entries order by label')).rows.map((row) => row.label);
    expect(labels).toEqual(['c1', 'c3']);
    const recorded = (await db.query<{ event_id: string }>('select event_id from keel_inbox order by event_id')).rows.map((row) => row.event_id);
    expect(recorded).toEqual(['c1', 'c3']);
    // Alone in its transaction, it gets the same message (not the engine's commit error).
    const alone = await inbox
      .handle('c5', 'ledger', 'entryAdded', true, async () => {
        await db.query('select 1 / 0').catch(() => undefined);
      })
      .catch((error: unknown) => error);
    expect(isKeelError(alone)).toBe(true);
    expect(String((alone as Error).message)).toContain('its error was caught, so its work was rolled back');
  });

  it('skips an event the inbox holds already, without running its handler, whether it opens a transaction or joins one', async () => {
    const { db, inbox, count, txOf } = await inboxOn(engine.fresh);
    await db.query("insert into keel_inbox (event_id, source, event) values ('d0', 'ledger', 'entryAdded'), ('d2', 'ledger', 'entryAdded')");
    const ran: string[] = [];
    expect(await inbox.handle('d0', 'ledger', 'entryAdded', false, async () => void ran.push('d0'))).toBe('duplicate');
    const transactions = new Set<string>();
    const { outcomes } = await together(inbox, ['d1', 'd2', 'd3'], async (id) => {
      ran.push(id);
      transactions.add(await txOf());
    });
    expect(outcomes).toEqual([
      { status: 'fulfilled', value: 'handled' },
      { status: 'fulfilled', value: 'duplicate' },
      { status: 'fulfilled', value: 'handled' },
    ]);
    expect(ran).toEqual(['d1', 'd3']);
    expect(transactions.size).toBe(1);
    expect(await count('keel_inbox')).toBe(4);
  });

  it('rejects every event of a shared transaction whose commit fails, and records none of them', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    await db.exec('create table once_only (k int, constraint once_only_k unique (k) deferrable initially deferred)');
    // Each handler inserts the same key: allowed until the commit checks the deferred constraint.
    const { outcomes } = await together(inbox, ['f1', 'f2', 'f3', 'f2'], async () => {
      await db.query('insert into once_only (k) values (1)');
    });
    // The second f2 (a copy, never run) fails with the transaction too.
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect(String((outcomes[0] as PromiseRejectedResult).reason)).toContain('once_only_k');
    expect(await count('keel_inbox')).toBe(0);
    expect(await count('once_only')).toBe(0);
  });

  it(`takes at most ${DEFAULT_INBOX_OPTIONS.events} events in one transaction, and none once it has run for its time`, async () => {
    const { inbox, txOf } = await inboxOn(engine.fresh);
    const transactionOf = new Map<string, string>();
    const ids = Array.from({ length: DEFAULT_INBOX_OPTIONS.events + 8 }, (_, i) => `g${String(i).padStart(2, '0')}`);
    await together(inbox, ids, async (id) => void transactionOf.set(id, await txOf()));
    const firstTransaction = transactionOf.get('g00');
    const shared = ids.filter((id) => transactionOf.get(id) === firstTransaction);
    expect(shared).toEqual(ids.slice(0, DEFAULT_INBOX_OPTIONS.events));
    expect(new Set(ids.slice(DEFAULT_INBOX_OPTIONS.events).map((id) => transactionOf.get(id))).size).toBe(1);

    // With a time of 250 ms, a first handler that ran longer leaves the events behind it to the next
    // transaction, and the two behind it share that one (250 ms is wide enough for a starved CPU).
    const timed = await inboxOn(engine.fresh, { ms: 250 });
    const timedOf = new Map<string, string>();
    await together(timed.inbox, ['h0', 'h1', 'h2'], async (id) => {
      if (id === 'h0') {
        const until = performance.now() + 300;
        while (performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      timedOf.set(id, await timed.txOf());
    });
    expect(timedOf.get('h1')).not.toBe(timedOf.get('h0'));
    expect(timedOf.get('h2')).toBe(timedOf.get('h1'));
  });

  it("runs each handler in the async context its event was given in, not the first event's", async () => {
    const { inbox } = await inboxOn(engine.fresh);
    const context = new AsyncLocalStorage<string>();
    const seen: [string, string | undefined][] = [];
    const held = gate();
    const first = context.run('ctx-e0', () =>
      inbox.handle('e0', 'ledger', 'entryAdded', false, async () => {
        await held.pass();
        seen.push(['e0', context.getStore()]);
      }),
    );
    await held.waiting;
    const others = ['e1', 'e2'].map((id) => context.run(`ctx-${id}`, () => inbox.handle(id, 'ledger', 'entryAdded', false, async () => void seen.push([id, context.getStore()]))));
    held.open();
    await Promise.all([first, ...others]);
    expect(seen).toEqual([
      ['e0', 'ctx-e0'],
      ['e1', 'ctx-e1'],
      ['e2', 'ctx-e2'],
    ]);
  });
});

// PGlite runs one transaction at a time (its engine's connections: 1), so only PostgreSQL can run two.
describe('data - the inbox on postgres, with several transactions', () => {
  const postgres = engines.find((engine) => engine.name === 'postgres') as (typeof engines)[number];
  it('fails every event of a transaction whose connection dies, records none of them, and goes on with a new connection', async () => {
    const { db, inbox } = await inboxOn(postgres.fresh);
    const { outcomes } = await together(inbox, ['p1', 'p2', 'p3'], async (id) => {
      await db.query('insert into entries (label) values ($1)', [id]);
      if (id === 'p2') {
        // The module's role may not end its own session (its login is a superuser's): an operator's connection does.
        const pid = (await db.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid;
        const admin = new pg.Client({ connectionString: TEST_POSTGRES_URL });
        await admin.connect();
        try {
          expect((await admin.query('select pg_terminate_backend($1) as ended', [pid])).rows).toEqual([{ ended: true }]);
        } finally {
          await admin.end();
        }
        await db.query('select 1');
      }
    });
    // p3 was still waiting when the transaction failed: the next one, on a new connection, handles it.
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['rejected', 'rejected', 'fulfilled']);
    const recorded = (await db.query<{ event_id: string }>('select event_id from keel_inbox')).rows;
    expect(recorded).toEqual([{ event_id: 'p3' }]);
    expect((await db.query<{ label: string }>('select label from entries')).rows).toEqual([{ label: 'p3' }]);
  });

  it('runs as many transactions at once as it is given, and the events behind them join those transactions', async () => {
    const { inbox, txOf } = await inboxOn(postgres.fresh, { transactions: 2 });
    const transactionOf = new Map<string, string>();
    let entered = 0;
    const bothIn = gate();
    const run = (id: string) => async () => {
      transactionOf.set(id, await txOf());
      entered += 1;
      // The first two hold their transactions until both are in: they run at once.
      if (entered <= 2) await (entered === 2 ? (bothIn.open(), Promise.resolve()) : bothIn.pass());
    };
    const ids = ['t1', 't2', 't3', 't4'];
    expect(await Promise.all(ids.map((id) => inbox.handle(id, 'ledger', 'entryAdded', false, run(id))))).toEqual(Array(4).fill('handled'));
    expect(new Set([transactionOf.get('t1'), transactionOf.get('t2')]).size).toBe(2);
    expect(new Set(transactionOf.values()).size).toBe(2);
  });
});
