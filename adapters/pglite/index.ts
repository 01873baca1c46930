/**
 * keel/pglite — the embedded database: PGlite, PostgreSQL compiled to WebAssembly, in this
 * process, with no server. The same SQL as production PostgreSQL. `npm start`, new apps and
 * tests use it; production uses `keel/postgres`.
 *
 * One PGlite per process serves every module that owns data, each in its own schema. It runs
 * one transaction at a time, so the kernel refuses (with what to do) a query of a module made
 * while a module that called it holds a transaction.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createPGliteDatabase } from 'keel/pglite';
 *
 * const database = await createPGliteDatabase({ dataDir: '.keel/data' }); // or {} for in memory
 * const kernel = createKernel({ modules, database });
 * await kernel.start();
 * await kernel.stop();
 * await database.close();
 * ```
 *
 * @module
 */
export { createPGliteDatabase, type PGliteDatabaseOptions } from './database.js';
