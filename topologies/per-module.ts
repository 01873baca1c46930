/**
 * The shop with every module in its own process, all talking over NATS.
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  name: 'shop, one process per module',
  processes: {
    catalog: { modules: ['catalog'] },
    inventory: { modules: ['inventory'] },
    payments: { modules: ['payments'] },
    orders: { modules: ['orders'] },
    notifications: { modules: ['notifications'] },
  },
});
