/**
 * The two database engines every data test runs against: the embedded PGlite, in memory, and
 * the machine's real PostgreSQL (127.0.0.1:5432, trust auth; KEEL_TEST_POSTGRES_URL overrides),
 * in a database created for the test file and dropped after it. A PostgreSQL that cannot be
 * reached fails the test with what to do, never a skip.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import type { DatabaseEngine } from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import { createPostgresDatabase } from 'keel/postgres';

/** The server tests create their databases on. */
export const TEST_POSTGRES_URL = process.env['KEEL_TEST_POSTGRES_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A database made for one test file: its URL, and how to drop it. */
export interface TestDatabase {
  readonly url: string;
  drop(): Promise<void>;
}

async function admin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_POSTGRES_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${TEST_POSTGRES_URL} (${(error as Error).message}). The data tests need it: start it ` +
        '(pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), or set KEEL_TEST_POSTGRES_URL.',
    );
  }
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Creates an empty database on the test server; drop it in afterAll. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `keel_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  await admin((client) => client.query(`create database ${name}`));
  const url = new URL(TEST_POSTGRES_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => admin((client) => client.query(`drop database if exists ${name} with (force)`)).then(() => undefined),
  };
}

/** One engine under test: how to make a fresh database, and how to clean up after the file. */
export interface EngineUnderTest {
  readonly name: 'pglite' | 'postgres';
  /** A new, empty database: a fresh PGlite in memory, or a fresh PostgreSQL database. */
  fresh(): Promise<DatabaseEngine>;
  /** Closes every engine made, and drops the PostgreSQL databases. */
  cleanup(): Promise<void>;
}

export function pgliteUnderTest(): EngineUnderTest {
  const made: DatabaseEngine[] = [];
  return {
    name: 'pglite',
    fresh: async () => {
      const engine = await createPGliteDatabase();
      made.push(engine);
      return engine;
    },
    cleanup: async () => {
      await Promise.all(made.map((engine) => engine.close()));
    },
  };
}

export function postgresUnderTest(): EngineUnderTest {
  const made: { engine: DatabaseEngine; database: TestDatabase }[] = [];
  return {
    name: 'postgres',
    fresh: async () => {
      const database = await createTestDatabase();
      const engine = createPostgresDatabase({ url: database.url });
      made.push({ engine, database });
      return engine;
    },
    cleanup: async () => {
      for (const { engine, database } of made) {
        await engine.close();
        await database.drop();
      }
    },
  };
}

/** Both engines, for describe.each. */
export function enginesUnderTest(): EngineUnderTest[] {
  return [pgliteUnderTest(), postgresUnderTest()];
}

/**
 * Schema `schema`'s migration lock (a PostgreSQL advisory lock key, as text), computed here as
 * kernel/migrations.ts does, not imported from it: every process must agree on it, so a test
 * that holds it as "another instance" also checks the key did not change.
 */
export function migrationLockKey(schema: string): string {
  return BigInt.asIntN(64, BigInt(`0x${createHash('sha256').update(`keel.migrate.${schema}`).digest('hex').slice(0, 16)}`)).toString();
}
