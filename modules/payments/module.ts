/**
 * The payments module: implements {@link payments} with a simulated card processor and an
 * in-memory {@link PaymentStore}.
 */
import { randomUUID } from 'node:crypto';
import { defineModule } from 'keel';
import { authorize } from './card-processor.js';
import { PaymentConflict, PaymentDeclined, UnknownPayment, payments, type Payment } from './contract.js';
import { PaymentStore } from './payment-store.js';

/**
 * The payments module.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [paymentsModule] });
 * await kernel.start();
 * await kernel.client(payments).charge({ orderId: 'o-1', customerId: 'c-1', amountCents: 100, card: { token: 'tok_visa' } });
 * ```
 */
export const paymentsModule = defineModule({
  contract: payments,
  providers: (bind) => {
    bind(PaymentStore).toSelf().inSingletonScope();
  },
  create: ({ get, emit, logger }) => {
    const store = get(PaymentStore);
    return {
      handlers: {
        charge: async ({ orderId, customerId, amountCents, card }) => {
          const existing = store.forOrder(orderId);
          if (existing !== undefined) {
            if (existing.amountCents !== amountCents) {
              throw new PaymentConflict({
                orderId,
                paymentId: existing.paymentId,
                chargedCents: existing.amountCents,
                requestedCents: amountCents,
              });
            }
            return existing;
          }
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
          store.save(payment);
          logger.info({ orderId, paymentId: payment.paymentId, amountCents }, 'payment captured');
          await emit('paymentCaptured', {
            paymentId: payment.paymentId,
            orderId,
            customerId,
            amountCents,
            capturedAt: payment.capturedAt,
          });
          return payment;
        },
        refund: async ({ paymentId }) => {
          const payment = store.get(paymentId);
          if (payment === undefined) throw new UnknownPayment({ paymentId });
          if (payment.status === 'refunded') return payment;
          const refunded: Payment = { ...payment, status: 'refunded', refundedAt: new Date().toISOString() };
          store.save(refunded);
          logger.info({ orderId: payment.orderId, paymentId, amountCents: payment.amountCents }, 'payment refunded');
          await emit('paymentRefunded', {
            paymentId,
            orderId: payment.orderId,
            customerId: payment.customerId,
            amountCents: payment.amountCents,
            refundedAt: refunded.refundedAt as string,
          });
          return refunded;
        },
        getPayment: ({ paymentId }) => {
          const payment = store.get(paymentId);
          if (payment === undefined) throw new UnknownPayment({ paymentId });
          return payment;
        },
        listPayments: ({ customerId }) => ({ payments: store.forCustomer(customerId) }),
      },
    };
  },
});
