import { randomUUID } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import { isKeelError } from 'keel';
import { UnknownProduct, catalog } from '../modules/catalog/contract.js';
import { catalogModule } from '../modules/catalog/module.js';
import { MAX_ON_HAND, OutOfStock, ShelfFull, inventory } from '../modules/inventory/contract.js';
import { inventoryModule } from '../modules/inventory/module.js';
import { orders } from '../modules/orders/contract.js';
import { AS_ADMIN, CUSTOMER } from './support/shop-auth.js';
import { EVENTUALLY, describeInTopologies } from './support/shop-module-harness.js';
import { eventRecorder, eventSource } from './support/shop-suite.js';

describeInTopologies('inventory - stock and reservations', (boot) => {
  // The real orders module is replaced by one that only publishes orders events, so that each
  // test decides which events arrive, how often, and in which order.
  const fakeOrders = eventSource(orders);
  const stockEvents = eventRecorder(inventory);
  const app = boot({ modules: [catalogModule, inventoryModule, fakeOrders.module, stockEvents.module] });
  const stock = () => app.client(inventory);

  const newProduct = async (onHand: number): Promise<string> => {
    const sku = `SKU-${randomUUID()}`;
    await app.client(catalog).addProduct({ sku, name: `Product ${sku}`, priceCents: 1000 }, AS_ADMIN);
    if (onHand > 0) await stock().restock({ sku, quantity: onHand }, AS_ADMIN);
    return sku;
  };
  const level = (sku: string, onHand: number, reserved: number) => ({ sku, onHand, reserved, available: onHand - reserved });
  const now = () => new Date().toISOString();
  const placed = (orderId: string, sku: string, quantity: number) =>
    fakeOrders.emit('orderPlaced', {
      orderId,
      customerId: 'c-1',
      lines: [{ sku, quantity, unitPriceCents: 1000 }],
      totalCents: quantity * 1000,
      paymentId: `pay_${orderId}`,
      placedAt: now(),
    });
  const cancelled = (orderId: string, sku: string, quantity: number) =>
    fakeOrders.emit('orderCancelled', {
      orderId,
      customerId: 'c-1',
      lines: [{ sku, quantity, unitPriceCents: 1000 }],
      refundedCents: quantity * 1000,
      cancelledAt: now(),
    });
  /**
   * Resolves once the inventory handled an orders event emitted after the others. It receives them in the order
   * they were published, but over NATS their handlers (each a transaction) may run side by side, so a test first
   * waits for the state it expects, then for this, to give a duplicate or late event its chance to change it.
   */
  const drained = async (): Promise<void> => {
    const sentinel = await newProduct(1);
    const orderId = randomUUID();
    await stock().reserve({ orderId, lines: [{ sku: sentinel, quantity: 1 }] });
    await placed(orderId, sentinel, 1);
    await vi.waitFor(async () => expect((await stock().getStock({ sku: sentinel })).onHand).toBe(0), EVENTUALLY);
  };

  it('inventory - starts with stock for the seeded catalog', async () => {
    expect((await stock().getStock({ sku: 'KB-001' })).onHand).toBeGreaterThan(0);
  });

  it('inventory - restock adds units; a product never stocked has none', async () => {
    const sku = await newProduct(0);
    expect(await stock().getStock({ sku })).toEqual(level(sku, 0, 0));
    expect(await stock().restock({ sku, quantity: 3 }, AS_ADMIN)).toEqual(level(sku, 3, 0));
    expect(await stock().restock({ sku, quantity: 4 }, AS_ADMIN)).toEqual(level(sku, 7, 0));
  });

  it('inventory - restock past MAX_ON_HAND units on hand is SHELF_FULL naming the room left, and adds nothing, also for two restocks at once that fit only apart; a quantity past the column is refused as input', async () => {
    const sku = await newProduct(0);
    expect(await stock().restock({ sku, quantity: MAX_ON_HAND - 5 }, AS_ADMIN)).toEqual(level(sku, MAX_ON_HAND - 5, 0));
    const full = await stock()
      .restock({ sku, quantity: 6 }, AS_ADMIN)
      .catch((error: unknown) => error);
    expect(full, String(full)).toBeInstanceOf(ShelfFull);
    expect((full as InstanceType<typeof ShelfFull>).data).toEqual({ sku, onHand: MAX_ON_HAND - 5, requested: 6, limit: MAX_ON_HAND });
    expect((full as Error).message).toContain('restock at most 5');
    expect(await stock().getStock({ sku })).toEqual(level(sku, MAX_ON_HAND - 5, 0));
    // Two restocks at once that each fit but not together: one is applied, the other is SHELF_FULL.
    const both = await Promise.allSettled([stock().restock({ sku, quantity: 5 }, AS_ADMIN), stock().restock({ sku, quantity: 5 }, AS_ADMIN)]);
    expect(both.map((outcome) => outcome.status).sort()).toEqual(['fulfilled', 'rejected']);
    const refused = both.find((outcome) => outcome.status === 'rejected')?.reason as InstanceType<typeof ShelfFull>;
    expect(refused).toBeInstanceOf(ShelfFull);
    // The level it names is the one that refused it, read in the refusing transaction: the other restock's.
    expect(refused.data).toEqual({ sku, onHand: MAX_ON_HAND, requested: 5, limit: MAX_ON_HAND });
    expect(refused.message).toContain('it is full');
    expect(await stock().getStock({ sku })).toEqual(level(sku, MAX_ON_HAND, 0));
    const atLimit = await stock()
      .restock({ sku, quantity: 1 }, AS_ADMIN)
      .catch((error: unknown) => error);
    expect((atLimit as Error).message).toContain('Nothing was added; it is full.');
    // Past the integer column's range at once: refused by the contract, named, before any SQL.
    const huge = await stock()
      .restock({ sku, quantity: 3_000_000_000 }, AS_ADMIN)
      .catch((error: unknown) => error);
    expect(isKeelError(huge, 'INVALID_INPUT'), String(huge)).toBe(true);
    expect((huge as Error).message).toContain('quantity');
  });

  it('inventory - restock is for admins: without a principal it is UNAUTHENTICATED, for a customer FORBIDDEN, and the stock is unchanged', async () => {
    const sku = await newProduct(2);

    const anonymous = await stock()
      .restock({ sku, quantity: 5 })
      .catch((error: unknown) => error);
    expect(isKeelError(anonymous, 'UNAUTHENTICATED')).toBe(true);
    expect((anonymous as Error).message).toContain('inventory.restock needs a caller identity');
    const customer = await stock()
      .restock({ sku, quantity: 5 }, { principal: CUSTOMER })
      .catch((error: unknown) => error);
    expect(isKeelError(customer, 'FORBIDDEN')).toBe(true);
    expect(await stock().getStock({ sku })).toEqual(level(sku, 2, 0));

    expect(await stock().restock({ sku, quantity: 5 }, AS_ADMIN)).toEqual(level(sku, 7, 0));
  });

  it('inventory - a SKU the catalog does not know fails with UnknownProduct', async () => {
    const sku = `SKU-${randomUUID()}`;
    await expect(stock().restock({ sku, quantity: 1 }, AS_ADMIN)).rejects.toBeInstanceOf(UnknownProduct);
    const failure = await stock()
      .getStock({ sku })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UnknownProduct);
    expect((failure as InstanceType<typeof UnknownProduct>).data).toEqual({ sku });
  });

  it('inventory - reserve holds every line or none', async () => {
    const a = await newProduct(5);
    const b = await newProduct(2);

    const failure = await stock()
      .reserve({ orderId: randomUUID(), lines: [{ sku: a, quantity: 5 }, { sku: b, quantity: 3 }] })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OutOfStock);
    expect((failure as InstanceType<typeof OutOfStock>).data).toEqual({ sku: b, requested: 3, available: 2 });
    expect(await stock().getStock({ sku: a })).toEqual(level(a, 5, 0));

    const orderId = randomUUID();
    const reservation = await stock().reserve({ orderId, lines: [{ sku: a, quantity: 4 }, { sku: b, quantity: 2 }] });
    expect(reservation).toEqual({ orderId, lines: [{ sku: a, quantity: 4 }, { sku: b, quantity: 2 }], status: 'reserved' });
    expect(await stock().getStock({ sku: a })).toEqual(level(a, 5, 4));
    expect(await stock().getStock({ sku: b })).toEqual(level(b, 2, 2));
  });

  it('inventory - reserving the same order again reserves nothing more', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    const first = await stock().reserve({ orderId, lines: [{ sku, quantity: 3 }] });
    expect(await stock().reserve({ orderId, lines: [{ sku, quantity: 3 }] })).toEqual(first);
    expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 3));
  });

  it('inventory - release frees reserved units once', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    await stock().reserve({ orderId, lines: [{ sku, quantity: 4 }] });

    expect(await stock().release({ orderId })).toMatchObject({ orderId, status: 'released' });
    expect(await stock().release({ orderId })).toMatchObject({ orderId, status: 'released' });
    expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0));
  });

  it('inventory - releasing an unknown order makes a late reserve for it hold nothing', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    expect(await stock().release({ orderId })).toEqual({ orderId, lines: [], status: 'released' });
    expect(await stock().reserve({ orderId, lines: [{ sku, quantity: 2 }] })).toMatchObject({ status: 'released' });
    expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0));
  });

  it('inventory - orderPlaced commits the reservation once, however often it is delivered', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    await stock().reserve({ orderId, lines: [{ sku, quantity: 3 }] });

    await placed(orderId, sku, 3);
    await placed(orderId, sku, 3);
    await vi.waitFor(async () => expect(await stock().getStock({ sku })).toEqual(level(sku, 7, 0)), EVENTUALLY);
    await drained();

    expect(await stock().getStock({ sku })).toEqual(level(sku, 7, 0));
    // A committed reservation is no longer releasable.
    expect(await stock().release({ orderId })).toMatchObject({ status: 'committed' });
    expect(await stock().getStock({ sku })).toEqual(level(sku, 7, 0));
  });

  it('inventory - orderCancelled after orderPlaced puts the units back on the shelf once', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    await stock().reserve({ orderId, lines: [{ sku, quantity: 3 }] });
    await placed(orderId, sku, 3);
    await vi.waitFor(async () => expect(await stock().getStock({ sku })).toEqual(level(sku, 7, 0)), EVENTUALLY);

    await cancelled(orderId, sku, 3);
    await cancelled(orderId, sku, 3);
    await placed(orderId, sku, 3);
    await vi.waitFor(async () => expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0)), EVENTUALLY);
    await drained();

    // The redelivered orderCancelled and a late orderPlaced changed nothing.
    expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0));
    expect(await stock().release({ orderId })).toMatchObject({ status: 'returned' });
  });

  it('inventory - orderCancelled arriving before orderPlaced releases, and the late orderPlaced commits nothing', async () => {
    const sku = await newProduct(10);
    const orderId = randomUUID();
    await stock().reserve({ orderId, lines: [{ sku, quantity: 3 }] });

    await cancelled(orderId, sku, 3);
    await vi.waitFor(async () => expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0)), EVENTUALLY);
    await placed(orderId, sku, 3);
    await drained();

    expect(await stock().getStock({ sku })).toEqual(level(sku, 10, 0));
    expect(await stock().release({ orderId })).toMatchObject({ status: 'released' });
  });

  it('inventory - stockLow is announced once when a reservation crosses the threshold', async () => {
    const sku = await newProduct(8);
    const lowFor = () => stockEvents.of('stockLow').filter((event) => event.sku === sku);

    await stock().reserve({ orderId: randomUUID(), lines: [{ sku, quantity: 3 }] }); // 5 left: not below 5
    await stock().reserve({ orderId: randomUUID(), lines: [{ sku, quantity: 2 }] }); // 3 left: crosses
    await stock().reserve({ orderId: randomUUID(), lines: [{ sku, quantity: 1 }] }); // 2 left: already low

    await vi.waitFor(() => expect(lowFor()).toEqual([{ sku, available: 3, threshold: 5 }]), EVENTUALLY);
  });
});
