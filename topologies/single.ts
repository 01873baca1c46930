/**
 * The shop in one process: every module in process, no broker, every operation served over
 * HTTP on port 3000 (as `npm start`). `keel up` with no topology file runs the same without
 * the gateway; this file is the starting point to copy.
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  name: 'shop, one process',
  processes: {
    shop: { modules: ['catalog', 'inventory', 'payments', 'orders', 'notifications'], http: 3000 },
  },
});
