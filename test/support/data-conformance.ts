/**
 * The conformance suite's part on module-owned data: the transactional outbox and the inbox keep
 * the same promises in process and over NATS. The ledger (writes an entry and emits the durable
 * entryAdded in one transaction) and the audit (subscribes, records each entry it is told about,
 * counts its handlings) each run in a kernel of their own with a PGlite database of their own, in
 * memory, as two processes would; a third kernel hosts nothing and calls them. So every event
 * leaves the ledger's outbox through the transport under test.
 *
 * Absence is shown by what arrives after it. The relay publishes in outbox order; both transports
 * hand a subscriber its deliveries in publishing order; and the audit's PGlite runs one transaction
 * at a time, in the order they were begun. So once a later event's effect is visible, whatever was
 * published before it has been handled, or was never delivered.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKernel, silentLogger, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import type { EventRecord } from 'keel/transport';
import { Refused, audit, auditModule, ledger, ledgerModule } from '../fixtures/data/modules.js';
import type { ConformanceTarget } from './conformance.js';

interface DataApp {
  readonly client: Kernel;
  readonly kernels: Kernel[];
  readonly transports: Transport[];
  readonly engines: DatabaseEngine[];
  /** The ledger's database, to read its outbox and to leave it as a crash would. */
  readonly ledgerDatabase: DatabaseEngine;
  /** Every delivery of ledger.entryAdded the audit's kernel saw, handled or skipped by the inbox. */
  readonly deliveries: EventRecord[];
}

const WAIT = { timeout: 10_000, interval: 20 } as const;

let labels = 0;

function uniqueLabel(label: string): string {
  labels += 1;
  return `${label}-${labels}-${Math.random().toString(36).slice(2, 8)}`;
}

/** A kernel hosting one module of the data fixture, with a database of its own. */
async function startHosting(target: ConformanceTarget, app: DataApp, namespace: string, host: string, database: DatabaseEngine): Promise<Kernel> {
  const transport = await target.createTransport(namespace);
  app.transports.push(transport);
  const kernel = createKernel({ modules: [auditModule, ledgerModule], topology: { host: [host], transport }, database, logger: silentLogger });
  app.kernels.push(kernel);
  await kernel.start();
  return kernel;
}

async function bootData(target: ConformanceTarget, namespace: string): Promise<DataApp> {
  const clientTransport = await target.createTransport(namespace);
  const client = createKernel({ modules: [auditModule, ledgerModule], topology: { host: [], transport: clientTransport }, logger: silentLogger });
  const auditDatabase = await createPGliteDatabase();
  const ledgerDatabase = await createPGliteDatabase();
  const app: DataApp = {
    client,
    kernels: [],
    transports: [clientTransport],
    engines: [auditDatabase, ledgerDatabase],
    ledgerDatabase,
    deliveries: [],
  };
  await client.start();
  // The subscriber first: a JetStream consumer made after an event was published does not get it.
  const auditKernel = await startHosting(target, app, namespace, 'audit', auditDatabase);
  auditKernel.observe({ eventHandled: (record) => record.contract === 'ledger' && app.deliveries.push(record) });
  await startHosting(target, app, namespace, 'ledger', ledgerDatabase);
  return app;
}

async function shutdownData(target: ConformanceTarget, app: DataApp | undefined): Promise<void> {
  if (app === undefined) return;
  await app.client.stop();
  for (const kernel of [...app.kernels].reverse()) await kernel.stop();
  for (const transport of app.transports) await target.closeTransport(transport);
  for (const engine of app.engines) await engine.close();
}

/** Registers the outbox and inbox conformance tests for `target`, inside its suite. */
export function describeDataConformance(target: ConformanceTarget): void {
  describe('module-owned data: outbox and inbox', () => {
    let app: DataApp | undefined;
    const booted = (): DataApp => {
      if (app === undefined) throw new Error('data application not booted');
      return app;
    };
    const seen = () => booted().client.client(audit).seen({});
    /** Runs `query` on the ledger's own database, as an operator (or a crash) would. */
    const onLedger = async <T>(work: (query: (text: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[]; rowCount: number }>) => Promise<T>) => {
      const connection = await booted().ledgerDatabase.connect('ledger');
      try {
        return await work((text, params) => connection.query(text, params));
      } finally {
        await connection.close();
      }
    };

    beforeAll(async () => {
      app = await bootData(target, `data${process.pid}`);
    });
    afterAll(async () => {
      await shutdownData(target, app);
    });

    it('delivers an event emitted in a committed transaction once to a subscriber hosted in another kernel', async () => {
      const first = uniqueLabel('committed');
      const later = uniqueLabel('committed-later');
      const before = booted().deliveries.length;
      await booted().client.client(ledger).add({ label: first });
      await vi.waitFor(async () => expect((await seen()).labels).toContain(first), WAIT);
      // A second delivery of `first`, even one the inbox skipped, would come before `later`'s.
      await booted().client.client(ledger).add({ label: later });
      await vi.waitFor(async () => {
        expect((await seen()).labels).toContain(later);
        expect(booted().deliveries.length - before).toBeGreaterThanOrEqual(2);
      }, WAIT);
      const { labels: recorded } = await seen();
      expect(recorded.filter((label) => label === first)).toHaveLength(1);
      expect(recorded.filter((label) => label === later)).toHaveLength(1);
      expect(booted().deliveries.slice(before)).toEqual([
        expect.objectContaining({ event: 'entryAdded', subscriber: 'audit', attempt: 1, outcome: 'ok' }),
        expect.objectContaining({ event: 'entryAdded', subscriber: 'audit', attempt: 1, outcome: 'ok' }),
      ]);
    });

    it('never delivers an event emitted in a transaction that rolled back: a later committed event arrives alone', async () => {
      const rolledBack = uniqueLabel('rolled-back');
      const committed = uniqueLabel('committed-after-rollback');
      const refused = await booted().client.client(ledger).addThenFail({ label: rolledBack }).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(Refused);
      await booted().client.client(ledger).add({ label: committed });
      // Had the rolled-back event been written, the relay would have published it first.
      await vi.waitFor(async () => expect((await seen()).labels).toContain(committed), WAIT);
      expect((await seen()).labels).not.toContain(rolledBack);
      expect((await booted().client.client(ledger).labels({})).labels).not.toContain(rolledBack);
      const outbox = await onLedger((query) => query("select count(*)::int as rows from keel_outbox where payload->>'label' = $1", [rolledBack]));
      expect(outbox.rows[0]).toEqual({ rows: 0 });
    });

    it("retries alone a durable handler that failed after its work, among events handled together: its first attempt's work undone, every other event's effect once", async () => {
      const labels = ['together-a', 'fails-once-b', 'together-c', 'together-d'].map(uniqueLabel);
      const before = booted().deliveries.length;
      const handledBefore = (await seen()).handled;
      // Committed at once, so that the audit's deliveries wait together for its inbox.
      await Promise.all(labels.map((label) => booted().client.client(ledger).add({ label })));
      await vi.waitFor(async () => expect((await seen()).labels).toEqual(expect.arrayContaining(labels)), WAIT);
      // Anything more from these events would be delivered before a later event's.
      const later = uniqueLabel('after-the-retry');
      await booted().client.client(ledger).add({ label: later });
      await vi.waitFor(async () => expect((await seen()).labels).toContain(later), WAIT);
      const { labels: recorded, handled } = await seen();
      for (const label of [...labels, later]) expect(recorded.filter((seenLabel) => seenLabel === label)).toHaveLength(1);
      expect(handled).toBe(handledBefore + 5);
      const outcomes = booted().deliveries.slice(before).map(({ attempt, outcome }) => `${attempt}:${outcome}`);
      expect(outcomes.sort()).toEqual(['1:INTERNAL', '1:ok', '1:ok', '1:ok', '1:ok', '2:ok']);
    });

    it('gives a durable event delivered twice (its outbox row unsent again after delivery, as a crash before marking leaves it) one effect in a subscriber that owns data', async () => {
      const once = uniqueLabel('once');
      const after = uniqueLabel('after-the-duplicate');
      await booted().client.client(ledger).add({ label: once });
      await vi.waitFor(async () => expect((await seen()).labels).toContain(once), WAIT);
      const handledBefore = (await seen()).handled;
      const sentAgain = (query: (text: string, params?: unknown[]) => Promise<{ rows: Record<string, unknown>[] }>) =>
        query("select sent_at is not null as sent, attempts from keel_outbox where payload->>'label' = $1", [once]);
      // The relay marks a row sent once the transport accepted it; reset it only after that.
      await vi.waitFor(() => onLedger(async (query) => expect((await sentAgain(query)).rows).toEqual([{ sent: true, attempts: 1 }])), WAIT);
      const reset = await onLedger((query) => query("update keel_outbox set sent_at = null, claimed_until = null where payload->>'label' = $1", [once]));
      expect(reset.rowCount).toBe(1);
      // The next commit kicks the relay: it publishes `once` again (same event id), then `after`.
      await booted().client.client(ledger).add({ label: after });
      await vi.waitFor(async () => expect((await seen()).labels).toContain(after), WAIT);
      await vi.waitFor(() => onLedger(async (query) => expect((await sentAgain(query)).rows).toEqual([{ sent: true, attempts: 2 }])), WAIT);
      const { labels: recorded, handled } = await seen();
      expect(recorded.filter((label) => label === once)).toHaveLength(1);
      expect(recorded.filter((label) => label === after)).toHaveLength(1);
      expect(handled).toBe(handledBefore + 1);
    });
  });
}
