/**
 * The conformance suite's part on the bulkhead of a served module: at most `maxConcurrent`
 * handler runs at once, `maxQueued` calls waiting in arrival order, the next refused at once
 * with RESOURCE_EXHAUSTED (nothing ran) saying when to come back (`details.retryAfterMs`,
 * bounded, from what the bulkhead measured); a queued call whose deadline passes is never started;
 * a call queued when its module stops still runs while the drain lasts, and is answered
 * UNAVAILABLE, never started, once the drain is over. The callee runs in a kernel of its own,
 * the caller in another, so every call crosses the transport under test.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel, type KernelOptions, type Transport } from 'keel';
import type { ConformanceTarget } from './conformance.js';

export const turnstile = defineContract({
  name: 'turnstile',
  version: '1.0.0',
  operations: {
    hold: operation({ input: z.object({ id: z.string() }), output: z.object({ id: z.string() }) }),
  },
});

/** A gate the handler waits on; `open()` lets every waiting and later run through. */
class Gate {
  open: () => void = () => {};
  readonly passed: Promise<void> = new Promise((resolve) => {
    this.open = resolve;
  });
}

/** What the callee's handler did: the ids it started, in order, and the gate it waits on. */
interface Turnstile {
  readonly started: string[];
  gate: Gate;
}

const WAIT = { timeout: 10_000, interval: 10 } as const;

function turnstileModule(state: Turnstile) {
  return defineModule({
    contract: turnstile,
    create: () => ({
      handlers: {
        hold: async ({ id }) => {
          state.started.push(id);
          await state.gate.passed;
          return { id };
        },
      },
    }),
  });
}

interface TurnstileApp {
  readonly state: Turnstile;
  readonly callee: Kernel;
  readonly caller: Kernel;
  readonly transports: Transport[];
}

async function bootTurnstile(target: ConformanceTarget, namespace: string, options: Partial<KernelOptions> = {}): Promise<TurnstileApp> {
  const state: Turnstile = { started: [], gate: new Gate() };
  const modules = [turnstileModule(state)];
  const transports: Transport[] = [];
  const start = async (host: string[], extra: Partial<KernelOptions>): Promise<Kernel> => {
    const transport = await target.createTransport(namespace);
    transports.push(transport);
    // No caller retries: what is asserted here is each refusal of the callee, as it answered
    // (the caller's retries of RESOURCE_EXHAUSTED are resilience-conformance.ts's business).
    const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger, retry: false, ...extra });
    await kernel.start();
    return kernel;
  };
  const callee = await start(['turnstile'], { bulkheads: { turnstile: { maxConcurrent: 2, maxQueued: 1 } }, ...options });
  const caller = await start([], {});
  return { state, callee, caller, transports };
}

async function shutdownTurnstile(target: ConformanceTarget, app: TurnstileApp | undefined): Promise<void> {
  if (app === undefined) return;
  app.state.gate.open();
  await app.caller.stop();
  await app.callee.stop();
  for (const transport of app.transports) await target.closeTransport(transport);
}

const bulkheadOf = (kernel: Kernel) => kernel.status().bulkheads.find((bulkhead) => bulkhead.module === 'turnstile');

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => error,
  );
}

/** Registers the bulkhead conformance tests for `target`, inside its suite. */
export function describeBulkheadConformance(target: ConformanceTarget): void {
  describe('bulkhead of a served module', () => {
    let app: TurnstileApp | undefined;
    const booted = (): TurnstileApp => {
      if (app === undefined) throw new Error('turnstile application not booted');
      return app;
    };

    beforeAll(async () => {
      app = await bootTurnstile(target, `bulkhead${process.pid}`);
    }, 60_000);
    afterAll(async () => {
      await shutdownTurnstile(target, app);
    });

    it('runs at most maxConcurrent (2) handlers at once, queues maxQueued (1), refuses the next at once with RESOURCE_EXHAUSTED (retryable, nothing ran), then runs the queued call when a slot frees', async () => {
      const { state, callee, caller } = booted();
      const client = caller.client(turnstile);
      state.gate = new Gate();
      const rejectedBefore = bulkheadOf(callee)?.rejected ?? 0;
      const first = client.hold({ id: 'first' });
      const second = client.hold({ id: 'second' });
      await vi.waitFor(() => expect(state.started).toEqual(['first', 'second']), WAIT);
      const queued = client.hold({ id: 'queued' });
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ running: 2, queued: 1 }), WAIT);
      // Refused while both slots are still held: it did not wait for one.
      const refused = await rejection(client.hold({ id: 'refused' }));
      expect(isKeelError(refused, 'RESOURCE_EXHAUSTED'), String(refused)).toBe(true);
      expect((refused as { retryable: boolean }).retryable).toBe(true);
      expect((refused as Error).message).toContain('module "turnstile" is at its concurrency limit');
      expect(bulkheadOf(callee)).toEqual({ module: 'turnstile', maxConcurrent: 2, maxQueued: 1, running: 2, queued: 1, rejected: rejectedBefore + 1 });
      expect(state.started).toEqual(['first', 'second']);
      state.gate.open();
      expect(await Promise.all([first, second, queued])).toEqual([{ id: 'first' }, { id: 'second' }, { id: 'queued' }]);
      // A later call starts: the refused one, which came before it, never did.
      expect(await client.hold({ id: 'later' })).toEqual({ id: 'later' });
      expect(state.started).toEqual(['first', 'second', 'queued', 'later']);
      expect(bulkheadOf(callee)).toMatchObject({ running: 0, queued: 0 });
    });

    it('says in a refusal when to come back: details.retryAfterMs, at least 10 ms and at most 10 s, grows with the time a slot took to free after a refusal', async () => {
      // A bulkhead of its own: the estimate starts from nothing measured (the other tests' refusals would count).
      const own = await bootTurnstile(target, `bulkhead-hint${process.pid}`);
      try {
        const client = own.caller.client(turnstile);
        const hintOf = async (): Promise<number> => {
          const refused = await rejection(client.hold({ id: 'refused' }));
          expect(isKeelError(refused, 'RESOURCE_EXHAUSTED'), String(refused)).toBe(true);
          const hint = (refused as { details?: { retryAfterMs?: unknown } }).details?.retryAfterMs;
          expect(typeof hint, `details: ${JSON.stringify((refused as { details?: unknown }).details)}`).toBe('number');
          return hint as number;
        };
        const saturate = async (): Promise<Promise<unknown>[]> => {
          own.state.gate = new Gate();
          own.state.started.length = 0;
          const held = [client.hold({ id: 'first' }), client.hold({ id: 'second' })];
          await vi.waitFor(() => expect(own.state.started).toEqual(['first', 'second']), WAIT);
          held.push(client.hold({ id: 'queued' }));
          await vi.waitFor(() => expect(bulkheadOf(own.callee)).toMatchObject({ running: 2, queued: 1 }), WAIT);
          return held;
        };
        // Nothing measured yet: the floor.
        let held = await saturate();
        expect(await hintOf()).toBe(10);
        // The slots stay taken 400 ms after that refusal (the duration measured, not a wait for something
        // to happen): the first slot to free after it took at least that long.
        await new Promise((resolve) => setTimeout(resolve, 400));
        own.state.gate.open();
        await Promise.all(held);
        // Full again (2 running, 1 queued): the refused call's turn would come after 2 slots free, each about 400 ms.
        held = await saturate();
        const second = await hintOf();
        expect(second).toBeGreaterThanOrEqual(800);
        expect(second).toBeLessThanOrEqual(10_000);
        own.state.gate.open();
        await Promise.all(held);
      } finally {
        await shutdownTurnstile(target, own);
      }
    });

    it('never starts a queued call whose deadline passed while it waited: its caller gets TIMEOUT and a later call starts in its place', async () => {
      const { state, callee, caller } = booted();
      const client = caller.client(turnstile);
      state.gate = new Gate();
      state.started.length = 0;
      const first = client.hold({ id: 'first' });
      const second = client.hold({ id: 'second' });
      await vi.waitFor(() => expect(state.started).toEqual(['first', 'second']), WAIT);
      // Its deadline leaves the check below time to see it queued on a loaded machine.
      const late = rejection(client.hold({ id: 'late' }, { timeoutMs: 2_000 }));
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ queued: 1 }), WAIT);
      expect(isKeelError(await late, 'TIMEOUT'), String(await late)).toBe(true);
      // The callee dropped it from its queue at its deadline, with both slots still held.
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ running: 2, queued: 0 }), WAIT);
      state.gate.open();
      expect(await Promise.all([first, second])).toEqual([{ id: 'first' }, { id: 'second' }]);
      expect(await client.hold({ id: 'after' })).toEqual({ id: 'after' });
      expect(state.started).toEqual(['first', 'second', 'after']);
    });

    it('takes a queued call out of the queue when its caller gives up: it never starts, its caller gets CANCELLED, and the next call takes its place', async () => {
      const { state, callee, caller } = booted();
      const client = caller.client(turnstile);
      state.gate = new Gate();
      state.started.length = 0;
      const first = client.hold({ id: 'first' });
      const second = client.hold({ id: 'second' });
      await vi.waitFor(() => expect(state.started).toEqual(['first', 'second']), WAIT);
      const controller = new AbortController();
      const abandoned = rejection(client.hold({ id: 'abandoned' }, { timeoutMs: 15_000, signal: controller.signal }));
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ queued: 1 }), WAIT);
      controller.abort();
      expect(isKeelError(await abandoned, 'CANCELLED'), String(await abandoned)).toBe(true);
      // The callee took it out of its queue (over NATS, once the cancel arrived), with both slots still held.
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ running: 2, queued: 0 }), WAIT);
      // Its place is free: a later call queues, and runs in order once a slot frees; the abandoned one never does.
      const next = client.hold({ id: 'next' });
      await vi.waitFor(() => expect(bulkheadOf(callee)).toMatchObject({ queued: 1 }), WAIT);
      state.gate.open();
      expect(await Promise.all([first, second, next])).toEqual([{ id: 'first' }, { id: 'second' }, { id: 'next' }]);
      expect(state.started).toEqual(['first', 'second', 'next']);
    });

    it('runs a call queued when its module stops while the drain lasts; once the drain is over, a call still queued is answered UNAVAILABLE and never starts', async () => {
      // The drain: a call queued when stop begins still runs once a slot frees.
      const draining = await bootTurnstile(target, `bulkhead-drain${process.pid}`);
      try {
        const client = draining.caller.client(turnstile);
        const held = [client.hold({ id: 'first' }), client.hold({ id: 'second' })];
        await vi.waitFor(() => expect(draining.state.started).toEqual(['first', 'second']), WAIT);
        const queued = client.hold({ id: 'queued' });
        await vi.waitFor(() => expect(bulkheadOf(draining.callee)).toMatchObject({ queued: 1 }), WAIT);
        const stopped = draining.callee.stop();
        draining.state.gate.open();
        expect(await Promise.all([...held, queued])).toEqual([{ id: 'first' }, { id: 'second' }, { id: 'queued' }]);
        await stopped;
        expect(draining.state.started).toEqual(['first', 'second', 'queued']);
      } finally {
        await shutdownTurnstile(target, draining);
      }
      // After the drain: the handlers hold their slots past drainTimeoutMs, so the queued call never starts.
      const cut = await bootTurnstile(target, `bulkhead-cut${process.pid}`, { drainTimeoutMs: 200 });
      try {
        const client = cut.caller.client(turnstile);
        const held = [client.hold({ id: 'first' }), client.hold({ id: 'second' })];
        await vi.waitFor(() => expect(cut.state.started).toEqual(['first', 'second']), WAIT);
        const queued = rejection(client.hold({ id: 'queued' }));
        await vi.waitFor(() => expect(bulkheadOf(cut.callee)).toMatchObject({ queued: 1 }), WAIT);
        const stopped = cut.callee.stop();
        const refused = await queued;
        expect(isKeelError(refused, 'UNAVAILABLE'), String(refused)).toBe(true);
        expect((refused as Error).message).toContain('stopped while the call waited');
        cut.state.gate.open();
        await Promise.allSettled(held);
        await stopped;
        expect(cut.state.started).toEqual(['first', 'second']);
      } finally {
        await shutdownTurnstile(target, cut);
      }
    });
  });
}
