/**
 * The database of `npm start` (app/main.ts), read from the environment with the rules of
 * `keel start` (docs/cli.md): `DATABASE_URL` is a PostgreSQL in which every module that owns
 * data gets its own schema; without it, the embedded PGlite keeps the data in `KEEL_DATA_DIR`
 * (`memory`: in memory, gone when the process ends), by default `.keel/data/<process>`, where
 * the process is `KEEL_PROCESS_NAME`, else the modules of `KEEL_MODULES` (so that the processes
 * of a split shop each have their own folder), else `app`.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { KeelError, KeelErrorCode, type AnyModule, type DatabaseEngine } from 'keel';

type Env = Readonly<Record<string, string | undefined>>;

/** An open database and how to close it (after the kernel stopped). */
export interface AppDatabase {
  readonly engine: DatabaseEngine;
  /** `PostgreSQL at 127.0.0.1:5432/shop`, `PGlite in .keel/data/app`, `PGlite in memory`: safe to print. */
  readonly description: string;
  close(): Promise<void>;
}

const setting = (env: Env, name: string): string | undefined => env[name]?.trim() || undefined;

/**
 * Opens the database of the hosted modules that own data; undefined when none does (a gateway).
 *
 * @example
 * ```ts
 * const database = await databaseFromEnv(process.env, hostedModules);
 * const kernel = createKernel({ modules, topology, ...(database ? { database: database.engine } : {}) });
 * ```
 */
export async function databaseFromEnv(env: Env, hosted: readonly AnyModule[], root = process.cwd()): Promise<AppDatabase | undefined> {
  if (!hosted.some((module) => module.data !== undefined)) return undefined;
  const url = setting(env, 'DATABASE_URL');
  if (url !== undefined) {
    const { createPostgresDatabase } = await import('keel/postgres');
    const engine = createPostgresDatabase({ url });
    return { engine, description: `PostgreSQL at ${engine.location}`, close: () => engine.close() };
  }
  const { createPGliteDatabase } = await import('keel/pglite');
  const dataDir = setting(env, 'KEEL_DATA_DIR');
  if (dataDir === 'memory') {
    const engine = await createPGliteDatabase();
    return { engine, description: 'PGlite in memory', close: () => engine.close() };
  }
  const process_ = (setting(env, 'KEEL_PROCESS_NAME') ?? setting(env, 'KEEL_MODULES')?.replace(/\s*,\s*/g, '-') ?? 'app').replace(/[^\w.-]+/g, '-');
  const folder = resolve(root, dataDir ?? join('.keel', 'data', process_));
  const release = holdFolder(folder);
  try {
    const engine = await createPGliteDatabase({ dataDir: folder });
    return {
      engine,
      description: `PGlite in ${dataDir ?? join('.keel', 'data', process_)}`,
      close: () => engine.close().finally(release),
    };
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * Takes the embedded database's folder for this process (`keel.lock`, holding its pid, as
 * `keel start` does): PGlite does not notice a second process on its folder, and two corrupt
 * it. A lock left by a process that is gone (a crash) is taken over.
 */
function holdFolder(folder: string): () => void {
  mkdirSync(folder, { recursive: true });
  const lock = join(folder, 'keel.lock');
  try {
    writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
  } catch {
    const holder = Number(readFileSync(lock, 'utf8').trim());
    if (isRunning(holder)) {
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `The embedded database in ${folder} is open in process ${holder}. Stop it first, or give this one another folder with KEEL_DATA_DIR.`,
      );
    }
    writeFileSync(lock, `${process.pid}\n`);
  }
  return () => rmSync(lock, { force: true });
}

function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
