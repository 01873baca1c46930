/**
 * Starts a real three-node `nats-server` cluster for tests: loopback only, free ports, routes
 * between every node, JetStream on each (one store directory per node in one temporary folder),
 * a `server_name` per node and one cluster name. A node can be killed with SIGKILL, as `kill -9`
 * would, and started again on its ports and store. No mocked bus stands in for NATS (STYLE.md).
 *
 * Clusters started from a vitest file stop by themselves after that file (a file-level
 * `afterAll`), and every node is killed when the test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager, StorageType, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type ConnectionOptions } from '@nats-io/transport-node';
import { acceptsConnections, freePort } from '../../cli/nats-server.js';

/** Options of {@link startNatsCluster}. */
export interface NatsClusterOptions {
  /** Binary to run. Default: `nats-server` from PATH, or `KEEL_NATS_SERVER_BIN`. */
  readonly binary?: string;
  /** How long to wait for every node to accept connections and JetStream to answer (default 30 000 ms). */
  readonly startTimeoutMs?: number;
  /** Cluster name (default `keel-test`). */
  readonly name?: string;
}

/** One node of a {@link NatsCluster}. */
export interface NatsClusterNode {
  /** `n1`, `n2`, `n3`: its `server_name`, as JetStream names it in stream info. */
  readonly name: string;
  /** `nats://127.0.0.1:<port>` */
  readonly url: string;
  readonly port: number;
  /** The port of its cluster routes. */
  readonly routePort: number;
  /** Its JetStream store directory (kept across a kill and a restart). */
  readonly storeDir: string;
  /** True while its process runs. */
  readonly running: boolean;
  /** What it printed since it last started (its first 64 KiB). */
  output(): string;
}

/** A running test cluster. */
export interface NatsCluster {
  readonly name: string;
  readonly nodes: readonly NatsClusterNode[];
  /** Every node's client URL, in node order: give them all to a client. */
  readonly urls: readonly string[];
  /** The node named `name` (`n1`…) or listening on the port of `url`. */
  node(nameOrUrl: string): NatsClusterNode;
  /** Kills a node with SIGKILL (no lame duck mode, no flush) and waits for its process to exit. */
  kill9(node: NatsClusterNode | string): Promise<void>;
  /** Starts a killed node again on its ports and store; resolves once it accepts connections. */
  restart(node: NatsClusterNode | string): Promise<void>;
  /** Stops every node (SIGTERM, then SIGKILL after 5 s) and removes the store folder. Idempotent. */
  stop(): Promise<void>;
}

const running = new Set<ClusterNode>();
const clusters = new Set<NatsCluster>();

process.once('exit', () => {
  for (const node of running) node.killNow();
});

if (process.env['VITEST'] !== undefined) {
  const { afterAll } = await import('vitest');
  try {
    afterAll(async () => {
      await Promise.all([...clusters].map((cluster) => cluster.stop()));
    });
  } catch {
    // imported outside a test file's collection; the exit hook still kills the nodes
  }
}

/**
 * Starts three `nats-server` nodes routed to each other, with JetStream clustered across them,
 * and resolves once each accepts connections and the cluster can place a stream of three
 * replicas (a meta leader is elected and has heard from every peer).
 *
 * @example
 * ```ts
 * const cluster = await startNatsCluster();
 * const transport = await createNatsTransport({ servers: [...cluster.urls], streamReplicas: 3 });
 * await cluster.kill9('n2');
 * await cluster.restart('n2');
 * ```
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const binary = options.binary ?? process.env['KEEL_NATS_SERVER_BIN'] ?? 'nats-server';
  assertBinary(binary);
  // Another process may take a free port before a node binds it: try a few sets of ports.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnFreePorts(binary, options);
    } catch (error) {
      if (attempt >= 3 || !String(error).includes('address already in use')) throw error;
    }
  }
}

async function startOnFreePorts(binary: string, options: NatsClusterOptions): Promise<NatsCluster> {
  const name = options.name ?? 'keel-test';
  const directory = mkdtempSync(join(tmpdir(), 'keel-nats-cluster-'));
  const ports = await distinctFreePorts(6);
  const nodes = [0, 1, 2].map((index) => new ClusterNode(binary, `n${index + 1}`, ports[index] as number, ports[index + 3] as number, directory));
  for (const node of nodes) node.writeConfig(name, nodes.filter((other) => other !== node).map((other) => other.routePort));
  const cluster = new ClusterImpl(name, nodes, directory);
  clusters.add(cluster);
  const deadline = Date.now() + (options.startTimeoutMs ?? 30_000);
  try {
    await Promise.all(nodes.map((node) => node.start(deadline)));
    await cluster.jetStreamReady(deadline);
  } catch (error) {
    await cluster.stop();
    throw error;
  }
  return cluster;
}

async function distinctFreePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

function assertBinary(binary: string): void {
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `Cannot run "${binary}" (${probe.error?.message ?? probe.stderr.trim()}). The NATS cluster tests need a real nats-server (2.9 or later) on PATH: ` +
        'install it with `apt-get install nats-server` (Debian/Ubuntu), or put the binary from ' +
        'the nats-server releases on PATH, or point KEEL_NATS_SERVER_BIN at it.',
    );
  }
}

class ClusterImpl implements NatsCluster {
  readonly urls: readonly string[];
  #stopping: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly nodes: readonly ClusterNode[],
    readonly directory: string,
  ) {
    this.urls = nodes.map((node) => node.url);
  }

  node(nameOrUrl: string): ClusterNode {
    const found = this.nodes.find((node) => node.name === nameOrUrl || node.url === nameOrUrl || nameOrUrl.endsWith(`:${node.port}`));
    if (found === undefined) throw new Error(`No node ${nameOrUrl} in cluster ${this.name} (${this.nodes.map((node) => node.name).join(', ')}).`);
    return found;
  }

  #resolve(node: NatsClusterNode | string): ClusterNode {
    return this.node(typeof node === 'string' ? node : node.name);
  }

  kill9(node: NatsClusterNode | string): Promise<void> {
    return this.#resolve(node).kill('SIGKILL');
  }

  restart(node: NatsClusterNode | string): Promise<void> {
    return this.#resolve(node).start(Date.now() + 15_000);
  }

  /**
   * Waits until JetStream answers through every node (the cluster has a meta leader), then until
   * it can place a stream on all three nodes. A meta leader answers before it has heard from
   * every peer; a stream of three replicas made in that window fails with "no suitable peers
   * for placement", so a throwaway R3 stream, made and deleted, is the signal.
   */
  async jetStreamReady(deadline: number): Promise<void> {
    await this.#everyNodeAnswers(deadline);
    await this.#placesReplicas(deadline);
  }

  #placesReplicas(deadline: number): Promise<void> {
    return retryJetStream(deadline, { servers: [...this.urls], timeout: 2_000 }, async (jsm) => {
      await jsm.streams.add({ name: 'keel_cluster_ready', subjects: ['keel.cluster.ready'], num_replicas: this.nodes.length, storage: StorageType.Memory });
      await jsm.streams.delete('keel_cluster_ready');
    }, (last) => {
      const outputs = this.nodes.map((node) => `--- ${node.name}:\n${node.output()}`).join('\n');
      return `JetStream of cluster ${this.name} could not place a stream on ${this.nodes.length} nodes (${last}). Their output:\n${outputs}`;
    });
  }

  async #everyNodeAnswers(deadline: number): Promise<void> {
    for (const node of this.nodes) {
      await retryJetStream(deadline, { servers: node.url, reconnect: false, timeout: 2_000 }, async (jsm) => {
        await jsm.getAccountInfo();
      }, (last) => `JetStream of cluster ${this.name} did not answer through ${node.name} (${last}). Its output:\n${node.output()}`);
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      await Promise.all(this.nodes.map((node) => node.kill('SIGTERM')));
      rmSync(this.directory, { recursive: true, force: true });
      clusters.delete(this);
    })();
    return this.#stopping;
  }
}

/**
 * Connects with `options` and runs `attempt` on a JetStream manager, again every 100 ms until it
 * succeeds; past `deadline`, throws the message `failure` makes of the last error.
 */
async function retryJetStream(
  deadline: number,
  options: ConnectionOptions,
  attempt: (jsm: JetStreamManager) => Promise<void>,
  failure: (last: string) => string,
): Promise<void> {
  let last: unknown;
  for (;;) {
    try {
      const nc = await connect(options);
      try {
        await attempt(await jetstreamManager(nc, { timeout: 2_000 }));
        return;
      } finally {
        await nc.close();
      }
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(failure(String(last)));
    await sleep(100);
  }
}

class ClusterNode implements NatsClusterNode {
  readonly url: string;
  readonly storeDir: string;
  readonly #config: string;
  #process: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = '';

  constructor(
    readonly binary: string,
    readonly name: string,
    readonly port: number,
    readonly routePort: number,
    directory: string,
  ) {
    this.url = `nats://127.0.0.1:${port}`;
    this.storeDir = join(directory, name, 'store');
    this.#config = join(directory, `${name}.conf`);
  }

  get running(): boolean {
    return this.#process !== undefined;
  }

  output(): string {
    return this.#output;
  }

  writeConfig(clusterName: string, routePorts: readonly number[]): void {
    const routes = routePorts.map((port) => `    nats-route://127.0.0.1:${port}`).join('\n');
    writeFileSync(
      this.#config,
      [
        `server_name: ${this.name}`,
        'host: "127.0.0.1"',
        `port: ${this.port}`,
        `jetstream { store_dir: ${JSON.stringify(this.storeDir)}, max_memory_store: 64MB, max_file_store: 1GB }`,
        'cluster {',
        `  name: ${clusterName}`,
        '  host: "127.0.0.1"',
        `  port: ${this.routePort}`,
        '  routes: [',
        routes,
        '  ]',
        '}',
        '',
      ].join('\n'),
    );
  }

  async start(deadline: number): Promise<void> {
    if (this.#process !== undefined) return;
    this.#output = '';
    const child = spawn(this.binary, ['-c', this.#config], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#process = child;
    running.add(this);
    const collect = (chunk: Buffer): void => {
      if (this.#output.length < 64 * 1024) this.#output += chunk.toString('utf8');
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exited = false;
    this.#exited = new Promise((resolve) => {
      child.once('exit', () => {
        exited = true;
        if (this.#process === child) this.#process = undefined;
        running.delete(this);
        resolve();
      });
    });
    while (Date.now() < deadline) {
      if (exited) break;
      // Its own "ready" line too: another process on a port taken meanwhile would accept connections as well.
      if (this.#output.includes('Server is ready') && (await acceptsConnections(this.port))) return;
      await sleep(25);
    }
    this.killNow();
    throw new Error(
      `nats-server ${this.name} did not accept connections on 127.0.0.1:${this.port} (${exited ? 'it exited' : 'timed out'}). Its output:\n${this.#output}`,
    );
  }

  async kill(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const child = this.#process;
    if (child === undefined) return;
    child.kill(signal);
    const force = signal === 'SIGKILL' ? undefined : setTimeout(() => child.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(force);
  }

  /** Synchronous kill, for the process exit hook. */
  killNow(): void {
    this.#process?.kill('SIGKILL');
  }
}
