/**
 * Chaos scenario 4, a cluster node lost: the shop runs on a three-node nats-server cluster
 * (`startChaosShop({ cluster: true })`, event streams with three replicas), and one node is
 * killed with SIGKILL under the NATS-outage load (nats-outage.ts): its clients reconnect to the
 * other two, and the streams it led elect new leaders. The same promises as a nats-server
 * restart are asserted: no TIMEOUT for a call never delivered, nothing reported not sent that
 * ran, nothing answered that was lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runNatsOutage, type NatsOutageOptions, type NatsOutageReport } from './nats-outage.js';
import type { ChaosShop } from './shop.js';

/** What {@link runClusterNodeLost} takes: the NATS outage's load, and which node to kill. */
export interface ClusterNodeOptions extends Omit<NatsOutageOptions, 'outage' | 'downMs'> {
  /** The node killed (`n1`, `n2`, `n3`). */
  readonly node: string;
}

/**
 * Kills `options.node` under load; NATS counts as whole again once the test process's own
 * connection is back (on another node). The node stays down for the rest of the scenario and is
 * started again at the end, so the cluster is whole for whatever runs next.
 */
export async function runClusterNodeLost(shop: ChaosShop, options: ClusterNodeOptions): Promise<NatsOutageReport> {
  const cluster = shop.cluster;
  if (cluster === undefined) throw new Error('the cluster scenario needs startChaosShop({ cluster: true })');
  const report = await runNatsOutage(shop, {
    ...options,
    downMs: 0,
    outage: async () => {
      await cluster.kill9(options.node);
      const deadline = Date.now() + 30_000;
      while (!shop.transport.status().ready) {
        if (Date.now() > deadline) throw new Error(`the test process did not reconnect within 30 s of killing ${options.node}`);
        await sleep(20);
      }
    },
  });
  await cluster.restart(options.node);
  return report;
}
