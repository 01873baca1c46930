/**
 * The PGlite engine: one embedded PostgreSQL per process, a schema per module. A query outside
 * a transaction runs in one of its own, with the module's search_path set for it (PGlite has
 * one session, shared by every module of the process).
 */
import { mkdirSync } from 'node:fs';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { z } from 'zod';
import type { DatabaseEngine, QueryResult, Row, SchemaConnection, SqlRunner } from 'keel/transport';
import { parseOptions, quoteIdentifier, roleOf, schemaSetup } from 'keel/transport';

/**
 * Options of {@link createPGliteDatabase}.
 *
 * @example
 * ```ts
 * const database = await createPGliteDatabase({ dataDir: process.env.KEEL_DATA_DIR ?? '.keel/data' });
 * ```
 */
export interface PGliteDatabaseOptions {
  /** The folder of the database files, created if missing. Default: in memory, gone when the process ends. */
  readonly dataDir?: string;
}

const Schema = z
  .object({ dataDir: z.string({ error: 'must be a folder path' }).min(1, 'must be a folder path, not empty').optional() })
  .strict();

/**
 * A fresh in-memory database is initialised once per process (PGlite's initdb takes seconds)
 * and copied for the next ones from this snapshot.
 */
let template: Promise<Blob> | undefined;

async function freshInMemory(): Promise<PGlite> {
  if (template === undefined) {
    const first = await PGlite.create();
    template = first.dumpDataDir('none');
    await template.catch(() => {
      template = undefined;
    });
    return first;
  }
  return PGlite.create({ loadDataDir: await template });
}

/**
 * Opens (or creates) an embedded PostgreSQL database.
 *
 * @example
 * ```ts
 * const database = await createPGliteDatabase(); // in memory: tests
 * const kept = await createPGliteDatabase({ dataDir: '.keel/data' }); // kept across restarts
 * ```
 */
export async function createPGliteDatabase(options: PGliteDatabaseOptions = {}): Promise<DatabaseEngine> {
  const { dataDir } = parseOptions('createPGliteDatabase', Schema, options);
  if (dataDir !== undefined) mkdirSync(dataDir, { recursive: true });
  const pglite = dataDir === undefined ? await freshInMemory() : await PGlite.create({ dataDir });
  return new PGliteEngine(pglite, dataDir === undefined ? 'in memory' : dataDir);
}

class PGliteEngine implements DatabaseEngine {
  readonly name = 'pglite';
  readonly oneTransactionAtATime = true;
  readonly connections = 1;
  readonly firstStatement = true;
  #closed: Promise<void> | undefined;

  constructor(
    readonly pglite: PGlite,
    readonly location: string,
  ) {}

  async connect(schema: string): Promise<SchemaConnection> {
    await this.pglite.exec(schemaSetup(schema));
    // Every transaction runs as the module's role, in its schema: PGlite has one session for all modules.
    return new PGliteSchema(this.pglite, `set local search_path to ${quoteIdentifier(schema)}; set local role ${quoteIdentifier(roleOf(schema))}`);
  }

  async inspect(schema: string): Promise<SchemaConnection> {
    // Read only, in the schema (which may not exist), as the session's user: the module's role may not exist either.
    return new PGliteSchema(this.pglite, `set transaction read only; set local search_path to ${quoteIdentifier(schema)}`);
  }

  close(): Promise<void> {
    this.#closed ??= this.pglite.closed ? Promise.resolve() : this.pglite.close();
    return this.#closed;
  }
}

function resultOf<R extends Row>(result: { rows: unknown[]; affectedRows?: number }): QueryResult<R> {
  return { rows: result.rows as R[], rowCount: result.affectedRows || result.rows.length };
}

function runnerOf(tx: Transaction): SqlRunner {
  return {
    query: async <R extends Row = Row>(text: string, params?: readonly unknown[]) =>
      resultOf<R>(await tx.query(text, params === undefined ? undefined : [...params])),
    exec: async (script: string) => {
      await tx.exec(script);
    },
  };
}

class PGliteSchema implements SchemaConnection {
  constructor(
    readonly pglite: PGlite,
    /** What every transaction starts with: the schema's search_path, and the role or the read-only mode. */
    readonly setUp: string,
  ) {}

  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.transaction((tx) => tx.query<R>(text, params));
  }

  exec(script: string): Promise<void> {
    return this.transaction((tx) => tx.exec(script));
  }

  transaction<T>(work: (tx: SqlRunner, first?: QueryResult) => Promise<T>, first?: string): Promise<T> {
    return this.pglite.transaction(async (tx) => {
      const results = await tx.exec(first === undefined ? this.setUp : `${this.setUp}; ${first}`);
      return work(runnerOf(tx), first === undefined ? undefined : resultOf(results[results.length - 1] ?? { rows: [] }));
    });
  }

  async close(): Promise<void> {
    // The engine owns the one PGlite; a schema has nothing of its own to release.
  }
}
