/**
 * A call hedging at a percentile reads its hedge delay from the latencies of recent attempts
 * (LatencyWindow). The attempt a hedge beat is cancelled (its handler's signal aborts): it must
 * still reach the window, as the hedge delay it outlasted, or the window keeps only the attempts
 * faster than the delay and the delay sinks call after call; as the time it ran, it would raise
 * the delay call after call while an instance never answers.
 */
import { describe, expect, it } from 'vitest';
import { KeelErrorCode, KeelError } from 'keel';
import { LatencyWindow, ResilientCall, type CallPlan } from '../kernel/resilient-call.js';

function planOf(send: CallPlan['send'], latencies: LatencyWindow): CallPlan {
  return {
    address: { contract: 'depot', version: '1.0.0', operation: 'read' },
    label: 'depot.read',
    caller: 'test',
    transport: 'test',
    idempotent: true,
    send,
    breaker: undefined,
    ownTimeoutMs: 10_000,
    latencies,
    observers: undefined,
  };
}

describe('a call hedging at a percentile', () => {
  it('records its cancelled losing attempt as the hedge delay it outlasted, not only the winner\'s latency, and not the time it ran', async () => {
    const latencies = new LatencyWindow();
    // 20 fast samples so that the percentile is read: 10 ms each.
    for (let index = 0; index < 20; index++) latencies.record(10);
    let attempt = 0;
    const send: CallPlan['send'] = (_input, context, signal) => {
      attempt += 1;
      if (attempt === 2) return new Promise((resolve) => setTimeout(() => resolve('hedge'), 5));
      // The first attempt hangs until its signal aborts (the hedge won): then CANCELLED, as a transport answers.
      return new Promise((_resolve, reject) => {
        signal?.addEventListener('abort', () => reject(new KeelError(KeelErrorCode.CANCELLED, 'cancelled', { correlationId: context.correlationId })), {
          once: true,
        });
      });
    };
    const context = { correlationId: 'c-1', traceparent: undefined, caller: 'test', deadline: Date.now() + 5_000 };
    const call = new ResilientCall(
      planOf(send, latencies),
      {},
      context,
      undefined,
      { maxAttempts: 2, backoffMs: 10, maxBackoffMs: 100, attemptTimeoutMs: undefined },
      // A delay far above the winner's 5 ms, so that a winner slowed by a loaded machine is not the largest sample.
      { delayMs: 1_000, percentile: 50, maxAttempts: 2 },
      0,
    );
    expect(await call.start(Date.now())).toBe('hedge');
    await new Promise((resolve) => setTimeout(resolve, 20));
    // The window recomputes every 32 samples: 2 of the call (the loser's, the 1 000 ms it waited before the hedge; the hedge's, about 5 ms) and 30 more.
    for (let index = 0; index < 30; index++) latencies.record(10);
    // At the 100th percentile, the largest: the loser's, recorded as the hedge delay, not the ~1 005 ms it ran
    // (which, with an instance that never answers, would raise the delay call after call).
    expect(latencies.value(100)).toBe(1_000);
  });
});
