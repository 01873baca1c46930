/**
 * The inbox's give-back (kernel/inbox.ts `giveBack`), driven directly on both engines: what a
 * module's stop does once its drain is over. Through kernels, on both transports:
 * test/data-inbox-stop.test.ts.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { isGivenBack } from 'keel/transport';
import { enginesUnderTest } from './support/databases.js';
import { gate, inboxOn, type Connection } from './support/inbox.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

/** How a settled event ended: its outcome, or `given back`, or its error's message. */
function ending(result: PromiseSettledResult<unknown>): unknown {
  if (result.status === 'fulfilled') return result.value;
  return isGivenBack(result.reason) ? 'given back' : (result.reason as Error).message;
}

/**
 * `connection`, whose transactions wait for `ready` before they ask for it: as when every
 * connection of a pool is taken. Each transaction's statements, those the engine's `first` aside,
 * are recorded in `sent` (one list a transaction), and `before` runs before each is sent.
 */
function waitingFor(
  ready: Promise<void>,
  sent: string[][] = [],
  before: (statement: string) => void = () => undefined,
): (connection: Connection) => Connection {
  return (connection) => ({
    query: (text, params) => connection.query(text, params),
    exec: (script) => connection.exec(script),
    close: () => connection.close(),
    transaction: async (work, first) => {
      await ready;
      const statements: string[] = [];
      sent.push(statements);
      return connection.transaction(
        (tx, firstResult) =>
          work(
            {
              query: (text, params) => (before(text), statements.push(text), tx.query(text, params)),
              exec: (script) => (before(script), statements.push(script), tx.exec(script)),
            },
            firstResult,
          ),
        first,
      );
    },
  });
}

describe.each(engines)('data - the inbox gives back on $name', (engine) => {
  it('gives back the waiting events at once, oldest first, and the running one once rolled back; commits the one handled before; runs kept events; gives back one given after at once', async () => {
    const { db, inbox, count } = await inboxOn(engine.fresh);
    const insert = (label: string) => db.query('insert into entries (label) values ($1)', [label]);
    const held = gate();
    const ran: string[] = [];
    const rejected: string[] = [];
    const give = (id: string, run: () => Promise<unknown>, alone = false, kept = false) => {
      const outcome = inbox.handle(id, 'ledger', 'entryAdded', alone, () => (ran.push(id), run()), undefined, kept);
      outcome.catch(() => rejected.push(id));
      return outcome;
    };
    // h0 and g0 share a transaction: h0 is handled, then g0 writes and waits.
    const h0 = give('h0', () => insert('h0'));
    const g0 = give('g0', async () => {
      await insert('g0');
      await held.pass();
    });
    await held.waiting;
    const waiting = [give('w1', () => insert('w1')), give('w2', () => insert('w2'))];
    // A last attempt the transport counts: kept, in a transaction of its own.
    const k1 = give('k1', () => insert('k1'), true, true);

    // k1 kept; g0 given up on (rejected once rolled back), w1 and w2 given back at once.
    expect(inbox.giveBack()).toBe(1);
    // From now on too: an event not kept is given back without running, a kept one runs.
    const late = give('l1', () => insert('l1'));
    const keptLate = give('k2', () => insert('k2'), true, true);
    await inbox.idle();
    const results = await Promise.allSettled([h0, g0, ...waiting, k1, late, keptLate]);
    expect(results.map(ending)).toEqual(['handled', 'given back', 'given back', 'given back', 'handled', 'given back', 'handled']);
    expect(ran).toEqual(['h0', 'g0', 'k1', 'k2']);
    // The waiting ones at once, oldest first; the running one once its work was rolled back.
    expect(rejected).toEqual(['w1', 'w2', 'l1', 'g0']);
    expect(inbox.givenBack).toBe(4);
    const labels = (await db.query<{ label: string }>('select label from entries order by label')).rows.map((row) => row.label);
    expect(labels).toEqual(['h0', 'k1', 'k2']);
    expect(await count('keel_inbox')).toBe(3);
    held.open();
  });

  // Both engines take an event's opening as their transaction's first statement (undone when the transaction runs nothing); an engine that does not gets it through the transaction.
  it.each([true, false])('gives back at once an event whose transaction waits for its connection and the event behind it; idle(), asked before and after, does not wait for that connection; the transaction runs nothing once it has it (firstStatement %s)', async (firstStatement) => {
    let ready!: () => void;
    const connectionFree = new Promise<void>((resolve) => (ready = resolve));
    const sent: string[][] = [];
    const { inbox, count } = await inboxOn(engine.fresh, {}, waitingFor(connectionFree, sent), { firstStatement });
    let ran = false;
    const waiting = ['c0', 'c0b'].map((id) =>
      inbox.handle(id, 'ledger', 'entryAdded', false, () => {
        ran = true;
      }),
    );
    // Asked before the give-back, and after: both resolve while the connection is still taken.
    const idleBefore = inbox.idle();
    expect(inbox.giveBack()).toBe(0);
    expect((await Promise.allSettled(waiting)).map(ending)).toEqual(['given back', 'given back']);
    expect(inbox.givenBack).toBe(2);
    await idleBefore;
    await inbox.idle();
    ready();
    // A kept event after it runs in a transaction of its own, after the empty one.
    await expect(inbox.handle('c1', 'ledger', 'entryAdded', true, () => undefined, undefined, true)).resolves.toBe('handled');
    expect(ran).toBe(false);
    // The empty transaction sent nothing through itself: no rollback to c0's savepoint and, without firstStatement, not c0's opening.
    expect(sent).toHaveLength(2);
    expect(sent[0]).toEqual([]);
    expect(await count('keel_inbox')).toBe(1);
  });

  it('does not run the handler of an event being opened in a running transaction when the give-back comes: it is rolled back to its savepoint and given back; the event handled before it commits', async () => {
    let inbox: Awaited<ReturnType<typeof inboxOn>>['inbox'] | undefined;
    let kept: number | undefined;
    // The give-back comes while b1's opening is on its way, after a1 was handled in the same transaction.
    const onOpening = (statement: string): void => {
      if (kept === undefined && statement.includes("values ('b1'")) kept = inbox?.giveBack();
    };
    const held = gate();
    const opened = await inboxOn(engine.fresh, {}, waitingFor(Promise.resolve(), [], onOpening));
    inbox = opened.inbox;
    const ran: string[] = [];
    const a1 = inbox.handle('a1', 'ledger', 'entryAdded', false, async () => {
      ran.push('a1');
      await opened.db.query('insert into entries (label) values ($1)', ['a1']);
      await held.pass();
    });
    await held.waiting;
    const b1 = inbox.handle('b1', 'ledger', 'entryAdded', false, async () => {
      ran.push('b1');
      await opened.db.query('insert into entries (label) values ($1)', ['b1']);
    });
    held.open();
    expect((await Promise.allSettled([a1, b1])).map(ending)).toEqual(['handled', 'given back']);
    expect(kept).toBe(0);
    expect(ran).toEqual(['a1']);
    expect(inbox.givenBack).toBe(1);
    const labels = (await opened.db.query<{ label: string }>('select label from entries order by label')).rows.map((row) => row.label);
    expect(labels).toEqual(['a1']);
    expect(await opened.count('keel_inbox')).toBe(1);
  });
});
