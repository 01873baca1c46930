import { randomUUID } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import {
  CHARGE_LIMIT_CENTS,
  PaymentConflict,
  PaymentDeclined,
  TestCard,
  UnknownPayment,
  payments,
} from '../modules/payments/contract.js';
import { paymentsModule } from '../modules/payments/module.js';
import { EVENTUALLY, describeInTopologies } from './support/shop-module-harness.js';
import { AS_ADMIN, asCustomer } from './support/shop-auth.js';
import { eventRecorder } from './support/shop-suite.js';

describeInTopologies('payments - charges and refunds', (boot) => {
  const events = eventRecorder(payments);
  const app = boot({ modules: [paymentsModule, events.module] });
  const cards = () => app.client(payments);
  const newCharge = (amountCents = 2500, token: string = TestCard.VISA) => ({
    orderId: randomUUID(),
    customerId: `customer-${randomUUID()}`,
    amountCents,
    card: { token },
  });

  it('payments - charge captures a payment and announces paymentCaptured', async () => {
    const charge = newCharge(2500);
    const payment = await cards().charge(charge);

    expect(payment).toEqual({
      paymentId: expect.stringMatching(/^pay_/),
      orderId: charge.orderId,
      customerId: charge.customerId,
      amountCents: 2500,
      status: 'captured',
      capturedAt: expect.any(String),
      refundedAt: null,
    });
    expect(await cards().getPayment({ paymentId: payment.paymentId }, asCustomer(charge.customerId))).toEqual(payment);
    expect(await cards().listPayments({ customerId: charge.customerId }, asCustomer(charge.customerId))).toEqual({ payments: [payment] });
    await vi.waitFor(() =>
      expect(events.of('paymentCaptured')).toContainEqual({
        paymentId: payment.paymentId,
        orderId: charge.orderId,
        customerId: charge.customerId,
        amountCents: 2500,
        capturedAt: payment.capturedAt,
      }),
      EVENTUALLY,
    );
  });

  it('payments - charging an order again returns its payment and captures nothing more', async () => {
    const charge = newCharge(990);
    const first = await cards().charge(charge);
    const again = await Promise.all([cards().charge(charge), cards().charge(charge)]);

    expect(again).toEqual([first, first]);
    expect((await cards().listPayments({ customerId: charge.customerId }, asCustomer(charge.customerId))).payments).toHaveLength(1);
    await vi.waitFor(() => expect(events.of('paymentCaptured').filter((e) => e.orderId === charge.orderId)).toHaveLength(1), EVENTUALLY);
  });

  it('payments - charging an order again with another amount fails with PaymentConflict', async () => {
    const charge = newCharge(1000);
    const first = await cards().charge(charge);
    const failure = await cards()
      .charge({ ...charge, amountCents: 2000 })
      .catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(PaymentConflict);
    expect((failure as InstanceType<typeof PaymentConflict>).data).toEqual({
      orderId: charge.orderId,
      paymentId: first.paymentId,
      chargedCents: 1000,
      requestedCents: 2000,
    });
  });

  it('payments - declines test cards and amounts over the limit, recording nothing', async () => {
    const cases = [
      [newCharge(100, TestCard.DECLINED), 'card_declined'],
      [newCharge(100, TestCard.INSUFFICIENT_FUNDS), 'insufficient_funds'],
      [newCharge(CHARGE_LIMIT_CENTS + 1), 'amount_over_limit'],
    ] as const;
    for (const [charge, reason] of cases) {
      const failure = await cards()
        .charge(charge)
        .catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(PaymentDeclined);
      expect((failure as InstanceType<typeof PaymentDeclined>).data).toEqual({ orderId: charge.orderId, reason });
      expect(await cards().listPayments({ customerId: charge.customerId }, asCustomer(charge.customerId))).toEqual({ payments: [] });
    }
    expect(await cards().charge(newCharge(CHARGE_LIMIT_CENTS))).toMatchObject({ status: 'captured' });
  });

  it('payments - a declined order can be charged again with another card', async () => {
    const charge = newCharge(700, TestCard.DECLINED);
    await expect(cards().charge(charge)).rejects.toBeInstanceOf(PaymentDeclined);
    const payment = await cards().charge({ ...charge, card: { token: TestCard.VISA } });
    expect(payment).toMatchObject({ orderId: charge.orderId, status: 'captured' });
  });

  it('payments - refund marks the payment refunded once and announces paymentRefunded once', async () => {
    const payment = await cards().charge(newCharge(4200));

    const refunded = await cards().refund({ paymentId: payment.paymentId });
    const again = await cards().refund({ paymentId: payment.paymentId });

    expect(refunded).toEqual({ ...payment, status: 'refunded', refundedAt: expect.any(String) });
    expect(again).toEqual(refunded);
    expect(await cards().getPayment({ paymentId: payment.paymentId }, asCustomer(payment.customerId))).toEqual(refunded);
    await vi.waitFor(() =>
      expect(events.of('paymentRefunded').filter((e) => e.paymentId === payment.paymentId)).toEqual([
        {
          paymentId: payment.paymentId,
          orderId: payment.orderId,
          customerId: payment.customerId,
          amountCents: 4200,
          refundedAt: refunded.refundedAt,
        },
      ]),
      EVENTUALLY,
    );
  });

  it('payments - an unknown payment id fails with UnknownPayment', async () => {
    const paymentId = `pay_${randomUUID()}`;
    await expect(cards().refund({ paymentId })).rejects.toBeInstanceOf(UnknownPayment);
    const failure = await cards()
      .getPayment({ paymentId }, AS_ADMIN)
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UnknownPayment);
    expect((failure as InstanceType<typeof UnknownPayment>).data).toEqual({ paymentId });
  });
});
