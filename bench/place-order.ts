/**
 * placeOrder's throughput in one process, on the database engine named by the first argument
 * (`memory`: the shop as it was before it owned data, run from an older checkout; `pglite`;
 * `postgres`, with the URL as the second argument). Prints one JSON line:
 * `{ "engine", "sequential", "concurrent" }` in orders per second. Run by bench/data.ts.
 */
import { existsSync } from 'node:fs';
import { createKernel, silentLogger, type DatabaseEngine } from 'keel';
import { modules } from '../modules/index.js';
import { orders } from '../modules/orders/contract.js';
import { inventory } from '../modules/inventory/contract.js';

const [engine = 'memory', url] = process.argv.slice(2);
const SEQUENTIAL = 200;
const CONCURRENT = 400;
const CONCURRENCY = 16;
const SKU = 'CB-USB-C';

const ownsData = modules.some((module) => (module as { data?: unknown }).data !== undefined);
let database: DatabaseEngine | undefined;
if (ownsData) {
  database =
    engine === 'postgres'
      ? (await import('keel/postgres')).createPostgresDatabase({ url: url ?? 'postgres://postgres@127.0.0.1:5432/postgres' })
      : await (await import('keel/pglite')).createPGliteDatabase();
}
// restock is for admins: the kernel declares the shop's principal and the restock is an admin's.
// The older checkout bench/data.ts copies this file into has neither principal nor guard.
const principal = existsSync(new URL('../app/principal.ts', import.meta.url)) ? (await import('../app/principal.js')).Principal : undefined;
const kernel = createKernel({
  modules,
  logger: silentLogger,
  ...(principal === undefined ? {} : { principal }),
  ...(database === undefined ? {} : { database }),
});
await kernel.start();
const shop = kernel.client(orders);
const asAdmin = principal === undefined ? {} : { principal: { sub: 'bench', roles: ['admin'] } };
await kernel.client(inventory).restock({ sku: SKU, quantity: SEQUENTIAL + CONCURRENT + 10 }, asAdmin);
let customer = 0;
const place = () => shop.placeOrder({ customerId: `bench-${customer++}`, lines: [{ sku: SKU, quantity: 1 }], card: { token: 'tok_visa' } });

await place(); // warm up
let started = performance.now();
for (let i = 0; i < SEQUENTIAL; i += 1) await place();
const sequential = (SEQUENTIAL * 1000) / (performance.now() - started);

started = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: CONCURRENCY }, async () => {
    while (next < CONCURRENT) {
      next += 1;
      await place();
    }
  }),
);
const concurrent = (CONCURRENT * 1000) / (performance.now() - started);

await kernel.stop();
await database?.close();
console.log(JSON.stringify({ engine, sequential, concurrent }));
