import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isKeelError } from 'keel';
import { catalog } from '../modules/catalog/contract.js';
import { inventory } from '../modules/inventory/contract.js';
import { orders } from '../modules/orders/contract.js';
import { TestCard } from '../modules/payments/contract.js';
import { AS_ADMIN, asCustomer } from './support/shop-auth.js';
import { describeShopSuite } from './support/shop-suite.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { MIXED, ONE_PROCESS_PER_MODULE, bootShop, type ShopEngine, type SplitShop } from './support/topologies.js';

// One nats-server for the file; each topology uses its own subject prefix.
let server: NatsServer | undefined;
const nats = async (): Promise<NatsServer> => {
  server ??= await startNatsServer();
  return server;
};

// Each process has a database of its own. Every module in its own process runs on PostgreSQL, as a split
// deployment does (five embedded databases would each pay PGlite's start, on a test box that runs much
// else); the mixed topology and the drain run on PGlite, each process in a folder of its own. One process
// runs the suite on both engines (test/shop.test.ts).
describeShopSuite('every module in its own process over NATS, on postgres', async () =>
  bootShop(ONE_PROCESS_PER_MODULE, (await nats()).url, 'keel.split', 'postgres'),
);

describeShopSuite('mixed: two processes over NATS, two modules in the test process, on pglite', async () =>
  bootShop(MIXED, (await nats()).url, 'keel.mixed', 'pglite'),
);

describe('shop - SIGTERM drains a module process, on pglite', () => {
  const engine: ShopEngine = 'pglite';
  let shop: SplitShop;

  beforeAll(async () => {
    shop = await bootShop(
      {
        processes: [
          { name: 'catalog-and-stock', modules: ['catalog', 'inventory', 'payments', 'notifications'] },
          { name: 'orders', modules: ['orders'] },
        ],
        local: [],
      },
      (await nats()).url,
      'keel.drain',
      engine,
    );
  });

  afterAll(async () => {
    await shop?.stop();
  });

  it('shop - stops taking requests, finishes the calls in flight, and exits 0', async () => {
    const sku = `SKU-${randomUUID()}`;
    await shop.client(catalog).addProduct({ sku, name: 'Drain test product', priceCents: 100 }, AS_ADMIN);
    await shop.client(inventory).restock({ sku, quantity: 1_000 }, AS_ADMIN);

    const ordersProcess = shop.processes.find((child) => child.name === 'orders');
    if (ordersProcess === undefined) throw new Error('no orders process');

    // Each call's outcome is captured at once, so no rejection goes unhandled while more are sent.
    const place = (): Promise<PromiseSettledResult<unknown>> =>
      shop
        .client(orders)
        .placeOrder(
          { customerId: `drain-${randomUUID()}`, lines: [{ sku, quantity: 1 }], card: { token: TestCard.VISA } },
          { timeoutMs: 20_000 },
        )
        .then(
          (value) => ({ status: 'fulfilled', value }) as const,
          (reason: unknown) => ({ status: 'rejected', reason }) as const,
        );
    // A burst of calls is in flight when SIGTERM arrives; more keep coming while the process
    // drains and after it exited (bounded: at most 400 calls).
    const before = Array.from({ length: 40 }, place);
    await Promise.race(before);
    let exited = false;
    const exit = ordersProcess.stop('SIGTERM').then((code) => {
      exited = true;
      return code;
    });
    const during: Promise<PromiseSettledResult<unknown>>[] = [];
    while (!exited && during.length < 400) {
      during.push(place());
      await sleep(5);
    }
    for (let index = 0; index < 3; index += 1) during.push(place());

    const outcomes = await Promise.all([...before, ...during]);
    // Every call was either accepted and finished, or never delivered (NO_RESPONDERS, safe to
    // retry): none was lost in flight (that would be a TIMEOUT) or failed half-way.
    for (const outcome of outcomes) {
      if (outcome.status === 'rejected') expect(isKeelError(outcome.reason, 'NO_RESPONDERS'), String(outcome.reason)).toBe(true);
    }
    expect((await Promise.all(before)).every((outcome) => outcome.status === 'fulfilled')).toBe(true);
    expect(outcomes.some((outcome) => outcome.status === 'rejected')).toBe(true);
    expect(await exit).toBe(0);
    expect(ordersProcess.output()).toContain('"msg":"stopped"');

    const late = await shop.client(orders).listOrders({ customerId: 'nobody' }, { ...asCustomer('nobody'), timeoutMs: 5_000 }).catch((error: unknown) => error);
    expect(isKeelError(late, 'NO_RESPONDERS')).toBe(true);

    const placed = outcomes.filter((outcome) => outcome.status === 'fulfilled').length;
    await vi.waitFor(async () => expect((await shop.client(inventory).getStock({ sku })).available).toBe(1_000 - placed), {
      timeout: 15_000,
    });
  });
});
