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
import { interleavedSamples, medianOf, rate, roundRatio } from './support.js';

/** Events per sample. */
const EVENTS = 5_000;
const ROUNDS = 5;
/** The relay's window (kernel/outbox-relay.ts), for the raw case that sends as it does. */
const WINDOW = 32;

/** A module that writes `n` durable events in one transaction. */
const burst = defineContract({
  name: 'burst',
  version: '1.0.0',
  operations: { fire: operation({ input: z.object({ n: z.number().int() }), output: z.object({ n: z.number() }) }) },
  events: { tick: event({ payload: z.object({ orderId: z.string(), customerId: z.string(), totalCents: z.number() }), delivery: 'durable' }) },
});

const payload = (i: number) => ({ orderId: `ord_${String(i).padStart(8, '0')}`, customerId: 'cus_0001', totalCents: 4_200 });

const burstModule = defineModule({
  contract: burst,
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

/** keel: `EVENTS` events committed in one transaction, timed from the commit to every row marked sent. */
async function relayed(kernel: Kernel, outbox: SchemaConnection): Promise<number> {
  await kernel.client(burst).fire({ n: EVENTS });
  const started = performance.now();
  for (;;) {
    const { rows } = await outbox.query<{ unsent: string }>('select count(*) as unsent from keel_outbox where sent_at is null');
    if (Number(rows[0]?.unsent) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  const elapsed = performance.now() - started;
  await outbox.query('delete from keel_outbox');
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
  let kernel: Kernel | undefined;
  let outbox: SchemaConnection | undefined;
  const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
  try {
    nc = await connect({ servers: server.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'raw', subjects: ['raw.>'] });
    const js = jetstream(nc);
    const encoder = new TextEncoder();
    const data = Array.from({ length: EVENTS }, (_, i) => encoder.encode(JSON.stringify(payload(i))));
    kernel = createKernel({ modules: [burstModule], topology: { host: ['burst'], transport }, database: engine, logger: silentLogger });
    await kernel.start();
    outbox = await engine.connect('burst');
    const started = kernel;
    const connection = outbox;
    const samples = await interleavedSamples(ROUNDS, {
      'raw, one at a time': () => rawOneAtATime(js, data),
      [`raw, ${WINDOW} awaiting`]: () => rawWindow(js, data),
      'keel outbox relay': () => relayed(started, connection),
    });
    for (const [name, values] of Object.entries(samples)) console.log(`  ${name}: ${values.map((value) => Math.round(value)).join(', ')} events/s`);
    const row = (name: string) => {
      const value = medianOf(samples[name] ?? []);
      return `| ${name} | ${rate(value)} | ${name === 'keel outbox relay' ? '1.00×' : `${roundRatio(samples, 'keel outbox relay', name).toFixed(2)}×`} |`;
    };
    const markdown = [
      DURABLE_BEGIN,
      '### Durable events: the outbox relay vs raw JetStream publishes',
      '',
      `A module on PostgreSQL commits ${EVENTS} durable events in one transaction; the rate runs from the commit to the`,
      'last row marked sent, so it includes the relay\'s claims and marks (a statement each per 200 rows) and every',
      "event's JetStream PubAck. The raw rows publish the same JSON body with a `Nats-Msg-Id` from the nats.js",
      `client to the same nats-server (a file stream of its own). Medians of ${ROUNDS} interleaved rounds; each ratio is the`,
      "median of the rounds' own keel / raw. Reported, with no target (issue 17 sets none for durable events).",
      '',
      '| case | events/s | keel / this |',
      '|---|---|---|',
      row('raw, one at a time'),
      row(`raw, ${WINDOW} awaiting`),
      row('keel outbox relay'),
      '',
      `keel's relay sends ${WINDOW} events before the first is confirmed, in the order they were written (docs/data.md);`,
      'until 2026-12-05 it sent one at a time, as the first raw row does (docs/performance.md, "Seventeenth round").',
      DURABLE_END,
      '',
    ].join('\n');
    return { markdown };
  } finally {
    await outbox?.close();
    await kernel?.stop();
    await transport.close();
    await nc?.close();
    await engine.close();
    await database.drop();
    await server.stop();
  }
}
