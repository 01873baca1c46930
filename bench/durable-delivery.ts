/**
 * Durable events end to end over NATS: from the publisher's commit to the last event handled by a
 * subscriber in another kernel. Three ways in the same run, each to the same nats-server and
 * PostgreSQL: keel to a subscriber that owns data (each event with its inbox record and a row of
 * its own, in the subscriber's transaction), keel to a subscriber that owns none (no database on
 * that side), and the same work written by hand with nats.js and pg, twice: a JetStream consumer
 * whose callback runs a transaction per event (begin, the inbox record, the row, commit) on 4
 * connections, and one that puts the events that wait in shared transactions as keel does, without
 * keel's savepoints; both acknowledge after the commit.
 */
import { z } from 'zod';
import pg from 'pg';
import type { NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager, type JsMsg } from '@nats-io/jetstream';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type DatabaseEngine, type Kernel } from 'keel';
import { createNatsTransport } from 'keel/nats';

/** How long a sample may wait for its events: an event that never arrives fails the run instead of hanging it. */
const SAMPLE_TIMEOUT_MS = 120_000;

/** A subscriber's handled count reaching a target, awaited. */
class Counter {
  #count = 0;
  #target = Number.POSITIVE_INFINITY;
  #reached: () => void = () => undefined;
  hit(): void {
    this.#count += 1;
    if (this.#count === this.#target) this.#reached();
  }
  /** Resets the count; resolves once it reaches `target`, rejects when it has not within {@link SAMPLE_TIMEOUT_MS}. */
  expect(target: number, what: string): Promise<void> {
    this.#count = 0;
    this.#target = target;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${what}: ${this.#count} of ${target} events handled after ${SAMPLE_TIMEOUT_MS} ms; the bench stops here`)),
        SAMPLE_TIMEOUT_MS,
      );
      this.#reached = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}

const contractOf = (name: string) =>
  defineContract({
    name,
    version: '1.0.0',
    operations: { fire: operation({ input: z.object({ n: z.number().int() }), output: z.object({ n: z.number() }) }) },
    events: { placed: event({ payload: z.object({ orderId: z.string(), totalCents: z.number() }), delivery: 'durable' }) },
  });

const MIGRATIONS = new URL('../test/fixtures/data/ledger/migrations/', import.meta.url);

/** One publisher and one subscriber, each in a kernel of its own over NATS: `fire(n)` commits n events and resolves once all are handled. */
export interface Delivery {
  fire(n: number): Promise<number>;
  stop(): Promise<void>;
}

/** keel: publisher `name`, and its subscriber, which owns data (`withData`) or not. */
export async function keelDelivery(url: string, engine: DatabaseEngine, name: string, withData: boolean): Promise<Delivery> {
  const contract = contractOf(name);
  const publisher = defineModule({
    contract,
    data: { migrations: MIGRATIONS },
    create: ({ db, emit }) => ({
      handlers: {
        fire: ({ n }) =>
          db.transaction(async () => {
            for (let i = 0; i < n; i += 1) await emit('placed', { orderId: `ord_${String(i).padStart(8, '0')}`, totalCents: 4_200 });
            return { n };
          }),
      },
    }),
  });
  const counter = new Counter();
  const subscriber = defineModule({
    contract: defineContract({ name: `${name}-sink`, version: '1.0.0', operations: {} }),
    subscribesTo: [contract],
    ...(withData ? { data: { migrations: MIGRATIONS } } : {}),
    create: ({ db }) => ({
      handlers: {},
      events: {
        [name]: {
          placed: async ({ orderId }: { orderId: string }, { id }: { id: string }) => {
            if (withData) await db.query('insert into entries (label) values ($1)', [`${orderId}/${id}`]);
          },
        },
      },
    }),
  });
  const kernels: Kernel[] = [];
  const transports: Awaited<ReturnType<typeof createNatsTransport>>[] = [];
  const stop = async (): Promise<void> => {
    for (const kernel of kernels) await kernel.stop();
    for (const transport of transports) await transport.close();
  };
  try {
    for (const host of [subscriber.name, name]) {
      const transport = await createNatsTransport({ servers: url, logger: silentLogger });
      transports.push(transport);
      const kernel = createKernel({ modules: [publisher, subscriber], topology: { host: [host], transport }, database: engine, logger: silentLogger });
      kernels.push(kernel);
      await kernel.start();
    }
  } catch (error) {
    await stop();
    throw error;
  }
  // Counted once handled and committed (the kernel reports a durable event handled after its inbox transaction), as the hand-written side counts after its commit.
  (kernels[0] as Kernel).observe({ eventHandled: (record) => record.contract === name && record.outcome === 'ok' && counter.hit() });
  const client = (kernels[1] as Kernel).client(contract);
  return {
    fire: async (n) => {
      const handled = counter.expect(n, `keel to ${subscriber.name}`);
      await client.fire({ n });
      const started = performance.now();
      await handled;
      return (n * 1_000) / (performance.now() - started);
    },
    stop,
  };
}

/**
 * By hand: events published to a stream of their own, consumed on a pool of `connections`. `perEvent`: a
 * transaction per event (begin, the inbox record, the row, commit), as such a consumer is commonly written.
 * Batched: the events that wait share a transaction, at most 32 and for at most 20 ms, as keel's inbox takes
 * them, but with no savepoint: one event's failure would undo and redeliver the whole batch.
 */
export async function handWrittenDelivery(nc: NatsConnection, databaseUrl: string, connections: number, way: 'perEvent' | 'batched'): Promise<Delivery> {
  const name = way === 'perEvent' ? 'hand' : 'batched';
  const pool = new pg.Pool({ connectionString: databaseUrl, max: connections });
  await pool.query(`create table if not exists ${name}_inbox (event_id text primary key)`);
  // The same table as keel's side writes to (test/fixtures/data/ledger: a key, a unique label, a time).
  await pool.query(`create table if not exists ${name}_entries (id bigserial primary key, label text not null unique, added_at timestamptz not null default now())`);
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`] });
  await jsm.consumers.add(name, { durable_name: 'sink', ack_policy: AckPolicy.Explicit, max_ack_pending: 1_000 });
  const js = jetstream(nc);
  const counter = new Counter();
  /** One event's work in an open transaction: its inbox record, then its row if the record is new. */
  const handle = async (client: pg.PoolClient, msg: JsMsg): Promise<void> => {
    const { orderId } = msg.json<{ orderId: string }>();
    const id = msg.headers?.get('Nats-Msg-Id');
    const { rowCount } = await client.query(`insert into ${name}_inbox (event_id) values ($1) on conflict do nothing`, [id]);
    if (rowCount === 1) await client.query(`insert into ${name}_entries (label) values ($1)`, [`${orderId}/${id}`]);
  };
  const failed = (error: unknown) => console.error(`  by hand (${way}): an event failed and was given back (its sample will time out):`, error);
  /** Batched: the messages waiting for a transaction, and how many transactions run. */
  const waiting: JsMsg[] = [];
  let running = 0;
  const drain = async (): Promise<void> => {
    running += 1;
    try {
      // The first event is taken before a connection is: a drain started for an event another took opens no empty transaction.
      for (let first = waiting.shift(); first !== undefined; first = waiting.shift()) {
        const batch: JsMsg[] = [first];
        const client = await pool.connect();
        // A client whose transaction failed is closed, not handed back in the middle of it; its batch is redelivered.
        let broken: Error | undefined;
        try {
          await client.query('begin');
          const began = performance.now();
          await handle(client, first);
          while (batch.length < 32 && performance.now() - began < 20) {
            const msg = waiting.shift();
            if (msg === undefined) break;
            batch.push(msg);
            await handle(client, msg);
          }
          await client.query('commit');
          for (const msg of batch) {
            msg.ack();
            counter.hit();
          }
        } catch (error) {
          broken = error as Error;
          failed(error);
          for (const msg of batch) msg.nak();
        } finally {
          client.release(broken);
        }
      }
    } finally {
      running -= 1;
    }
  };
  // At most `connections` transactions at once, as a pool this size allows; per event, the rest wait for a connection.
  const consumer = await js.consumers.get(name, 'sink');
  const messages = await consumer.consume({
    max_messages: 64,
    callback:
      way === 'perEvent'
        ? (msg) => {
            void (async () => {
              const client = await pool.connect();
              let broken: Error | undefined;
              try {
                await client.query('begin');
                await handle(client, msg);
                await client.query('commit');
                msg.ack();
                counter.hit();
              } catch (error) {
                broken = error as Error;
                msg.nak();
                throw error;
              } finally {
                client.release(broken);
              }
            })().catch(failed);
          }
        : (msg) => {
            waiting.push(msg);
            if (running < connections) void drain();
          },
  });
  let ids = 0;
  const encoder = new TextEncoder();
  return {
    fire: async (n) => {
      const handled = counter.expect(n, `by hand (${way})`);
      // Published with 32 awaiting their PubAck, as keel's relay does, before the clock starts: the hand-written side has no outbox.
      let next = 0;
      const slot = async (): Promise<void> => {
        while (next < n) {
          const i = next++;
          await js.publish(`${name}.placed`, encoder.encode(JSON.stringify({ orderId: `ord_${String(i).padStart(8, '0')}`, totalCents: 4_200 })), { msgID: `hand-${ids++}` });
        }
      };
      const published = Array.from({ length: 32 }, slot);
      const started = performance.now();
      await Promise.all(published);
      await handled;
      return (n * 1_000) / (performance.now() - started);
    },
    stop: async () => {
      await messages.close();
      await pool.end();
    },
  };
}
