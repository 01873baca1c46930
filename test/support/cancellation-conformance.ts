/**
 * The conformance suite's part on a handler's cancellation signal (`callSignal()`), the same on
 * every transport: it aborts with TIMEOUT when the call's deadline passes, and with CANCELLED
 * when the caller gives up first (its signal aborted, or another attempt of a hedged call won),
 * also when the handler asks for it only after that happened. The callee (`waiter`) runs in a
 * kernel of its own and the caller in another, so every call and cancel crosses the transport.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { callSignal, createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel, type Transport } from 'keel';
import type { ConformanceTarget } from './conformance-app.js';
import { newKey, rejection } from './resilience-depot.js';

const Keyed = z.object({ key: z.string() });
const Done = z.object({ aborted: z.boolean(), attempt: z.number().int().nullable() });

const waiter = defineContract({
  name: 'waiter',
  version: '1.0.0',
  operations: {
    /** Waits for its signal to abort (at most 20 s), and records why. */
    waitForAbort: operation({ input: Keyed, output: Done }),
    /** Hedged: the first attempt per key waits for its signal to abort; later ones answer at once. */
    hedgedWait: operation({ input: Keyed, output: Done, idempotent: true, hedge: { delayMs: 50, maxAttempts: 2 } }),
    /** Hedged: every attempt waits for its signal to abort (recorded per attempt: `key#1`, `key#2`). */
    hedgedAllWait: operation({ input: Keyed, output: Done, idempotent: true, hedge: { delayMs: 50, maxAttempts: 2 } }),
    /** Waits until the test opens its gate, and only then asks for its signal: is it already aborted? */
    asksLate: operation({ input: Keyed, output: Done }),
    /** Answers at once: what the test sends after a cancel, so that the cancel is known to have arrived. */
    ping: operation({ input: Keyed, output: Done, idempotent: true }),
  },
});

/** What the waiter's handlers saw, by key; and the gates the test opens. */
class Seen {
  readonly started = new Set<string>();
  /** Why each key's signal aborted: the reason's code. */
  readonly reasons = new Map<string, string>();
  readonly gates = new Map<string, () => void>();
  readonly timers = new Set<NodeJS.Timeout>();

  /** Resolves when `signal` aborts (recording its reason for `key`), or after 20 s. */
  waitForAbort(key: string, signal: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 20_000);
      this.timers.add(timer);
      const aborted = () => {
        clearTimeout(timer);
        this.reasons.set(key, isKeelError(signal.reason) ? signal.reason.code : `not a KeelError: ${String(signal.reason)}`);
        resolve(true);
      };
      if (signal.aborted) aborted();
      else signal.addEventListener('abort', aborted, { once: true });
    });
  }

  gate(key: string): Promise<void> {
    return new Promise((resolve) => {
      this.gates.set(key, resolve);
      const timer = setTimeout(resolve, 20_000);
      this.timers.add(timer);
    });
  }
}

function waiterModule(seen: Seen) {
  return defineModule({
    contract: waiter,
    create: () => ({
      handlers: {
        waitForAbort: async ({ key }, context) => {
          const signal = callSignal();
          seen.started.add(key);
          return { aborted: await seen.waitForAbort(key, signal), attempt: context.callAttempt ?? null };
        },
        hedgedWait: async ({ key }, context) => {
          if (context.callAttempt !== undefined) return { aborted: false, attempt: context.callAttempt };
          const signal = callSignal();
          seen.started.add(key);
          return { aborted: await seen.waitForAbort(key, signal), attempt: null };
        },
        hedgedAllWait: async ({ key }, context) => {
          const attemptKey = `${key}#${context.callAttempt ?? 1}`;
          const signal = callSignal();
          seen.started.add(attemptKey);
          return { aborted: await seen.waitForAbort(attemptKey, signal), attempt: context.callAttempt ?? null };
        },
        asksLate: async ({ key }) => {
          seen.started.add(key);
          await seen.gate(key);
          const signal = callSignal();
          const record = () => seen.reasons.set(key, isKeelError(signal.reason) ? signal.reason.code : String(signal.reason));
          if (signal.aborted) record();
          // An abort after this handler answered would be recorded too (none must come).
          else signal.addEventListener('abort', record, { once: true });
          return { aborted: signal.aborted, attempt: null };
        },
        ping: () => ({ aborted: false, attempt: null }),
      },
    }),
  });
}

/** Registers the cancellation conformance tests for `target`, inside its suite. */
export function describeCancellationConformance(target: ConformanceTarget): void {
  describe('a handler\'s cancellation signal (callSignal)', () => {
    const seen = new Seen();
    const kernels: Kernel[] = [];
    const transports: Transport[] = [];
    let caller: Kernel | undefined;
    const namespace = `cancellation${process.pid}`;

    const start = async (host: string[]): Promise<Kernel> => {
      const transport = await target.createTransport(namespace);
      transports.push(transport);
      const kernel = createKernel({ modules: [waiterModule(seen)], topology: { host, transport }, logger: silentLogger, retry: false });
      kernels.push(kernel);
      await kernel.start();
      return kernel;
    };

    beforeAll(async () => {
      await start(['waiter']);
      caller = await start([]);
    }, 60_000);
    afterAll(async () => {
      for (const open of seen.gates.values()) open();
      for (const timer of seen.timers) clearTimeout(timer);
      for (const kernel of [...kernels].reverse()) await kernel.stop();
      for (const transport of transports) await target.closeTransport(transport);
    });

    const client = () => (caller as Kernel).client(waiter);
    const startedWithin = (key: string) => vi.waitFor(() => expect(seen.started.has(key)).toBe(true), { timeout: 10_000, interval: 10 });
    const abortedWithin = (key: string, code: string) => vi.waitFor(() => expect(seen.reasons.get(key)).toBe(code), { timeout: 10_000, interval: 10 });

    it('aborts a running handler\'s signal with TIMEOUT when the call\'s deadline passes (the caller gets TIMEOUT)', async () => {
      const key = newKey('deadline');
      expect((await rejection(client().waitForAbort({ key }, { timeoutMs: 500 }))).code).toBe('TIMEOUT');
      await abortedWithin(key, 'TIMEOUT');
    });

    it('aborts a running handler\'s signal with CANCELLED when its caller\'s signal aborts (the caller gets CANCELLED)', async () => {
      const key = newKey('caller-abort');
      const controller = new AbortController();
      const call = rejection(client().waitForAbort({ key }, { timeoutMs: 15_000, signal: controller.signal }));
      await startedWithin(key);
      controller.abort(new Error('the test gave up'));
      expect((await call).code).toBe('CANCELLED');
      // Long before its 15 s deadline could have done it.
      await abortedWithin(key, 'CANCELLED');
    });

    it('cancels the losing attempt of a hedged call: the first attempt\'s handler is told CANCELLED once the hedge answered', async () => {
      const key = newKey('hedge');
      expect(await client().hedgedWait({ key }, { timeoutMs: 15_000 })).toEqual({ aborted: false, attempt: 2 });
      await abortedWithin(key, 'CANCELLED');
    });

    it('cancels every attempt still out when the caller of a hedged call cancels it: both attempts\' handlers are told CANCELLED', async () => {
      const key = newKey('hedge-cancelled');
      const controller = new AbortController();
      const call = rejection(client().hedgedAllWait({ key }, { timeoutMs: 15_000, signal: controller.signal }));
      await startedWithin(`${key}#1`);
      await startedWithin(`${key}#2`);
      controller.abort(new Error('the test gave up'));
      expect((await call).code).toBe('CANCELLED');
      await abortedWithin(`${key}#1`, 'CANCELLED');
      await abortedWithin(`${key}#2`, 'CANCELLED');
    });

    it('gives a handler that asks for its signal only after its caller cancelled an already aborted signal', async () => {
      const key = newKey('asks-late');
      const controller = new AbortController();
      const call = rejection(client().asksLate({ key }, { timeoutMs: 15_000, signal: controller.signal }));
      await startedWithin(key);
      controller.abort(new Error('the test gave up'));
      expect((await call).code).toBe('CANCELLED');
      // A call sent after the cancel is answered after the callee received the cancel (one caller, one callee, in order).
      await client().ping({ key: newKey('after-cancel') });
      seen.gates.get(key)?.();
      await abortedWithin(key, 'CANCELLED');
    });

    it('leaves a handler\'s signal alone when its call completes: a call that answers in time is never aborted', async () => {
      const key = newKey('in-time');
      const controller = new AbortController();
      const call = client().asksLate({ key }, { timeoutMs: 15_000, signal: controller.signal });
      await startedWithin(key);
      seen.gates.get(key)?.();
      expect(await call).toEqual({ aborted: false, attempt: null });
      // Aborting after the answer reaches no handler (a call sent after it is answered after any cancel arrived).
      controller.abort();
      await client().ping({ key: newKey('after-answer') });
      expect(seen.reasons.has(key)).toBe(false);
    });
  });
}
