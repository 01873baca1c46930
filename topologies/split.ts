/**
 * The shop split the way a team might run it: the storefront (catalog and orders) together,
 * the back office (inventory and payments) together, notifications alone. One instance each:
 * the example modules keep their data in memory, so a second replica of a process would hold
 * data of its own. Raise `replicas` only for modules whose state lives outside the process.
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
