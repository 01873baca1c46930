/**
 * keel/postgres — PostgreSQL through node-postgres (`pg`): one pool per module, each
 * connection's search_path set to the module's schema. `DATABASE_URL` names the database;
 * a module can have a database of its own.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createPostgresDatabase } from 'keel/postgres';
 *
 * const database = createPostgresDatabase({ url: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/shop' });
 * const kernel = createKernel({ modules, database });
 * await kernel.start(); // each data module: its schema created, its migrations applied
 * await kernel.stop();
 * await database.close();
 * ```
 *
 * @module
 */
export { createPostgresDatabase, type PostgresDatabaseOptions } from './database.js';
