/**
 * A keyed run that finished while its module's database was away (its network cut just before
 * the outcome write): the write is tried again while the run still holds its key, so that once
 * the database is back the key answers the first outcome. Were it given up at once, the key would
 * stay `running` until its claim lapsed, and a retry with the same key would then run the
 * operation a second time. In one process and over NATS.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineContract, defineModule, isKeelError, operation, type Client } from 'keel';
import pg from 'pg';
import type { CuttableProxy } from './support/cuttable-proxy.js';
import { cutDatabaseRig, type Via } from './support/cut-database.js';

const turnstile = defineContract({
  name: 'turnstile',
  version: '1.0.0',
  operations: {
    /** Not idempotent: each run counts; waits at the test's gate, touching no database. */
    pass: operation({ input: z.object({ gate: z.string() }), output: z.object({ runs: z.number() }) }),
  },
});

const runs = new Map<string, number>();
const gates = new Map<string, { started: () => void; opened: Promise<void> }>();

const turnstileWithData = defineModule({
  contract: turnstile,
  data: { migrations: new URL('./fixtures/idempotency/migrations/', import.meta.url) },
  create: () => ({
    handlers: {
      pass: async ({ gate }) => {
        const count = (runs.get(gate) ?? 0) + 1;
        runs.set(gate, count);
        const waiting = gates.get(gate);
        waiting?.started();
        await waiting?.opened;
        return { runs: count };
      },
    },
  }),
});
const turnstileElsewhere = defineModule({ contract: turnstile, create: () => ({ handlers: { pass: async () => ({ runs: 0 }) } }) });

const rig = cutDatabaseRig('unrecorded');
afterAll(() => rig.close());

/** The turnstile served with its data in PostgreSQL behind a proxy the test cuts, and a client of it (over NATS, from another kernel). */
async function startTurnstile(via: Via) {
  const { database, proxy, callee, caller } = await rig.start(via, { served: turnstileWithData, elsewhere: turnstileElsewhere });
  return { database, proxy, callee, client: caller.client(turnstile) };
}

/** Runs `pass` with a new key, its database cut after the handler began and before its outcome is written: answered, unrecorded. */
async function passUnrecorded(client: Client<typeof turnstile>, proxy: CuttableProxy) {
  const gate = randomUUID();
  const key = randomUUID();
  let started = () => {};
  let open = () => {};
  const running = new Promise<void>((resolve) => (started = resolve));
  gates.set(gate, { started: () => started(), opened: new Promise<void>((resolve) => (open = resolve)) });
  // A short deadline: without the write tried again, the key's claim lapses 5 s after it.
  const first = client.pass({ gate }, { idempotencyKey: key, retry: false, timeoutMs: 1_500 });
  await running;
  await proxy.cut();
  open();
  expect(await first).toEqual({ runs: 1 });
  return { gate, key };
}

describe.each(Object.entries(rig.vias))('idempotency - a keyed run whose outcome write meets its database away, %s', (_name, transportOf) => {
  it('records the outcome once the database is back, while the run holds its key: a retry with the same key replays it and never runs again', { timeout: 60_000 }, async () => {
    const { proxy, client } = await startTurnstile(transportOf);
    const { gate, key } = await passUnrecorded(client, proxy);
    await proxy.open();

    // Until the outcome is recorded the key is in use; then the same request replays it.
    const replayed = await vi.waitFor(
      async () => {
        try {
          return await client.pass({ gate }, { idempotencyKey: key, retry: false, timeoutMs: 5_000 });
        } catch (error) {
          if (isKeelError(error, 'IDEMPOTENCY_KEY_IN_USE')) throw error;
          return error;
        }
      },
      { timeout: 20_000, interval: 100 },
    );
    expect(replayed).toEqual({ runs: 1 });
    expect(runs.get(gate)).toBe(1);
  });

  it('a stop of the module waits, within its drain, for an outcome write still being tried: the database back during the stop, the key is completed, not left running', { timeout: 60_000 }, async () => {
    const { database, proxy, callee, client } = await startTurnstile(transportOf);
    const { key } = await passUnrecorded(client, proxy);
    const stopped = callee.stop();
    // The stop has begun (the registrations are stopping) while the write is still failing: the database comes back now.
    await vi.waitFor(() => expect(callee.status().state).toBe('stopping'), { timeout: 10_000, interval: 20 });
    await proxy.open();
    await stopped;
    const direct = new pg.Client({ connectionString: database.url });
    await direct.connect();
    try {
      const { rows } = await direct.query<{ state: string }>('select state from turnstile.keel_idempotency where key = $1', [key]);
      expect(rows).toEqual([{ state: 'completed' }]);
    } finally {
      await direct.end();
    }
  });
});
