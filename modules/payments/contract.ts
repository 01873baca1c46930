/**
 * The payments module's public door: card charges and refunds, through a simulated card
 * processor. Other modules import this file, and only this file, from `../payments/contract.js`.
 *
 * The simulated processor approves every card token except the {@link TestCard} tokens that
 * decline, and declines any charge above {@link CHARGE_LIMIT_CENTS}. A charge is idempotent per
 * order: charging an order again returns its first payment, so a caller may safely retry.
 *
 * A caller that gives up on an order (a saga compensating) calls `cancelCharge`: it refunds the
 * order's payment if one was captured, and otherwise makes sure none will be, so that a charge
 * still in flight when the caller gave up captures nothing (`ChargeCancelled`). Together with
 * `getPaymentForOrder`, this lets a caller that lost track of a charge (a timeout, a crash)
 * find out and settle it by the order id alone.
 *
 * @example
 * ```ts
 * import { payments, PaymentDeclined } from '../payments/contract.js';
 *
 * const cards = get(payments);
 * try {
 *   const { paymentId } = await cards.charge({ orderId, customerId, amountCents: 4200, card: { token: 'tok_visa' } });
 * } catch (error) {
 *   if (error instanceof PaymentDeclined) console.warn(`declined: ${error.data.reason}`);
 *   throw error;
 * }
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { ErrorKind, defineContract, defineError, event, operation, text, type Principal } from 'keel/contract';

/**
 * Card tokens the simulated processor understands. Any other token is approved.
 *
 * @example
 * ```ts
 * await cards.charge({ orderId, customerId, amountCents: 100, card: { token: TestCard.DECLINED } }); // PaymentDeclined
 * ```
 */
export const TestCard = {
  /** Approved. */
  VISA: 'tok_visa',
  /** Declined with reason `card_declined`. */
  DECLINED: 'tok_declined',
  /** Declined with reason `insufficient_funds`. */
  INSUFFICIENT_FUNDS: 'tok_insufficient_funds',
} as const;
/** A {@link TestCard} value. */
export type TestCard = (typeof TestCard)[keyof typeof TestCard];

/**
 * Charges above this many cents are declined with reason `amount_over_limit`.
 *
 * @example
 * ```ts
 * if (totalCents > CHARGE_LIMIT_CENTS) console.warn('this order will be declined');
 * ```
 */
export const CHARGE_LIMIT_CENTS = 500_000;

/**
 * An amount of money in integer cents. Payments keeps its own schema rather than borrowing the
 * catalog's, so that it depends on no other module.
 *
 * @example
 * ```ts
 * AmountCents.parse(4200); // $42.00
 * ```
 */
export const AmountCents = z.number().int().nonnegative().max(100_000_000);

/**
 * A tokenized card: the shop never sees card numbers.
 *
 * @example
 * ```ts
 * const card: Card = { token: 'tok_visa' };
 * ```
 */
export const Card = z.object({ token: text().min(1).max(200) });
/** A {@link Card} as callers receive it. */
export type Card = z.output<typeof Card>;

/**
 * Why a charge was declined.
 *
 * @example
 * ```ts
 * if (error instanceof PaymentDeclined && error.data.reason === DeclineReason.enum.insufficient_funds) askForAnotherCard();
 * ```
 */
export const DeclineReason = z.enum(['card_declined', 'insufficient_funds', 'amount_over_limit']);
/** A {@link DeclineReason} value. */
export type DeclineReason = z.output<typeof DeclineReason>;

/**
 * A captured payment, refunded or not.
 *
 * @example
 * ```ts
 * if (payment.status === 'refunded') console.log(`refunded at ${payment.refundedAt}`);
 * ```
 */
export const Payment = z.object({
  paymentId: text().min(1).max(100),
  orderId: text().min(1).max(100),
  customerId: text().min(1).max(100),
  amountCents: AmountCents,
  status: z.enum(['captured', 'refunded']),
  capturedAt: z.iso.datetime(),
  refundedAt: z.iso.datetime().nullable(),
});
/** A {@link Payment} as callers receive it. */
export type Payment = z.output<typeof Payment>;

/**
 * The card processor declined the charge. Nothing was captured.
 *
 * @example
 * ```ts
 * if (error instanceof PaymentDeclined) console.warn(error.data.reason);
 * ```
 */
export const PaymentDeclined = defineError({
  code: 'PAYMENT_DECLINED',
  kind: ErrorKind.UNPROCESSABLE,
  data: z.object({ orderId: z.string(), reason: DeclineReason }),
  description: 'The card processor declined the charge. Nothing was captured.',
  // No order id in the text: placeOrder passes this error on, and the order it names failed, so getOrder does not find it.
  message: (data) => `The card was declined (${data.reason}); nothing was charged. Ask the customer for another card.`,
});

/**
 * The order was already charged a different amount. Nothing new was captured.
 *
 * @example
 * ```ts
 * if (error instanceof PaymentConflict) console.warn(`already charged ${error.data.chargedCents}`);
 * ```
 */
export const PaymentConflict = defineError({
  code: 'PAYMENT_CONFLICT',
  kind: ErrorKind.CONFLICT,
  data: z.object({ orderId: z.string(), paymentId: z.string(), chargedCents: AmountCents, requestedCents: AmountCents }),
  description: 'The order was already charged a different amount. Nothing new was captured.',
  message: (data) =>
    `Order ${data.orderId} was already charged ${data.chargedCents} cents (payment ${data.paymentId}), ` +
    `not ${data.requestedCents}. Refund that payment first, or charge under a new order id.`,
});

/**
 * Whether `principal` may see what is a customer's own (its payments, orders and notifications):
 * it is that customer (its subject is the `customerId`) or has the admin role. The shop's
 * contracts declare it as the `auth` of a customer's lists; the modules check it against a row's
 * `customerId` where the rule needs the row (a payment, an order), and orders for a signed-in
 * caller placing an order.
 *
 * @example
 * ```ts
 * listPayments: operation({ input, output, auth: (principal, { customerId }) => customersOwn(principal, customerId) }),
 * ```
 */
export function customersOwn(principal: Principal | undefined, customerId: string): boolean {
  return principal !== undefined && (principal.sub === customerId || principal.roles.includes('admin'));
}

/**
 * No payment has this id.
 *
 * @example
 * ```ts
 * if (error instanceof UnknownPayment) console.warn(`no payment ${error.data.paymentId}`);
 * ```
 */
export const UnknownPayment = defineError({
  code: 'UNKNOWN_PAYMENT',
  kind: ErrorKind.NOT_FOUND,
  data: z.object({ paymentId: z.string() }),
  description: "No payment has this id, or none of the caller's: another customer's payment is not found.",
  message: (data) =>
    `No payment has id "${data.paymentId}", or it is another customer's. Use the paymentId of the order, as its customer ` +
    '(an admin may read any).',
});

/**
 * The order's charge was cancelled (`cancelCharge`) before it was captured. Nothing was captured.
 *
 * @example
 * ```ts
 * if (error instanceof ChargeCancelled) console.warn(`order ${error.data.orderId} was given up; charge a new order`);
 * ```
 */
export const ChargeCancelled = defineError({
  code: 'CHARGE_CANCELLED',
  kind: ErrorKind.CONFLICT,
  data: z.object({ orderId: z.string() }),
  description: "The order's charge was cancelled (payments.cancelCharge) before it was captured. Nothing was captured.",
  message: (data) => `The charge of order ${data.orderId} was cancelled before it was captured; nothing was charged. Charge under a new order id.`,
});

const PaymentEvent = Payment.pick({ paymentId: true, orderId: true, customerId: true, amountCents: true });

/**
 * The payments contract.
 *
 * @example
 * ```ts
 * const cards = kernel.client(payments);
 * const payment = await cards.charge({ orderId: 'o-1', customerId: 'c-1', amountCents: 4200, card: { token: 'tok_visa' } });
 * await cards.refund({ paymentId: payment.paymentId });
 * ```
 */
export const payments = defineContract({
  name: 'payments',
  // 1.2.0: charge, cancelCharge and refund are internal (orders calls them; the HTTP gateway does not serve them).
  // 2.0.0: listPayments and getPayment are the customer's own (auth), which refuses their anonymous callers;
  // getPaymentForOrder is internal (orders' recovery calls it).
  // 3.0.0: every id and the card token are text(), refusing what a database cannot store (a NUL, a lone
  // surrogate), which failed as INTERNAL; a paymentId is at most 100 characters. keel contracts diff calls
  // the narrower inputs breaking.
  version: '3.0.0',
  description:
    'Card charges and refunds through a simulated card processor. Charges are idempotent per order; a charge an ' +
    'order gave up on is cancelled by the order id (refunded, or never captured).',
  operations: {
    charge: operation({
      description:
        "Captures a payment for an order. Charging an order again returns its first payment (whatever that payment's " +
        'status); charging it a different amount fails with PAYMENT_CONFLICT, and charging an order whose charge was ' +
        'cancelled fails with CHARGE_CANCELLED. Declined charges are not recorded.',
      input: z.object({
        orderId: Payment.shape.orderId,
        customerId: Payment.shape.customerId,
        amountCents: AmountCents.positive(),
        card: Card,
      }),
      output: Payment,
      errors: [PaymentDeclined, PaymentConflict, ChargeCancelled],
      idempotent: true,
      // Steps of orders' saga, not for shoppers: no HTTP route.
      internal: true,
    }),
    cancelCharge: operation({
      description:
        "Gives up on an order's charge: refunds its payment if one was captured (as refund does), and otherwise " +
        'records the order as cancelled, so that a charge for it arriving later captures nothing. Idempotent.',
      input: z.object({ orderId: Payment.shape.orderId }),
      output: z.object({ orderId: Payment.shape.orderId, payment: Payment.nullable() }),
      idempotent: true,
      internal: true,
    }),
    refund: operation({
      description: 'Refunds a payment in full. Refunding it again returns it unchanged.',
      input: z.object({ paymentId: Payment.shape.paymentId }),
      output: Payment,
      errors: [UnknownPayment],
      idempotent: true,
      internal: true,
    }),
    getPayment: operation({
      description:
        "Reads one payment. The customer's own: the caller's principal must be the payment's customer (its subject is " +
        'the customerId) or have the admin role; a payment of another customer is not found.',
      input: z.object({ paymentId: Payment.shape.paymentId }),
      output: Payment,
      errors: [UnknownPayment],
      idempotent: true,
      auth: 'required',
    }),
    getPaymentForOrder: operation({
      description:
        "Reads an order's payment, captured or refunded; null when the order was never charged. For orders' recovery: " +
        'other modules only.',
      input: z.object({ orderId: Payment.shape.orderId }),
      output: z.object({ payment: Payment.nullable() }),
      idempotent: true,
      internal: true,
    }),
    listPayments: operation({
      description:
        "Lists a customer's payments, oldest first. The customer's own: the caller's principal must be that customer " +
        '(its subject is the customerId) or have the admin role.',
      input: z.object({ customerId: Payment.shape.customerId }),
      output: z.object({ payments: z.array(Payment) }),
      idempotent: true,
      auth: (principal, { customerId }) => customersOwn(principal, customerId),
    }),
  },
  events: {
    paymentCaptured: event({
      description: 'A payment was captured.',
      payload: PaymentEvent.extend({ capturedAt: z.iso.datetime() }),
    }),
    paymentRefunded: event({
      description: 'A payment was refunded in full.',
      delivery: 'durable',
      payload: PaymentEvent.extend({ refundedAt: z.iso.datetime() }),
    }),
  },
});
