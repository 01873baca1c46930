/**
 * The shop in one process: every module in process, no broker. The same as `keel up` with no
 * topology file, written out as a starting point.
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  name: 'shop, one process',
  processes: {
    shop: { modules: ['catalog', 'inventory', 'payments', 'orders', 'notifications'] },
  },
});
