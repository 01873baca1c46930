/**
 * A keyed call whose attempt met IDEMPOTENCY_KEY_IN_USE (an earlier request with its key still
 * runs: the outcome is not known yet), and whose later attempt was refused as not processed
 * (UNAVAILABLE: a callee stopping, RESOURCE_EXHAUSTED: at its limit), must not end with that
 * refusal: it says nothing ran, while the request of the key runs and may yet charge or reserve.
 * A caller that takes a retryable failure for "did not run" (the shop's order saga, which then
 * does not cancel the charge) would leave a charge standing for an order it failed.
 */
import { describe, expect, it } from 'vitest';
import { KeelErrorCode, KeelError } from 'keel';
import { LatencyWindow, ResilientCall, type CallPlan } from '../kernel/resilient-call.js';

function planOf(send: CallPlan['send']): CallPlan {
  return {
    address: { contract: 'payments', version: '1.0.0', operation: 'charge' },
    label: 'payments.charge',
    caller: 'test',
    transport: 'test',
    idempotent: false,
    send,
    breaker: undefined,
    ownTimeoutMs: 10_000,
    latencies: new LatencyWindow(),
    observers: undefined,
  };
}

describe('a keyed call with retries', () => {
  for (const code of [KeelErrorCode.UNAVAILABLE, KeelErrorCode.RESOURCE_EXHAUSTED, KeelErrorCode.NO_RESPONDERS]) {
    it(`ends IDEMPOTENCY_KEY_IN_USE, not ${code}, when a later attempt is refused as not processed after one met its key's request still running`, async () => {
      let attempt = 0;
      const send: CallPlan['send'] = async (_input, context) => {
        attempt += 1;
        if (attempt === 1) {
          throw new KeelError(KeelErrorCode.IDEMPOTENCY_KEY_IN_USE, 'payments.charge: a request with idempotency key "o-1" is still running.', {
            correlationId: context.correlationId,
          });
        }
        throw new KeelError(code, `payments.charge was not processed (${code}).`, { correlationId: context.correlationId });
      };
      const context = { correlationId: 'c-1', traceparent: undefined, caller: 'test', deadline: Date.now() + 5_000, idempotencyKey: 'o-1' };
      const call = new ResilientCall(planOf(send), {}, context, undefined, { maxAttempts: 2, backoffMs: 1, maxBackoffMs: 1, attemptTimeoutMs: undefined }, undefined, 0);
      const error = await call.start(Date.now()).then(
        () => expect.unreachable('the call succeeded'),
        (failure: unknown) => failure as KeelError,
      );
      expect(attempt).toBe(2);
      expect(error.code).toBe(KeelErrorCode.IDEMPOTENCY_KEY_IN_USE);
      expect(error.retryable).toBe(false);
      expect(error.details?.['attempts']).toBe(2);
    });
  }
});
