/**
 * The shop split per module on PostgreSQL and NATS keeps its promises through chaos: a bounded
 * placeOrder load while nats-server is down for 3 s and the orders process is killed with
 * SIGKILL once (test/support/shop-chaos.ts; bench/data-chaos.ts runs a larger one for
 * docs/data.md). Loopback only, bounded in count and time; every process stops at the end.
 */
import { describe, expect, it } from 'vitest';
import { runShopChaos } from './support/shop-chaos.js';

describe('shop - chaos', () => {
  it(
    'keeps every promise through a NATS outage and a killed orders process: one notification and one stock commit per placed order, every 200 placed, no charge without a placed order, one charge per key',
    async () => {
      const lines: string[] = [];
      const report = await runShopChaos({ orders: 60, concurrency: 6, natsOutageMs: 3_000, killOrders: true, retryForMs: 60_000, log: (line) => lines.push(line) });
      expect(report.violations, [...lines, ...report.evidence].join('\n')).toEqual({
        placedWithoutOneNotification: [],
        placedWithoutOneStockCommit: [],
        answered200NotPlaced: [],
        capturedNotPlaced: [],
        keyChargedMoreThanOnce: [],
        unfinishedAfterRecovery: [],
      });
      expect(report.gaveUp, JSON.stringify(report.finalStatuses)).toBe(0);
      // Each key got a final answer, and the database agrees with it: an order the chaos failed
      // (its saga compensated) was answered as failed, never placed behind the client's back.
      expect(Object.values(report.finalStatuses).reduce((sum, n) => sum + n, 0)).toBe(60);
      expect(report.placed, JSON.stringify(report.finalStatuses)).toBe(report.finalStatuses['200']);
      expect(report.natsKilledAtMs).toBeDefined();
      expect(report.ordersKilledAtMs).toBeDefined();
    },
    240_000,
  );
});
