/**
 * Module-owned data, on both engines (PGlite in memory, and the machine's PostgreSQL in a
 * database made for this file): a schema per module, migrations applied once and recorded,
 * transactions, the outbox (an event is published if and only if its transaction commits, and
 * what a crash left unsent goes out at the next start) and the inbox (a redelivered event has
 * no second effect).
 */
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { TracerProvider } from '@opentelemetry/sdk-trace';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type DatabaseEngine, type Kernel, type Logger } from 'keel';
import { disableTracing, enableTracing, type DeadLetter } from 'keel/transport';
import { Refused, audit, auditModule, ledger, ledgerModule, makeAuditModule, makeLedgerWatcher } from './fixtures/data/modules.js';
import { enginesUnderTest } from './support/databases.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

/** A logger that keeps debug records, to wait on the kernel's own record of a skipped event. */
function recordingLogger(records: { message: string; fields: Record<string, unknown> }[]): Logger {
  const write = (fields: unknown, message?: string) => {
    records.push({ message: message ?? '', fields: (fields ?? {}) as Record<string, unknown> });
  };
  const logger: Logger = { debug: write, info: write, warn: write, error: write, child: () => logger } as unknown as Logger;
  return logger;
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function started(database: DatabaseEngine, logger: Logger = silentLogger): Promise<Kernel> {
  const kernel = createKernel({ modules: [auditModule, ledgerModule], database, logger });
  await kernel.start();
  return kernel;
}

describe.each(engines)('data - $name', (engine) => {
  it('applies each module\'s migrations in its own schema at start, records them, and applies nothing the second time', async () => {
    const database = await engine.fresh();
    const first = await started(database);
    await first.stop();
    const records: { message: string; fields: Record<string, unknown> }[] = [];
    const second = await started(database, recordingLogger(records));
    const connection = await database.connect('audit');
    const { rows } = await connection.query<{ name: string }>('select name from keel_migrations order by name');
    expect(rows.map((row) => row.name)).toEqual(['001_entries.sql', '002_counter.sql', 'keel/001_outbox_inbox_idempotency', 'keel/002_outbox_failed', 'keel/003_outbox_principal']);
    expect(records.filter((record) => record.message === 'migrations applied')).toEqual([]);
    await connection.close();
    await second.stop();
  });

  it('keeps each module in its own schema: two tables named entries, each module sees its own', async () => {
    const kernel = await started(await engine.fresh());
    await kernel.client(ledger).add({ label: 'only-in-ledger' });
    expect((await kernel.client(ledger).labels({})).labels).toEqual(['only-in-ledger']);
    await until(async () => ((await kernel.client(audit).seen({})).handled === 1 ? true : undefined), 'the audit to handle the entry');
    expect((await kernel.client(audit).seen({})).labels).toEqual(['only-in-ledger']);
    await kernel.stop();
  });

  it("refuses a module's query of another module's table, even naming its schema: each module runs as its own role", async () => {
    const records: { message: string; fields: Record<string, unknown> }[] = [];
    const kernel = await started(await engine.fresh(), recordingLogger(records));
    const error = await kernel.client(ledger).snoop({}).catch((caught: unknown) => caught);
    expect(isKeelError(error, 'INTERNAL')).toBe(true);
    const logged = records.map((record) => String((record.fields['err'] as Error | undefined)?.message ?? ''));
    expect(logged).toContainEqual(expect.stringContaining('permission denied for schema audit'));
    await kernel.stop();
  });

  it('publishes an event written in a transaction once it commits, and never one whose transaction rolled back', async () => {
    const kernel = await started(await engine.fresh());
    const client = kernel.client(ledger);
    const refused = await client.addThenFail({ label: 'rolled-back' }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(Refused);
    await client.add({ label: 'committed' });
    // The committed entry's event arrives; the relay publishes in order, so the rolled-back one would have come first.
    await until(async () => ((await kernel.client(audit).seen({})).labels.includes('committed') ? true : undefined), 'the committed event');
    expect(await kernel.client(audit).seen({})).toEqual({ labels: ['committed'], handled: 1 });
    expect((await client.labels({})).labels).toEqual(['committed']);
    await kernel.stop();
  });

  it('publishes at start what the outbox held unsent when the process died between commit and publish', async () => {
    const database = await engine.fresh();
    const first = await started(database);
    await first.stop();
    // What a crash between commit and publish leaves: the entry and its event, committed, unsent.
    const connection = await database.connect('ledger');
    await connection.transaction(async (tx) => {
      await tx.query("insert into entries (label) values ('before-the-crash')");
      await tx.query(
        "insert into keel_outbox (id, event, payload, correlation_id) values ('evt-crash-1', 'entryAdded', '{\"label\":\"before-the-crash\"}', 'corr-crash')",
      );
    });
    await connection.close();
    const kernel = await started(database);
    await until(async () => ((await kernel.client(audit).seen({})).handled === 1 ? true : undefined), 'the event left in the outbox');
    expect((await kernel.client(audit).seen({})).labels).toEqual(['before-the-crash']);
    await kernel.stop();
  });

  it('marks an event sent in one process only once its subscriber handled it: a crash meanwhile leaves it in the outbox', async () => {
    const database = await engine.fresh();
    let started = false;
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    const watcher = defineModule({
      contract: defineContract({ name: 'watcher', version: '1.0.0', operations: { noop: operation({ input: z.object({}), output: z.object({}) }) } }),
      subscribesTo: [ledger],
      create: () => ({
        handlers: { noop: () => ({}) },
        events: {
          ledger: {
            entryAdded: async () => {
              started = true;
              await released;
            },
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [auditModule, ledgerModule, watcher], database, logger: silentLogger });
    await kernel.start();
    const connection = await database.connect('ledger');
    const sentAt = async () => (await connection.query<{ sent_at: unknown }>('select sent_at from keel_outbox')).rows.map((row) => row.sent_at);
    try {
      await kernel.client(ledger).add({ label: 'held' });
      await until(async () => (started ? true : undefined), 'the watcher to start handling the event');
      // Its handler runs: the row stays unsent, so a crash now would publish it again at the next start.
      expect(await sentAt()).toEqual([null]);
      release();
      await until(async () => ((await sentAt())[0] !== null ? true : undefined), 'the relay to mark the event sent once it was handled');
    } finally {
      release();
      await connection.close();
      await kernel.stop();
    }
  });

  it('gives a durable event delivered twice (published again after a crash before it was marked sent) one effect', async () => {
    const database = await engine.fresh();
    const records: { message: string; fields: Record<string, unknown> }[] = [];
    const kernel = await started(database, recordingLogger(records));
    await kernel.client(ledger).add({ label: 'once' });
    await until(async () => ((await kernel.client(audit).seen({})).handled === 1 ? true : undefined), 'the first delivery');
    // The relay published it, and "crashed" before marking it sent: it goes out again.
    const connection = await database.connect('ledger');
    const { rows } = await connection.query<{ id: string }>("update keel_outbox set sent_at = null, claimed_until = null returning id");
    await connection.close();
    const eventId = rows[0]?.id;
    expect(eventId).toEqual(expect.any(String));
    await kernel.client(ledger).add({ label: 'after' }); // kicks the relay, which sends both, in order
    await until(
      async () => (records.some((record) => record.message === 'event already handled; skipped' && record.fields['eventId'] === eventId) ? true : undefined),
      'the audit to skip the second delivery',
    );
    await until(async () => ((await kernel.client(audit).seen({})).labels.includes('after') ? true : undefined), 'the later event');
    expect(await kernel.client(audit).seen({})).toEqual({ labels: ['once', 'after'], handled: 2 });
    await kernel.stop();
  });

  it('undoes a nested db.transaction that throws (a savepoint), keeps the outer one, and never reports a transaction aborted by a caught SQL error as committed', async () => {
    const probeContract = defineContract({
      name: 'ledger',
      version: '1.0.0',
      operations: {
        nested: operation({ input: z.object({}), output: z.object({ labels: z.array(z.string()) }) }),
        caught: operation({ input: z.object({}), output: z.object({}) }),
      },
    });
    const probe = defineModule({
      contract: probeContract,
      data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
      create: ({ db }) => ({
        handlers: {
          nested: async () => {
            await db.transaction(async () => {
              await db.query("insert into entries (label) values ('outer')");
              await db
                .transaction(async () => {
                  await db.query("insert into entries (label) values ('inner')");
                  throw new Error('the inner work fails');
                })
                .catch(() => undefined);
            });
            return { labels: (await db.query<{ label: string }>('select label from entries order by id')).rows.map((row) => row.label) };
          },
          caught: async () => {
            await db.transaction(async () => {
              await db.query("insert into entries (label) values ('twice')");
              await db.query("insert into entries (label) values ('twice')").catch(() => undefined); // unique violation, caught
            });
            return {};
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [probe], database: await engine.fresh(), logger: silentLogger });
    await kernel.start();
    expect(await kernel.client(probeContract).nested({})).toEqual({ labels: ['outer'] });
    const error = await kernel.client(probeContract).caught({}).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(Error); // PGlite and PostgreSQL alike: the transaction did not commit
    expect((await kernel.client(probeContract).nested({}).catch(() => ({ labels: [] }))).labels).not.toContain('twice');
    await kernel.stop();
  });

  it('refuses a migration that changed after it was applied, naming it, and applies nothing', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'keel-migrations-'));
    try {
      cpSync(new URL('./fixtures/data/audit/migrations/', import.meta.url), folder, { recursive: true });
      const moved = makeAuditModule(folder);
      const database = await engine.fresh();
      const first = createKernel({ modules: [moved, ledgerModule], database, logger: silentLogger });
      await first.start();
      await first.stop();
      writeFileSync(join(folder, '002_counter.sql'), 'create table counter (id int primary key, handled bigint not null);');
      writeFileSync(join(folder, '003_later.sql'), 'create table later (id int);');
      const second = createKernel({ modules: [moved, ledgerModule], database, logger: silentLogger });
      const error = await second.start().catch((caught: unknown) => caught);
      expect(isKeelError(error, 'INVALID_MODULE')).toBe(true);
      expect((error as Error).message).toContain('migration 002_counter.sql changed after it was applied to schema "audit"');
      const connection = await database.connect('audit');
      const { rows } = await connection.query("select to_regclass('later')::text as later");
      expect(rows[0]).toEqual({ later: null });
      await connection.close();
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it(
    engine.name === 'pglite'
      ? 'refuses, with what to do, a query of a module called by another that holds a transaction (PGlite runs one at a time), with tracing off and on'
      : 'lets a module called by another that holds a transaction use its own database, with tracing off and on',
    async () => {
      // With tracing on, the served call is entered with its server span (served.ts): the caller's open transaction must cross that entry too.
      for (const tracing of [false, true]) {
        if (tracing) enableTracing({ provider: new TracerProvider() });
        let kernel: Kernel | undefined;
        try {
          const records: { message: string; fields: Record<string, unknown> }[] = [];
          kernel = await started(await engine.fresh(), recordingLogger(records));
          const outcome = await kernel.client(ledger).addAndAsk({ label: 'asked' }).catch((error: unknown) => error);
          if (engine.name === 'pglite') {
            // The refusal reaches the ledger's handler, which does not declare it: its caller sees INTERNAL, its log the reason.
            expect(isKeelError(outcome, 'INTERNAL'), `tracing ${tracing ? 'on' : 'off'}: ${String(outcome)}`).toBe(true);
            const logged = records.map((record) => String((record.fields['err'] as Error | undefined)?.message ?? ''));
            expect(logged).toContainEqual(
              expect.stringContaining('Module "audit" used its database while module "ledger", which called it (directly or through other modules), holds a transaction on the same pglite database'),
            );
            expect((await kernel.client(ledger).labels({})).labels).toEqual([]);
          } else {
            expect(outcome).toEqual({ seen: 0 });
          }
        } finally {
          await kernel?.stop();
          disableTracing();
        }
      }
    },
  );

  it(
    engine.name === 'pglite'
      ? 'refuses, naming the durable event and what to do instead, a call from a durable event handler to a module that queries the same PGlite (the handler runs in its inbox transaction)'
      : 'lets a durable event handler call a module that queries the same PostgreSQL',
    async () => {
      const letters: DeadLetter[] = [];
      const seen: string[][] = [];
      const watcher = makeLedgerWatcher(seen);
      const kernel = createKernel({
        modules: [auditModule, ledgerModule, watcher],
        database: await engine.fresh(),
        logger: silentLogger,
        onDeadLetter: (letter) => letters.push(letter),
      });
      await kernel.start();
      try {
        await kernel.client(ledger).add({ label: 'watched' });
        if (engine.name === 'pglite') {
          const [letter] = await until(async () => (letters.length > 0 ? letters : undefined), "the watcher's dead letter");
          const message = String((letter?.error as Error | undefined)?.message);
          expect(message).toContain(
            'Module "ledger" used its database while module "watcher", which called it (directly or through other modules), handles durable event ledger.entryAdded in the transaction keel runs it in (its inbox: docs/data.md), on the same pglite database',
          );
          expect(message).toContain("Carry what the handler needs in the event's payload");
          expect(seen).toEqual([]);
        } else {
          expect(await until(async () => (seen.length > 0 ? seen : undefined), 'the watcher to read the ledger')).toEqual([['watched']]);
          expect(letters).toEqual([]);
        }
      } finally {
        await kernel.stop();
      }
    },
  );
});


describe('data - misuse', () => {
  it('fails start with INVALID_CONFIG naming the module when a module declares data and the kernel has no database', async () => {
    const kernel = createKernel({ modules: [auditModule, ledgerModule], logger: silentLogger });
    const error = await kernel.start().catch((caught: unknown) => caught);
    expect(isKeelError(error, 'INVALID_CONFIG')).toBe(true);
    expect((error as Error).message).toContain('Module "audit" declares data, but the kernel has no database');
  });

  it('tells a module that uses db without declaring data how to declare it', async () => {
    const lonely = defineModule({
      contract: audit,
      create: ({ db }) => ({ handlers: { seen: async () => ({ labels: (await db.query<{ label: string }>('select 1')).rows.map(String), handled: 0 }) } }),
    });
    const kernel = createKernel({ modules: [lonely], logger: silentLogger });
    await kernel.start();
    const error = await kernel.client(audit).seen({}).catch((caught: unknown) => caught);
    expect(isKeelError(error, 'INVALID_MODULE')).toBe(true);
    expect((error as Error).message).toContain("Module \"audit\" has no database: declare that it owns data with data: { migrations: new URL('./migrations/', import.meta.url) }");
    await kernel.stop();
  });

  it('refuses a data declaration without a migrations folder when the module is defined', () => {
    expect(() => defineModule({ contract: audit, data: {} as never, create: () => ({ handlers: { seen: () => ({ labels: [], handled: 0 }) } }) })).toThrow(
      /data.migrations` must be the folder of its .sql migrations/,
    );
  });
});
