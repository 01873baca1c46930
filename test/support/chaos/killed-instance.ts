/**
 * Chaos scenario 2, a killed instance: two catalog processes serve one NATS queue group; under
 * a bounded load of product reads (hedged) and product writes (catalog.addProduct as an admin, a
 * SKU of their own each, not repeatable) through the gateway, one of them is killed with
 * SIGKILL, then started again.
 *
 * Measured: the calls that failed, how long after the kill the last of them was sent (after it,
 * every call succeeded), and from the database that every write answered 200 is there.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { byStatus, getCall, postCall, runShoppers, type CallRecord } from './load.js';
import { quiescent } from './settle.js';
import type { ChaosShop } from './shop.js';

/** How long and how hard. */
export interface KilledInstanceOptions {
  /** The instance to kill (default `catalog-1`). */
  readonly instance?: string;
  readonly warmMs: number;
  /** Load after the kill. */
  readonly afterMs: number;
  /** Shoppers reading; one more shopper writes. */
  readonly shoppers: number;
  readonly readDeadlineMs: number;
  readonly writeDeadlineMs: number;
  readonly log?: (line: string) => void;
}

/** What happened. */
export interface KilledInstanceReport {
  /** Calls sent after the kill, by kind. */
  readonly reads: { readonly sent: number; readonly statuses: Record<string, number> };
  readonly writes: { readonly sent: number; readonly statuses: Record<string, number> };
  /** When the last failed call was sent, ms after the kill (0: none failed). */
  readonly recoveredAfterMs: number;
  /** SKUs answered 200 but not in the database: must be empty. */
  readonly answered200NotApplied: readonly string[];
  /** Writes that failed TIMEOUT (outcome unknown to their caller) and are in the database. */
  readonly timedOutApplied: number;
  readonly timedOutNotApplied: number;
  /** How long the killed instance took to start again (a fresh process). */
  readonly restartMs: number;
}

const SKUS = ['KB-001', 'MS-001', 'MN-027', 'CB-USB-C'];

/** Runs the scenario on `shop` (two catalog instances at least); the killed instance is running again at the end. */
export async function runKilledInstance(shop: ChaosShop, options: KilledInstanceOptions): Promise<KilledInstanceReport> {
  const log = options.log ?? (() => undefined);
  const instance = options.instance ?? 'catalog-1';
  const writer = options.shoppers; // the last shopper writes
  const load = runShoppers({
    base: shop.base,
    shoppers: options.shoppers + 1,
    addressBlock: 2,
    maxCalls: 20_000,
    next: (shopper, index) =>
      shopper === writer
        ? postCall('catalog.addProduct', { sku: `KIL-${index}`, name: `Killed ${index}`, priceCents: 100 + index }, options.writeDeadlineMs, shop.admin)
        : getCall('catalog.getProduct', { sku: SKUS[(shopper + index) % SKUS.length] }, options.readDeadlineMs),
  });
  let killedAt = 0;
  try {
    await sleep(options.warmMs);
    killedAt = Date.now();
    shop.signal(instance, 'SIGKILL');
    log(`${instance} killed (SIGKILL)`);
    await sleep(options.afterMs);
  } finally {
    await load.stop();
  }
  const restartFrom = Date.now();
  await shop.restart(instance);
  const restartMs = Date.now() - restartFrom;
  log(`${instance} started again in ${restartMs} ms`);
  await quiescent(shop, 'catalog', 2);

  const records = load.records;
  const isWrite = (record: CallRecord) => record.what.startsWith('POST');
  const after = records.filter((record) => record.sentAt + record.durationMs >= killedAt);
  const failed = after.filter((record) => record.status !== 200);
  const rows = await shop.query<{ sku: string }>("select sku from catalog.products where sku like 'KIL-%'");
  const applied = new Set(rows.map((row) => row.sku));
  const writes = records.filter(isWrite).map((record) => ({ record, sku: (record.request as { sku: string }).sku }));
  const timedOut = writes.filter(({ record }) => record.status === 504);
  return {
    reads: { sent: after.filter((record) => !isWrite(record)).length, statuses: byStatus(after.filter((record) => !isWrite(record))) },
    writes: { sent: after.filter(isWrite).length, statuses: byStatus(after.filter(isWrite)) },
    recoveredAfterMs: failed.length === 0 ? 0 : Math.max(...failed.map((record) => record.sentAt)) - killedAt,
    answered200NotApplied: writes.filter(({ record, sku }) => record.status === 200 && !applied.has(sku)).map(({ sku }) => sku),
    timedOutApplied: timedOut.filter(({ sku }) => applied.has(sku)).length,
    timedOutNotApplied: timedOut.filter(({ sku }) => !applied.has(sku)).length,
    restartMs,
  };
}
