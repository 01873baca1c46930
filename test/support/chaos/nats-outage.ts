/**
 * Chaos scenario 3, NATS restarted under load (and the shape of scenario 4, a cluster node
 * lost: the same load and the same figures around another outage, see cluster-node.ts).
 *
 * Writes (catalog.addProduct as an admin, a SKU of their own each, not repeatable) go from the
 * test process's own kernel over NATS, which records whether its connection was up when each
 * call was made; reads go through the gateway process. Around the outage, the honest-failure
 * figures: TIMEOUT means "sent, outcome unknown", so a write that failed TIMEOUT although it
 * never reached a handler (its SKU is not in the database) was reported as delivered when it
 * was not; and UNAVAILABLE means "not sent", so a write that failed UNAVAILABLE must not be
 * there either.
 * (The promises of whole orders through a nats-server outage are test/shop-chaos.test.ts's.)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isKeelError } from 'keel';
import { catalog } from '../../../modules/catalog/contract.js';
import { AS_ADMIN } from '../shop-auth.js';
import { byStatus, getCall, runShoppers } from './load.js';
import { quiescent } from './settle.js';
import type { ChaosShop } from './shop.js';

/** How long and how hard. */
export interface NatsOutageOptions {
  /** What breaks NATS; resolves once it is whole again. Default: nats-server killed, down `downMs`, started again. */
  readonly outage?: (shop: ChaosShop) => Promise<void>;
  readonly downMs: number;
  readonly warmMs: number;
  /** Load once NATS is whole again. */
  readonly afterMs: number;
  /** Writers at once (test process, over NATS), and shoppers reading through the gateway. */
  readonly writers: number;
  readonly shoppers: number;
  readonly writeDeadlineMs: number;
  readonly readDeadlineMs: number;
  /** Catalog instances to wait for at the end. */
  readonly catalogInstances: number;
  readonly log?: (line: string) => void;
}

/** One write as its caller saw it. */
interface WriteRecord {
  readonly sku: string;
  /** The caller's NATS connection was up when the call was made. */
  readonly readyAtCall: boolean;
  readonly sentAt: number;
  code: string;
}

/** What happened. */
export interface NatsOutageReport {
  readonly outageMs: number;
  readonly writes: {
    readonly sent: number;
    readonly outcomes: Record<string, number>;
    /** Failed TIMEOUT and never reached a handler (not in the database): target 0. */
    readonly timeoutNeverDelivered: readonly string[];
    /** When each of those was sent, in ms after the outage began (negative: before it). */
    readonly timeoutNeverDeliveredSentAtMs: readonly number[];
    /** Failed TIMEOUT and applied: delivered, the answer lost with the connection (honest: outcome unknown). */
    readonly timeoutApplied: number;
    /** Failed TIMEOUT although made while the caller's connection was down. */
    readonly timeoutMadeWhileDown: number;
    /** Reported not sent (UNAVAILABLE, NO_RESPONDERS) but applied: target 0. */
    readonly notSentButApplied: readonly string[];
    /** Answered but not in the database: target 0. */
    readonly answeredNotApplied: readonly string[];
  };
  readonly reads: { readonly sent: number; readonly statuses: Record<string, number> };
  /** When the last failed call was sent, ms after NATS was whole again (0: none failed after). */
  readonly recoveredAfterMs: number;
}

/** Runs the scenario on `shop`. */
export async function runNatsOutage(shop: ChaosShop, options: NatsOutageOptions): Promise<NatsOutageReport> {
  const log = options.log ?? (() => undefined);
  const writes: WriteRecord[] = [];
  let stopped = false;
  const products = shop.kernel.client(catalog);
  const writer = async (number: number): Promise<void> => {
    for (let index = 0; !stopped && writes.length < 20_000; index++) {
      const record: WriteRecord = { sku: `NAT-${number}-${index}`, readyAtCall: shop.transport.status().ready, sentAt: Date.now(), code: 'pending' };
      writes.push(record);
      try {
        await products.addProduct({ sku: record.sku, name: `Outage ${number}-${index}`, priceCents: 100 + index }, { ...AS_ADMIN, timeoutMs: options.writeDeadlineMs });
        record.code = 'ok';
      } catch (error) {
        record.code = isKeelError(error) ? error.code : `not a KeelError: ${String(error)}`;
      }
      await sleep(30);
    }
  };
  const reads = runShoppers({
    base: shop.base,
    shoppers: options.shoppers,
    addressBlock: 3,
    maxCalls: 20_000,
    next: (shopper, index) => getCall('catalog.getProduct', { sku: ['KB-001', 'MS-001', 'MN-027', 'CB-USB-C'][(shopper + index) % 4] }, options.readDeadlineMs),
  });
  const writing = Promise.all(Array.from({ length: options.writers }, (_, number) => writer(number)));
  let brokenAt = 0;
  let wholeAt = 0;
  try {
    await sleep(options.warmMs);
    brokenAt = Date.now();
    log('NATS outage begins');
    await (options.outage ?? restartNatsServer(options.downMs))(shop);
    wholeAt = Date.now();
    log(`NATS whole again after ${wholeAt - brokenAt} ms`);
    await sleep(options.afterMs);
  } finally {
    stopped = true;
    await writing;
    await reads.stop();
  }
  await quiescent(shop, 'catalog', options.catalogInstances);

  const rows = await shop.query<{ sku: string }>("select sku from catalog.products where sku like 'NAT-%'");
  const applied = new Set(rows.map((row) => row.sku));
  const outcomes: Record<string, number> = {};
  for (const write of writes) outcomes[write.code] = (outcomes[write.code] ?? 0) + 1;
  const timeouts = writes.filter((write) => write.code === 'TIMEOUT');
  const failedAfter = [
    ...writes.filter((write) => write.code !== 'ok').map((write) => write.sentAt),
    ...reads.records.filter((record) => record.status !== 200).map((record) => record.sentAt),
  ].filter((at) => at >= wholeAt);
  const around = reads.records.filter((record) => record.sentAt >= brokenAt - 1_000);
  return {
    outageMs: wholeAt - brokenAt,
    writes: {
      sent: writes.length,
      outcomes,
      timeoutNeverDelivered: timeouts.filter((write) => !applied.has(write.sku)).map((write) => write.sku),
      timeoutNeverDeliveredSentAtMs: timeouts.filter((write) => !applied.has(write.sku)).map((write) => write.sentAt - brokenAt),
      timeoutApplied: timeouts.filter((write) => applied.has(write.sku)).length,
      timeoutMadeWhileDown: timeouts.filter((write) => !write.readyAtCall).length,
      notSentButApplied: writes.filter((write) => ['UNAVAILABLE', 'NO_RESPONDERS'].includes(write.code) && applied.has(write.sku)).map((write) => write.sku),
      answeredNotApplied: writes.filter((write) => write.code === 'ok' && !applied.has(write.sku)).map((write) => write.sku),
    },
    reads: { sent: around.length, statuses: byStatus(around) },
    recoveredAfterMs: failedAfter.length === 0 ? 0 : Math.max(...failedAfter) - wholeAt,
  };
}

/** The default outage: nats-server stopped (its clients see the connection close), down `downMs`, started again on the same port and store. */
function restartNatsServer(downMs: number): (shop: ChaosShop) => Promise<void> {
  return async (shop) => {
    const server = shop.nats;
    if (server === undefined) throw new Error('the NATS restart scenario needs a shop on one nats-server (startChaosShop without cluster)');
    await server.kill();
    await sleep(downMs);
    await server.start();
  };
}
