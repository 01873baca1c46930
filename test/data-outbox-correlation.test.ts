/**
 * An event emitted outside any call is its own correlation on the outbox path too (kernel/emit.ts
 * `toOutbox`): the row's correlation id is its event id. The publish path is held by the
 * conformance suite on both transports (test/support/conformance-events.ts).
 */
import { describe, expect, it } from 'vitest';
import { createKernel, defineModule, silentLogger } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { ledger } from './fixtures/data/modules.js';

describe('data - an event emitted outside any call, in a transaction', () => {
  // Its budget includes making an in-memory PGlite: seconds alone, tens of seconds on a loaded two-core machine.
  it('is written to the outbox with its event id as its correlation id', { timeout: 120_000 }, async () => {
    const database = await createPGliteDatabase();
    let captured: { transaction: (work: () => Promise<void>) => Promise<void>; emit: (event: 'entryAdded', payload: { label: string }) => Promise<void> } | undefined;
    const source = defineModule({
      contract: ledger,
      data: { migrations: new URL('./fixtures/data/ledger/migrations/', import.meta.url) },
      create: ({ db, emit }) => {
        captured = { transaction: (work) => db.transaction(work), emit: (event, payload) => emit(event, payload as never) };
        const none = async () => {
          throw new Error('unused');
        };
        return { handlers: { add: none, addThenFail: none, addAndAsk: none, labels: none, snoop: none } as never };
      },
    });
    const kernel = createKernel({ modules: [source], database, logger: silentLogger });
    await kernel.start();
    try {
      if (captured === undefined) throw new Error('the module was not created');
      const { transaction, emit } = captured;
      await transaction(async () => {
        await emit('entryAdded', { label: 'outside' });
      });
      const connection = await database.connect('ledger');
      const { rows } = await connection.query<{ id: string; correlation_id: string }>('select id, correlation_id from keel_outbox');
      await connection.close();
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) expect(row.correlation_id).toBe(row.id);
    } finally {
      await kernel.stop();
      await database.close();
    }
  });
});
