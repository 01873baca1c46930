/**
 * `keel db`: the group of commands on the data of the modules that own it.
 */
import { defineCommand } from '../command.js';

export default defineCommand({
  meta: {
    name: 'db',
    description: 'Apply and show the migrations of the modules that own data',
    examples: ['keel db status', 'keel db migrate', 'DATABASE_URL=postgres://keel@db.internal:5432/shop keel db migrate --module orders'],
  },
  subCommands: {
    migrate: () => import('./db-migrate.js').then((loaded) => loaded.default),
    status: () => import('./db-status.js').then((loaded) => loaded.default),
  },
});
