/**
 * Chaos scenario 4, a cluster node lost: NOT WIRED YET.
 *
 * TODO(chaos-cluster): test/support/nats-cluster.ts (a three-node nats-server cluster on
 * loopback with `kill9(node)`, written on another branch) is not on this branch. Once merged,
 * wire it here — nothing else of the chaos suite needs to change:
 *
 * 1. `startChaosShop` takes `natsServer` options for its one server today: give it a way to run
 *    on the cluster instead (the processes' `KEEL_NATS_URL` is a comma-separated list of the
 *    three nodes' URLs; the test process's transport takes the same list).
 * 2. `runClusterNodeLost` below: `runNatsOutage(shop, { ...options, outage: () => cluster.kill9(node) })`
 *    with `node` the one most clients are connected to (nats-server's /connz, or node 0 after
 *    starting every process against node 0 first), so the loss moves connections for real.
 * 3. test/chaos/shop.test.ts: turn its `it.todo('... a cluster node lost ...')` into an `it` with
 *    the same assertions as the NATS restart (0 TIMEOUT never delivered, 0 not-sent-but-applied,
 *    0 answered-but-lost), and add a `cluster-node` figures block to docs/resilience.md.
 */
import type { NatsOutageOptions, NatsOutageReport } from './nats-outage.js';
import type { ChaosShop } from './shop.js';

/** What the cluster helper must offer (test/support/nats-cluster.ts, on another branch). */
export interface ChaosCluster {
  /** The nodes' client URLs, `nats://127.0.0.1:<port>` each. */
  readonly urls: readonly string[];
  /** Kills node `node` with SIGKILL. */
  kill9(node: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The hook the suite calls for scenario 4: undefined until test/support/nats-cluster.ts is
 * merged and wired as the TODO above says.
 */
export const runClusterNodeLost:
  | ((shop: ChaosShop, cluster: ChaosCluster, options: Omit<NatsOutageOptions, 'outage'>) => Promise<NatsOutageReport>)
  | undefined = undefined;
