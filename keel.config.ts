/**
 * The shop's configuration, read by `keel start`, `keel up`, `keel deploy` and `npm start`
 * (app/main.ts). The gateway's defaults are safe (docs/security.md, "A hardened gateway"): this
 * file only says what the shop wants otherwise, and who its callers are.
 */
import { defineConfig } from 'keel/config';
import { Principal, authenticatorFromEnv } from './app/principal.js';

export default defineConfig({
  // The caller identity every process checks (context.principal; admins may add products, restock and set prices;
  // a customer, whose token's subject is its customerId, may list, read and cancel its own orders and read its payments).
  principal: Principal,
  gateway: {
    // The shop's pure reads, also offered as GET ?input=<json> (its other idempotent operations change
    // state). One list for every process: a gateway exposing some modules offers GET for theirs.
    getOperations: [
      'catalog.getProduct',
      'catalog.listProducts',
      'inventory.getStock',
      'orders.getOrder',
      'orders.listOrders',
      'payments.getPayment',
      'payments.listPayments',
      'notifications.listNotifications',
    ],
    openapi: { title: 'keel shop', description: 'The example shop of keel: catalog, inventory, payments, orders and notifications.' },
    // Bearer JWTs signed with SHOP_AUTH_SECRET (`npm run token -- ada admin`); without it every call is anonymous.
    authenticate: authenticatorFromEnv(process.env),
    // A browser front end on a development server (Vite's default port) may call the shop's API.
    cors: { origins: ['http://localhost:5173', 'http://127.0.0.1:5173'] },
    // Behind a load balancer, name it (an address, a CIDR range or a hop count) so that the rate
    // limit counts each shopper, not the balancer: trustProxy: 1,
  },
});
