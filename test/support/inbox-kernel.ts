/**
 * The modules of the inbox's kernel tests (test/data-inbox-kernel*.test.ts): `burst` writes durable
 * events in one transaction, so its relay publishes them in one round, and `watcher` handles each
 * in the inbox, recording the transaction (`txid_current()`) it ran in.
 */
import { z } from 'zod';
import { expect, vi } from 'vitest';
import {
  KeelError,
  callSignal,
  createKernel,
  isKeelError,
  defineContract,
  defineModule,
  event,
  operation,
  silentLogger,
  type Database,
  type DatabaseEngine,
  type Kernel,
  type KernelOptions,
} from 'keel';
import { createNatsTransport, type NatsTransportOptions } from 'keel/nats';

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
  /** Each handling holds its transaction this long in this process (a timer: PGlite's `pg_sleep` blocks the event loop). */
  readonly holdMs?: number;
  /** These labels' first attempts fail after their work; their second attempts hold their transaction `retryHoldMs`. */
  readonly failFirst?: ReadonlySet<string>;
  readonly retryHoldMs?: number;
  /** One label's first attempt that never ends by itself (see {@link HungAttempt}). */
  readonly hang?: HungAttempt;
  /** The handler's own `timeoutMs`. */
  readonly timeoutMs?: number;
}

/**
 * A handler's first attempt at `label` that writes its row, then waits until the test lets it go,
 * ignoring its signal (a handler that would never end), and then tries to write another row,
 * `${label}-late`. Every attempt's number is recorded, and the watcher's `db`, for the test to read.
 */
export class HungAttempt {
  readonly attempts = new Map<string, number>();
  db: Database | undefined;
  /** Whether the first attempt reached its wait. */
  holding = false;
  /** The first attempt's signal, asked for before its wait (after its statements), its deadline's timer a second late. */
  signal: AbortSignal | undefined;
  #release!: () => void;
  readonly #released = new Promise<void>((resolve) => (this.#release = resolve));
  #late!: (outcome: unknown) => void;
  /** What the first attempt's write after its wait did: `'kept'`, or the error it failed with. */
  readonly late = new Promise<unknown>((resolve) => (this.#late = resolve));

  constructor(readonly label: string) {}

  /** Lets the first attempt go on. */
  release(): void {
    this.#release();
  }

  async hold(db: Database, label: string): Promise<void> {
    // The signal's own deadline timer armed on a clock read a second behind (as after the wall
    // clock stepped back), so that it fires after the give-up: what aborts the signal is then the
    // give-up itself, not a race of two timers a millisecond apart.
    const now = Date.now();
    const clock = vi.spyOn(Date, 'now').mockImplementationOnce(() => now - 1000);
    try {
      this.signal = callSignal();
    } finally {
      clock.mockRestore();
    }
    this.holding = true;
    await this.#released;
    this.#late(await db.query('insert into entries (label) values ($1)', [`${label}-late`]).then(() => 'kept', (error: unknown) => error));
  }
}

export function watcherModule(seen: Seen, handler: HandlerShape = {}) {
  return defineModule({
    contract: watcher,
    subscribesTo: [burst],
    data: { migrations: new URL('../fixtures/data/audit/migrations/', import.meta.url) },
    create: ({ db }) => {
      if (handler.hang !== undefined) handler.hang.db = db;
      return {
        handlers: {},
        events: {
          burst: {
            happened: {
              handle: async ({ label }, { attempt }) => {
                handler.hang?.attempts.set(label, attempt);
                const { rows } = await db.query<{ tx: string }>('select txid_current()::text as tx');
                await db.query('insert into entries (label) values ($1)', [label]);
                if (handler.hang?.label === label && attempt === 1) return handler.hang.hold(db, label);
                if (handler.sleepMs !== undefined) await db.query('select pg_sleep($1)', [handler.sleepMs / 1000]);
                if (handler.holdMs !== undefined) await new Promise((resolve) => setTimeout(resolve, handler.holdMs));
                if (handler.failFirst?.has(label) === true) {
                  if (attempt === 1) throw new Error(`${label} fails on its first attempt`);
                  // Long enough for the other retries to arrive meanwhile: were they not kept apart, they would join this transaction.
                  await new Promise((resolve) => setTimeout(resolve, handler.retryHoldMs ?? 0));
                }
                seen.set(label, String(rows[0]?.tx));
              },
              ownTransaction: handler.ownTransaction ?? false,
              ...(handler.timeoutMs === undefined ? {} : { timeoutMs: handler.timeoutMs }),
            },
          },
        },
      };
    },
  });
}

export const LABELS = Array.from({ length: 10 }, (_, i) => `e${i}`);

/**
 * The events of {@link LABELS} through a kernel whose watcher's first attempt at `e3` never ends by
 * itself, with `eventTimeoutMs` (or the handler's `timeoutMs`) {@link HUNG_TIMEOUT_MS}: the checks shared by both transports
 * (test/data-inbox-kernel.test.ts, test/data-inbox-kernel-nats.test.ts). `shared`: the other
 * nine were handled in one transaction, the one e3's first attempt was given up in (in one
 * process, where they all reach the inbox together); `own`: the handler gave its own `timeoutMs`.
 */
export async function expectHungHandlerGivenUp(
  hang: HungAttempt,
  seen: Seen,
  records: readonly { attempt: number; outcome: string }[],
  { shared, own }: { shared: boolean; own: boolean },
): Promise<void> {
  // Every event took effect, e3 on its second attempt, while its first still waits: the events
  // that shared its transaction were not held by it (without the cut, none of them commits).
  await vi.waitFor(() => expect(records.filter(({ outcome }) => outcome === 'ok')).toHaveLength(LABELS.length), { timeout: 20_000, interval: 20 });
  expect([...seen.keys()].sort()).toEqual([...LABELS].sort());
  expect(hang.holding).toBe(true);
  expect(hang.attempts.get('e3')).toBe(2);
  expect(LABELS.filter((label) => label !== 'e3').map((label) => hang.attempts.get(label))).toEqual(Array(9).fill(1));
  expect(records.filter(({ outcome }) => outcome !== 'ok')).toEqual([expect.objectContaining({ attempt: 1, outcome: 'TIMEOUT' })]);
  if (shared) expect(new Set(LABELS.filter((label) => label !== 'e3').map((label) => seen.get(label))).size).toBe(1);
  // Its signal was aborted when it was given up on (it asked before; its own end will not release it unaborted).
  expect(hang.signal?.aborted).toBe(true);
  expect(isKeelError(hang.signal?.reason, 'TIMEOUT')).toBe(true);
  // Let go, the first attempt's next statement fails rather than running outside any transaction.
  hang.release();
  const late = await hang.late;
  expect(late).toBeInstanceOf(KeelError);
  expect((late as KeelError).code).toBe('TIMEOUT');
  // The error names the timeout that was in force, and that one only as the one to raise.
  expect((late as KeelError).message).toMatch(
    own
      ? new RegExp(`was still running ${HUNG_TIMEOUT_MS} ms after it started \\(its timeoutMs\\).*give it longer: raise the handler's timeoutMs\\.$`)
      : new RegExp(`was still running ${HUNG_TIMEOUT_MS} ms after it started \\(the kernel's eventTimeoutMs\\).*the handler's own timeoutMs .*, or the kernel's eventTimeoutMs\\.$`),
  );
  // Its first row was rolled back with it: one row per event, and no late row.
  const { rows } = await (hang.db as NonNullable<HungAttempt['db']>).query<{ label: string }>('select label from entries order by label');
  expect(rows.map(({ label }) => label)).toEqual([...LABELS].sort());
}

/** The `eventTimeoutMs` of the kernels of {@link expectHungHandlerGivenUp}: ample for a handler's two statements on a loaded machine. */
export const HUNG_TIMEOUT_MS = 2500;

/** A kernel of `modules` hosting `host` over the nats-server at `url` under `prefix`, on `database`; `close` stops it and its transport, not the database. */
export async function bootOverNats(
  url: string,
  prefix: string,
  host: string,
  modules: Parameters<typeof createKernel>[0]['modules'],
  database: DatabaseEngine,
  options: Partial<KernelOptions> = {},
  transportOptions: Partial<NatsTransportOptions> = {},
): Promise<{ kernel: Kernel; close: () => Promise<void> }> {
  const transport = await createNatsTransport({ servers: url, prefix, logger: silentLogger, ...transportOptions });
  const kernel = createKernel({ modules, topology: { host: [host], transport }, database, logger: silentLogger, ...options });
  try {
    await kernel.start();
  } catch (error) {
    await transport.close();
    throw error;
  }
  return {
    kernel,
    close: async () => {
      await kernel.stop();
      await transport.close();
    },
  };
}
