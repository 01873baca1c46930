/**
 * The outbox relay's rounds, on PGlite, driven directly: the batch it claims ahead while one is
 * published. A commit made while a full round publishes is published by a claim made after it,
 * before its hold is released; a claim ahead that fails does not stop the relay. A relay whose
 * claim lapsed releases none of the claims another instance's relay made since, and a failed
 * event whose release the database refused still goes out before the events behind it.
 *
 * The relay's publish here records the events it is given, so that the test can act at a chosen
 * point of a round (a commit, a failed claim); the database is a real one, and a failure is
 * injected around its connection.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type DatabaseEngine } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { DEFAULT_OUTBOX_RELAY_OPTIONS, OutboxRelay } from '../kernel/outbox-relay.js';
import type { PublishedEvent } from '../kernel/transport.js';

const burst = defineContract({
  name: 'burst',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
  events: { tick: event({ payload: z.object({ i: z.number() }), delivery: 'durable' }) },
});

const burstModule = defineModule({
  contract: burst,
  data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
  create: () => ({ handlers: { noop: async () => ({}) } }),
});

type Connection = Awaited<ReturnType<DatabaseEngine['connect']>>;

const opened: { database: DatabaseEngine; relays: OutboxRelay[] }[] = [];

afterEach(async () => {
  for (const { database, relays } of opened.splice(0)) {
    for (const relay of relays) await relay.stop();
    await database.close();
  }
});

/** A PGlite database with burst's schema and keel's tables (a kernel started and stopped once), and `rows` events in its outbox. */
async function outboxWith(rows: number): Promise<{ database: DatabaseEngine; connection: Connection; relays: OutboxRelay[] }> {
  const database = await createPGliteDatabase();
  const kernel = createKernel({ modules: [burstModule], database, logger: silentLogger });
  await kernel.start();
  await kernel.stop();
  const connection = await database.connect('burst');
  await connection.query(
    `insert into keel_outbox (id, event, payload, correlation_id) select 'e' || lpad(g::text, 4, '0'), 'tick', jsonb_build_object('i', g), 'c' from generate_series(1, $1::int) g`,
    [rows],
  );
  const entry = { database, relays: [] as OutboxRelay[] };
  opened.push(entry);
  return { database, connection, relays: entry.relays };
}

/**
 * `connection`, but the `nth` statement whose text contains `marker` fails as a dropped
 * connection would; `seen()` counts the statements with `marker` so far.
 */
function failingOnce(connection: Connection, marker: string, nth: number): { connection: Connection; seen: () => number } {
  let seen = 0;
  const query = (async (text: string, params?: readonly unknown[]) => {
    if (text.includes(marker) && ++seen === nth) throw new Error('connection terminated unexpectedly');
    return connection.query(text, params);
  }) as Connection['query'];
  return { connection: { ...connection, query }, seen: () => seen };
}

/** The relay's options for these tests: a small window, and a poll so long that only a kick publishes. */
const OPTIONS = { ...DEFAULT_OUTBOX_RELAY_OPTIONS, window: 4, pollMs: 600_000, backoffMs: 10 };

describe('data - the outbox relay claims its next batch ahead', () => {
  it('publishes a commit made while a full round publishes before releasing its hold, without waiting for the poll', { timeout: 120_000 }, async () => {
    const { connection, relays } = await outboxWith(250);
    const published: string[] = [];
    const released: { id: string; publishedBefore: boolean }[] = [];
    let relay: OutboxRelay | undefined;
    let committed = false;
    const publish = async (event: PublishedEvent): Promise<void> => {
      published.push(event.metadata.id);
      if (!committed) {
        // The first round runs, and its claim ahead was made: a transaction commits one more event.
        committed = true;
        await connection.query(`insert into keel_outbox (id, event, payload, correlation_id) values ('late', 'tick', '{"i":0}', 'c')`);
        relay?.kicker();
      }
    };
    const hold = () => () => void released.push({ id: 'late', publishedBefore: published.includes('late') });
    relay = new OutboxRelay(burst, connection, publish, silentLogger, hold, OPTIONS);
    relays.push(relay);
    relay.start();
    await vi.waitFor(() => expect(released).toHaveLength(1), { timeout: 60_000, interval: 10 });
    expect(released).toEqual([{ id: 'late', publishedBefore: true }]);
    expect(published).toHaveLength(251);
    expect(published.slice(0, 250)).toEqual(Array.from({ length: 250 }, (_, i) => `e${String(i + 1).padStart(4, '0')}`));
  });

  it('goes on after a claim made ahead fails: every event is published once', { timeout: 120_000 }, async () => {
    const { connection, relays } = await outboxWith(450);
    // The second claim is the one the first round makes ahead: the database drops it.
    const failing = failingOnce(connection, 'for update skip locked', 2);
    const published: string[] = [];
    const relay = new OutboxRelay(burst, failing.connection, async (event) => void published.push(event.metadata.id), silentLogger, undefined, OPTIONS);
    relays.push(relay);
    relay.start();
    await vi.waitFor(async () => expect(Number((await connection.query<{ n: string }>('select count(*) as n from keel_outbox where sent_at is null')).rows[0]?.n)).toBe(0), {
      timeout: 60_000,
      interval: 20,
    });
    expect(failing.seen()).toBeGreaterThan(2);
    expect(published).toHaveLength(450);
    expect(new Set(published).size).toBe(450);
  });

  it("releases only its own claims after a failure: rows another instance's relay claimed once this one's lapsed stay claimed", { timeout: 120_000 }, async () => {
    const { connection, relays } = await outboxWith(10);
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (_fields: unknown, message: string) => void warnings.push(message), child: () => logger };
    // B's publishes wait for the end of the test: its claims stay live meanwhile.
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    const claimedByB: string[] = [];
    const b = new OutboxRelay(burst, connection, async (event) => {
      claimedByB.push(event.metadata.id);
      await finished;
    }, silentLogger, undefined, { ...OPTIONS, claimSeconds: 600 });
    // A claims for one second; its first event waits until B has claimed the lapsed rows, then fails.
    const a = new OutboxRelay(burst, connection, async (event) => {
      if (event.metadata.id !== 'e0001') return;
      setTimeout(() => b.start(), 1_200);
      await vi.waitFor(() => expect(claimedByB.length).toBeGreaterThan(0), { timeout: 60_000, interval: 10 });
      throw new Error('JetStream did not answer');
    }, logger, undefined, { ...OPTIONS, claimSeconds: 1 });
    relays.push(a);
    a.start();
    await vi.waitFor(() => expect(warnings.some((message) => message.startsWith('outbox relay could not publish'))).toBe(true), { timeout: 60_000, interval: 10 });
    await a.stop();
    const { rows } = await connection.query<{ released: string }>('select count(*) as released from keel_outbox where sent_at is null and claimed_until is null');
    expect(Number(rows[0]?.released)).toBe(0);
    finish();
    relays.push(b);
  });

  it('sends a failed event before the events behind it even when the database refused to release its claim', { timeout: 120_000 }, async () => {
    const { connection, relays } = await outboxWith(10);
    // The failed event's release: the database drops the first one.
    const failing = failingOnce(connection, 'set claimed_until = null, last_error', 1);
    const published: string[] = [];
    let failedOnce = false;
    const relay = new OutboxRelay(
      burst,
      failing.connection,
      async (event) => {
        if (event.metadata.id === 'e0001' && !failedOnce) {
          failedOnce = true;
          throw new Error('JetStream did not answer');
        }
        published.push(event.metadata.id);
      },
      silentLogger,
      undefined,
      OPTIONS,
    );
    relays.push(relay);
    relay.start();
    await vi.waitFor(() => expect(published).toContain('e0010'), { timeout: 60_000, interval: 10 });
    // The first round's window sent 2 to 4 behind the failed one; the next event sent is the failed one.
    expect(published.slice(0, 4)).toEqual(['e0002', 'e0003', 'e0004', 'e0001']);
    expect(failing.seen()).toBeGreaterThanOrEqual(1);
  });
});
