/**
 * Runs the example shop in several topologies for the shop suite: child processes started
 * exactly as in production (`app/main.ts` with `KEEL_MODULES` and `KEEL_NATS_URL`), and the
 * test process as a pure client (or hosting some modules itself) over NATS. Every process that
 * hosts modules owning data has a database of its own on the engine asked for: PGlite in a
 * folder of its own (`KEEL_DATA_DIR`), or a fresh PostgreSQL database (`DATABASE_URL`), removed
 * or dropped when the shop stops.
 *
 * Child processes are bounded in number, always stopped by the harness, and killed when the
 * test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernel, silentLogger, type AnyContract, type Client, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { createPGliteDatabase } from 'keel/pglite';
import { createPostgresDatabase } from 'keel/postgres';
import { Principal } from '../../app/principal.js';
import { topologyFromEnv } from '../../app/topology.js';
import { modules } from '../../modules/index.js';
import { createTestDatabase, type TestDatabase } from './databases.js';
import type { ShopHarness } from './shop-suite.js';

/** The database engine of a shop's processes. */
export type ShopEngine = 'pglite' | 'postgres';

/** An embedded database initialised once per test process, copied for each child that needs one. */
let pgliteTemplate: Promise<string> | undefined;

/**
 * The folder of an empty embedded database, initialised once per test process (PGlite's initdb
 * takes seconds, where opening a folder takes half of one): copy it with {@link copyOfPGlite}.
 */
export function pgliteTemplateFolder(): Promise<string> {
  pgliteTemplate ??= (async () => {
    const folder = mkdtempSync(join(tmpdir(), 'keel-pglite-template-'));
    process.once('exit', () => rmSync(folder, { recursive: true, force: true }));
    const database = await createPGliteDatabase({ dataDir: folder });
    await database.close();
    return folder;
  })();
  return pgliteTemplate;
}

/**
 * A new folder holding a copy of the empty embedded database in `template`, for a child's
 * `KEEL_DATA_DIR`. Remove it once the child exited.
 *
 * @example
 * ```ts
 * const data = copyOfPGlite(await pgliteTemplateFolder());
 * const child = await startShopProcess({ ..., env: { KEEL_DATA_DIR: data.folder } });
 * await child.stop();
 * data.remove();
 * ```
 */
export function copyOfPGlite(template: string): { readonly folder: string; remove(): void } {
  const folder = mkdtempSync(join(tmpdir(), 'keel-pglite-'));
  cpSync(template, folder, { recursive: true });
  return { folder, remove: () => rmSync(folder, { recursive: true, force: true }) };
}

/** A new folder holding an empty embedded database: {@link copyOfPGlite} of {@link pgliteTemplateFolder}. */
export async function freshPGliteFolder(): Promise<{ readonly folder: string; remove(): void }> {
  return copyOfPGlite(await pgliteTemplateFolder());
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const READY_LINE = '"msg":"kernel started"';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** One `app/main.ts` process. */
export interface ShopProcess {
  readonly name: string;
  readonly modules: readonly string[];
  readonly pid: number | undefined;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** Resolves with the exit code (or the signal name) once it exited. */
  readonly exited: Promise<number | string>;
  /** Sends `signal` (default SIGTERM) and resolves with the exit code; SIGKILL after `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | string>;
}

/** What {@link startShopProcess} takes. */
export interface ShopProcessOptions {
  readonly name: string;
  /** Modules it hosts (`KEEL_MODULES`). */
  readonly modules: readonly string[];
  readonly natsUrl: string;
  /** Subject prefix (`KEEL_NATS_PREFIX`). */
  readonly prefix: string;
  /** How long to wait for "kernel started" (default 60 000 ms). */
  readonly readyTimeoutMs?: number;
  /** More environment: the database (`DATABASE_URL`, `KEEL_DATA_DIR`; default `KEEL_DATA_DIR=memory`). */
  readonly env?: Readonly<Record<string, string>>;
}

/**
 * Starts `app/main.ts` in a child process (`node --import tsx --conditions=keel-source`) and
 * resolves once its kernel started. Rejects with the process output if it exits or is not
 * ready in time.
 *
 * @example
 * ```ts
 * const orders = await startShopProcess({ name: 'orders', modules: ['orders'], natsUrl: server.url, prefix: 'keel' });
 * // ...
 * expect(await orders.stop('SIGTERM')).toBe(0);
 * ```
 */
export async function startShopProcess(options: ShopProcessOptions): Promise<ShopProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'app/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      // Not the developer's: a shell that exported it (README's auth section) would change what these processes log and refuse.
      SHOP_AUTH_SECRET: '',
      KEEL_MODULES: options.modules.join(','),
      KEEL_NATS_URL: options.natsUrl,
      KEEL_NATS_PREFIX: options.prefix,
      KEEL_LOG_LEVEL: 'info',
      DATABASE_URL: '',
      KEEL_DATA_DIR: 'memory',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    if (output.length < 256 * 1024) output += chunk.toString('utf8');
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? 'unknown');
    });
  });

  const process_: ShopProcess = {
    name: options.name,
    modules: options.modules,
    pid: child.pid,
    output: () => output,
    exited,
    stop: async (signal = 'SIGTERM', graceMs = 20_000) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const force = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(force);
      return code;
    },
  };

  const timeoutMs = options.readyTimeoutMs ?? 60_000;
  const ready = await new Promise<boolean>((resolve) => {
    const check = (): void => {
      if (output.includes(READY_LINE)) finish(true);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    const finish = (ok: boolean): void => {
      clearTimeout(timer);
      child.stdout?.off('data', check);
      resolve(ok);
    };
    child.stdout?.on('data', check);
    void exited.then(() => finish(output.includes(READY_LINE)));
    check();
  });
  if (!ready) {
    await process_.stop('SIGKILL');
    throw new Error(`Shop process "${options.name}" (${options.modules.join(', ')}) did not start within ${timeoutMs} ms. Output:\n${output}`);
  }
  return process_;
}

/** A placement: which modules each child process hosts, and which the test process hosts itself. */
export interface ShopTopology {
  /** One entry per child process. */
  readonly processes: readonly { readonly name: string; readonly modules: readonly string[] }[];
  /** Modules the test process hosts (empty: it is a pure client). */
  readonly local: readonly string[];
}

/** Every module in its own process; the test process is a pure client. */
export const ONE_PROCESS_PER_MODULE: ShopTopology = {
  processes: modules.map((module) => ({ name: module.name, modules: [module.name] })),
  local: [],
};

/** A mix: two child processes with some modules each, and the test process hosting the rest. */
export const MIXED: ShopTopology = {
  processes: [
    { name: 'stock-and-money', modules: ['inventory', 'payments'] },
    { name: 'orders', modules: ['orders'] },
  ],
  local: ['catalog', 'notifications'],
};

/** NATS credentials of a shop's processes, for a server that requires them (default: none). */
export interface ShopNatsAccess {
  /** More environment of one child process, by its name (`KEEL_NATS_USER`, `KEEL_NATS_PASSWORD`, `KEEL_NATS_INBOX_PREFIX`). */
  readonly processEnv?: (name: string) => Readonly<Record<string, string>>;
  /** More environment of the test process's own NATS connection (read as the children read theirs). */
  readonly localEnv?: Readonly<Record<string, string>>;
}

/** A running split shop, as the shop suite sees it, plus its parts for tests that need them. */
export interface SplitShop extends ShopHarness {
  readonly processes: readonly ShopProcess[];
  readonly kernel: Kernel;
  readonly transport: Transport;
  /** Exit codes of the child processes, once `stop()` resolved. */
  readonly exitCodes: Map<string, number | string>;
}

/**
 * Boots the shop in `topology` against the NATS server at `natsUrl`, under its own subject
 * `prefix` so that several topologies can share one server, each process with a database of its
 * own on `engine`. The test process's kernel declares the shop's principal, as the children do
 * (keel.config.ts), so that its admin calls (`{ principal }`) reach them over NATS.
 *
 * @example
 * ```ts
 * describeShopSuite('every module in its own process', () => bootShop(ONE_PROCESS_PER_MODULE, server.url, 'keel.split', 'postgres'));
 * ```
 */
export async function bootShop(
  topology: ShopTopology,
  natsUrl: string,
  prefix: string,
  engine: ShopEngine,
  access: ShopNatsAccess = {},
): Promise<SplitShop> {
  const processes: ShopProcess[] = [];
  const exitCodes = new Map<string, number | string>();
  const databases: TestDatabase[] = [];
  const folders: { remove(): void }[] = [];
  let kernel: Kernel | undefined;
  let transport: Transport | undefined;
  let database: DatabaseEngine | undefined;
  const stopChildren = async (): Promise<void> => {
    await Promise.all(
      processes.map(async (child) => {
        exitCodes.set(child.name, await child.stop('SIGTERM'));
      }),
    );
  };
  const dropDatabases = async (): Promise<void> => {
    await database?.close();
    for (const made of databases) await made.drop();
    for (const folder of folders) folder.remove();
  };
  /** A database of its own for one process: an embedded one in a folder of its own, or a fresh PostgreSQL database. */
  const freshDatabase = async (): Promise<{ env: Record<string, string>; url?: string }> => {
    if (engine === 'pglite') {
      const data = await freshPGliteFolder();
      folders.push(data);
      return { env: { KEEL_DATA_DIR: data.folder } };
    }
    const made = await createTestDatabase();
    databases.push(made);
    return { env: { DATABASE_URL: made.url }, url: made.url };
  };
  try {
    const started = await Promise.allSettled(
      topology.processes.map(async (placement) =>
        startShopProcess({ ...placement, natsUrl, prefix, env: { ...(await freshDatabase()).env, ...access.processEnv?.(placement.name) } }),
      ),
    );
    for (const result of started) if (result.status === 'fulfilled') processes.push(result.value);
    const failure = started.find((result) => result.status === 'rejected');
    if (failure !== undefined) throw (failure as PromiseRejectedResult).reason;

    if (topology.local.length > 0) {
      const local = await topologyFromEnv({ KEEL_MODULES: topology.local.join(','), KEEL_NATS_URL: natsUrl, KEEL_NATS_PREFIX: prefix, ...access.localEnv });
      transport = local.transport as Transport;
      const { url } = await freshDatabase();
      database = url === undefined ? await createPGliteDatabase() : createPostgresDatabase({ url });
      kernel = createKernel({ modules, topology: local, principal: Principal, logger: silentLogger, database });
    } else {
      const options = natsOptionsFromEnv({ KEEL_NATS_URL: natsUrl, KEEL_NATS_PREFIX: prefix, ...access.localEnv });
      transport = await createNatsTransport({ ...options, logger: silentLogger });
      kernel = createKernel({ modules, topology: { host: [], transport }, principal: Principal, logger: silentLogger });
    }
    await kernel.start();
  } catch (error) {
    await kernel?.stop();
    await transport?.close();
    await stopChildren();
    await dropDatabases();
    throw error;
  }
  const running = kernel;
  const connection = transport;
  return {
    processes,
    kernel: running,
    transport: connection,
    exitCodes,
    client: <C extends AnyContract>(contract: C): Client<C> => running.client(contract),
    stop: async () => {
      await running.stop();
      await connection.close();
      await stopChildren();
      await dropDatabases();
    },
  };
}
