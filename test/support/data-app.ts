/**
 * A small application whose two modules own data (test/fixtures/data: the ledger writes entries
 * and emits entryAdded, the audit records them) and one that owns none (echo), in a temporary
 * folder whose `keel` and `zod` resolve to this repository, for tests that run the CLI on data:
 * `keel start`, `keel db`, `keel deploy`.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { createTestDatabase, type TestDatabase } from './databases.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

/** The application on disk. */
export interface DataApp {
  /** The application folder (package.json, modules/). */
  readonly root: string;
  /** A migrations folder of a module: `migrationsOf('audit')` is `<root>/modules/audit/migrations`. */
  migrationsOf(module: 'audit' | 'ledger'): string;
  /** Removes the folder. */
  remove(): void;
}

/** A module that owns no data. */
const ECHO_MODULE = `import { z } from 'zod';
import { defineContract, defineModule, operation } from 'keel';

export const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: { echo: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }), idempotent: true }) },
});

export const echoModule = defineModule({ contract: echo, create: () => ({ handlers: { echo: ({ text }) => ({ text }) } }) });
`;

/**
 * Writes the application: `modules/modules.ts` (a copy of the fixture's), each module's
 * migrations beside it (so that a test may change them), `modules/echo.ts`, and a manifest of
 * the three.
 *
 * @example
 * ```ts
 * const app = createDataApp();
 * const { code } = await runKeel(['db', 'status'], { cwd: app.root, env: { KEEL_DATA_DIR: 'memory' } });
 * app.remove();
 * ```
 */
export function createDataApp(): DataApp {
  const parent = mkdtempSync(join(tmpdir(), 'keel-data-app-'));
  const root = join(parent, 'data-app');
  cpSync(join(repository, 'test/fixtures/data'), join(root, 'modules'), { recursive: true });
  writeFileSync(
    join(root, 'package.json'),
    `${JSON.stringify({ name: 'data-app', version: '0.1.0', private: true, type: 'module' }, null, 2)}\n`,
  );
  writeFileSync(join(root, 'modules/echo.ts'), ECHO_MODULE);
  writeFileSync(
    join(root, 'modules/index.ts'),
    [
      "import type { AnyModule } from 'keel';",
      "import { echoModule } from './echo.js';",
      "import { auditModule, ledgerModule } from './modules.js';",
      '',
      'export const modules: readonly AnyModule[] = [auditModule, ledgerModule, echoModule];',
      '',
    ].join('\n'),
  );
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(repository, join(root, 'node_modules', 'keel'), 'dir');
  symlinkSync(join(repository, 'node_modules', 'zod'), join(root, 'node_modules', 'zod'), 'dir');
  return {
    root,
    migrationsOf: (module) => join(root, 'modules', module, 'migrations'),
    remove: () => rmSync(parent, { recursive: true, force: true }),
  };
}

/** What the data tests of the CLI make, and remove after their file. */
export interface DataTestbed {
  /** A new application (createDataApp). */
  app(): DataApp;
  /** A new database on the machine's PostgreSQL, with its `location` as keel prints it (host, port and name). */
  database(): Promise<TestDatabase & { readonly location: string }>;
  /** Removes every application and drops every database made. */
  cleanup(): Promise<void>;
}

/**
 * Applications and databases for one test file, cleaned up together.
 *
 * @example
 * ```ts
 * const testbed = dataTestbed();
 * afterAll(() => testbed.cleanup());
 * const app = testbed.app();
 * ```
 */
export function dataTestbed(): DataTestbed {
  const apps: DataApp[] = [];
  const databases: TestDatabase[] = [];
  return {
    app: () => {
      const app = createDataApp();
      apps.push(app);
      return app;
    },
    database: async () => {
      const database = await createTestDatabase();
      databases.push(database);
      const url = new URL(database.url);
      return { ...database, location: `${url.host}${url.pathname}` };
    },
    cleanup: async () => {
      for (const app of apps.splice(0)) app.remove();
      for (const database of databases.splice(0)) await database.drop();
    },
  };
}

/** POSTs `input` to the gateway at `url` and returns the answer, which must be a 200. */
export async function call(url: string | undefined, path: string, input: unknown): Promise<any> {
  const response = await fetch(`${url}/${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(input) });
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
  return body;
}

/** Resolves once `probe` answers true; throws, naming `what`, after `timeoutMs`. */
export async function until(probe: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Rows of `sql` in the database at `url`. */
export async function query(url: string, sql: string): Promise<any[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}
