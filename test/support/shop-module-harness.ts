/**
 * Runs a shop module's focused tests, unchanged, in every topology (DESIGN "The promise, in one
 * test") and on both database engines: all modules in one kernel without a broker, and split
 * over a real NATS server with every module (the one under test, its real dependencies, and the
 * test's fakes and recorders) in a kernel of its own and the test calling from one more kernel
 * that hosts nothing. So every call and every event of the test crosses NATS in the split
 * topology.
 *
 * Each kernel that hosts a module owning data gets a database of its own, as a process of a
 * real deployment would: a fresh PGlite in memory, or a fresh PostgreSQL database on the
 * machine's server (test/support/databases.ts), dropped after the `describe`.
 *
 * The split topology starts one `nats-server` (JetStream on, fresh store) per
 * {@link describeInTopologies} call, and stops it after the kernels and their transports.
 *
 * Every kernel declares the shop's principal (app/principal.ts), as the shop's processes do: a
 * test calls an admin-only operation with `{ principal }` (test/support/shop-auth.ts), which every
 * module it reaches, in process or over NATS, checks against that schema.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { createKernel, silentLogger, type AnyContract, type AnyModule, type Client, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { Principal } from '../../app/principal.js';
import { pgliteUnderTest, postgresUnderTest, type EngineUnderTest } from './databases.js';
import { startNatsServer, type NatsServer } from './nats-server.js';

/**
 * Bound of a `vi.waitFor` that waits for an event to be handled. Generous, as the box may be busy:
 * a bound, not a timing.
 *
 * @example
 * ```ts
 * await vi.waitFor(() => expect(added.of('productAdded')).toContainEqual(product), EVENTUALLY);
 * ```
 */
export const EVENTUALLY = { timeout: 15_000, interval: 20 } as const;

/** The modules a test file boots with {@link BootModules}. */
export interface ModulePlacement {
  /** Every module the tests need: the module under test, its dependencies, fakes and recorders. */
  readonly modules: readonly AnyModule[];
}

/** The booted modules, as a test sees them in every topology. */
export interface ModuleApp {
  /** A client of `contract`, as a caller that is none of the booted modules. */
  client<C extends AnyContract>(contract: C): Client<C>;
}

/**
 * Boots `placement` before the tests of the enclosing `describe` and stops it after them. Call it
 * once, synchronously, in the body given to {@link describeInTopologies}.
 */
export type BootModules = (placement: ModulePlacement) => ModuleApp;

/** A running set of kernels. */
interface Running {
  client<C extends AnyContract>(contract: C): Client<C>;
  stop(): Promise<void>;
}

/** One way of placing the modules: a name for the test report, and how to start and stop them. */
interface ModuleTopology {
  readonly name: string;
  /** Per `describe`: set up what the topology needs (a NATS server) and tear it down. */
  readonly setUp: (engine: EngineUnderTest) => { start(modules: readonly AnyModule[]): Promise<Running>; tearDown(): Promise<void> };
}

/** The database option of a kernel hosting `hosted`: a fresh one when any of them owns data. */
async function databaseFor(engine: EngineUnderTest, hosted: readonly AnyModule[]) {
  return hosted.some((module) => module.data !== undefined) ? { database: await engine.fresh() } : {};
}

const IN_PROCESS: ModuleTopology = {
  name: 'in process',
  setUp: (engine) => ({
    start: async (modules) => {
      const kernel = createKernel({ modules, principal: Principal, ...(await databaseFor(engine, modules)) });
      await kernel.start();
      return { client: (contract) => kernel.client(contract), stop: () => kernel.stop() };
    },
    tearDown: async () => {},
  }),
};

let splitCount = 0;

const SPLIT_OVER_NATS: ModuleTopology = {
  name: 'split over NATS',
  setUp: (engine) => {
    let server: Promise<NatsServer> | undefined;
    return {
      start: async (modules) => {
        server ??= startNatsServer({ jetstream: true });
        splitCount += 1;
        return startSplit(modules, engine, (await server).url, `keel.modules${splitCount}`);
      },
      tearDown: async () => {
        await (await server)?.stop();
      },
    };
  },
};

/** The topologies every module test runs in. */
const TOPOLOGIES: readonly ModuleTopology[] = [IN_PROCESS, SPLIT_OVER_NATS];

/** The database engines every module test runs on. */
const ENGINES: readonly (() => EngineUnderTest)[] = [pgliteUnderTest, postgresUnderTest];

/**
 * Starts one kernel per module, each with its own NATS transport under `prefix` and, when the
 * module owns data, its own database, in dependency order, then a kernel that hosts nothing for
 * the test's calls. Stops everything it started if one start fails.
 */
async function startSplit(modules: readonly AnyModule[], engine: EngineUnderTest, url: string, prefix: string): Promise<Running> {
  const started: { kernel: Kernel; transport: Transport }[] = [];
  const stop = async (): Promise<void> => {
    const failures: unknown[] = [];
    for (const { kernel } of [...started].reverse()) await kernel.stop().catch((error: unknown) => failures.push(error));
    for (const { transport } of started) await transport.close().catch((error: unknown) => failures.push(error));
    if (failures.length > 0) throw new AggregateError(failures, 'stopping the split modules failed');
  };
  const startKernel = async (host: readonly string[]): Promise<Kernel> => {
    const transport = await createNatsTransport({ servers: url, prefix, name: `test-${host.join('-') || 'caller'}`, logger: silentLogger });
    const hosted = modules.filter((module) => host.includes(module.name));
    const kernel = createKernel({ modules, topology: { host, transport }, principal: Principal, logger: silentLogger, ...(await databaseFor(engine, hosted)) });
    started.push({ kernel, transport });
    await kernel.start();
    return kernel;
  };
  try {
    for (const module of dependencyOrder(modules)) await startKernel([module.name]);
    const caller = await startKernel([]);
    return { client: (contract) => caller.client(contract), stop };
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
}

/** `modules`, each after the modules it depends on (the kernel refuses cycles and unknown names itself). */
function dependencyOrder(modules: readonly AnyModule[]): AnyModule[] {
  const order: AnyModule[] = [];
  const byName = new Map(modules.map((module) => [module.name, module]));
  const visit = (module: AnyModule): void => {
    if (order.includes(module)) return;
    for (const contract of module.dependsOn as readonly AnyContract[]) {
      const dependency = byName.get(contract.name);
      if (dependency !== undefined && dependency !== module) visit(dependency);
    }
    if (!order.includes(module)) order.push(module);
  };
  for (const module of modules) visit(module);
  return order;
}

/**
 * Declares `body` once per topology and engine, as `<name> (<topology>, <engine>)`. The body must
 * not depend on either: it boots its modules with the `boot` it gets and talks to them through
 * clients.
 *
 * @example
 * ```ts
 * describeInTopologies('catalog - products', (boot) => {
 *   const added = eventRecorder(catalog);
 *   const app = boot({ modules: [catalogModule, added.module] });
 *
 *   it('catalog - addProduct announces productAdded', async () => {
 *     const product = await app.client(catalog).addProduct({ sku: 'LAMP-1', name: 'Desk lamp', priceCents: 2450 }, AS_ADMIN);
 *     await vi.waitFor(() => expect(added.of('productAdded')).toContainEqual(product), EVENTUALLY);
 *   });
 * });
 * ```
 */
export function describeInTopologies(name: string, body: (boot: BootModules) => void): void {
  for (const topology of TOPOLOGIES) {
    for (const makeEngine of ENGINES) {
      const engine = makeEngine();
      describeIn(`${name} (${topology.name}, ${engine.name})`, topology, engine, body);
    }
  }
}

function describeIn(title: string, topology: ModuleTopology, engine: EngineUnderTest, body: (boot: BootModules) => void): void {
  describe(title, () => {
    const setting = topology.setUp(engine);
    let running: Running | undefined;
    let booted = false;
    afterAll(async () => {
      try {
        await running?.stop();
      } finally {
        try {
          await setting.tearDown();
        } finally {
          await engine.cleanup();
        }
      }
    });
    body((placement) => {
      if (booted) throw new Error('boot() runs once per describeInTopologies body');
      booted = true;
      beforeAll(async () => {
        running = await setting.start(placement.modules);
      });
      return {
        client: <C extends AnyContract>(contract: C): Client<C> => {
          if (running === undefined) throw new Error('the modules did not boot; see the beforeAll error');
          return running.client(contract);
        },
      };
    });
  });
}
