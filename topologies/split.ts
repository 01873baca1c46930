/**
 * The shop split the way a team might run it: the storefront (catalog and orders) together,
 * the back office (inventory and payments) together, notifications alone. One instance each:
 * without DATABASE_URL each process keeps its modules' data in its own embedded database
 * (.keel/data/<process>), which serves one process, so keel up refuses a second replica of it.
 * Raise `replicas` only where the data lives outside the process (PostgreSQL, DATABASE_URL).
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  name: 'shop, split',
  processes: {
    storefront: { modules: ['catalog', 'orders'] },
    'back-office': { modules: ['inventory', 'payments'] },
    notifications: { modules: ['notifications'] },
  },
});
