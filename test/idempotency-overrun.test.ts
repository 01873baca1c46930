/**
 * A keyed run that outlasts its deadline (a handler that does not stop at its signal: a payment
 * provider's own 30 s timeout under a 5 s call) is still running, and its key must say so: a
 * retry with the same key is IDEMPOTENCY_KEY_IN_USE, then replays the run's outcome. The claim
 * used to expire at the deadline plus a grace (5 s) whatever became of the run, and a retry sent
 * after it took the key over and ran the operation a second time beside the first.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { IDEMPOTENCY_TAKEOVER_GRACE_MS } from '../kernel/served-keyed.js';
import { gateNamed, runStarted, runsOf, tally, tallyInMemory, tallyWithData } from './fixtures/idempotency/modules.js';
import { pgliteUnderTest, postgresUnderTest } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let nats: NatsServer;
const pglite = pgliteUnderTest();
const postgres = postgresUnderTest();
const transports: Transport[] = [];
const kernels: Kernel[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
});
afterAll(async () => {
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
  await pglite.cleanup();
  await postgres.cleanup();
  await nats?.stop();
});

type Store = 'memory' | 'pglite' | 'postgres';
type Via = 'local' | 'nats';

async function callerOf(store: Store, via: Via): Promise<Kernel> {
  const database: DatabaseEngine | undefined = store === 'memory' ? undefined : await (store === 'pglite' ? pglite : postgres).fresh();
  const prefix = `overrun${randomUUID().slice(0, 8)}`;
  const transport = async () => {
    const made = await createNatsTransport({ servers: nats.url, prefix, logger: silentLogger });
    transports.push(made);
    return made;
  };
  const callee = createKernel({
    modules: [store === 'memory' ? tallyInMemory : tallyWithData],
    logger: silentLogger,
    ...(database === undefined ? {} : { database }),
    ...(via === 'nats' ? { topology: { transport: await transport() } } : {}),
  });
  await callee.start();
  kernels.push(callee);
  if (via === 'local') return callee;
  const caller = createKernel({ modules: [tallyInMemory], logger: silentLogger, topology: { host: [], transport: await transport() } });
  await caller.start();
  kernels.push(caller);
  return caller;
}

const combos: { store: Store; via: Via }[] = [
  { store: 'memory', via: 'local' },
  { store: 'memory', via: 'nats' },
  { store: 'pglite', via: 'local' },
  { store: 'postgres', via: 'nats' },
];

describe('idempotency - a run that outlasts its deadline keeps its key', () => {
  const callers = new Map<string, Kernel>();
  beforeAll(async () => {
    for (const { store, via } of combos) callers.set(`${store}/${via}`, await callerOf(store, via));
  });
  it.concurrent.each(combos)(
    'keys in $store, calls $via: a retry with the key long after the deadline is IN_USE while the run goes on, then replays it',
    async ({ store, via }) => {
      const client = callers.get(`${store}/${via}`)!.client(tally);
      const key = randomUUID();
      const gate = gateNamed(`${key}#1`);
      try {
        const timeoutMs = 300;
        const sent = Date.now();
        const first = client.slow({ gate: key }, { idempotencyKey: key, timeoutMs, retry: false }).catch((caught: unknown) => caught);
        await runStarted(`${key}#1`);
        expect(isKeelError(await first, 'TIMEOUT'), String(await first)).toBe(true);
        // Past the claim's first expiry (the deadline plus the grace), with a margin for the
        // renewal: the run still waits at its gate.
        await sleep(sent + timeoutMs + IDEMPOTENCY_TAKEOVER_GRACE_MS + 1_000 - Date.now());
        const retried = await client.slow({ gate: key }, { idempotencyKey: key, retry: false }).catch((caught: unknown) => caught);
        expect(isKeelError(retried, 'IDEMPOTENCY_KEY_IN_USE'), String(retried)).toBe(true);
        expect(runsOf(key)).toBe(1);
        gate.open();
        // The first run records its outcome once it ends; the same key then replays it.
        let replayed: unknown;
        for (;;) {
          replayed = await client.slow({ gate: key }, { idempotencyKey: key, retry: false }).catch((caught: unknown) => caught);
          if (!isKeelError(replayed, 'IDEMPOTENCY_KEY_IN_USE')) break;
          await sleep(20);
        }
        expect(replayed).toEqual({ count: expect.any(Number) });
        expect(runsOf(key)).toBe(1);
      } finally {
        gate.open();
        gateNamed(`${key}#2`).open();
      }
    },
    30_000,
  );
});
