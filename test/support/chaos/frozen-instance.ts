/**
 * Chaos scenario 1, a frozen instance: two catalog processes serve one NATS queue group; under a
 * bounded load of product reads through the gateway (idempotent, hedged by the shop's contract),
 * one of them is frozen with SIGSTOP for `freezeMs` and thawed with SIGCONT. Meanwhile
 * non-idempotent writes (catalog.addProduct as an admin, a SKU of their own each, a short
 * deadline) are sent too; about half of them reach the frozen instance and their callers get
 * TIMEOUT.
 *
 * Measured: the share of reads sent during the freeze answered 200 within their deadline, their
 * latency; and, from the database once the thawed instance has caught up, that no write was
 * applied after its caller gave up (the old bug: a thawed callee working through a backlog of
 * requests nobody waits for any more).
 */
import { Agent } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { byStatus, getCall, percentile, postCall, runShoppers, send, type CallRecord } from './load.js';
import { quiescent } from './settle.js';
import type { ChaosShop } from './shop.js';

/** How long and how hard. */
export interface FrozenInstanceOptions {
  /** The instance to freeze (default `catalog-2`). */
  readonly instance?: string;
  readonly freezeMs: number;
  /** Load before the freeze (the hedging delay learns the normal latency) and after the thaw. */
  readonly warmMs: number;
  readonly afterMs: number;
  readonly shoppers: number;
  /** Deadline of each read (`x-keel-timeout-ms`). */
  readonly readDeadlineMs: number;
  /** Deadline of each write: short, so that every write sent during the freeze expired before the thaw. */
  readonly writeDeadlineMs: number;
  /** One write every this many ms during the freeze. */
  readonly writeEveryMs: number;
  readonly log?: (line: string) => void;
}

/** What happened. */
export interface FrozenInstanceReport {
  readonly freezeMs: number;
  readonly reads: {
    /** Reads sent between SIGSTOP and SIGCONT. */
    readonly duringFreeze: number;
    readonly succeeded: number;
    readonly share: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly statuses: Record<string, number>;
    /** When the last failed read was sent, ms after SIGSTOP (undefined: none failed). */
    readonly lastFailureAtMs: number | undefined;
    /** The same figures before the freeze, for comparison. */
    readonly beforeP50Ms: number;
    readonly beforeP99Ms: number;
    readonly all: number;
  };
  readonly writes: {
    readonly sent: number;
    readonly statuses: Record<string, number>;
    /** Writes in the database. */
    readonly applied: number;
    /** SKUs applied after their caller's deadline (the old bug): must be empty. */
    readonly appliedAfterDeadline: readonly string[];
    /** SKUs applied after SIGCONT: must be empty (every write's deadline passed before it). */
    readonly appliedAfterThaw: readonly string[];
    /** SKUs answered 200 but not in the database: must be empty. */
    readonly answered200NotApplied: readonly string[];
    /** SKUs whose caller got TIMEOUT and which are in the database (applied in time, answer late): reported. */
    readonly timedOutButApplied: readonly string[];
  };
  /**
   * Each catalog instance's requests and errors once both answered `$SRV.STATS` after the thaw:
   * the thawed one's errors are mostly the requests it dropped unrun, their deadline passed.
   */
  readonly instances: readonly { readonly requests: number; readonly errors: number }[];
}

const SKUS = ['KB-001', 'MS-001', 'MN-027', 'CB-USB-C'];

/** Runs the scenario on `shop` (two catalog instances at least). */
export async function runFrozenInstance(shop: ChaosShop, options: FrozenInstanceOptions): Promise<FrozenInstanceReport> {
  const log = options.log ?? (() => undefined);
  const instance = options.instance ?? 'catalog-2';
  const load = runShoppers({
    base: shop.base,
    shoppers: options.shoppers,
    addressBlock: 1,
    maxCalls: 40_000,
    next: (shopper, index) => getCall('catalog.getProduct', { sku: SKUS[(shopper + index) % SKUS.length] }, options.readDeadlineMs),
  });
  let frozenAt = 0;
  let thawedAt = 0;
  const writes: { sku: string; answer: Promise<CallRecord> }[] = [];
  try {
    await sleep(options.warmMs);
    frozenAt = Date.now();
    shop.signal(instance, 'SIGSTOP');
    log(`${instance} frozen (SIGSTOP) for ${options.freezeMs} ms`);
    const agent = new Agent({ keepAlive: true, maxSockets: 16 });
    // Stop writing early enough that every write's deadline passed before the thaw.
    const lastWriteAt = frozenAt + options.freezeMs - options.writeDeadlineMs - 1_000;
    for (let index = 0; Date.now() < lastWriteAt; index++) {
      const sku = `FRZ-${index}`;
      const write = postCall('catalog.addProduct', { sku, name: `Frozen ${index}`, priceCents: 100 + index }, options.writeDeadlineMs, shop.admin);
      writes.push({ sku, answer: send(shop.base, write, agent, '127.0.1.250') });
      await sleep(options.writeEveryMs);
    }
    await sleep(Math.max(0, frozenAt + options.freezeMs - Date.now()));
    thawedAt = Date.now();
    shop.signal(instance, 'SIGCONT');
    log(`${instance} thawed (SIGCONT)`);
    await sleep(options.afterMs);
    agent.destroy();
  } finally {
    if (frozenAt !== 0 && thawedAt === 0) shop.signal(instance, 'SIGCONT');
    await load.stop();
  }
  const written = await Promise.all(writes.map(async ({ sku, answer }) => ({ sku, record: await answer })));

  // A positive signal that the thawed instance worked through whatever it had received: it
  // answers $SRV.STATS again (asked after the thaw, so behind every request it held) and its
  // counts stopped moving with the load stopped.
  const counts = await quiescent(shop, 'catalog', 2);
  log(`catalog instances caught up: ${JSON.stringify(counts.map(({ requests, errors }) => ({ requests, errors })))}`);

  const rows = await shop.query<{ sku: string; created_at: Date }>("select sku, created_at from catalog.products where sku like 'FRZ-%'");
  const appliedAt = new Map(rows.map((row) => [row.sku, row.created_at.getTime()]));
  const records = load.records;
  const during = records.filter((record) => record.sentAt >= frozenAt && record.sentAt < thawedAt);
  const before = records.filter((record) => record.sentAt < frozenAt);
  const failed = during.filter((record) => record.status !== 200);
  const ok = (record: CallRecord) => record.status === 200;
  return {
    freezeMs: thawedAt - frozenAt,
    reads: {
      all: records.length,
      duringFreeze: during.length,
      succeeded: during.filter(ok).length,
      share: during.filter(ok).length / Math.max(1, during.length),
      p50Ms: percentile(during.map((record) => record.durationMs), 50),
      p99Ms: percentile(during.map((record) => record.durationMs), 99),
      statuses: byStatus(during),
      lastFailureAtMs: failed.length === 0 ? undefined : Math.max(...failed.map((record) => record.sentAt)) - frozenAt,
      beforeP50Ms: percentile(before.map((record) => record.durationMs), 50),
      beforeP99Ms: percentile(before.map((record) => record.durationMs), 99),
    },
    writes: {
      sent: written.length,
      statuses: byStatus(written.map(({ record }) => record)),
      applied: appliedAt.size,
      appliedAfterDeadline: written
        .filter(({ sku, record }) => (appliedAt.get(sku) ?? 0) > record.sentAt + options.writeDeadlineMs)
        .map(({ sku }) => sku),
      appliedAfterThaw: [...appliedAt].filter(([, at]) => at >= thawedAt).map(([sku]) => sku),
      answered200NotApplied: written.filter(({ sku, record }) => ok(record) && !appliedAt.has(sku)).map(({ sku }) => sku),
      timedOutButApplied: written.filter(({ sku, record }) => record.status === 504 && appliedAt.has(sku)).map(({ sku }) => sku),
    },
    instances: counts.map(({ requests, errors }) => ({ requests, errors })),
  };
}
