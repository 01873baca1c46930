/**
 * A call that waited in a bulkhead's queue starts when another call leaves its slot, but in its
 * own caller's async context: the open transactions its handler is given (module-data.ts) are its
 * caller's, not those of the call that freed the slot. On PGlite (one transaction at a time) the
 * difference is a refusal or a deadlock.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';

const reader = defineContract({
  name: 'reader',
  version: '1.0.0',
  operations: {
    hold: operation({ input: z.object({}), output: z.object({}) }),
    count: operation({ input: z.object({}), output: z.object({ rows: z.number() }), idempotent: true }),
  },
});

const holder = defineContract({
  name: 'holder',
  version: '1.0.0',
  operations: { holdInTransaction: operation({ input: z.object({}), output: z.object({}) }) },
});

describe('data - a call queued by a bulkhead', () => {
  // Its budget includes making an in-memory PGlite and migrating two schemas: 17 s alone on two cores, 40 s beside a second suite.
  it("runs with its own caller's open transactions (none), not those of the call whose leaving started it: it reads after the commit instead of being refused", { timeout: 120_000 }, async () => {
    let release = (): void => undefined;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    let holding = (): void => undefined;
    const held = new Promise<void>((resolve) => {
      holding = resolve;
    });
    const readerModule = defineModule({
      contract: reader,
      data: { migrations: new URL('./fixtures/data/queued-reader/', import.meta.url) },
      create: ({ db }) => ({
        handlers: {
          hold: async () => {
            holding();
            await released;
            return {};
          },
          count: async () => ({ rows: (await db.query('select label from items')).rows.length }),
        },
      }),
    });
    const holderModule = defineModule({
      contract: holder,
      dependsOn: [reader],
      data: { migrations: new URL('./fixtures/data/queued-holder/', import.meta.url) },
      create: ({ db, get }) => {
        const readerClient = get(reader);
        return {
          handlers: {
            // Holds a transaction, and inside it the reader's one slot.
            holdInTransaction: () =>
              db.transaction(async () => {
                await db.query("insert into items values ('held')");
                await readerClient.hold({});
                return {};
              }),
          },
        };
      },
    });
    const kernel = createKernel({
      modules: [holderModule, readerModule],
      database: await createPGliteDatabase(),
      logger: silentLogger,
      bulkheads: { reader: { maxConcurrent: 1 } },
    });
    await kernel.start();
    try {
      const first = kernel.client(holder).holdInTransaction({});
      await held;
      // From outside any transaction: queued behind the holder's call to hold.
      const second = kernel.client(reader).count({}).catch((error: unknown) => error);
      expect(kernel.status().bulkheads.find((bulkhead) => bulkhead.module === 'reader')).toMatchObject({ running: 1, queued: 1 });
      release();
      await first;
      // Started by hold's leaving (inside the holder's transaction), it must not take that
      // transaction for its own caller's: it waits for the commit, then reads its own table.
      expect(await second).toEqual({ rows: 0 });
    } finally {
      await kernel.stop();
    }
  });
});
