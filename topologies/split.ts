/**
 * The shop split the way a team might run it: the storefront (catalog and orders) in two
 * replicas, the back office (inventory and payments) together, notifications alone.
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  name: 'shop, split',
  processes: {
    storefront: { modules: ['catalog', 'orders'], replicas: 2 },
    'back-office': { modules: ['inventory', 'payments'] },
    notifications: { modules: ['notifications'] },
  },
});
