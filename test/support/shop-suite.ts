/**
 * The shop's end-to-end suite, written once and run in every topology: one process, every
 * module in its own process over NATS, and mixes. It talks to modules only through contract
 * clients, creates its own products and customers (so it never depends on seeded or shared
 * state), and observes asynchronous event effects with `vi.waitFor` through contract calls.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { z } from 'zod';
import {
  defineContract,
  defineModule,
  isKeelError,
  type AnyContract,
  type AnyModule,
  type Client,
  type Emit,
  type Principal,
} from 'keel';
import { UnknownProduct, catalog } from '../../modules/catalog/contract.js';
import { OutOfStock, inventory } from '../../modules/inventory/contract.js';
import { notifications } from '../../modules/notifications/contract.js';
import { OrderForAnotherCustomer, OrderNotCancellable, OrderNotFound, orders } from '../../modules/orders/contract.js';
import { CHARGE_LIMIT_CENTS, PaymentConflict, PaymentDeclined, TestCard, payments } from '../../modules/payments/contract.js';
import { AS_ADMIN, asCustomer } from './shop-auth.js';

/** A running shop, whatever its topology. */
export interface ShopHarness {
  /**
   * A client of any of the shop's contracts. A call made with a `principal` option is made as
   * that caller: a harness over HTTP sends a bearer token for it instead (test/support/shop-auth.ts).
   */
  client<C extends AnyContract>(contract: C): Client<C>;
  /** Stops everything `boot` started. */
  stop(): Promise<void>;
}

/** How long an asynchronous effect (an event handled) may take to show. Generous: a bound, not a timing. */
const EVENTUALLY = { timeout: 15_000, interval: 25 } as const;

const VISA = { token: TestCard.VISA };

/**
 * Declares the shop suite under `shop - <name>`, booting the shop once with `boot`.
 *
 * @example
 * ```ts
 * describeShopSuite('one process', async () => {
 *   const kernel = createKernel({ modules, principal: Principal }); // the shop's, app/principal.ts: the suite adds products as an admin
 *   await kernel.start();
 *   return { client: (contract) => kernel.client(contract), stop: () => kernel.stop() };
 * });
 * ```
 */
export function describeShopSuite(name: string, boot: () => Promise<ShopHarness>): void {
  describe(`shop - ${name}`, () => {
    let shop: ShopHarness | undefined;
    const client = <C extends AnyContract>(contract: C): Client<C> => {
      if (shop === undefined) throw new Error('the shop did not boot; see the beforeAll error');
      return shop.client(contract);
    };

    beforeAll(async () => {
      shop = await boot();
    });
    afterAll(async () => {
      await shop?.stop();
    });

    /** A new product with its own SKU, price and stock, added and stocked by an admin. */
    const newProduct = async (priceCents: number, onHand: number): Promise<string> => {
      const sku = `SKU-${randomUUID()}`;
      await client(catalog).addProduct({ sku, name: `Test product ${sku}`, priceCents }, AS_ADMIN);
      if (onHand > 0) await client(inventory).restock({ sku, quantity: onHand }, AS_ADMIN);
      return sku;
    };
    const newCustomer = (): string => `customer-${randomUUID()}`;
    const stockOf = (sku: string) => client(inventory).getStock({ sku });
    const topicsOf = async (customerId: string) =>
      (await client(notifications).listNotifications({ customerId }, asCustomer(customerId))).notifications.map((n) => `${n.topic} ${n.orderId}`);
    const paymentsOf = async (customerId: string) => (await client(payments).listPayments({ customerId }, asCustomer(customerId))).payments;
    const ordersOf = async (customerId: string) => (await client(orders).listOrders({ customerId }, asCustomer(customerId))).orders;
    /** `operation` (contract.operation), called without a principal, is refused UNAUTHENTICATED, naming it. */
    const expectAnonymousRefused = async (operation: string, call: () => Promise<unknown>): Promise<void> => {
      const anonymous = await call().catch((error: unknown) => error);
      expect(isKeelError(anonymous, 'UNAUTHENTICATED'), `${operation} anonymous: ${String(anonymous)}`).toBe(true);
      expect((anonymous as Error).message).toContain(`${operation} needs a caller identity`);
    };

    it('place order - prices from the catalog, charges the card, commits stock and notifies the customer', async () => {
      const keyboard = await newProduct(8900, 10);
      const cable = await newProduct(1299, 10);
      const customerId = newCustomer();

      const order = await client(orders).placeOrder({
        customerId,
        lines: [
          { sku: keyboard, quantity: 2 },
          { sku: cable, quantity: 1 },
        ],
        card: VISA,
      });

      expect(order).toMatchObject({
        customerId,
        status: 'placed',
        totalCents: 2 * 8900 + 1299,
        cancelledAt: null,
        lines: [
          { sku: keyboard, quantity: 2, unitPriceCents: 8900, lineTotalCents: 17_800 },
          { sku: cable, quantity: 1, unitPriceCents: 1299, lineTotalCents: 1299 },
        ],
      });
      expect(await client(orders).getOrder({ orderId: order.orderId }, asCustomer(customerId))).toEqual(order);
      expect(await ordersOf(customerId)).toEqual([order]);
      expect(await client(payments).getPayment({ paymentId: order.paymentId }, asCustomer(customerId))).toMatchObject({
        orderId: order.orderId,
        customerId,
        amountCents: order.totalCents,
        status: 'captured',
      });

      await vi.waitFor(async () => {
        expect(await stockOf(keyboard)).toEqual({ sku: keyboard, onHand: 8, reserved: 0, available: 8 });
        expect(await stockOf(cable)).toEqual({ sku: cable, onHand: 9, reserved: 0, available: 9 });
      }, EVENTUALLY);
      await vi.waitFor(async () => {
        expect(await topicsOf(customerId)).toEqual([`order-placed ${order.orderId}`]);
      }, EVENTUALLY);
    });

    it('place order - out of stock fails with OutOfStock and reserves and charges nothing', async () => {
      const plenty = await newProduct(500, 10);
      const scarce = await newProduct(700, 1);
      const customerId = newCustomer();

      const failure = await client(orders)
        .placeOrder({
          customerId,
          lines: [
            { sku: plenty, quantity: 3 },
            { sku: scarce, quantity: 2 },
          ],
          card: VISA,
        })
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(OutOfStock);
      expect((failure as InstanceType<typeof OutOfStock>).data).toEqual({ sku: scarce, requested: 2, available: 1 });
      expect(await stockOf(plenty)).toEqual({ sku: plenty, onHand: 10, reserved: 0, available: 10 });
      expect(await stockOf(scarce)).toEqual({ sku: scarce, onHand: 1, reserved: 0, available: 1 });
      expect(await paymentsOf(customerId)).toEqual([]);
      expect(await ordersOf(customerId)).toEqual([]);
    });

    it('place order - lines with the same SKU are merged before stock is checked', async () => {
      const sku = await newProduct(1000, 3);
      const failure = await client(orders)
        .placeOrder({
          customerId: newCustomer(),
          lines: [
            { sku, quantity: 2 },
            { sku, quantity: 2 },
          ],
          card: VISA,
        })
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(OutOfStock);
      expect((failure as InstanceType<typeof OutOfStock>).data).toEqual({ sku, requested: 4, available: 3 });
    });

    it('place order - the last unit goes to exactly one of two concurrent customers', async () => {
      const sku = await newProduct(2500, 1);
      const results = await Promise.allSettled(
        [newCustomer(), newCustomer()].map((customerId) =>
          client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA }),
        ),
      );
      expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
      const rejected = results.filter((result) => result.status === 'rejected');
      expect(rejected).toHaveLength(1);
      expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(OutOfStock);
      await vi.waitFor(async () => {
        expect(await stockOf(sku)).toEqual({ sku, onHand: 0, reserved: 0, available: 0 });
      }, EVENTUALLY);
    });

    it('place order - an unknown product fails with UnknownProduct and charges nothing', async () => {
      const known = await newProduct(900, 5);
      const unknown = `SKU-${randomUUID()}`;
      const customerId = newCustomer();

      const failure = await client(orders)
        .placeOrder({
          customerId,
          lines: [
            { sku: known, quantity: 1 },
            { sku: unknown, quantity: 1 },
          ],
          card: VISA,
        })
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(UnknownProduct);
      expect((failure as InstanceType<typeof UnknownProduct>).data).toEqual({ sku: unknown });
      expect((failure as Error).message).toContain(unknown);
      expect(await stockOf(known)).toEqual({ sku: known, onHand: 5, reserved: 0, available: 5 });
      expect(await paymentsOf(customerId)).toEqual([]);
    });

    it('place order - a declined card fails with PaymentDeclined and releases the reservation', async () => {
      const sku = await newProduct(4200, 4);
      const customerId = newCustomer();

      const failure = await client(orders)
        .placeOrder({ customerId, lines: [{ sku, quantity: 3 }], card: { token: TestCard.DECLINED } })
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(PaymentDeclined);
      expect((failure as InstanceType<typeof PaymentDeclined>).data.reason).toBe('card_declined');
      expect(await stockOf(sku)).toEqual({ sku, onHand: 4, reserved: 0, available: 4 });
      expect(await paymentsOf(customerId)).toEqual([]);
      expect(await ordersOf(customerId)).toEqual([]);

      // The released units can be bought at once with a good card.
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 4 }], card: VISA });
      expect(order.status).toBe('placed');
    });

    it('place order - a total above the charge limit is declined as amount_over_limit', async () => {
      const sku = await newProduct(CHARGE_LIMIT_CENTS, 2);
      const failure = await client(orders)
        .placeOrder({ customerId: newCustomer(), lines: [{ sku, quantity: 2 }], card: VISA })
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(PaymentDeclined);
      expect((failure as InstanceType<typeof PaymentDeclined>).data.reason).toBe('amount_over_limit');
      expect(await stockOf(sku)).toEqual({ sku, onHand: 2, reserved: 0, available: 2 });
    });

    it('place order - a total past the most a charge can take (100000000 cents) is declined as amount_over_limit, reserving and charging nothing', async () => {
      const sku = await newProduct(100_000_000, 3);
      const customerId = newCustomer();
      for (const lines of [[{ sku, quantity: 2 }], [{ sku, quantity: 1 }, { sku, quantity: 1 }]]) {
        const failure = await client(orders).placeOrder({ customerId, lines, card: VISA }).catch((error: unknown) => error);
        expect(failure, String(failure)).toBeInstanceOf(PaymentDeclined);
        expect((failure as InstanceType<typeof PaymentDeclined>).data.reason).toBe('amount_over_limit');
      }
      expect(await stockOf(sku)).toEqual({ sku, onHand: 3, reserved: 0, available: 3 });
      expect(await paymentsOf(customerId)).toEqual([]);
      expect(await ordersOf(customerId)).toEqual([]);
    });

    it('cancel order - refunds the payment, puts the stock back and notifies the customer', async () => {
      const sku = await newProduct(3000, 5);
      const customerId = newCustomer();
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA });
      await vi.waitFor(async () => {
        expect((await stockOf(sku)).onHand).toBe(3);
      }, EVENTUALLY);

      const cancelled = await client(orders).cancelOrder({ orderId: order.orderId }, asCustomer(customerId));

      expect(cancelled).toMatchObject({ orderId: order.orderId, status: 'cancelled', totalCents: 6000 });
      expect(cancelled.cancelledAt).toEqual(expect.any(String));
      expect(await client(orders).getOrder({ orderId: order.orderId }, asCustomer(customerId))).toEqual(cancelled);
      expect(await client(payments).getPayment({ paymentId: order.paymentId }, asCustomer(customerId))).toMatchObject({
        status: 'refunded',
        amountCents: 6000,
      });
      await vi.waitFor(async () => {
        expect(await stockOf(sku)).toEqual({ sku, onHand: 5, reserved: 0, available: 5 });
      }, EVENTUALLY);
      await vi.waitFor(async () => {
        expect((await topicsOf(customerId)).sort()).toEqual(
          [`order-placed ${order.orderId}`, `order-cancelled ${order.orderId}`, `refund-issued ${order.orderId}`].sort(),
        );
      }, EVENTUALLY);
    });

    it('cancel order - cancelling twice fails with OrderNotCancellable and refunds once', async () => {
      const sku = await newProduct(1500, 5);
      const customerId = newCustomer();
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
      await client(orders).cancelOrder({ orderId: order.orderId }, asCustomer(customerId));

      const failure = await client(orders)
        .cancelOrder({ orderId: order.orderId }, asCustomer(customerId))
        .catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(OrderNotCancellable);
      expect((failure as InstanceType<typeof OrderNotCancellable>).data).toEqual({ orderId: order.orderId, status: 'cancelled' });
      expect(await paymentsOf(customerId)).toEqual([expect.objectContaining({ paymentId: order.paymentId, status: 'refunded' })]);
      await vi.waitFor(async () => {
        expect(await stockOf(sku)).toEqual({ sku, onHand: 5, reserved: 0, available: 5 });
      }, EVENTUALLY);
    });

    it('orders - an unknown order id fails with OrderNotFound', async () => {
      const orderId = randomUUID();
      await expect(client(orders).getOrder({ orderId }, AS_ADMIN)).rejects.toBeInstanceOf(OrderNotFound);
      await expect(client(orders).cancelOrder({ orderId }, AS_ADMIN)).rejects.toBeInstanceOf(OrderNotFound);
    });

    it("orders, payments, notifications - a customer's lists are that customer's own: UNAUTHENTICATED without a principal, FORBIDDEN for another customer, served to the customer and to an admin", async () => {
      const sku = await newProduct(500, 5);
      const customerId = newCustomer();
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
      await vi.waitFor(async () => expect(await topicsOf(customerId)).toEqual([`order-placed ${order.orderId}`]), EVENTUALLY);

      const lists = [
        ['orders.listOrders', (options?: { principal: Principal }) => client(orders).listOrders({ customerId }, options)],
        ['payments.listPayments', (options?: { principal: Principal }) => client(payments).listPayments({ customerId }, options)],
        ['notifications.listNotifications', (options?: { principal: Principal }) => client(notifications).listNotifications({ customerId }, options)],
      ] as const;
      for (const [name, list] of lists) {
        await expectAnonymousRefused(name, () => list());
        const stranger = await list(asCustomer(newCustomer())).catch((error: unknown) => error);
        expect(isKeelError(stranger, 'FORBIDDEN'), `${name} as another customer: ${String(stranger)}`).toBe(true);
      }
      expect(await client(orders).listOrders({ customerId }, asCustomer(customerId))).toEqual({ orders: [order] });
      expect(await client(orders).listOrders({ customerId }, AS_ADMIN)).toEqual({ orders: [order] });
      expect((await client(payments).listPayments({ customerId }, AS_ADMIN)).payments).toEqual([expect.objectContaining({ orderId: order.orderId })]);
      expect((await client(notifications).listNotifications({ customerId }, AS_ADMIN)).notifications).toHaveLength(1);
    });

    it("orders, payments - an order and its payment are their customer's own: UNAUTHENTICATED without a principal, not found for another customer (nothing cancelled), ORDER_FOR_ANOTHER_CUSTOMER (403) to place as another customer, read and cancelled by the customer, read by an admin", async () => {
      const sku = await newProduct(700, 5);
      const customerId = newCustomer();
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
      const strangerId = newCustomer();
      const stranger = asCustomer(strangerId);

      for (const [name, call] of [
        ['orders.getOrder', () => client(orders).getOrder({ orderId: order.orderId })],
        ['orders.cancelOrder', () => client(orders).cancelOrder({ orderId: order.orderId })],
        ['payments.getPayment', () => client(payments).getPayment({ paymentId: order.paymentId })],
      ] as const) {
        await expectAnonymousRefused(name, call);
      }
      // Another customer's order reads as an unknown one: the same error, the same words but the id.
      const unknownId = randomUUID();
      const asUnknown = async (call: () => Promise<unknown>, id: string) => {
        const error = await call().catch((failure: unknown) => failure);
        return { code: (error as { code?: unknown }).code, message: (error as Error).message.replace(id, '<id>') };
      };
      const notFound = await asUnknown(() => client(orders).getOrder({ orderId: unknownId }, stranger), unknownId);
      expect(notFound.code).toBe('ORDER_NOT_FOUND');
      expect(await asUnknown(() => client(orders).getOrder({ orderId: order.orderId }, stranger), order.orderId)).toEqual(notFound);
      expect(await asUnknown(() => client(orders).cancelOrder({ orderId: order.orderId }, stranger), order.orderId)).toEqual(notFound);
      const unknownPayment = await asUnknown(() => client(payments).getPayment({ paymentId: `pay_${unknownId}` }, stranger), `pay_${unknownId}`);
      expect(unknownPayment.code).toBe('UNKNOWN_PAYMENT');
      expect(await asUnknown(() => client(payments).getPayment({ paymentId: order.paymentId }, stranger), order.paymentId)).toEqual(unknownPayment);

      // A signed-in customer places orders as itself, not as another customer; a guest (no principal) for anyone.
      const asOther = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA }, stranger).catch((error: unknown) => error);
      expect(asOther, String(asOther)).toBeInstanceOf(OrderForAnotherCustomer);
      expect((asOther as InstanceType<typeof OrderForAnotherCustomer>).data).toEqual({ customerId, caller: strangerId });
      expect(await ordersOf(customerId)).toEqual([order]);
      expect(await client(orders).getOrder({ orderId: order.orderId }, AS_ADMIN)).toEqual(order);
      expect(await client(payments).getPayment({ paymentId: order.paymentId }, AS_ADMIN)).toMatchObject({ status: 'captured' });
      expect(await client(orders).cancelOrder({ orderId: order.orderId }, asCustomer(customerId))).toMatchObject({ status: 'cancelled' });
    });

    it('orders - invalid input fails with INVALID_INPUT naming the field', async () => {
      const failure = await client(orders)
        .placeOrder({ customerId: newCustomer(), lines: [{ sku: 'KB-001', quantity: 0 }], card: VISA })
        .catch((error: unknown) => error);

      expect(isKeelError(failure, 'INVALID_INPUT')).toBe(true);
      expect((failure as Error).message).toContain('lines.0.quantity');
      expect((failure as { details?: { issues?: { path: unknown[] }[] } }).details?.issues?.[0]?.path).toEqual([
        'lines',
        0,
        'quantity',
      ]);

      const noLines = await client(orders)
        .placeOrder({ customerId: newCustomer(), lines: [], card: VISA })
        .catch((error: unknown) => error);
      expect(isKeelError(noLines, 'INVALID_INPUT')).toBe(true);
      expect((noLines as Error).message).toContain('lines');

      const price = await client(catalog)
        .addProduct({ sku: `SKU-${randomUUID()}`, name: 'Half a cent', priceCents: 12.5 }, AS_ADMIN)
        .catch((error: unknown) => error);
      expect(isKeelError(price, 'INVALID_INPUT')).toBe(true);
      expect((price as Error).message).toContain('priceCents');
    });

    it('orders, payments, catalog, notifications - a NUL or a lone surrogate in a string fails with INVALID_INPUT naming the field, nothing recorded or charged; an emoji passes', async () => {
      const sku = await newProduct(1500, 3);
      const expectRefused = async (call: Promise<unknown>, field: string) => {
        const failure = await call.catch((error: unknown) => error);
        expect(isKeelError(failure, 'INVALID_INPUT'), String(failure)).toBe(true);
        expect((failure as Error).message).toContain(field);
        expect((failure as Error).message).toContain('a database can store');
      };
      for (const bad of ['\u0000', '\ud800']) {
        const customerId = `${newCustomer()}${bad}`;
        await expectRefused(client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA }), 'customerId');
        await expectRefused(
          client(orders).placeOrder({ customerId: newCustomer(), lines: [{ sku, quantity: 1 }], card: { token: `tok_visa${bad}` } }),
          'card.token',
        );
        await expectRefused(client(orders).getOrder({ orderId: `order${bad}` }, AS_ADMIN), 'orderId');
        await expectRefused(client(orders).listOrders({ customerId }, AS_ADMIN), 'customerId');
        await expectRefused(client(payments).getPayment({ paymentId: `payment${bad}` }, AS_ADMIN), 'paymentId');
        await expectRefused(client(payments).listPayments({ customerId }, AS_ADMIN), 'customerId');
        await expectRefused(client(notifications).listNotifications({ customerId }, AS_ADMIN), 'customerId');
        await expectRefused(client(catalog).addProduct({ sku: `SKU-${randomUUID()}`, name: `Mug${bad}`, priceCents: 1200 }, AS_ADMIN), 'name');
      }
      expect(await stockOf(sku)).toEqual({ sku, onHand: 3, reserved: 0, available: 3 });

      // Any other character passes, a surrogate pair included.
      const customerId = `${newCustomer()}-😀`;
      const order = await client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
      expect(order).toMatchObject({ customerId, status: 'placed' });
      expect(await paymentsOf(customerId)).toEqual([expect.objectContaining({ customerId, amountCents: 1500 })]);
      const named = await client(catalog).addProduct({ sku: `SKU-${randomUUID()}`, name: 'Mug ☕ 😀', priceCents: 1200 }, AS_ADMIN);
      expect(named.name).toBe('Mug ☕ 😀');
    });

    it('payments - charging the same order twice returns the same payment', async () => {
      const customerId = newCustomer();
      const orderId = randomUUID();
      const charge = { orderId, customerId, amountCents: 4321, card: VISA };

      const first = await client(payments).charge(charge);
      const again = await client(payments).charge(charge);

      expect(again).toEqual(first);
      expect(first).toMatchObject({ orderId, customerId, amountCents: 4321, status: 'captured', refundedAt: null });
      expect(await paymentsOf(customerId)).toEqual([first]);
      await expect(client(payments).charge({ ...charge, amountCents: 1 })).rejects.toBeInstanceOf(PaymentConflict);
    });
  });
}

/**
 * A module implementing `contract` whose only job is to publish the contract's events on
 * demand, so that a test can drive subscribers without the real publisher. Its operations
 * throw. For focused, single-process tests.
 *
 * @example
 * ```ts
 * const fakeOrders = eventSource(orders);
 * const kernel = createKernel({ modules: [notificationsModule, fakeOrders.module, ...] });
 * await kernel.start();
 * await fakeOrders.emit('orderPlaced', payload);
 * ```
 */
export function eventSource<C extends AnyContract>(contract: C): { module: AnyModule; emit: Emit<C> } {
  let publish: Emit<C> | undefined;
  const handlers = Object.fromEntries(
    Object.keys(contract.operations).map((operation) => [
      operation,
      () => {
        throw new Error(`${contract.name}.${operation} is not served by this event source`);
      },
    ]),
  ) as never;
  const module = defineModule({
    contract,
    create: ({ emit }) => {
      publish = emit;
      return { handlers };
    },
  });
  const emit: Emit<C> = (event, payload) => {
    if (publish === undefined) throw new Error(`start the kernel before emitting ${contract.name} events`);
    return publish(event, payload);
  };
  return { module, emit };
}

/**
 * A module that records every event of `source` it receives, for focused, single-process tests.
 *
 * @example
 * ```ts
 * const seen = eventRecorder(catalog);
 * const kernel = createKernel({ modules: [catalogModule, seen.module], principal: Principal });
 * await kernel.client(catalog).addProduct({ sku: 'MUG-01', name: 'Mug', priceCents: 1200 }, AS_ADMIN);
 * // ...
 * await vi.waitFor(() => expect(seen.of('productAdded')).toHaveLength(1));
 * ```
 */
export function eventRecorder<S extends AnyContract>(
  source: S,
): {
  module: AnyModule;
  of<E extends keyof S['events'] & string>(event: E): z.output<S['events'][E]['payload']>[];
} {
  const received: { event: string; payload: unknown }[] = [];
  const contract = defineContract({
    name: `${source.name}-event-recorder`,
    version: '1.0.0',
    description: `Records ${source.name} events for a test.`,
    operations: {},
  });
  const handlers = Object.fromEntries(
    Object.keys(source.events).map((event) => [event, (payload: unknown) => void received.push({ event, payload })]),
  );
  const module = defineModule({
    contract,
    subscribesTo: [source],
    create: () => ({ handlers: {}, events: { [source.name]: handlers } as never }),
  });
  return {
    module,
    of: (event) => received.filter((entry) => entry.event === event).map((entry) => entry.payload as never),
  };
}
