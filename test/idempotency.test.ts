/**
 * Idempotent commands, in process and over NATS, with the keys in memory (a module without data)
 * or in the module's database (PGlite, PostgreSQL): a non-idempotent operation runs once per
 * key, a retry gets the first outcome, the same key with another input is refused, a retry
 * while the first request runs is refused, and the keys of a module that owns data outlive a
 * restart. The HTTP gateway takes the IETF Idempotency-Key header.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKernel, isKeelError, silentLogger, type AnyModule, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createHttpGateway } from 'keel/http';
import { SqlIdempotencyStore } from '../kernel/idempotency.js';
import { createNatsTransport } from 'keel/nats';
import { Declined, gateNamed, runStarted, runsOf, tally, tallyInMemory, tallyWithData } from './fixtures/idempotency/modules.js';
import { pgliteUnderTest, postgresUnderTest } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let nats: NatsServer;
const pglite = pgliteUnderTest();
const postgres = postgresUnderTest();
const transports: Transport[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  for (const transport of transports) await transport.close();
  await pglite.cleanup();
  await postgres.cleanup();
  await nats?.stop();
});

type Store = 'memory' | 'pglite' | 'postgres';
type Via = 'local' | 'nats';

/** A callee (and, over NATS, a caller kernel apart from it) that can be restarted on the same database. */
interface Setup {
  readonly caller: () => Kernel;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function setUp(store: Store, via: Via): Promise<Setup> {
  const module: AnyModule = store === 'memory' ? tallyInMemory : tallyWithData;
  const database: DatabaseEngine | undefined = store === 'memory' ? undefined : await (store === 'pglite' ? pglite : postgres).fresh();
  const prefix = `idem${randomUUID().slice(0, 8)}`;
  const transport = async () => {
    const made = await createNatsTransport({ servers: nats.url, prefix, logger: silentLogger });
    transports.push(made);
    return made;
  };
  const startCallee = async (): Promise<Kernel> => {
    const kernel = createKernel({
      modules: [module],
      logger: silentLogger,
      ...(database === undefined ? {} : { database }),
      ...(via === 'nats' ? { topology: { transport: await transport() } } : {}),
    });
    await kernel.start();
    return kernel;
  };
  let callee = await startCallee();
  let caller = callee;
  if (via === 'nats') {
    caller = createKernel({ modules: [module], logger: silentLogger, topology: { host: [], transport: await transport() } });
    await caller.start();
  }
  return {
    caller: () => caller,
    restart: async () => {
      await callee.stop();
      callee = await startCallee();
      if (via === 'local') caller = callee;
    },
    stop: async () => {
      if (caller !== callee) await caller.stop();
      await callee.stop();
    },
  };
}

const combos: { store: Store; via: Via }[] = [
  { store: 'memory', via: 'local' },
  { store: 'memory', via: 'nats' },
  { store: 'pglite', via: 'local' },
  { store: 'pglite', via: 'nats' },
  { store: 'postgres', via: 'local' },
  { store: 'postgres', via: 'nats' },
];

describe.each(combos)('idempotency - keys in $store, calls $via', ({ store, via }) => {
  let setup: Setup;
  beforeAll(async () => {
    setup = await setUp(store, via);
  });
  afterAll(async () => {
    await setup?.stop();
  });
  const client = () => setup.caller().client(tally);

  it('runs a non-idempotent operation once per key and answers a retry with the first output', async () => {
    const key = randomUUID();
    const before = (await client().peek({})).count;
    const first = await client().bump({ by: 5 }, { idempotencyKey: key });
    const retry = await client().bump({ by: 5 }, { idempotencyKey: key });
    expect(retry).toEqual(first);
    expect((await client().peek({})).count).toBe(before + 5);
  });

  it('refuses the same key with another input as IDEMPOTENCY_KEY_REUSED, running nothing', async () => {
    const key = randomUUID();
    await client().bump({ by: 1 }, { idempotencyKey: key });
    const before = (await client().peek({})).count;
    const error = await client().bump({ by: 2 }, { idempotencyKey: key }).catch((caught: unknown) => caught);
    expect(isKeelError(error, 'IDEMPOTENCY_KEY_REUSED')).toBe(true);
    expect((error as Error).message).toContain('was used before with another input');
    expect((await client().peek({})).count).toBe(before);
  });

  it('refuses a retry while the first request runs as IDEMPOTENCY_KEY_IN_USE, then replays its outcome', async () => {
    const key = randomUUID();
    const gate = gateNamed(`${key}#1`);
    try {
      // A deadline that cannot pass while the first request waits at its gate: were it to pass,
      // its own retry would meet its still-running attempt and fail IDEMPOTENCY_KEY_IN_USE.
      const first = client().slow({ gate: key }, { idempotencyKey: key, timeoutMs: 120_000 }).catch((caught: unknown) => caught);
      // The retry is sent only once the first request's run has started, so that the first holds
      // the key: a retry sent before may claim the key itself, and it is the first that is refused.
      const early = await Promise.race([runStarted(`${key}#1`), first]);
      expect(early, 'the first request ended before its run started').toBeUndefined();
      const refused = await client().slow({ gate: key }, { idempotencyKey: key }).catch((caught: unknown) => caught);
      expect(isKeelError(refused, 'IDEMPOTENCY_KEY_IN_USE'), String(refused)).toBe(true);
      gate.open();
      const answered = await first;
      expect(answered).toEqual({ count: expect.any(Number) });
      expect(await client().slow({ gate: key }, { idempotencyKey: key })).toEqual(answered);
      // Neither the refused retry nor the replay ran: only the first request did.
      expect(runsOf(key)).toBe(1);
    } finally {
      // Whatever failed above, the first run is not left waiting at its gate, so the module stops.
      gate.open();
    }
  });

  it('replays a declared error as its declared class, without running again', async () => {
    const key = randomUUID();
    const first = await client().fail({ kind: 'declared' }, { idempotencyKey: key }).catch((caught: unknown) => caught);
    const attempts = (await client().peek({})).attempts;
    const retry = await client().fail({ kind: 'declared' }, { idempotencyKey: key }).catch((caught: unknown) => caught);
    expect(first).toBeInstanceOf(Declined);
    expect(retry).toBeInstanceOf(Declined);
    expect((retry as InstanceType<typeof Declined>).data).toEqual({ by: 1 });
    expect((await client().peek({})).attempts).toBe(attempts);
  });

  it('runs again after an undeclared failure: only a final outcome is kept', async () => {
    const key = randomUUID();
    const attempts = (await client().peek({})).attempts;
    for (let i = 0; i < 2; i += 1) {
      const error = await client().fail({ kind: 'undeclared' }, { idempotencyKey: key }).catch((caught: unknown) => caught);
      expect(isKeelError(error, 'INTERNAL')).toBe(true);
    }
    expect((await client().peek({})).attempts).toBe(attempts + 2);
  });

  it('ignores the key of an idempotent operation: it runs every time', async () => {
    const key = randomUUID();
    const first = await client().touch({}, { idempotencyKey: key });
    const second = await client().touch({}, { idempotencyKey: key });
    expect(second.count).toBe(first.count + 1);
  });

  it('refuses an idempotency key that is not 1 to 255 visible ASCII characters with INVALID_INPUT', async () => {
    for (const idempotencyKey of ['', 'with space', 'x'.repeat(256), 'line\nbreak']) {
      const error = await client().bump({ by: 1 }, { idempotencyKey }).catch((caught: unknown) => caught);
      expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
      expect((error as Error).message).toContain('idempotencyKey for tally.bump must be 1 to 255 visible ASCII characters');
    }
  });

  it(
    store === 'memory' ? 'forgets the keys when the module restarts (they live in its memory)' : 'keeps the keys across a restart of the module (they live in its database)',
    async () => {
      const key = randomUUID();
      const first = await client().bump({ by: 3 }, { idempotencyKey: key });
      await setup.restart();
      const before = (await client().peek({})).count;
      const retry = await client().bump({ by: 3 }, { idempotencyKey: key });
      if (store === 'memory') {
        expect(retry).toEqual({ count: before + 3 });
      } else {
        expect(retry).toEqual(first);
        expect((await client().peek({})).count).toBe(before);
      }
    },
  );
});

// Two instances of a module share its keys only on PostgreSQL: PGlite serves one process.
describe.each([{ store: 'postgres', engine: postgres }])('idempotency - a key taken over after its claim expired, keys in $store', ({ engine }) => {
  it(
    'keeps the outcome of the run that took the key over: the first run, finishing late, neither records its outcome nor frees the key',
    async () => {
      // Two instances of the callee on one database, as two processes would be.
      const database = await engine.fresh();
      const instance = async () => {
        const kernel = createKernel({ modules: [tallyWithData], logger: silentLogger, database });
        await kernel.start();
        return kernel;
      };
      const [first, second] = [await instance(), await instance()];
      const key = randomUUID();
      // The first instance stands for a process that died under its run: it never renews its claim.
      // (A live one renews it while the run lasts, and the key stays in use: idempotency-overrun.test.ts.)
      const renewals = vi.spyOn(SqlIdempotencyStore.prototype, 'extend').mockResolvedValue(false);
      try {
        // The first run holds the key until its deadline plus the takeover grace (5 s), and its caller gives up.
        // Its deadline leaves room for its run to start on a loaded machine, which the test waits for:
        // a run that never started would hold no key, and the retry below would take it at once.
        const abandoned = first.client(tally).slow({ gate: key }, { idempotencyKey: key, timeoutMs: 3_000 }).catch((error: unknown) => error);
        const early = await Promise.race([runStarted(`${key}#1`), abandoned]);
        expect(early, 'the first request ended before its run started').toBeUndefined();
        expect(isKeelError(await abandoned, 'TIMEOUT')).toBe(true);
        // A retry through the other instance is refused while the claim holds, then takes the key over.
        let retry: Promise<unknown> | undefined;
        for (let tries = 0; tries < 100 && retry === undefined; tries += 1) {
          const attempt = second.client(tally).slow({ gate: key }, { idempotencyKey: key, timeoutMs: 20_000 }).catch((error: unknown) => error);
          // Either it is refused, or its run starts (the second run of this gate).
          const started = runStarted(`${key}#2`).then(() => 'started' as const);
          const outcome = await Promise.race([attempt, started]);
          if (outcome === 'started') retry = attempt;
          else {
            expect(isKeelError(outcome, 'IDEMPOTENCY_KEY_IN_USE'), String(outcome)).toBe(true);
            await sleep(200);
          }
        }
        expect(runsOf(key)).toBe(2);
        // The first run now finishes, while the retry still runs: stopping its instance waits for it to end.
        gateNamed(`${key}#1`).open();
        await first.stop();
        // The key is still the retry's: a third request is refused as in use, not answered with the first run's outcome.
        const third = await second.client(tally).slow({ gate: key }, { idempotencyKey: key }).catch((error: unknown) => error);
        expect(isKeelError(third, 'IDEMPOTENCY_KEY_IN_USE'), JSON.stringify(third)).toBe(true);
        gateNamed(`${key}#2`).open();
        const answered = await retry;
        expect(await second.client(tally).slow({ gate: key }, { idempotencyKey: key })).toEqual(answered);
        // Both runs ran (the first was given up on, not stopped); the key answers with the retry's count.
        expect((await second.client(tally).peek({})).count).toBe(2);
        expect(answered).toEqual({ count: 2 });
      } finally {
        renewals.mockRestore();
        // Whatever failed above, no run is left waiting at its gate, so both instances stop.
        for (const run of [1, 2]) gateNamed(`${key}#${run}`).open();
        await first.stop();
        await second.stop();
      }
    },
    60_000,
  );
});

describe('idempotency - the HTTP gateway takes the Idempotency-Key header', () => {
  it('answers a retried POST with the first status and body, 422 for the key with another body, 400 for a malformed key', async () => {
    const kernel = createKernel({ modules: [tallyWithData], logger: silentLogger, database: await pglite.fresh() });
    await kernel.start();
    const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false });
    try {
      const url = await gateway.listen();
      const post = (body: unknown, key?: string) =>
        fetch(`${url}/tally/bump`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
          body: JSON.stringify(body),
        });
      const key = `"${randomUUID()}"`;
      const first = await post({ by: 7 }, key);
      const retry = await post({ by: 7 }, key);
      expect([first.status, retry.status]).toEqual([200, 200]);
      // The same bytes, not only the same value: the stored answer keeps the first one's key order.
      expect(await retry.text()).toBe(await first.text());
      expect((await kernel.client(tally).peek({})).count).toBe(7);
      const reused = await post({ by: 8 }, key);
      expect(reused.status).toBe(422);
      expect(((await reused.json()) as { code: string }).code).toBe('IDEMPOTENCY_KEY_REUSED');
      const malformed = await post({ by: 1 }, 'two words');
      expect(malformed.status).toBe(400);
      expect(((await malformed.json()) as { detail: string }).detail).toContain('Idempotency-Key');
    } finally {
      await gateway.close();
      await kernel.stop();
    }
  });
});
