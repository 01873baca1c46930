/**
 * The shop the chaos suite breaks: split per module over a real nats-server (a free loopback
 * port, this run's only) and a real PostgreSQL database (made for the run, dropped after), with
 * as many instances of a module as asked (separate processes, one NATS queue group), a gateway
 * process serving every operation over HTTP, and the test process as a NATS client of its own
 * (to ask `$SRV.STATS` and to make calls whose connection state it can see).
 *
 * Every process is stopped at the end, a frozen one thawed first; the exit hooks of
 * test/support/topologies.ts and nats-server.ts kill whatever a crash leaves.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { createKernel, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { Principal } from '../../../app/principal.js';
import { freePort } from '../../../cli/nats-server.js';
import { connectForStatus, readStatus, type InstanceStatus } from '../../../cli/tooling/status.js';
import { modules } from '../../../modules/index.js';
import { createTestDatabase } from '../databases.js';
import { startNatsCluster, type NatsCluster } from '../nats-cluster.js';
import { startNatsServer, type NatsServer, type NatsServerOptions } from '../nats-server.js';
import { SHOP_AUTH_ENV, bearer } from '../shop-auth.js';
import { startShopProcess, type ShopProcess } from '../topologies.js';

const MODULES = ['catalog', 'inventory', 'payments', 'orders', 'notifications'] as const;

/** What {@link startChaosShop} takes. */
export interface ChaosShopOptions {
  /** Instances of a module beyond the first (default one of each): `{ catalog: 2 }`. */
  readonly instances?: Readonly<Partial<Record<(typeof MODULES)[number], number>>>;
  /** More nats-server configuration (such as `ping_interval`). */
  readonly natsServer?: NatsServerOptions;
  /**
   * Run on a three-node nats-server cluster (test/support/nats-cluster.ts) instead of one
   * server: every process is given the three URLs, and event streams three replicas.
   */
  readonly cluster?: boolean;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** A running chaos shop. */
export interface ChaosShop {
  /** The one nats-server, unless the shop runs on a cluster. */
  readonly nats: NatsServer | undefined;
  /** The three-node cluster, when started with `cluster: true`. */
  readonly cluster: NatsCluster | undefined;
  /** What every process is given as KEEL_NATS_URL (comma-separated for a cluster). */
  readonly natsUrl: string;
  /** `http://127.0.0.1:<port>` of the gateway process. */
  readonly base: string;
  /** The `authorization` header of an admin's requests to the gateway (catalog.addProduct is for admins). */
  readonly admin: Readonly<Record<string, string>>;
  readonly prefix: string;
  /** The test process's own kernel: a pure client of every module over NATS, declaring the shop's principal (call as an admin with `{ principal }`). */
  readonly kernel: Kernel;
  readonly transport: Transport;
  /** The module processes by name (`catalog-1`, `catalog-2`, `orders-1`, ...) and `gateway`. */
  readonly processes: ReadonlyMap<string, ShopProcess>;
  /** Sends `signal` to a process (SIGSTOP, SIGCONT, SIGKILL) without waiting for anything. */
  signal(name: string, signal: NodeJS.Signals): void;
  /** Starts a stopped or killed instance again under the same name. */
  restart(name: string): Promise<void>;
  /** Runs one SQL query on the shop's database. */
  query<T extends object>(sql: string, values?: unknown[]): Promise<T[]>;
  /** Every instance of `module` that answers `$SRV.STATS` now, with its request counts. */
  instances(module: string): Promise<readonly InstanceStatus[]>;
  /** What every process printed, lines naming one of `needles`, for a failure's evidence. */
  evidence(needles: readonly string[]): string[];
  stop(): Promise<void>;
}

/**
 * Starts the split shop for a chaos scenario and resolves once the gateway is ready.
 *
 * @example
 * ```ts
 * const shop = await startChaosShop({ instances: { catalog: 2 } });
 * shop.signal('catalog-2', 'SIGSTOP');
 * // ...
 * await shop.stop();
 * ```
 */
export async function startChaosShop(options: ChaosShopOptions = {}): Promise<ChaosShop> {
  const log = options.log ?? (() => undefined);
  const cluster = options.cluster === true ? await startNatsCluster() : undefined;
  const nats = cluster === undefined ? await startNatsServer(options.natsServer) : undefined;
  const natsUrl = cluster === undefined ? (nats as NatsServer).url : cluster.urls.join(',');
  // On a cluster, event streams get a replica on each node.
  const clusterEnv: Record<string, string> = cluster === undefined ? {} : { KEEL_NATS_STREAM_REPLICAS: '3' };
  const database = await createTestDatabase();
  const prefix = `chaos${process.pid}`;
  const processes = new Map<string, ShopProcess>();
  const frozen = new Set<string>();
  const client = new pg.Client({ connectionString: database.url });
  let transport: Transport | undefined;
  let kernel: Kernel | undefined;
  const spawnInstance = (name: string, module: string) =>
    startShopProcess({ name, modules: [module], natsUrl, prefix, env: { DATABASE_URL: database.url, KEEL_DATA_DIR: '', KEEL_PROCESS_NAME: name, ...clusterEnv } });

  const stop = async (): Promise<void> => {
    for (const name of frozen) processes.get(name)?.pid !== undefined && process.kill(processes.get(name)?.pid as number, 'SIGCONT');
    await kernel?.stop().catch(() => undefined);
    await transport?.close().catch(() => undefined);
    await client.end().catch(() => undefined);
    await Promise.all([...processes.values()].map((child) => child.stop('SIGTERM', 10_000).catch(() => undefined)));
    await nats?.stop();
    await cluster?.stop();
    await database.drop().catch(() => undefined);
  };

  try {
    // One at a time: the first instance of a module makes its schema; seven processes at once on 2 cores time out.
    for (const module of MODULES) {
      for (let index = 1; index <= (options.instances?.[module] ?? 1); index++) {
        const name = `${module}-${index}`;
        processes.set(name, await spawnInstance(name, module));
        log(`${name} started`);
      }
    }
    const port = await freePort();
    processes.set(
      'gateway',
      // SHOP_AUTH_SECRET: its gateway verifies the admin's token of the writes.
      await startShopProcess({ name: 'gateway', modules: ['none'], natsUrl, prefix, env: { PORT: String(port), KEEL_PROCESS_NAME: 'gateway', ...clusterEnv, ...SHOP_AUTH_ENV } }),
    );
    const base = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 30_000;
    while ((await fetch(`${base}/readyz`).catch(() => undefined))?.status !== 200) {
      if (Date.now() > deadline) throw new Error('the gateway process did not become ready within 30 s');
      await sleep(100);
    }
    transport = await createNatsTransport({
      ...natsOptionsFromEnv({ KEEL_NATS_URL: natsUrl, KEEL_NATS_PREFIX: prefix, ...clusterEnv }),
      logger: silentLogger,
    });
    kernel = createKernel({ modules, topology: { host: [], transport }, principal: Principal, logger: silentLogger });
    await kernel.start();
    await client.connect();
    log(`shop up: ${[...processes.keys()].join(', ')}; gateway ${base}`);
    const running = { kernel, transport };
    const admin = await bearer();
    return {
      nats,
      cluster,
      natsUrl,
      base,
      admin,
      prefix,
      kernel: running.kernel,
      transport: running.transport,
      processes,
      signal: (name, signal) => {
        const pid = processes.get(name)?.pid;
        if (pid === undefined) throw new Error(`no process "${name}"`);
        process.kill(pid, signal);
        if (signal === 'SIGSTOP') frozen.add(name);
        if (signal === 'SIGCONT' || signal === 'SIGKILL') frozen.delete(name);
      },
      restart: async (name) => {
        const old = processes.get(name);
        if (old === undefined) throw new Error(`no process "${name}"`);
        await old.stop('SIGTERM', 10_000);
        processes.set(name, await spawnInstance(name, old.modules[0] as string));
      },
      query: async <T extends object>(sql: string, values: unknown[] = []) => (await client.query(sql, values)).rows as T[],
      instances: async (module) => {
        // A connection per read: the status connection does not reconnect, and nats-server may have restarted.
        const connection = await connectForStatus({ servers: natsUrl.split(',') });
        try {
          const report = await readStatus(connection, { prefix, maxWaitMs: 500 });
          return report.modules.find((entry) => entry.name === module)?.instances ?? [];
        } finally {
          await connection.close();
        }
      },
      evidence: (needles) =>
        [...processes.values()].flatMap((child) =>
          child
            .output()
            .split('\n')
            .filter((line) => needles.some((needle) => line.includes(needle)))
            .map((line) => `${child.name}: ${line.slice(0, 400)}`),
        ),
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
