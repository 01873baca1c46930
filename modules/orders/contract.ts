/**
 * The orders module's public door: placing, reading and cancelling orders. Other modules
 * import this file, and only this file, from `../orders/contract.js`.
 *
 * Placing an order prices its lines from the catalog, records the order as pending, reserves
 * the stock, charges the card, then marks the order placed and publishes `orderPlaced` in one
 * transaction. Each step's failure is re-declared here, so a caller catches `UnknownProduct`,
 * `OutOfStock` and `PaymentDeclined` from `placeOrder` itself; when a step fails, what the
 * earlier ones did is undone (the reservation released, the charge cancelled) before the error
 * is thrown. Called with an idempotency key (the HTTP `Idempotency-Key` header), placeOrder
 * runs once per key: a retry gets the first outcome, and a retry after a crash resumes the same
 * order. An order that a crash left half-way is completed or undone by the orders module's
 * recovery, at start and every minute (docs/data.md, "The saga of placeOrder").
 *
 * @example
 * ```ts
 * import { orders } from '../orders/contract.js';
 * import { OutOfStock } from '../inventory/contract.js';
 *
 * const shop = kernel.client(orders);
 * try {
 *   const order = await shop.placeOrder({
 *     customerId: 'c-42',
 *     lines: [{ sku: 'KB-001', quantity: 1 }],
 *     card: { token: 'tok_visa' },
 *   });
 *   console.log(order.orderId, order.totalCents);
 * } catch (error) {
 *   if (error instanceof OutOfStock) console.warn(`only ${error.data.available} left`);
 * }
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { ErrorKind, defineContract, defineError, event, operation, text } from 'keel/contract';
import { Cents, Sku, UnknownProduct } from '../catalog/contract.js';
import { OutOfStock } from '../inventory/contract.js';
import { Card, PaymentDeclined, customersOwn } from '../payments/contract.js';

/**
 * Who orders: an opaque customer id.
 *
 * @example
 * ```ts
 * CustomerId.parse('c-42');
 * ```
 */
export const CustomerId = text().min(1).max(100);

/**
 * An order id (a UUID chosen by the orders module).
 *
 * @example
 * ```ts
 * OrderId.parse('6f1c2a9e-3b7d-4c55-9a0e-1d2f3a4b5c6d');
 * ```
 */
export const OrderId = text().min(1).max(100);

/**
 * A line of an order as priced when it was placed.
 *
 * @example
 * ```ts
 * const line: OrderLine = { sku: 'KB-001', name: 'Mechanical keyboard', quantity: 2, unitPriceCents: 8900, lineTotalCents: 17800 };
 * ```
 */
export const OrderLine = z.object({
  sku: Sku,
  name: z.string(),
  quantity: z.number().int().positive(),
  unitPriceCents: Cents,
  lineTotalCents: Cents,
});
/** An {@link OrderLine} as callers receive it. */
export type OrderLine = z.output<typeof OrderLine>;

/**
 * Where an order stands.
 *
 * @example
 * ```ts
 * if (order.status === OrderStatus.enum.placed) await shop.cancelOrder({ orderId: order.orderId }, { principal: { sub: order.customerId, roles: ['customer'] } });
 * ```
 */
export const OrderStatus = z.enum(['placed', 'cancelled']);
/** An {@link OrderStatus} value. */
export type OrderStatus = z.output<typeof OrderStatus>;

/**
 * An order: what was bought, at which prices, and how it was paid.
 *
 * @example
 * ```ts
 * console.log(`${order.orderId}: ${order.totalCents} cents, ${order.status}`);
 * ```
 */
export const Order = z.object({
  orderId: OrderId,
  customerId: CustomerId,
  status: OrderStatus,
  lines: z.array(OrderLine),
  totalCents: Cents,
  paymentId: z.string(),
  placedAt: z.iso.datetime(),
  cancelledAt: z.iso.datetime().nullable(),
});
/** An {@link Order} as callers receive it. */
export type Order = z.output<typeof Order>;

/**
 * No order has this id, or none the caller may read (another customer's order is not found).
 *
 * @example
 * ```ts
 * if (error instanceof OrderNotFound) console.warn(`no order ${error.data.orderId}`);
 * ```
 */
export const OrderNotFound = defineError({
  code: 'ORDER_NOT_FOUND',
  kind: ErrorKind.NOT_FOUND,
  data: z.object({ orderId: z.string() }),
  description: "No order has this id, or none of the caller's: another customer's order is not found.",
  message: (data) =>
    `No order has id "${data.orderId}", or it is another customer's. Use the orderId that placeOrder returned, as the customer ` +
    'who placed it (an admin may read any).',
});

/**
 * The order cannot be cancelled in its current status (it is already cancelled).
 *
 * @example
 * ```ts
 * if (error instanceof OrderNotCancellable) console.warn(`order is ${error.data.status}`);
 * ```
 */
export const OrderNotCancellable = defineError({
  code: 'ORDER_NOT_CANCELLABLE',
  kind: ErrorKind.CONFLICT,
  data: z.object({ orderId: z.string(), status: OrderStatus }),
  description: 'The order cannot be cancelled in its current status.',
  message: (data) => `Order ${data.orderId} is ${data.status} and cannot be cancelled; nothing was changed.`,
});

/**
 * The order of this request failed earlier and was undone: nothing is reserved or charged for
 * it. A retry with the idempotency key of a failed order gets this error; place the order again
 * with a new key.
 *
 * @example
 * ```ts
 * if (error instanceof OrderFailed) console.warn(`order ${error.data.orderId} failed: ${error.data.reason}`);
 * ```
 */
export const OrderFailed = defineError({
  code: 'ORDER_FAILED',
  kind: ErrorKind.CONFLICT,
  data: z.object({ orderId: z.string(), code: z.string(), reason: z.string() }),
  description: 'The order of this idempotency key failed earlier and was undone: nothing is reserved or charged for it.',
  message: (data) =>
    `Order ${data.orderId} of this idempotency key failed earlier (${data.code}: ${data.reason}) and was undone: nothing is ` +
    'reserved or charged for it. Place the order again with a new idempotency key.',
});

/**
 * A step of the order could not run: the module it calls (inventory to reserve, payments to
 * charge) has no running instance, or is stopping or at its limit, so the step certainly did not
 * run. The order was undone (what an earlier step reserved is released) and is failed: nothing is
 * charged for it. Placing it again in a moment, with a new idempotency key, may succeed. A final
 * answer for its key (HTTP 409), as ORDER_FAILED is: a retry with the same key gets it again, so
 * it is no 503 a client would retry with that key for ever.
 *
 * @example
 * ```ts
 * if (error instanceof OrderNotPlaced) setTimeout(placeAgain, 1_000); // with a new idempotency key
 * ```
 */
export const OrderNotPlaced = defineError({
  code: 'ORDER_NOT_PLACED',
  kind: ErrorKind.CONFLICT,
  data: z.object({ orderId: z.string(), step: z.string(), code: z.string() }),
  description: 'A step of the order could not run (the module it calls is not running, stopping or at its limit): the order was undone, nothing is charged.',
  message: (data) =>
    `Order ${data.orderId} was not placed: its step ${data.step} could not run (${data.code}), so the order was undone and nothing ` +
    'is charged for it. Place it again in a moment, with a new idempotency key.',
});

/**
 * A signed-in customer places orders as itself: the `customerId` is not the caller's (its
 * principal's subject), and the caller is not an admin. Nothing ran. Guests (no principal)
 * may place an order for any customer.
 *
 * @example
 * ```ts
 * if (error instanceof OrderForAnotherCustomer) console.warn(`signed in as ${error.data.caller}, not ${error.data.customerId}`);
 * ```
 */
export const OrderForAnotherCustomer = defineError({
  code: 'ORDER_FOR_ANOTHER_CUSTOMER',
  kind: ErrorKind.FORBIDDEN,
  data: z.object({ customerId: z.string(), caller: z.string() }),
  description: "A signed-in customer places orders as itself; this customerId is not the caller's, and the caller is no admin.",
  message: (data) =>
    `A signed-in customer places orders as itself, and customerId "${data.customerId}" is not the caller's ("${data.caller}"). ` +
    'Nothing ran; send the caller\'s own customerId, or call without a token as a guest.',
});

const EventLine = OrderLine.pick({ sku: true, quantity: true, unitPriceCents: true });

/**
 * The orders contract.
 *
 * @example
 * ```ts
 * const shop = kernel.client(orders);
 * const { orders: mine } = await shop.listOrders({ customerId: 'c-42' }, { principal: { sub: 'c-42', roles: ['customer'] } }); // the customer's own
 * ```
 */
export const orders = defineContract({
  name: 'orders',
  // 2.0.0: listOrders, getOrder and cancelOrder are the customer's own (auth), which refuses their anonymous callers.
  // 2.1.0: placeOrder declares ORDER_FOR_ANOTHER_CUSTOMER (it answered the generic FORBIDDEN).
  // 3.0.0: customerId and orderId are text(), refusing what a database cannot store (a NUL, a lone surrogate),
  // which failed as INTERNAL; keel contracts diff calls the narrower input breaking.
  // 3.1.0: placeOrder declares ORDER_NOT_PLACED, a step that could not run (it answered INTERNAL).
  version: '3.1.0',
  description:
    'Places orders (price from the catalog, stock reserved, card charged), reads them and cancels them ' +
    '(payment refunded, stock returned through the orderCancelled event).',
  operations: {
    placeOrder: operation({
      description:
        'Places an order: prices each line from the catalog, reserves the stock, charges the card and publishes ' +
        'orderPlaced. Lines with the same SKU are merged. A declined charge releases the reservation. With an ' +
        'idempotency key it runs once per key: a retry gets the first outcome, or resumes the order a crash interrupted. ' +
        'A guest (no principal) may place an order for any customerId; a signed-in caller only for its own (its ' +
        'subject), or an admin for anyone: ORDER_FOR_ANOTHER_CUSTOMER otherwise. A step that cannot run (inventory or ' +
        'payments not running) undoes the order: ORDER_NOT_PLACED.',
      input: z.object({
        customerId: CustomerId,
        lines: z
          .array(z.object({ sku: Sku, quantity: z.number().int().positive().max(1000) }))
          .min(1)
          .max(50),
        card: Card,
      }),
      output: Order,
      errors: [UnknownProduct, OutOfStock, PaymentDeclined, OrderFailed, OrderForAnotherCustomer, OrderNotPlaced],
    }),
    getOrder: operation({
      description:
        "Reads one order. The customer's own: the caller's principal must be the order's customer (its subject is " +
        'the customerId) or have the admin role; an order of another customer is not found.',
      input: z.object({ orderId: OrderId }),
      output: Order,
      errors: [OrderNotFound],
      idempotent: true,
      auth: 'required',
    }),
    listOrders: operation({
      description:
        "Lists a customer's orders, oldest first. The customer's own: the caller's principal must be that customer " +
        '(its subject is the customerId) or have the admin role.',
      input: z.object({ customerId: CustomerId }),
      output: z.object({ orders: z.array(Order) }),
      idempotent: true,
      auth: (principal, { customerId }) => customersOwn(principal, customerId),
    }),
    cancelOrder: operation({
      description:
        'Cancels a placed order: refunds its payment and publishes orderCancelled, upon which the inventory puts ' +
        "the units back. The customer's own, as getOrder.",
      input: z.object({ orderId: OrderId }),
      output: Order,
      errors: [OrderNotFound, OrderNotCancellable],
      auth: 'required',
    }),
  },
  events: {
    orderPlaced: event({
      description: 'An order was placed and paid; its stock reservation can be committed.',
      delivery: 'durable',
      payload: z.object({
        orderId: OrderId,
        customerId: CustomerId,
        lines: z.array(EventLine),
        totalCents: Cents,
        paymentId: z.string(),
        placedAt: z.iso.datetime(),
      }),
    }),
    orderCancelled: event({
      description: 'An order was cancelled and its payment refunded; its stock can be put back.',
      delivery: 'durable',
      payload: z.object({
        orderId: OrderId,
        customerId: CustomerId,
        lines: z.array(EventLine),
        refundedCents: Cents,
        cancelledAt: z.iso.datetime(),
      }),
    }),
  },
});
