/**
 * The inbox tests' means (test/data-inbox*.test.ts): a module database with keel's tables and an
 * inbox on it, a gate a handler waits on, and events given to the inbox while the first one's
 * handler holds its transaction open, so that the others join it.
 */
import { createKernel, silentLogger, type DatabaseEngine } from 'keel';
import { DEFAULT_INBOX_OPTIONS, Inbox, type InboxOptions } from '../../kernel/inbox.js';
import { ModuleDatabase } from '../../kernel/module-data.js';
import { auditModule, ledgerModule } from '../fixtures/data/modules.js';

/** A gate a handler waits on, and the signal that it is waiting. */
export function gate(): { waiting: Promise<void>; open: () => void; pass: () => Promise<void> } {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  const waiting = new Promise<void>((resolve) => (entered = resolve));
  return {
    waiting,
    open,
    pass: () => {
      entered();
      return opened;
    },
  };
}

export type Connection = Awaited<ReturnType<DatabaseEngine['connect']>>;

/** The audit module's database with keel's tables (a kernel started and stopped once), and an inbox on it. */
export async function inboxOn(
  fresh: () => Promise<DatabaseEngine>,
  options: Partial<InboxOptions> = {},
  wrap: (connection: Connection) => Connection = (connection) => connection,
  /** What the engine says of itself instead (`firstStatement`), as another engine would. */
  says: Partial<Pick<DatabaseEngine, 'firstStatement'>> = {},
): Promise<{ db: ModuleDatabase; inbox: Inbox; count: (table: string) => Promise<number>; txOf: () => Promise<string> }> {
  const database = await fresh();
  const kernel = createKernel({ modules: [auditModule, ledgerModule], database, logger: silentLogger });
  await kernel.start();
  await kernel.stop();
  const engine: DatabaseEngine = Object.assign(Object.create(database) as DatabaseEngine, says);
  const db = new ModuleDatabase('audit', 'audit', engine, wrap(await database.connect('audit')));
  const inbox = new Inbox(db, { ...DEFAULT_INBOX_OPTIONS, transactions: 1, ms: 60_000, ...options });
  return {
    db,
    inbox,
    count: async (table) => Number((await db.query<{ n: number }>(`select count(*)::int as n from ${table}`)).rows[0]?.n),
    txOf: async () => String((await db.query<{ tx: string }>('select txid_current()::text as tx')).rows[0]?.tx),
  };
}

/** `ids` given to the inbox while the first one's handler holds its transaction open; `run` is each event's handler body. */
export async function together(
  inbox: Inbox,
  ids: readonly string[],
  run: (id: string, index: number) => Promise<void>,
  aloneOf: (id: string) => boolean = () => false,
): Promise<{ outcomes: PromiseSettledResult<unknown>[] }> {
  const held = gate();
  const [first, ...rest] = ids;
  const firstDone = inbox.handle(first as string, 'ledger', 'entryAdded', aloneOf(first as string), async () => {
    await held.pass();
    await run(first as string, 0);
  });
  await held.waiting;
  const others = rest.map((id, index) => inbox.handle(id, 'ledger', 'entryAdded', aloneOf(id), () => run(id, index + 1)));
  held.open();
  return { outcomes: await Promise.allSettled([firstDone, ...others]) };
}
