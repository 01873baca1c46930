/**
 * The databases of `npm start` (app/main.ts), read from the environment with the rules of
 * `keel start` (`keel/databases`, docs/cli.md "Data"): `DATABASE_URL_<MODULE>`, else
 * `DATABASE_URL` (PostgreSQL, a schema per module), else the embedded PGlite in `KEEL_DATA_DIR`
 * (`memory`: in memory), by default `.keel/data/<process>`. The process is `KEEL_PROCESS_NAME`,
 * else the modules of `KEEL_MODULES` (so that the processes of a split shop each have their
 * own folder), else `app`.
 */
import type { AnyModule, Logger } from 'keel';
import { openDatabases, planDatabases, type OpenDatabases } from 'keel/databases';

type Env = Readonly<Record<string, string | undefined>>;

/**
 * Opens the databases of the hosted modules that own data; undefined when none does (a gateway).
 * `logger` is told when the embedded database starts to open (it takes seconds).
 *
 * @example
 * ```ts
 * const databases = await databasesFromEnv(process.env, hostedModules, { logger });
 * const kernel = createKernel({ modules, topology, ...(databases ? { database: databases.engineOf } : {}) });
 * ```
 */
export async function databasesFromEnv(
  env: Env,
  hosted: readonly AnyModule[],
  { root = process.cwd(), logger }: { readonly root?: string; readonly logger?: Logger } = {},
): Promise<OpenDatabases | undefined> {
  const processName = env.KEEL_PROCESS_NAME?.trim() || env.KEEL_MODULES?.trim().replace(/\s*,\s*/g, '-') || undefined;
  const plan = planDatabases(hosted, { env: processName === undefined ? env : { ...env, KEEL_PROCESS_NAME: processName }, root });
  return plan.length === 0 ? undefined : openDatabases(plan, root, { logger });
}

/** Where the data is, for the start-up summary: `PGlite in .keel/data/app`, or per module when they differ. */
export function describeDatabases(databases: OpenDatabases): string {
  const byLocation = new Map<string, string[]>();
  for (const { module, engine, location } of databases.modules) {
    const key = `${engine.name === 'pglite' ? 'PGlite' : 'PostgreSQL'} ${location}`;
    byLocation.set(key, [...(byLocation.get(key) ?? []), module]);
  }
  const [only, ...others] = byLocation.keys();
  if (only !== undefined && others.length === 0) return only;
  return [...byLocation].map(([where, modules]) => `${modules.join(', ')}: ${where}`).join('; ');
}
