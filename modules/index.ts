/**
 * The shop's application manifest: every module of the application. Where each one runs is
 * decided at start-up (the topology), never here.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { modules } from './modules/index.js';
 *
 * const kernel = createKernel({ modules });
 * await kernel.start();
 * ```
 *
 * @module
 */
import { catalogModule } from './catalog/module.js';
import { inventoryModule } from './inventory/module.js';
import { notificationsModule } from './notifications/module.js';
import { ordersModule } from './orders/module.js';
import { paymentsModule } from './payments/module.js';

/**
 * Every module of the shop.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, topology: { host: ['orders'], transport } });
 * ```
 */
export const modules = [catalogModule, inventoryModule, paymentsModule, ordersModule, notificationsModule] as const;
