/**
 * keel/kysely: typed queries over a module's db, on both engines; they join db.transaction (a
 * rollback undoes them, and an event emitted beside them is published only on commit), and
 * Kysely's own transactions are refused with what to use.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineError, defineModule, event, isKeelError, operation, silentLogger } from 'keel';
import { kyselyOf } from 'keel/kysely';
import { enginesUnderTest } from './support/databases.js';

interface Tables {
  stock: { sku: string; on_hand: number };
}

const Short = defineError({ code: 'SHORT', kind: 'conflict', data: z.object({ sku: z.string() }), message: (data) => `not enough ${data.sku}` });

const warehouse = defineContract({
  name: 'warehouse',
  version: '1.0.0',
  operations: {
    restock: operation({ input: z.object({ sku: z.string(), quantity: z.number().int() }), output: z.object({ onHand: z.number() }) }),
    take: operation({ input: z.object({ sku: z.string(), quantity: z.number().int() }), output: z.object({ onHand: z.number() }), errors: [Short] }),
    level: operation({ input: z.object({ sku: z.string() }), output: z.object({ onHand: z.number() }), idempotent: true }),
    kyselyTransaction: operation({ input: z.object({}), output: z.object({}) }),
  },
  events: { taken: event({ payload: z.object({ sku: z.string(), quantity: z.number() }), delivery: 'durable' }) },
});

const seen: { sku: string; quantity: number }[] = [];
const watcher = defineContract({ name: 'watcher', version: '1.0.0', operations: {} });

const modules = [
  defineModule({
    contract: warehouse,
    data: { migrations: new URL('./fixtures/kysely/migrations/', import.meta.url) },
    create: ({ db, emit }) => {
      const sql = kyselyOf<Tables>(db);
      const level = async (sku: string) =>
        (await sql.selectFrom('stock').select('on_hand').where('sku', '=', sku).executeTakeFirst())?.on_hand ?? 0;
      return {
        handlers: {
          restock: async ({ sku, quantity }) => {
            await sql
              .insertInto('stock')
              .values({ sku, on_hand: quantity })
              .onConflict((conflict) => conflict.column('sku').doUpdateSet((eb) => ({ on_hand: eb('stock.on_hand', '+', quantity) })))
              .execute();
            return { onHand: await level(sku) };
          },
          take: ({ sku, quantity }) =>
            db.transaction(async () => {
              const updated = await sql.updateTable('stock').set((eb) => ({ on_hand: eb('on_hand', '-', quantity) })).where('sku', '=', sku).executeTakeFirst();
              await emit('taken', { sku, quantity });
              const onHand = await level(sku);
              // Checked after the update, inside the transaction: the rollback undoes the update and the event.
              if (updated.numUpdatedRows === 0n || onHand < 0) throw new Short({ sku });
              return { onHand };
            }),
          level: async ({ sku }) => ({ onHand: await level(sku) }),
          kyselyTransaction: async () => {
            await sql.transaction().execute(async () => undefined);
            return {};
          },
        },
      };
    },
  }),
  defineModule({
    contract: watcher,
    subscribesTo: [warehouse],
    create: () => ({ handlers: {}, events: { warehouse: { taken: (payload) => void seen.push(payload) } } }),
  }),
];

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

describe.each(engines)('data - keel/kysely on $name', (engine) => {
  it('runs typed queries in the module schema, joined to db.transaction: a rollback undoes them and drops the event beside them', async () => {
    seen.length = 0;
    const kernel = createKernel({ modules, database: await engine.fresh(), logger: silentLogger });
    await kernel.start();
    const client = kernel.client(warehouse);
    expect(await client.restock({ sku: 'KB-1', quantity: 3 })).toEqual({ onHand: 3 });
    expect(await client.restock({ sku: 'KB-1', quantity: 2 })).toEqual({ onHand: 5 });
    expect(await client.take({ sku: 'KB-1', quantity: 9 }).catch((error: unknown) => error)).toBeInstanceOf(Short);
    expect(await client.level({ sku: 'KB-1' })).toEqual({ onHand: 5 });
    expect(await client.take({ sku: 'KB-1', quantity: 4 })).toEqual({ onHand: 1 });
    for (let i = 0; i < 500 && seen.length === 0; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
    // The later, committed event arrived; the rolled-back one, published in order before it, never did.
    expect(seen).toEqual([{ sku: 'KB-1', quantity: 4 }]);
    await kernel.stop();
  });

  it("refuses Kysely's own transactions, naming db.transaction", async () => {
    const kernel = createKernel({ modules, database: await engine.fresh(), logger: silentLogger });
    await kernel.start();
    const error = await kernel.client(warehouse).kyselyTransaction({}).catch((caught: unknown) => caught);
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    expect((error as Error).message).toContain("Kysely's own transactions are not used with keel: wrap the work in db.transaction");
    await kernel.stop();
  });
});
