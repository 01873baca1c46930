/**
 * The shop's data and the saga of placeOrder, on both engines (PGlite in memory, and a fresh
 * PostgreSQL database): what the shop keeps survives a kernel restart on the same database; a
 * retry of placeOrder with the same idempotency key charges once and answers the same order; and
 * a failure or a crash in the middle of placeOrder leaves no card charged without a placed order
 * once recovery has run, whether the orders process died or payments was down when the saga
 * had to undo a charge.
 *
 * Faults are injected around the real payments module, in the test only: a module of the
 * payments contract whose charge calls the real one, then answers TIMEOUT or never answers. A
 * kernel stopped with such a call in flight (its drain cut short) never settles it, so the
 * orders saga waiting on it is left exactly where a crash would leave it.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  KeelError,
  KeelErrorCode,
  createKernel,
  defineModule,
  isKeelError,
  silentLogger,
  type AnyModule,
  type CallContext,
  type DatabaseEngine,
  type HandlerInput,
  type Kernel,
  type Logger,
} from 'keel';
import { Principal } from '../app/principal.js';
import { catalog } from '../modules/catalog/contract.js';
import { catalogModule } from '../modules/catalog/module.js';
import { inventory } from '../modules/inventory/contract.js';
import { inventoryModule } from '../modules/inventory/module.js';
import { notifications } from '../modules/notifications/contract.js';
import { notificationsModule } from '../modules/notifications/module.js';
import { OrderFailed, OrderForAnotherCustomer, orders } from '../modules/orders/contract.js';
import { ORDER_RECOVERY_OPTIONS, ordersModule } from '../modules/orders/module.js';
import { DEFAULT_ORDER_RECOVERY_OPTIONS } from '../modules/orders/order-recovery.js';
import { ChargeCancelled, TestCard, payments, type Payment } from '../modules/payments/contract.js';
import { paymentsModule } from '../modules/payments/module.js';
import { enginesUnderTest } from './support/databases.js';
import { AS_ADMIN, asCustomer } from './support/shop-auth.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

/** A bound for an effect that happens in the background (an event handled, recovery): a bound, not a timing. */
const EVENTUALLY = { timeout: 20_000, interval: 50 } as const;
const VISA = { token: TestCard.VISA };

type ChargeInput = HandlerInput<typeof payments.operations.charge>;
type Charge = (input: ChargeInput, context: CallContext) => Promise<Payment>;
type CancelChargeInput = HandlerInput<typeof payments.operations.cancelCharge>;
type CancelCharge = (input: CancelChargeInput, context: CallContext) => Promise<{ orderId: string; payment: Payment | null }>;

/** The real payments module, its charge (and cancelCharge) wrapped (the wrappers may call the real ones). */
function paymentsWithCharge(
  wrap: (charge: Charge, input: ChargeInput, context: CallContext) => Promise<Payment>,
  wrapCancel?: (cancelCharge: CancelCharge, input: CancelChargeInput, context: CallContext) => ReturnType<CancelCharge>,
): AnyModule {
  return defineModule({
    contract: payments,
    data: paymentsModule.data,
    create: async (tools) => {
      const real = await paymentsModule.create(tools);
      const charge = real.handlers.charge as Charge;
      const cancelCharge = real.handlers.cancelCharge as CancelCharge;
      return {
        ...real,
        handlers: {
          ...real.handlers,
          charge: (input, context) => wrap(charge, input, context),
          cancelCharge: (input, context) => (wrapCancel === undefined ? cancelCharge(input, context) : wrapCancel(cancelCharge, input, context)),
        },
      };
    },
  });
}

/** The orders module with recovery passes every 200 ms: a module value is data, and its providers can be replaced. */
const ordersRecoveringOften: AnyModule = {
  ...ordersModule,
  providers: (bind) => {
    bind(ORDER_RECOVERY_OPTIONS).toConstantValue({ ...DEFAULT_ORDER_RECOVERY_OPTIONS, intervalMs: 200 });
  },
};

/** A promise and the function that resolves it. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve: () => void = () => {};
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** A logger that keeps the messages logged, to see what recovery did. */
function recordingLogger(messages: string[]): Logger {
  const write = (_fields: unknown, message?: string): void => void messages.push(message ?? '');
  const logger: Logger = { debug: write, info: write, warn: write, error: write, child: () => logger } as unknown as Logger;
  return logger;
}

describe.each(engines)('shop data - $name', (engine) => {
  async function shopOn(
    database: DatabaseEngine,
    payment: AnyModule = paymentsModule,
    logger: Logger = silentLogger,
    order: AnyModule = ordersModule,
  ): Promise<Kernel> {
    const kernel = createKernel({
      modules: [catalogModule, inventoryModule, payment, order, notificationsModule],
      principal: Principal,
      database,
      logger,
      drainTimeoutMs: 200,
    });
    await kernel.start();
    return kernel;
  }

  async function newProduct(kernel: Kernel, onHand: number, priceCents = 1000): Promise<string> {
    const sku = `SKU-${randomUUID()}`;
    await kernel.client(catalog).addProduct({ sku, name: `Product ${sku}`, priceCents }, AS_ADMIN);
    await kernel.client(inventory).restock({ sku, quantity: onHand }, AS_ADMIN);
    return sku;
  }

  const topics = async (kernel: Kernel, customerId: string) =>
    (await kernel.client(notifications).listNotifications({ customerId }, asCustomer(customerId))).notifications.map((n) => n.topic);

  it('shop data - orders, payments, stock and e-mails survive a kernel restart on the same database, and so do idempotency keys', async () => {
    const database = await engine.fresh();
    const first = await shopOn(database);
    const sku = await newProduct(first, 10);
    const customerId = `customer-${randomUUID()}`;
    const kept = await first.client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA }, { idempotencyKey: `kept-${customerId}` });
    const dropped = await first.client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA });
    const cancelled = await first.client(orders).cancelOrder({ orderId: dropped.orderId }, asCustomer(dropped.customerId));
    await vi.waitFor(async () => {
      expect(await first.client(inventory).getStock({ sku })).toMatchObject({ onHand: 8, reserved: 0 });
      expect((await topics(first, customerId)).sort()).toEqual(['order-cancelled', 'order-placed', 'order-placed', 'refund-issued']);
    }, EVENTUALLY);
    const before = {
      orders: await first.client(orders).listOrders({ customerId }, asCustomer(customerId)),
      payments: await first.client(payments).listPayments({ customerId }, asCustomer(customerId)),
      notifications: await first.client(notifications).listNotifications({ customerId }, asCustomer(customerId)),
      products: await first.client(catalog).listProducts({}),
    };
    await first.stop();

    const second = await shopOn(database);
    try {
      expect(await second.client(orders).listOrders({ customerId }, asCustomer(customerId))).toEqual(before.orders);
      expect(before.orders.orders).toEqual([kept, cancelled]);
      expect(await second.client(orders).getOrder({ orderId: kept.orderId }, asCustomer(kept.customerId))).toEqual(kept);
      expect(await second.client(payments).listPayments({ customerId }, asCustomer(customerId))).toEqual(before.payments);
      expect(await second.client(notifications).listNotifications({ customerId }, asCustomer(customerId))).toEqual(before.notifications);
      expect(await second.client(catalog).listProducts({})).toEqual(before.products); // the seed migration ran once
      expect(await second.client(inventory).getStock({ sku })).toEqual({ sku, onHand: 8, reserved: 0, available: 8 });
      // The key's outcome is in the orders module's database: the retry charges nothing more.
      const retried = await second.client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA }, { idempotencyKey: `kept-${customerId}` });
      expect(retried).toEqual(kept);
      expect((await second.client(payments).listPayments({ customerId }, asCustomer(customerId))).payments).toHaveLength(2);
    } finally {
      await second.stop();
    }
  }, 90_000); // two kernels, each opening the database (PGlite starts in seconds on a loaded host)

  it('shop data - placeOrder retried with the same idempotency key charges once and answers the same order', async () => {
    const database = await engine.fresh();
    const kernel = await shopOn(database);
    try {
      const sku = await newProduct(kernel, 10, 2500);
      const customerId = `customer-${randomUUID()}`;
      const request = { customerId, lines: [{ sku, quantity: 3 }], card: VISA };
      const key = `checkout-${randomUUID()}`;

      const first = await kernel.client(orders).placeOrder(request, { idempotencyKey: key });
      const again = await kernel.client(orders).placeOrder(request, { idempotencyKey: key });

      expect(again).toEqual(first);
      expect(await kernel.client(orders).listOrders({ customerId }, asCustomer(customerId))).toEqual({ orders: [first] });
      expect(await kernel.client(payments).listPayments({ customerId }, asCustomer(customerId))).toEqual({
        payments: [expect.objectContaining({ paymentId: first.paymentId, amountCents: 7500, status: 'captured' })],
      });
      await vi.waitFor(async () => expect(await kernel.client(inventory).getStock({ sku })).toMatchObject({ onHand: 7, reserved: 0 }), EVENTUALLY);
      const reused = await kernel.client(orders).placeOrder({ ...request, lines: [{ sku, quantity: 1 }] }, { idempotencyKey: key }).catch((error: unknown) => error);
      expect(isKeelError(reused, KeelErrorCode.IDEMPOTENCY_KEY_REUSED)).toBe(true);
      // Once the kernel's record of the key is gone (swept after 24 hours), the key's order answers for it, to its
      // customer signed in and to an anonymous retry; another signed-in customer is refused before anything is read
      // (a signed-in customer places orders as itself). The kernel keeps one record per key, with its first caller's
      // principal hashed in, and refuses any other caller itself: so each call below comes after it is forgotten.
      const forgetKey = async (): Promise<void> => {
        const orderStore = await database.connect('orders');
        try {
          await orderStore.query("delete from keel_idempotency where operation = 'placeOrder' and key = $1", [key]);
        } finally {
          await orderStore.close();
        }
      };
      await forgetKey();
      const stranger = await kernel
        .client(orders)
        .placeOrder(request, { idempotencyKey: key, ...asCustomer(`customer-${randomUUID()}`) })
        .catch((error: unknown) => error);
      expect(stranger, String(stranger)).toBeInstanceOf(OrderForAnotherCustomer);
      expect((stranger as Error).message).toContain('places orders as itself');
      expect((stranger as Error).message).not.toContain(first.orderId);
      await forgetKey();
      expect(await kernel.client(orders).placeOrder(request, { idempotencyKey: key, ...asCustomer(customerId) })).toEqual(first);
      await forgetKey();
      expect(await kernel.client(orders).placeOrder(request, { idempotencyKey: key })).toEqual(first);
      // Another key is another order.
      const other = await kernel.client(orders).placeOrder(request, { idempotencyKey: `${key}-2` });
      expect(other.orderId).not.toBe(first.orderId);
    } finally {
      await kernel.stop();
    }
  });

  it('shop data - payments answering TIMEOUT after it captured: the saga refunds the charge and releases the stock, and a retry says the order failed', async () => {
    const timingOut = paymentsWithCharge(async (charge, input, context) => {
      await charge(input, context);
      throw new KeelError(KeelErrorCode.TIMEOUT, 'payments.charge timed out (injected by the test after the capture)');
    });
    const kernel = await shopOn(await engine.fresh(), timingOut);
    try {
      const sku = await newProduct(kernel, 5);
      const customerId = `customer-${randomUUID()}`;
      const request = { customerId, lines: [{ sku, quantity: 2 }], card: VISA };
      const key = `checkout-${randomUUID()}`;

      // retry: false: the caller's own retry of a keyed TIMEOUT would already answer OrderFailed (asserted below).
      const failure = await kernel.client(orders).placeOrder(request, { idempotencyKey: key, retry: false }).catch((error: unknown) => error);

      expect(isKeelError(failure, KeelErrorCode.TIMEOUT)).toBe(true);
      expect(await kernel.client(payments).listPayments({ customerId }, asCustomer(customerId))).toEqual({
        payments: [expect.objectContaining({ status: 'refunded', amountCents: 2000 })],
      });
      expect(await kernel.client(inventory).getStock({ sku })).toEqual({ sku, onHand: 5, reserved: 0, available: 5 });
      expect(await kernel.client(orders).listOrders({ customerId }, asCustomer(customerId))).toEqual({ orders: [] });
      await vi.waitFor(async () => expect(await topics(kernel, customerId)).toEqual(['refund-issued']), EVENTUALLY);

      const retry = await kernel.client(orders).placeOrder(request, { idempotencyKey: key }).catch((error: unknown) => error);
      expect(retry).toBeInstanceOf(OrderFailed);
      const { orderId } = (retry as InstanceType<typeof OrderFailed>).data;
      expect((retry as InstanceType<typeof OrderFailed>).data).toMatchObject({ code: 'TIMEOUT' });
      expect((await kernel.client(payments).listPayments({ customerId }, asCustomer(customerId))).payments).toEqual([expect.objectContaining({ orderId, status: 'refunded' })]);
    } finally {
      await kernel.stop();
    }
  });

  it("shop data - a retry of an order that failed with an undeclared error says only the code its first caller saw (INTERNAL), not the error's text naming internal operations, and nothing stays reserved", async () => {
    const refusing = paymentsWithCharge(async (charge, input, context) => {
      if (input.card.token === 'tok_refused_inside') {
        throw new KeelError(KeelErrorCode.INVALID_INPUT, 'Invalid input for payments.charge: amountCents: Too big (injected by the test)');
      }
      return charge(input, context);
    });
    const kernel = await shopOn(await engine.fresh(), refusing);
    try {
      const sku = await newProduct(kernel, 5);
      const customerId = `customer-${randomUUID()}`;
      const request = { customerId, lines: [{ sku, quantity: 1 }], card: { token: 'tok_refused_inside' } };
      const key = `checkout-${randomUUID()}`;
      const first = await kernel.client(orders).placeOrder(request, { idempotencyKey: key, retry: false }).catch((error: unknown) => error);
      // The first caller sees INTERNAL (a nested call's refused input is not its own), and so does the retry below.
      expect(isKeelError(first, KeelErrorCode.INTERNAL), String(first)).toBe(true);
      expect((first as Error).message).not.toMatch(/payments|amountCents|Too big/);

      const retry = await kernel.client(orders).placeOrder(request, { idempotencyKey: key }).catch((error: unknown) => error);
      expect(retry).toBeInstanceOf(OrderFailed);
      const { code, reason } = (retry as InstanceType<typeof OrderFailed>).data;
      expect(code).toBe('INTERNAL');
      expect(reason).toBe('the order failed with INTERNAL; the orders module logged the details with the order id');
      expect((retry as Error).message).not.toMatch(/payments|amountCents|Too big/);
      expect(await kernel.client(inventory).getStock({ sku })).toEqual({ sku, onHand: 5, reserved: 0, available: 5 });

    } finally {
      await kernel.stop();
    }
  });

  it('shop data - an undo that failed (payments down when the saga gave up) is finished by recovery while the shop runs', async () => {
    let paymentsDown = true;
    const flaky = paymentsWithCharge(
      async (charge, input, context) => {
        await charge(input, context);
        throw new KeelError(KeelErrorCode.TIMEOUT, 'payments.charge timed out (injected by the test after the capture)');
      },
      async (cancelCharge, input, context) => {
        if (paymentsDown) throw new KeelError(KeelErrorCode.UNAVAILABLE, 'payments is down (injected by the test)');
        return cancelCharge(input, context);
      },
    );
    const messages: string[] = [];
    const kernel = await shopOn(await engine.fresh(), flaky, recordingLogger(messages), ordersRecoveringOften);
    try {
      const sku = await newProduct(kernel, 5);
      const customerId = `customer-${randomUUID()}`;
      const failure = await kernel
        .client(orders)
        // A deadline the saga cannot reach on a slow machine (PGlite under load): the TIMEOUT is the injected one, after
        // the capture, and the saga's undo has run when the call returns. (Recovery waits for it and a grace: 6 s.)
        .placeOrder({ customerId, lines: [{ sku, quantity: 1 }], card: VISA }, { timeoutMs: 5_000 })
        .catch((error: unknown) => error);
      expect(isKeelError(failure, KeelErrorCode.TIMEOUT)).toBe(true);
      // Released, but still charged: the saga could not cancel the charge, and left the order compensating.
      expect(await kernel.client(inventory).getStock({ sku })).toEqual({ sku, onHand: 5, reserved: 0, available: 5 });
      expect((await kernel.client(payments).listPayments({ customerId }, asCustomer(customerId))).payments).toEqual([expect.objectContaining({ status: 'captured' })]);
      expect(messages).toContain('could not undo a failed order; it stays compensating, and recovery will undo it');

      paymentsDown = false;
      // Recovery refunds the charge, then records the order compensated and logs it: wait for both.
      await vi.waitFor(async () => {
        expect((await kernel.client(payments).listPayments({ customerId }, asCustomer(customerId))).payments).toEqual([expect.objectContaining({ status: 'refunded' })]);
        expect(messages).toContain('order recovery: order compensated');
      }, EVENTUALLY);
      expect(await kernel.client(orders).listOrders({ customerId }, asCustomer(customerId))).toEqual({ orders: [] });
    } finally {
      await kernel.stop();
    }
  });

  it('shop data - an orders kernel that dies with charges in flight: recovery places the order that was paid and undoes the one that was not', async () => {
    const database = await engine.fresh();
    const paid = `customer-paid-${randomUUID()}`;
    const unpaid = `customer-unpaid-${randomUUID()}`;
    const reached: Record<string, ReturnType<typeof signal>> = { [paid]: signal(), [unpaid]: signal() };
    // The charge of `paid` is captured, then never answers; that of `unpaid` never reaches the real charge.
    const hanging = paymentsWithCharge(async (charge, input, context) => {
      if (input.customerId === paid) await charge(input, context);
      reached[input.customerId]?.resolve();
      return new Promise<never>(() => {});
    });
    const first = await shopOn(database, hanging);
    const sku = await newProduct(first, 10);
    const place = (customerId: string) => {
      const call = first.client(orders).placeOrder(
        { customerId, lines: [{ sku, quantity: 2 }], card: VISA },
        // Time enough for the kernel to stop before the calls' deadline, even with PGlite on a loaded machine: a saga
        // whose charge timed out would undo it.
        { idempotencyKey: `checkout-${customerId}`, timeoutMs: 6_000 },
      );
      call.catch(() => undefined); // never settles: its kernel stops under it
    };
    place(paid);
    place(unpaid);
    await Promise.all([reached[paid]?.promise, reached[unpaid]?.promise]);
    await first.stop(); // the crash: each saga is left waiting on its charge

    const messages: string[] = [];
    const second = await shopOn(database, paymentsModule, recordingLogger(messages));
    try {
      const [payment] = (await second.client(payments).listPayments({ customerId: paid }, asCustomer(paid))).payments;
      expect(payment).toMatchObject({ status: 'captured', amountCents: 2000 });
      // Recovery waits for the calls' deadline (6 s) and a grace, then places the paid order...
      await vi.waitFor(async () => {
        expect(await second.client(orders).listOrders({ customerId: paid }, asCustomer(paid))).toEqual({
          orders: [expect.objectContaining({ orderId: payment?.orderId, status: 'placed', paymentId: payment?.paymentId })],
        });
      }, EVENTUALLY);
      // ... whose orderPlaced commits the stock and sends one e-mail; the unpaid order's reservation is released.
      await vi.waitFor(async () => {
        expect(await second.client(inventory).getStock({ sku })).toEqual({ sku, onHand: 8, reserved: 0, available: 8 });
        expect(await topics(second, paid)).toEqual(['order-placed']);
      }, EVENTUALLY);
      // Recovery logs each saga once it has finished it: the unpaid order's stock may be released before its line.
      await vi.waitFor(() => {
        expect(messages).toEqual(expect.arrayContaining(['order recovery: order completed', 'order recovery: order compensated']));
      }, EVENTUALLY);
      expect(await second.client(payments).listPayments({ customerId: unpaid }, asCustomer(unpaid))).toEqual({ payments: [] });
      expect(await second.client(orders).listOrders({ customerId: unpaid }, asCustomer(unpaid))).toEqual({ orders: [] });

      // A retry with each key, once the kernel lets the first attempt's key go: the same order, charged once; and the
      // undone order, whose charge arriving late captures nothing.
      const retry = (customerId: string) =>
        second.client(orders).placeOrder({ customerId, lines: [{ sku, quantity: 2 }], card: VISA }, { idempotencyKey: `checkout-${customerId}` });
      const settled = async (customerId: string) => {
        for (;;) {
          const outcome = await retry(customerId).catch((error: unknown) => error);
          if (!isKeelError(outcome, KeelErrorCode.IDEMPOTENCY_KEY_IN_USE)) return outcome;
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      };
      expect(await settled(paid)).toMatchObject({ orderId: payment?.orderId, status: 'placed' });
      expect((await second.client(payments).listPayments({ customerId: paid }, asCustomer(paid))).payments).toHaveLength(1);
      const failed = await settled(unpaid);
      expect(failed).toBeInstanceOf(OrderFailed);
      const { orderId } = (failed as InstanceType<typeof OrderFailed>).data;
      const late = await second.client(payments).charge({ orderId, customerId: unpaid, amountCents: 2000, card: VISA }).catch((error: unknown) => error);
      expect(late).toBeInstanceOf(ChargeCancelled);
      expect(await second.client(payments).listPayments({ customerId: unpaid }, asCustomer(unpaid))).toEqual({ payments: [] });
    } finally {
      await second.stop();
    }
  }, 60_000);
});
