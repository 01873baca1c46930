/**
 * The payments module: implements {@link payments} with a simulated card processor, keeping
 * its payments in its own schema ({@link PaymentRepository}, `migrations/`).
 */
import { randomUUID } from 'node:crypto';
import { defineModule } from 'keel';
import { authorize } from './card-processor.js';
import { ChargeCancelled, PaymentConflict, PaymentDeclined, UnknownPayment, customersOwn, payments, type Payment } from './contract.js';
import { PaymentRepository } from './payment-repository.js';

/**
 * The payments module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [paymentsModule], database: await createPGliteDatabase() });
 * await kernel.start();
 * await kernel.client(payments).charge({ orderId: 'o-1', customerId: 'c-1', amountCents: 100, card: { token: 'tok_visa' } });
 * ```
 */
export const paymentsModule = defineModule({
  contract: payments,
  data: { migrations: new URL('./migrations/', import.meta.url) },
  create: ({ db, emit, logger }) => {
    const store = new PaymentRepository(db);

    /** Refunds `payment` once; call it in a transaction holding the payment's row. */
    const refundOnce = async (payment: Payment): Promise<Payment> => {
      if (payment.status === 'refunded') return payment;
      const refundedAt = new Date().toISOString();
      await store.markRefunded(payment.paymentId, refundedAt);
      logger.info({ orderId: payment.orderId, paymentId: payment.paymentId, amountCents: payment.amountCents }, 'payment refunded');
      const { paymentId, orderId, customerId, amountCents } = payment;
      // Written to the outbox in this transaction: published once it commits, never if it rolls back.
      await emit('paymentRefunded', { paymentId, orderId, customerId, amountCents, refundedAt });
      return { ...payment, status: 'refunded', refundedAt };
    };

    return {
      handlers: {
        charge: ({ orderId, customerId, amountCents, card }) =>
          db.transaction(async () => {
            await store.lockOrder(orderId);
            const existing = await store.forOrder(orderId);
            if (existing !== undefined) {
              if (existing.amountCents !== amountCents) {
                throw new PaymentConflict({ orderId, paymentId: existing.paymentId, chargedCents: existing.amountCents, requestedCents: amountCents });
              }
              return existing;
            }
            if (await store.isChargeCancelled(orderId)) throw new ChargeCancelled({ orderId });
            // The simulated processor answers at once. A real one is called before this transaction, with the
            // order id as the processor's own idempotency key, and its answer recorded here.
            const decision = authorize(card.token, amountCents);
            if (!decision.approved) {
              logger.info({ orderId, amountCents, reason: decision.reason }, 'charge declined');
              throw new PaymentDeclined({ orderId, reason: decision.reason });
            }
            const payment: Payment = {
              paymentId: `pay_${randomUUID()}`,
              orderId,
              customerId,
              amountCents,
              status: 'captured',
              capturedAt: new Date().toISOString(),
              refundedAt: null,
            };
            await store.insert(payment);
            logger.info({ orderId, paymentId: payment.paymentId, amountCents }, 'payment captured');
            await emit('paymentCaptured', { paymentId: payment.paymentId, orderId, customerId, amountCents, capturedAt: payment.capturedAt });
            return payment;
          }),

        refund: ({ paymentId }) =>
          db.transaction(async () => {
            const payment = await store.get(paymentId, true);
            if (payment === undefined) throw new UnknownPayment({ paymentId });
            return refundOnce(payment);
          }),

        cancelCharge: ({ orderId }) =>
          db.transaction(async () => {
            await store.lockOrder(orderId);
            const payment = await store.forOrder(orderId, true);
            if (payment !== undefined) return { orderId, payment: await refundOnce(payment) };
            await store.recordChargeCancelled(orderId);
            logger.info({ orderId }, 'charge cancelled before any was captured');
            return { orderId, payment: null };
          }),

        getPayment: async ({ paymentId }, { principal }) => {
          const payment = await store.get(paymentId);
          // Another customer's payment is not found: its existence is not the caller's to learn.
          if (payment === undefined || !customersOwn(principal, payment.customerId)) throw new UnknownPayment({ paymentId });
          return payment;
        },

        getPaymentForOrder: async ({ orderId }) => ({ payment: (await store.forOrder(orderId)) ?? null }),

        listPayments: async ({ customerId }) => ({ payments: await store.forCustomer(customerId) }),
      },
    };
  },
});
