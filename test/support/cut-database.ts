/**
 * A module served with its data in a PostgreSQL database of its own, reached through a proxy the
 * test cuts, called in one process or over NATS (from a kernel that hosts none of it): the setting
 * of the tests of what a keyed call does while its database is away
 * (test/idempotency-unreachable.test.ts, test/idempotency-outcome-unrecorded.test.ts).
 *
 * @example
 * ```ts
 * const rig = cutDatabaseRig('unreach');
 * afterAll(() => rig.close());
 * describe.each(Object.entries(rig.vias))('…, %s', (_name, via) => {
 *   it('…', async () => {
 *     const { proxy, caller } = await rig.start(via, { served: tallyWithData, elsewhere: tallyInMemory });
 *     await proxy.cut();
 *   });
 * });
 * ```
 */
import { randomUUID } from 'node:crypto';
import { createKernel, silentLogger, type AnyModule, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import { CuttableProxy } from './cuttable-proxy.js';
import { createTestDatabase, type TestDatabase } from './databases.js';
import { startNatsServer, type NatsServer } from './nats-server.js';

/** How a rig's callee is reached: in its own process (no transport), or over NATS under `prefix`. */
export type Via = (prefix: string) => Promise<Transport | undefined>;

/** What {@link CutDatabaseRig.start} made. */
export interface CutDatabaseApp {
  readonly database: TestDatabase;
  readonly proxy: CuttableProxy;
  /** The kernel serving the module, on the proxied database. */
  readonly callee: Kernel;
  /** The kernel to call it from: the callee itself in one process, another kernel over NATS. */
  readonly caller: Kernel;
}

export interface CutDatabaseRig {
  readonly vias: { readonly 'in one process': Via; readonly 'over NATS': Via };
  /** Serves `served` on a new database behind a new proxy; over NATS, `elsewhere` (same contract) is the caller's. */
  start(via: Via, modules: { readonly served: AnyModule; readonly elsewhere: AnyModule }): Promise<CutDatabaseApp>;
  /** Stops every kernel and transport, closes the proxies, drops the databases, stops the nats-server. */
  close(): Promise<void>;
}

/** A rig whose NATS subjects start with `prefix` (one per application it starts). */
export function cutDatabaseRig(prefix: string): CutDatabaseRig {
  const databases: TestDatabase[] = [];
  const proxies: CuttableProxy[] = [];
  const kernels: Kernel[] = [];
  const transports: Transport[] = [];
  let nats: NatsServer | undefined;
  const vias = {
    'in one process': async (): Promise<Transport | undefined> => undefined,
    'over NATS': async (subjects: string): Promise<Transport | undefined> => {
      nats ??= await startNatsServer();
      const transport = await createNatsTransport({ servers: nats.url, prefix: subjects, logger: silentLogger });
      transports.push(transport);
      return transport;
    },
  };
  return {
    vias,
    async start(via, { served, elsewhere }) {
      const database = await createTestDatabase();
      databases.push(database);
      const url = new URL(database.url);
      const proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port) });
      proxies.push(proxy);
      await proxy.open();
      url.port = String(proxy.port);
      const subjects = `${prefix}${randomUUID().slice(0, 8)}`;
      const transport = await via(subjects);
      const callee = createKernel({
        modules: [served],
        logger: silentLogger,
        database: createPostgresDatabase({ url: url.toString(), connectTimeoutMs: 2_000 }),
        ...(transport === undefined ? {} : { topology: { transport } }),
      });
      await callee.start();
      kernels.push(callee);
      let caller = callee;
      if (transport !== undefined) {
        caller = createKernel({ modules: [elsewhere], logger: silentLogger, topology: { host: [], transport: (await via(subjects)) as Transport } });
        await caller.start();
        kernels.push(caller);
      }
      return { database, proxy, callee, caller };
    },
    async close() {
      for (const proxy of proxies) await proxy.open().catch(() => undefined);
      for (const kernel of kernels.reverse()) await kernel.stop();
      for (const transport of transports) await transport.close();
      for (const proxy of proxies) await proxy.cut();
      for (const database of databases) await database.drop();
      await nats?.stop();
    },
  };
}
