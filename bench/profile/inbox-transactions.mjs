// PostgreSQL alone, driven by node-postgres: how many inbox records a second it takes as one transaction per event
// (begin, insert, commit: 3 round trips; `begin; insert` as one script, then commit: 2) and as shared transactions
// (32 events each, `savepoint; insert` as one script per event) with 4 and 5 at once, and with 4 without the savepoints. docs/performance.md,
// "Eighteenth round", has its figures.
// Usage: node bench/profile/inbox-transactions.mjs (PostgreSQL at 127.0.0.1:5432, or KEEL_TEST_POSTGRES_URL; it makes
// and drops a database of its own).
import pg from 'pg';

const server = process.env.KEEL_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const name = `keel_inbox_profile_${process.pid}`;
const admin = new pg.Client({ connectionString: server });
await admin.connect();
await admin.query(`create database ${name}`);
const url = new URL(server);
url.pathname = `/${name}`;
const pool = new pg.Pool({ connectionString: url.toString(), max: 5 });
// The drop at the end ends any connection the pool still holds: not an error of the run.
pool.on('error', () => undefined);
const EVENTS = 8_000;
let ids = 0;

try {
  await pool.query('create table inbox (event_id text primary key, source text not null, event text not null, handled_at timestamptz not null default now())');
  /** `EVENTS` events, 64 given at once, each in a transaction of its own: `rounds` round trips each. */
  const alone = async (rounds) => {
    let next = 0;
    const worker = async () => {
      while (next++ < EVENTS) {
        const client = await pool.connect();
        const id = `e${ids++}`;
        if (rounds === 3) {
          await client.query('begin');
          await client.query("insert into inbox (event_id, source, event) values ($1, 'orders', 'placed') on conflict do nothing", [id]);
        } else {
          await client.query(`begin; insert into inbox (event_id, source, event) values ('${id}', 'orders', 'placed') on conflict do nothing`);
        }
        await client.query('commit');
        client.release();
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: 64 }, worker));
    return (EVENTS * 1_000) / (performance.now() - started);
  };
  /** `EVENTS` events in transactions of `size`, `transactions` at once. */
  const shared = async (size, transactions, savepoints = true) => {
    let next = 0;
    const worker = async () => {
      while (next < EVENTS) {
        const client = await pool.connect();
        await client.query('begin');
        for (let k = 1; next < EVENTS && k <= size; k += 1, next += 1) {
          const insert = `insert into inbox (event_id, source, event) values ('e${ids++}', 'orders', 'placed')`;
          await client.query(savepoints ? `savepoint s${k}; ${insert}` : insert);
        }
        await client.query('commit');
        client.release();
      }
    };
    const started = performance.now();
    await Promise.all(Array.from({ length: transactions }, worker));
    return (EVENTS * 1_000) / (performance.now() - started);
  };
  for (let round = 0; round < 3; round += 1) {
    const rates = {
      'alone, 3 round trips': await alone(3),
      'alone, 2 round trips': await alone(2),
      'shared, 32 a transaction, 4 at once': await shared(32, 4),
      'shared, 32 a transaction, 5 at once': await shared(32, 5),
      'shared, 32 a transaction, 4 at once, no savepoints': await shared(32, 4, false),
    };
    console.log(Object.entries(rates).map(([what, rate]) => `${what}: ${Math.round(rate)}/s`).join('; '));
  }
} finally {
  await pool.end();
  await admin.query(`drop database if exists ${name} with (force)`);
  await admin.end();
}
