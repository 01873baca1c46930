/**
 * A handler's cancellation signal (`callSignal()`, kernel/call-signal.ts) where the conformance
 * suite (cancellation-conformance.ts, both transports) does not reach: outside any handler, in an
 * event handler, a handler stopped at its deadline, and the NATS callee's memory of cancels
 * (adapters/nats/cancellations.ts) and its bounds.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { KeelErrorCode, callSignal, createKernel, runWithContext, defineContract, defineModule, event, isKeelError, operation, silentLogger, type Kernel } from 'keel';
import { Cancellations, EARLY_CANCEL_KEEP_MS, EARLY_CANCEL_LIMIT } from '../adapters/nats/cancellations.js';
import { capturingLogger, type LogEntry } from './support/conformance-app.js';

const kernels: Kernel[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const kernel of kernels.splice(0)) await kernel.stop();
});

const clock = defineContract({
  name: 'clock',
  version: '1.0.0',
  operations: {
    /** Waits for its signal, then throws what a fetch would: an AbortError. */
    stopsWhenAborted: operation({ input: z.object({}), output: z.object({ done: z.boolean() }) }),
  },
  events: { ticked: event({ payload: z.object({ tick: z.number() }) }) },
});

const abortedOf = (signal: AbortSignal): Promise<unknown> =>
  new Promise((resolve) => (signal.aborted ? resolve(signal.reason) : signal.addEventListener('abort', () => resolve(signal.reason), { once: true })));

describe('callSignal', () => {
  it('never aborts outside any handler, and is the same signal each time', () => {
    const signal = callSignal();
    expect(signal.aborted).toBe(false);
    expect(callSignal()).toBe(signal);
  });

  it('does not abort at once for a deadline further away than a timer can wait (a wire caller\'s, or a clock behind by a little)', async () => {
    const context = { correlationId: 'c-far', traceparent: undefined, caller: 'test', deadline: Date.now() + 30 * 24 * 3_600_000 };
    const signal = runWithContext(context, () => callSignal());
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(signal.aborted, String(signal.reason)).toBe(false);
  });

  it('answers TIMEOUT, not INTERNAL, for a handler that throws an AbortError once its signal aborted at the deadline', async () => {
    const module = defineModule({
      contract: clock,
      create: () => ({
        handlers: {
          stopsWhenAborted: async () => {
            await abortedOf(callSignal());
            throw new DOMException('This operation was aborted', 'AbortError');
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [module], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const error = await kernel.client(clock).stopsWhenAborted({}, { timeoutMs: 200 }).catch((caught: unknown) => caught);
    expect(isKeelError(error, KeelErrorCode.TIMEOUT)).toBe(true);
  });

  it('answers CANCELLED, with no error logged, a handler that throws an AbortError once its caller gave up (not INTERNAL, "handler failed")', async () => {
    const entries: LogEntry[] = [];
    const served: string[] = [];
    let thrown = false;
    const module = defineModule({
      contract: clock,
      create: () => ({
        handlers: {
          stopsWhenAborted: async () => {
            await abortedOf(callSignal());
            thrown = true;
            throw new DOMException('This operation was aborted', 'AbortError');
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [module], logger: capturingLogger(entries), retry: false });
    kernel.observe({ callServed: (record) => served.push(record.outcome) });
    kernels.push(kernel);
    await kernel.start();
    const controller = new AbortController();
    const call = kernel.client(clock).stopsWhenAborted({}, { timeoutMs: 10_000, signal: controller.signal }).catch((caught: unknown) => caught);
    await new Promise((resolve) => setTimeout(resolve, 20));
    controller.abort();
    expect(isKeelError(await call, KeelErrorCode.CANCELLED)).toBe(true);
    await vi.waitFor(() => expect(thrown).toBe(true), { timeout: 2_000, interval: 5 });
    await vi.waitFor(() => expect(served).toEqual([KeelErrorCode.CANCELLED]), { timeout: 2_000, interval: 5 });
    expect(entries.filter((entry) => entry.level === 'error')).toEqual([]);
  });

  it('keeps the outcome of a keyed call whose handler finished after its signal aborted at the deadline: the same key replays it, never runs it again', async () => {
    let runs = 0;
    let finished = false;
    const ledger = defineContract({
      name: 'ledger',
      version: '1.0.0',
      operations: { charge: operation({ input: z.object({}), output: z.object({ run: z.number() }) }) },
    });
    const module = defineModule({
      contract: ledger,
      create: () => ({
        handlers: {
          // Not idempotent: a key makes it run once. The first run finishes its work once its deadline passed.
          charge: async () => {
            const run = ++runs;
            if (run === 1) {
              await abortedOf(callSignal());
              finished = true;
            }
            return { run };
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [module], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const client = kernel.client(ledger);
    const first = await client.charge({}, { idempotencyKey: 'charge-1', timeoutMs: 200 }).catch((caught: unknown) => caught);
    expect(isKeelError(first, KeelErrorCode.TIMEOUT)).toBe(true);
    await vi.waitFor(() => expect(finished).toBe(true), { timeout: 5_000, interval: 10 });
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await client.charge({}, { idempotencyKey: 'charge-1', timeoutMs: 2_000 })).toEqual({ run: 1 });
    expect(runs).toBe(1);
  });

  it('aborts an event handler\'s signal with TIMEOUT at the kernel\'s eventTimeoutMs', async () => {
    let reason: unknown;
    const listener = defineModule({
      contract: defineContract({ name: 'listener', version: '1.0.0', operations: {} }),
      subscribesTo: [clock],
      create: () => ({
        handlers: {},
        events: {
          clock: {
            ticked: async () => {
              reason = await abortedOf(callSignal());
            },
          },
        },
      }),
    });
    const publisher = defineModule({
      contract: clock,
      create: ({ emit }) => ({
        handlers: { stopsWhenAborted: async () => (await emit('ticked', { tick: 1 }), { done: true }) },
      }),
    });
    const kernel = createKernel({ modules: [publisher, listener], logger: silentLogger, eventTimeoutMs: 150 });
    kernels.push(kernel);
    await kernel.start();
    await kernel.client(clock).stopsWhenAborted({});
    await vi.waitFor(() => expect(isKeelError(reason, KeelErrorCode.TIMEOUT)).toBe(true), { timeout: 5_000, interval: 10 });
    expect((reason as Error).message).toContain('listener');
  });
});

describe("an event handler's own timeoutMs", () => {
  const listenerWith = (ticked: unknown) =>
    defineModule({
      contract: defineContract({ name: 'listener', version: '1.0.0', operations: {} }),
      subscribesTo: [clock],
      create: () => ({ handlers: {}, events: { clock: { ticked: ticked as () => void } } }),
    });
  const publisher = defineModule({
    contract: clock,
    create: ({ emit }) => ({
      handlers: { stopsWhenAborted: async () => (await emit('ticked', { tick: 1 }), { done: true }) },
    }),
  });

  it("aborts the handler's signal with TIMEOUT at its timeoutMs, not before, and long before the kernel's eventTimeoutMs", async () => {
    let reason: unknown;
    let ranMs = 0;
    const listener = listenerWith({
      handle: async () => {
        const started = performance.now();
        reason = await abortedOf(callSignal());
        ranMs = performance.now() - started;
      },
      timeoutMs: 150,
    });
    // A small drainTimeoutMs: were the signal never aborted, stopping would not wait 30 s for the handler.
    const kernel = createKernel({ modules: [publisher, listener], logger: silentLogger, eventTimeoutMs: 600_000, drainTimeoutMs: 500 });
    kernels.push(kernel);
    await kernel.start();
    await kernel.client(clock).stopsWhenAborted({});
    await vi.waitFor(() => expect(isKeelError(reason, KeelErrorCode.TIMEOUT)).toBe(true), { timeout: 5_000, interval: 10 });
    // The deadline counts from the delivery, a moment before the handler's start; timers may fire a millisecond early.
    expect(ranMs).toBeGreaterThan(100);
  });
});

describe('callSignal passed on to a handler\'s own call', () => {
  it('cancels the nested call, down to its handler\'s signal, when the outer caller gives up', async () => {
    let innerReason: unknown;
    let innerStarted = (): void => undefined;
    const started = new Promise<void>((resolve) => (innerStarted = resolve));
    const inner = defineContract({ name: 'inner', version: '1.0.0', operations: { wait: operation({ input: z.object({}), output: z.object({}) }) } });
    const outer = defineContract({ name: 'outer', version: '1.0.0', operations: { relay: operation({ input: z.object({}), output: z.object({}) }) } });
    const innerModule = defineModule({
      contract: inner,
      create: () => ({
        handlers: {
          wait: async () => {
            const signal = callSignal();
            innerStarted();
            innerReason = await abortedOf(signal);
            return {};
          },
        },
      }),
    });
    const outerModule = defineModule({
      contract: outer,
      dependsOn: [inner],
      create: ({ get }) => {
        const innerClient = get(inner);
        return { handlers: { relay: (input) => innerClient.wait(input, { signal: callSignal() }) } };
      },
    });
    const kernel = createKernel({ modules: [outerModule, innerModule], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const controller = new AbortController();
    const call = kernel.client(outer).relay({}, { timeoutMs: 15_000, signal: controller.signal }).catch((error: unknown) => error);
    await started;
    controller.abort();
    expect(isKeelError(await call, KeelErrorCode.CANCELLED)).toBe(true);
    await vi.waitFor(() => expect(isKeelError(innerReason, KeelErrorCode.CANCELLED)).toBe(true), { timeout: 5_000, interval: 10 });
  });
});

describe('callSignal asked for after its handler finished', () => {
  it('does not take over the signal of a later call: a signal asked for by work a finished synchronous handler left behind belongs to its own finished call', async () => {
    let strayAsked = false;
    let reason: unknown;
    const twice = defineContract({
      name: 'twice',
      version: '1.0.0',
      operations: {
        leaves: operation({ input: z.object({}), output: z.object({}) }),
        waits: operation({ input: z.object({}), output: z.object({}) }),
      },
    });
    const module = defineModule({
      contract: twice,
      create: () => ({
        handlers: {
          // Synchronous: answers at once, and leaves work behind that asks for its signal later.
          leaves: () => {
            setTimeout(() => {
              callSignal();
              strayAsked = true;
            }, 50);
            return {};
          },
          waits: async () => {
            reason = await abortedOf(callSignal());
            return {};
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [module], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const client = kernel.client(twice);
    await client.leaves({});
    const controller = new AbortController();
    const waiting = client.waits({}, { timeoutMs: 10_000, signal: controller.signal }).catch((caught: unknown) => caught);
    await vi.waitFor(() => expect(strayAsked).toBe(true), { timeout: 5_000, interval: 5 });
    controller.abort();
    expect(isKeelError(await waiting, KeelErrorCode.CANCELLED)).toBe(true);
    // Told at once, long before its 10 s deadline.
    await vi.waitFor(() => expect(isKeelError(reason, KeelErrorCode.CANCELLED)).toBe(true), { timeout: 2_000, interval: 10 });
  });
});

describe('NATS cancellations (a callee\'s memory of its callers\' cancels)', () => {
  const address = { contract: 'clock', version: '1.0.0', operation: 'stopsWhenAborted' } as const;
  const context = { correlationId: 'c-1', traceparent: undefined, caller: 'test', deadline: Date.now() + 60_000 };

  it('aborts a watched handler at its cancel with CANCELLED, and forgets it once answered', () => {
    const cancellations = new Cancellations();
    const watched = new AbortController();
    cancellations.watch('_INBOX.a.1', watched, address, context);
    const answered = new AbortController();
    cancellations.watch('_INBOX.a.2', answered, address, context);
    cancellations.forget('_INBOX.a.2');
    cancellations.cancel('_INBOX.a.1');
    expect(isKeelError(watched.signal.reason, KeelErrorCode.CANCELLED)).toBe(true);
    expect(cancellations.sizes.watching).toBe(0);
    // The answered one's cancel is kept as an early one, and aborts nothing.
    cancellations.cancel('_INBOX.a.2');
    expect(answered.signal.aborted).toBe(false);
  });

  it('aborts at once the signal a handler asks for after the cancel reached the watch of its queued call (a queued call is watched too)', () => {
    const cancellations = new Cancellations();
    const queued = new AbortController();
    cancellations.watch('_INBOX.d.1', queued, address, context);
    // It had left the queue already: the cancel aborts the queue's watch, and nothing else yet.
    cancellations.cancel('_INBOX.d.1');
    expect(queued.signal.aborted).toBe(true);
    const handler = new AbortController();
    cancellations.watch('_INBOX.d.1', handler, address, context);
    expect(isKeelError(handler.signal.reason, KeelErrorCode.CANCELLED)).toBe(true);
    cancellations.forget('_INBOX.d.1');
    expect(cancellations.sizes).toEqual({ watching: 0, early: 0 });
  });

  it('keeps a cancel that came first for a handler that asks later, for EARLY_CANCEL_KEEP_MS only', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const cancellations = new Cancellations();
    cancellations.cancel('_INBOX.b.1');
    cancellations.cancel('_INBOX.b.2');
    const soon = new AbortController();
    cancellations.watch('_INBOX.b.1', soon, address, context);
    expect(isKeelError(soon.signal.reason, KeelErrorCode.CANCELLED)).toBe(true);
    vi.setSystemTime(Date.now() + EARLY_CANCEL_KEEP_MS + 1);
    const late = new AbortController();
    cancellations.watch('_INBOX.b.2', late, address, context);
    expect(late.signal.aborted).toBe(false);
  });

  it('keeps at most EARLY_CANCEL_LIMIT early cancels, dropping the oldest', () => {
    const cancellations = new Cancellations();
    for (let index = 0; index <= EARLY_CANCEL_LIMIT; index++) cancellations.cancel(`_INBOX.c.${index}`);
    expect(cancellations.sizes.early).toBe(EARLY_CANCEL_LIMIT);
    const oldest = new AbortController();
    cancellations.watch('_INBOX.c.0', oldest, address, context);
    expect(oldest.signal.aborted).toBe(false);
    const newest = new AbortController();
    cancellations.watch(`_INBOX.c.${EARLY_CANCEL_LIMIT}`, newest, address, context);
    expect(newest.signal.aborted).toBe(true);
  });
});
