/**
 * The inventory's public door: how many units of each product are on hand, and which are
 * held for orders. Other modules import this file, and only this file, from
 * `../inventory/contract.js`.
 *
 * Stock moves in two steps. `reserve` holds units for an order (available goes down, on-hand
 * does not); when the order is placed (`orders.orderPlaced`) the reservation is committed
 * and the units leave the shelf (on-hand and reserved go down). A reservation ends in one of:
 *
 * | status      | reached by                                             | stock effect                     |
 * |-------------|--------------------------------------------------------|----------------------------------|
 * | `reserved`  | `reserve`                                              | reserved += quantity             |
 * | `committed` | `orders.orderPlaced` while reserved                    | on-hand and reserved -= quantity |
 * | `released`  | `release`, or `orders.orderCancelled` while reserved   | reserved -= quantity             |
 * | `returned`  | `orders.orderCancelled` while committed                | on-hand += quantity              |
 *
 * Every transition happens at most once, so redelivered events and repeated calls change
 * nothing, and `orderCancelled` arriving before `orderPlaced` still ends with the units free.
 *
 * @example
 * ```ts
 * import { inventory, OutOfStock } from '../inventory/contract.js';
 *
 * const stock = get(inventory);
 * try {
 *   await stock.reserve({ orderId, lines: [{ sku: 'KB-001', quantity: 2 }] });
 * } catch (error) {
 *   if (error instanceof OutOfStock) console.warn(`only ${error.data.available} left`);
 *   throw error;
 * }
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { ErrorKind, defineContract, defineError, event, operation, text } from 'keel/contract';
import { Sku, UnknownProduct } from '../catalog/contract.js';

/** A count of units. */
const Units = z.number().int().nonnegative();

/**
 * The most units of one product a restock may bring its stock on hand to (its table's `integer`
 * holds up to 2 147 483 647; a shelf stops well before that). A restock past it is
 * {@link ShelfFull}. Units returned by a cancelled order go back on the shelf whatever it holds.
 *
 * @example
 * ```ts
 * const room = Math.max(0, MAX_ON_HAND - (await stock.getStock({ sku: 'KB-001' })).onHand);
 * ```
 */
export const MAX_ON_HAND = 1_000_000_000;

/**
 * Stock of one product. `available` is what can still be reserved: `onHand - reserved`.
 *
 * @example
 * ```ts
 * const level: StockLevel = { sku: 'KB-001', onHand: 10, reserved: 2, available: 8 };
 * ```
 */
export const StockLevel = z.object({ sku: Sku, onHand: Units, reserved: Units, available: Units });
/** A {@link StockLevel} as callers receive it. */
export type StockLevel = z.output<typeof StockLevel>;

/**
 * A quantity of one product.
 *
 * @example
 * ```ts
 * const line: StockLine = { sku: 'KB-001', quantity: 2 };
 * ```
 */
export const StockLine = z.object({ sku: Sku, quantity: z.number().int().positive() });
/** A {@link StockLine} as callers receive it. */
export type StockLine = z.output<typeof StockLine>;

/**
 * Where a reservation stands; see the table in this file's header.
 *
 * @example
 * ```ts
 * if (reservation.status === ReservationStatus.enum.committed) console.log('shipped from stock');
 * ```
 */
export const ReservationStatus = z.enum(['reserved', 'committed', 'released', 'returned']);
/** A {@link ReservationStatus} value. */
export type ReservationStatus = z.output<typeof ReservationStatus>;

/**
 * Units held for one order.
 *
 * @example
 * ```ts
 * const reservation: Reservation = { orderId: 'o-1', lines: [{ sku: 'KB-001', quantity: 2 }], status: 'reserved' };
 * ```
 */
export const Reservation = z.object({
  orderId: text().min(1).max(100),
  lines: z.array(StockLine),
  status: ReservationStatus,
});
/** A {@link Reservation} as callers receive it. */
export type Reservation = z.output<typeof Reservation>;

/**
 * Not enough units are available to reserve. Nothing was reserved.
 *
 * @example
 * ```ts
 * if (error instanceof OutOfStock) console.warn(`${error.data.sku}: ${error.data.available} of ${error.data.requested}`);
 * ```
 */
export const OutOfStock = defineError({
  code: 'OUT_OF_STOCK',
  kind: ErrorKind.CONFLICT,
  data: z.object({ sku: z.string(), requested: Units, available: Units }),
  description: 'Not enough units of a product are available. Nothing was reserved.',
  message: (data) =>
    `Only ${data.available} unit(s) of "${data.sku}" are available, ${data.requested} requested. ` +
    'Order fewer, or restock with inventory.restock.',
});

/**
 * A restock would take a product past {@link MAX_ON_HAND} units on hand. Nothing was added.
 *
 * @example
 * ```ts
 * if (error instanceof ShelfFull) console.warn(`${error.data.sku}: room for ${Math.max(0, error.data.limit - error.data.onHand)} more`);
 * ```
 */
export const ShelfFull = defineError({
  code: 'SHELF_FULL',
  kind: ErrorKind.CONFLICT,
  data: z.object({ sku: z.string(), onHand: Units, requested: Units, limit: Units }),
  description: `A restock would take the product past ${MAX_ON_HAND} units on hand. Nothing was added.`,
  message: (data) =>
    `Restocking ${data.requested} unit(s) of "${data.sku}" would take it past ${data.limit} on hand (it has ${data.onHand}). ` +
    (data.onHand >= data.limit ? 'Nothing was added; it is full.' : `Nothing was added; restock at most ${data.limit - data.onHand}.`),
});

/**
 * The inventory contract.
 *
 * @example
 * ```ts
 * const stock = kernel.client(inventory);
 * await stock.restock({ sku: 'KB-001', quantity: 20 }, { principal: { sub: 'ada', roles: ['admin'] } }); // admins only
 * const { available } = await stock.getStock({ sku: 'KB-001' });
 * ```
 */
export const inventory = defineContract({
  name: 'inventory',
  // 1.1.0: reserve and release are internal (orders calls them; the HTTP gateway does not serve them).
  // 2.0.0: restock is admin-only (auth), which refuses its anonymous callers.
  // 3.0.0: reserve's and release's orderId are text(), refusing what a database cannot store (a NUL, a lone
  // surrogate), which failed as INTERNAL; keel contracts diff calls the narrower input breaking. restock takes at most
  // MAX_ON_HAND units at once and declares SHELF_FULL past it (the column's integer overflowed as INTERNAL).
  version: '3.0.0',
  description:
    'Units on hand per product and the units reserved for orders. Reservations are committed when an order is ' +
    'placed and released or returned when it is cancelled.',
  operations: {
    restock: operation({
      description:
        `Adds units of a catalog product to the shelf, up to ${MAX_ON_HAND} on hand (SHELF_FULL past it). Admins only: the caller's ` +
        'principal must have the admin role.',
      input: z.object({ sku: Sku, quantity: z.number().int().positive().max(MAX_ON_HAND) }),
      output: StockLevel,
      errors: [UnknownProduct, ShelfFull],
      // The principal's type is the shop's (app/principal.ts registers it): no import needed here.
      auth: (principal) => principal.roles.includes('admin'),
    }),
    getStock: operation({
      description: 'Reads the stock of a catalog product (zero for a product never stocked).',
      input: z.object({ sku: Sku }),
      output: StockLevel,
      errors: [UnknownProduct],
      idempotent: true,
      // Up to 8 attempts: with one of two instances frozen, all of them land on it once in 256 reads,
      // and even then a read makes 2 attempts on average (docs/resilience.md, "Chaos suite").
      hedge: { percentile: 95, delayMs: 25, maxAttempts: 8 },
    }),
    reserve: operation({
      description:
        'Holds units for an order, all lines or none. Repeating it with the same orderId returns the existing ' +
        'reservation and reserves nothing more.',
      input: z.object({ orderId: Reservation.shape.orderId, lines: z.array(StockLine).min(1).max(100) }),
      output: Reservation,
      errors: [OutOfStock],
      idempotent: true,
      // A step of orders' saga, not for shoppers: no HTTP route.
      internal: true,
      // Repeatable by orderId: an attempt that hangs is abandoned and tried again, inside the deadline.
      retry: { attemptTimeoutMs: 2_000 },
    }),
    release: operation({
      description:
        "Frees an order's reserved units. Idempotent; a committed or returned reservation is left as it is. " +
        'Releasing an unknown orderId records it as released, so that a reserve arriving late holds nothing.',
      input: z.object({ orderId: Reservation.shape.orderId }),
      output: Reservation,
      idempotent: true,
      internal: true,
      // Repeatable by orderId: an attempt that hangs is abandoned and tried again, inside the deadline.
      retry: { attemptTimeoutMs: 2_000 },
    }),
  },
  events: {
    stockLow: event({
      description: "A reservation took a product's available units below the low-stock threshold.",
      payload: z.object({ sku: Sku, available: Units, threshold: Units }),
    }),
  },
});
