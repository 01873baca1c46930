/**
 * Durable events through a module's outbox over NATS, against raw JetStream publishes of the same
 * payload to the same server in the same run: how fast the relay moves committed events into
 * JetStream (from the commit to every row marked sent), next to the nats.js client awaiting each
 * PubAck in turn and with 32 awaiting at once. Needs PostgreSQL (a database made for the run and
 * dropped after) and nats-server.
 */
import { z } from 'zod';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type DatabaseEngine, type Kernel } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import { createTestDatabase } from '../test/support/databases.js';
import { startNatsServer } from '../test/support/nats-server.js';
import { handWrittenDelivery, keelDelivery, type Delivery } from './durable-delivery.js';
import { interleavedSamples, medianOf, rate, roundRatio } from './support.js';

/** Events per sample. */
const EVENTS = 5_000;
const ROUNDS = 5;
/** The relay's default window (the kernel's `outboxWindow`): as many raw publishes await their PubAck at once. */
const WINDOW = 32;

/** A module named `name` that writes `n` durable events in one transaction. */
function burstModule(name: string) {
  const contract = defineContract({
    name,
    version: '1.0.0',
    operations: { fire: operation({ input: z.object({ n: z.number().int() }), output: z.object({ n: z.number() }) }) },
    events: { tick: event({ payload: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number() }), delivery: 'durable' }) },
  });
  const module = defineModule({
    contract,
    // Any migrations will do: the module owns data for its outbox, and writes nothing else.
    data: { migrations: new URL('../test/fixtures/data/ledger/migrations/', import.meta.url) },
    create: ({ db, emit }) => ({
      handlers: {
        fire: ({ n }) =>
          db.transaction(async () => {
            for (let i = 0; i < n; i += 1) await emit('tick', payload(i));
            return { n };
          }),
      },
    }),
  });
  return { contract, module };
}

const payload = (i: number) => ({ orderId: `ord_${String(i).padStart(8, '0')}`, customerId: 'cus_0001', totalCents: 4_200 });

/** A connection to the module's schema, as the engine hands it out. */
type SchemaConnection = Awaited<ReturnType<DatabaseEngine['connect']>>;

let ids = 0;

/** Raw: each publish awaits its PubAck before the next is sent. */
async function rawOneAtATime(js: JetStreamClient, data: Uint8Array[]): Promise<number> {
  const started = performance.now();
  for (const body of data) await js.publish('raw.tick', body, { msgID: `raw-${ids++}` });
  return (data.length * 1_000) / (performance.now() - started);
}

/** Raw: `WINDOW` publishes awaiting their PubAck at once, each slot sending the next as it frees. */
async function rawWindow(js: JetStreamClient, data: Uint8Array[]): Promise<number> {
  let next = 0;
  const slot = async (): Promise<void> => {
    while (next < data.length) await js.publish('raw.tick', data[next++] as Uint8Array, { msgID: `raw-${ids++}` });
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: WINDOW }, slot));
  return (data.length * 1_000) / (performance.now() - started);
}

/** A kernel hosting one burst module over NATS, with the outbox window given, and its outbox. */
interface Relay {
  readonly kernel: Kernel;
  readonly transport: Awaited<ReturnType<typeof createNatsTransport>>;
  readonly outbox: SchemaConnection;
  fire(n: number): Promise<unknown>;
}

async function startRelay(url: string, engine: DatabaseEngine, name: string, outboxWindow: number): Promise<Relay> {
  const { contract, module } = burstModule(name);
  const transport = await createNatsTransport({ servers: url, logger: silentLogger });
  const kernel = createKernel({ modules: [module], topology: { host: [name], transport }, database: engine, logger: silentLogger, outboxWindow });
  await kernel.start();
  const client = kernel.client(contract);
  return { kernel, transport, outbox: await engine.connect(name), fire: (n) => client.fire({ n }) };
}

/** keel: `EVENTS` events committed in one transaction, timed from the commit to every row marked sent. */
async function relayed(relay: Relay): Promise<number> {
  await relay.fire(EVENTS);
  const started = performance.now();
  for (;;) {
    const { rows } = await relay.outbox.query<{ unsent: string }>('select count(*) as unsent from keel_outbox where sent_at is null');
    if (Number(rows[0]?.unsent) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const elapsed = performance.now() - started;
  await relay.outbox.query('delete from keel_outbox');
  return (EVENTS * 1_000) / elapsed;
}

/** The markers around the section, so that `npm run bench -- durable` can rewrite it alone. */
export const DURABLE_BEGIN = '<!-- durable: written by npm run bench -- durable -->';
export const DURABLE_END = '<!-- /durable -->';

/** Runs the durable-events benchmark; returns the report section. */
export async function benchDurable(): Promise<{ markdown: string }> {
  const server = await startNatsServer();
  const database = await createTestDatabase();
  const engine = createPostgresDatabase({ url: database.url });
  let nc: NatsConnection | undefined;
  const relays: Relay[] = [];
  const deliveries: Delivery[] = [];
  const KEEL = 'keel outbox relay';
  const STRICT = 'keel, outboxWindow 1';
  try {
    nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'raw', subjects: ['raw.>'] });
    const js = jetstream(nc);
    const encoder = new TextEncoder();
    const data = Array.from({ length: EVENTS }, (_, i) => encoder.encode(JSON.stringify(payload(i))));
    const keel = await startRelay(server.url, engine, 'burst', WINDOW);
    relays.push(keel);
    const strict = await startRelay(server.url, engine, 'strict', 1);
    relays.push(strict);
    const samples = await interleavedSamples(ROUNDS, {
      'raw, one at a time': () => rawOneAtATime(js, data),
      [`raw, ${WINDOW} awaiting`]: () => rawWindow(js, data),
      [KEEL]: () => relayed(keel),
      [STRICT]: () => relayed(strict),
    });
    for (const [name, values] of Object.entries(samples)) console.log(`  ${name}: ${values.map((value) => Math.round(value)).join(', ')} events/s`);
    const row = (name: string) => {
      const value = medianOf(samples[name] ?? []);
      return `| ${name} | ${rate(value)} | ${name === KEEL ? '1.00×' : `${roundRatio(samples, KEEL, name).toFixed(2)}×`} |`;
    };
    const INBOX = 'keel, to a subscriber that owns data';
    const NO_DATA = 'keel, to a subscriber without data';
    const HAND = 'by hand: a transaction per event, 4 at once';
    const BATCHED = 'by hand: shared transactions, no savepoints, 4 at once';
    const toInbox = await keelDelivery(server.url, engine, 'shipping', true);
    deliveries.push(toInbox);
    const toPlain = await keelDelivery(server.url, engine, 'mailing', false);
    deliveries.push(toPlain);
    const byHand = await handWrittenDelivery(nc, database.url, 4, 'perEvent');
    deliveries.push(byHand);
    const batchedByHand = await handWrittenDelivery(nc, database.url, 4, 'batched');
    deliveries.push(batchedByHand);
    const delivered = await interleavedSamples(ROUNDS, {
      [INBOX]: () => toInbox.fire(EVENTS),
      [NO_DATA]: () => toPlain.fire(EVENTS),
      [HAND]: () => byHand.fire(EVENTS),
      [BATCHED]: () => batchedByHand.fire(EVENTS),
    });
    for (const [name, values] of Object.entries(delivered)) console.log(`  ${name}: ${values.map((value) => Math.round(value)).join(', ')} events/s`);
    const deliveredRow = (name: string) => {
      const value = medianOf(delivered[name] ?? []);
      return `| ${name} | ${rate(value)} | ${name === INBOX ? '1.00×' : `${roundRatio(delivered, INBOX, name).toFixed(2)}×`} |`;
    };
    const markdown = [
      DURABLE_BEGIN,
      '### Durable events: the outbox relay vs raw JetStream publishes',
      '',
      `A module on PostgreSQL commits ${EVENTS} durable events in one transaction; the rate runs from the commit to the`,
      'last row marked sent, so it includes the relay\'s claims and marks (a statement each per 200 rows) and every',
      "event's JetStream PubAck. The raw rows publish the same JSON body with a `Nats-Msg-Id` from the nats.js",
      `client to the same nats-server (a file stream of its own). Medians of ${ROUNDS} interleaved rounds; each ratio is the`,
      "median of the rounds' own keel / this. Reported, with no target (issue 17 sets none for durable events).",
      '',
      '| case | events/s | keel / this |',
      '|---|---|---|',
      row('raw, one at a time'),
      row(`raw, ${WINDOW} awaiting`),
      row(KEEL),
      row(STRICT),
      '',
      `keel's relay sends ${WINDOW} events before the first is confirmed, in the order they were written (the kernel's`,
      '`outboxWindow`; docs/data.md, "The order, exactly"). With `outboxWindow: 1` it sends one at a time, as the first raw row',
      'does and as it did until 2026-12-05, but with that day\'s other cuts (docs/performance.md, "Seventeenth round").',
      '',
      '#### End to end: from the commit to the last event handled in another kernel',
      '',
      `The same publisher commits ${EVENTS} durable events in one transaction; a subscriber in another kernel (the same`,
      'process, its own NATS connection) handles them, and the clock stops when the last is handled and committed (the',
      "kernel's `eventHandled` report). The subscriber that owns data writes a row per event on PostgreSQL, with the event's",
      'inbox record, in its transaction; keel groups the events that wait into shared transactions (docs/data.md, "Events:',
      'the outbox and the inbox"). The hand-written rows do the same work with nats.js and pg, into a table of the same',
      'shape, on a pool of 4, acknowledging after the commit: the first as such a consumer is commonly written, `begin`,',
      'the inbox insert, the row and `commit` per event; the second with the events that wait in shared transactions, as',
      "keel takes them (at most 32, for at most 20 ms), but without keel's savepoint per event, so one event's failure",
      'would undo and redeliver its whole batch. Their events are published with 32 awaiting, timed from the first publish',
      `(they have no outbox). Medians of ${ROUNDS} interleaved rounds; ratios as above.`,
      '',
      '| case | events/s | keel with data / this |',
      '|---|---|---|',
      deliveredRow(INBOX),
      deliveredRow(NO_DATA),
      deliveredRow(HAND),
      deliveredRow(BATCHED),
      DURABLE_END,
      '',
    ].join('\n');
    return { markdown };
  } finally {
    for (const delivery of deliveries) await delivery.stop();
    for (const relay of relays) {
      await relay.outbox.close();
      await relay.kernel.stop();
      await relay.transport.close();
    }
    await nc?.close();
    await engine.close();
    await database.drop();
    await server.stop();
  }
}
