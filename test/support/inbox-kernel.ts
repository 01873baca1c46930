/**
 * The modules of the inbox's kernel tests (test/data-inbox-kernel*.test.ts): `burst` writes durable
 * events in one transaction, so its relay publishes them in one round, and `watcher` handles each
 * in the inbox, recording the transaction (`txid_current()`) it ran in.
 */
import { z } from 'zod';
import { defineContract, defineModule, event, operation } from 'keel';

export const burst = defineContract({
  name: 'burst',
  version: '1.0.0',
  operations: { write: operation({ input: z.object({ labels: z.array(z.string()) }), output: z.object({}) }) },
  events: { happened: event({ payload: z.object({ label: z.string() }), delivery: 'durable' }) },
});

export const burstModule = defineModule({
  contract: burst,
  data: { migrations: new URL('../fixtures/data/ledger/migrations/', import.meta.url) },
  create: ({ db, emit }) => ({
    handlers: {
      write: ({ labels }) =>
        db.transaction(async () => {
          for (const label of labels) await emit('happened', { label });
          return {};
        }),
    },
  }),
});

const watcher = defineContract({ name: 'watcher', version: '1.0.0', operations: {} });

/** The transaction each label was handled in, by the watcher. */
export type Seen = Map<string, string>;

export interface HandlerShape {
  readonly ownTransaction?: boolean;
  /** Each handling holds its transaction this long in the database (`pg_sleep`). */
  readonly sleepMs?: number;
  /** These labels' first attempts fail after their work; their second attempts hold their transaction `retryHoldMs`. */
  readonly failFirst?: ReadonlySet<string>;
  readonly retryHoldMs?: number;
}

export function watcherModule(seen: Seen, handler: HandlerShape = {}) {
  return defineModule({
    contract: watcher,
    subscribesTo: [burst],
    data: { migrations: new URL('../fixtures/data/audit/migrations/', import.meta.url) },
    create: ({ db }) => ({
      handlers: {},
      events: {
        burst: {
          happened: {
            handle: async ({ label }, { attempt }) => {
              const { rows } = await db.query<{ tx: string }>('select txid_current()::text as tx');
              await db.query('insert into entries (label) values ($1)', [label]);
              if (handler.sleepMs !== undefined) await db.query('select pg_sleep($1)', [handler.sleepMs / 1000]);
              if (handler.failFirst?.has(label) === true) {
                if (attempt === 1) throw new Error(`${label} fails on its first attempt`);
                // Long enough for the other retries to arrive meanwhile: were they not kept apart, they would join this transaction.
                await new Promise((resolve) => setTimeout(resolve, handler.retryHoldMs ?? 0));
              }
              seen.set(label, String(rows[0]?.tx));
            },
            ownTransaction: handler.ownTransaction ?? false,
          },
        },
      },
    }),
  });
}

export const LABELS = Array.from({ length: 10 }, (_, i) => `e${i}`);
