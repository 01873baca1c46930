/**
 * placeOrder resuming an order a first attempt with its idempotency key left pending (a crash or a
 * database failure after the charge, before the order was marked placed): that attempt may have
 * reserved and charged already. A step of the resumed saga that cannot run (UNAVAILABLE) proves
 * nothing of what the first attempt did: the order is undone whole, its charge cancelled
 * (refunded if captured), never failed with the first attempt's charge left standing.
 */
import { describe, expect, it } from 'vitest';
import { KeelError, KeelErrorCode } from 'keel';
import { OrderSaga, orderIdFor } from '../modules/orders/order-saga.js';
import type { OrderRecord } from '../modules/orders/order-repository.js';

function unavailable(): never {
  throw new KeelError(KeelErrorCode.UNAVAILABLE, 'inventory.reserve was not processed: inventory is stopping.');
}

describe('orders - a resumed order whose step cannot run', () => {
  for (const failing of ['reserve', 'charge'] as const) {
    it(`cancels the charge its first attempt may have made when ${failing} is UNAVAILABLE`, async () => {
      const customerId = 'c-1';
      const orderId = orderIdFor(customerId, 'k-1');
      const pending: OrderRecord = {
        orderId,
        customerId,
        status: 'pending',
        lines: [{ sku: 'S-1', name: 'One', quantity: 1, unitPriceCents: 500, lineTotalCents: 500 }],
        totalCents: 500,
        paymentId: null,
        failure: null,
        placedAt: null,
        cancelledAt: null,
      };
      const calls: string[] = [];
      const store = {
        get: async () => pending,
        takeOver: async () => true,
        claimForCompensation: async () => true,
        markFailed: async () => undefined,
      };
      const stock = {
        reserve: async () => (failing === 'reserve' ? unavailable() : { status: 'reserved' }),
        release: async () => void calls.push('release'),
      };
      const cards = {
        charge: async () => (failing === 'charge' ? unavailable() : { paymentId: 'p-1' }),
        cancelCharge: async () => void calls.push('cancelCharge'),
      };
      const logger = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined };
      const saga = new OrderSaga({} as never, store as never, {} as never, stock as never, cards as never, (async () => undefined) as never, logger as never);
      const context = { correlationId: 'c', traceparent: undefined, caller: 'external', deadline: Date.now() + 5_000, idempotencyKey: 'k-1' };
      const error = await saga.place({ customerId, lines: [{ sku: 'S-1', quantity: 1 }], card: { token: 'tok' } } as never, context).catch((caught: unknown) => caught);
      expect(isOrderNotPlaced(error), String(error)).toBe(true);
      expect(calls).toEqual(['release', 'cancelCharge']);
    });
  }
});

function isOrderNotPlaced(error: unknown): boolean {
  return (error as { code?: unknown })?.code === 'ORDER_NOT_PLACED';
}
