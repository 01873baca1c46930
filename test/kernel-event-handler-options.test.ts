/**
 * An event handler's options (`{ handle, fanout, maxAttempts, timeoutMs, ownTransaction }`) are
 * checked when its module starts, before its start hook runs and before any handler is
 * subscribed: an unknown key (a misspelling would otherwise be dropped, and the handler run with
 * the defaults), and each option out of shape, refused with an INVALID_MODULE error naming the
 * module, the event and the field. `ownTransaction`'s own checks, which need a module with data,
 * are in test/data-inbox-edges.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, operation, silentLogger, type Kernel } from 'keel';

const clock = defineContract({
  name: 'clock',
  version: '1.0.0',
  operations: { tick: operation({ input: z.object({}), output: z.object({}) }) },
  events: {
    ticked: event({ payload: z.object({ tick: z.number() }) }),
    settled: event({ payload: z.object({ tick: z.number() }), delivery: 'durable' }),
  },
});
const clockModule = defineModule({
  contract: clock,
  create: ({ emit }) => ({ handlers: { tick: async () => (await emit('ticked', { tick: 1 }), {}) } }),
});

const kernels: Kernel[] = [];
afterEach(async () => {
  for (const kernel of kernels.splice(0)) await kernel.stop();
});

/** Starts a kernel whose `listener` handles clock's `event` with `handler`; the error it refused with, and whether its start hook ran. */
async function startWith(eventName: 'ticked' | 'settled', handler: unknown): Promise<{ error: unknown; hookRan: boolean }> {
  return (await kernelWith(eventName, handler)).started;
}

async function kernelWith(eventName: 'ticked' | 'settled', handler: unknown): Promise<{ kernel: Kernel; started: { error: unknown; hookRan: boolean } }> {
  let hookRan = false;
  const listener = defineModule({
    contract: defineContract({ name: 'listener', version: '1.0.0', operations: {} }),
    subscribesTo: [clock],
    create: () => ({
      handlers: {},
      events: { clock: { [eventName]: handler as () => void } },
      start: async () => void (hookRan = true),
    }),
  });
  const kernel = createKernel({ modules: [clockModule, listener], logger: silentLogger });
  kernels.push(kernel);
  const error = await kernel.start().then(
    () => undefined,
    (refused: unknown) => refused,
  );
  return { kernel, started: { error, hookRan } };
}

const handle = (): void => undefined;

describe("an event handler's options", () => {
  it.each([
    { event: 'ticked', options: { timeout: 120_000 }, refusal: 'has unknown option "timeout" (did you mean timeoutMs? it takes handle, fanout, maxAttempts, timeoutMs, ownTransaction).' },
    { event: 'ticked', options: { timeoutMS: 1, retries: 2 }, refusal: 'has unknown options "timeoutMS", "retries" (did you mean timeoutMs for "timeoutMS"? it takes handle, fanout, maxAttempts, timeoutMs, ownTransaction).' },
    { event: 'ticked', options: { timeoutMs: '30s' }, refusal: 'has timeoutMs "30s"; give a number of milliseconds above 0 and at most 2147483647, or leave it out.' },
    { event: 'ticked', options: { timeoutMs: 0 }, refusal: 'has timeoutMs 0; give a number of milliseconds above 0 and at most 2147483647, or leave it out.' },
    { event: 'settled', options: { maxAttempts: 0 }, refusal: 'has maxAttempts 0; give a whole number of deliveries, 1 or more, or leave it out.' },
    { event: 'settled', options: { maxAttempts: 2.5 }, refusal: 'has maxAttempts 2.5; give a whole number of deliveries, 1 or more, or leave it out.' },
    { event: 'settled', options: { maxAttempts: Number.POSITIVE_INFINITY }, refusal: 'has maxAttempts Infinity; give a whole number of deliveries, 1 or more, or leave it out.' },
    { event: 'ticked', options: { fanout: 'every_instance' }, refusal: "has fanout \"every_instance\"; give 'balanced' or 'every-instance', or leave it out." },
  ])('refuses $options on the handler of clock.$event before the start hook, naming the module, the event and the field', async ({ event: eventName, options, refusal }) => {
    const { error, hookRan } = await startWith(eventName as 'ticked' | 'settled', { handle, ...options });
    expect(isKeelError(error, 'INVALID_MODULE')).toBe(true);
    expect((error as Error).message).toBe(`Module "listener": the handler of clock.${eventName} ${refusal}`);
    expect(hookRan).toBe(false);
  });

  it('refuses every-instance delivery of a durable event, which is delivered once per module', async () => {
    const { error, hookRan } = await startWith('settled', { handle, fanout: 'every-instance' });
    expect((error as Error).message).toBe(
      'Module "listener": every-instance delivery of clock.settled is not supported because the event is durable; durable events are delivered once per module. Use a notification event for every-instance fan-out.',
    );
    expect(hookRan).toBe(false);
  });

  it('starts a module whose handlers give every option in shape, and one given as a bare function', async () => {
    expect(await startWith('settled', { handle, maxAttempts: 3, timeoutMs: 120_000 })).toEqual({ error: undefined, hookRan: true });
    expect(await startWith('ticked', { handle, fanout: 'every-instance', timeoutMs: 0.5 })).toEqual({ error: undefined, hookRan: true });
    expect(await startWith('ticked', handle)).toEqual({ error: undefined, hookRan: true });
  });

  it("starts a module whose handler is an instance of a class with fields of its own, and calls its handle on it (this is the instance)", async () => {
    class Counter {
      readonly timeoutMs = 5_000;
      count = 0;
      handle(): void {
        this.count += 1;
      }
    }
    const counter = new Counter();
    const { kernel, started } = await kernelWith('ticked', counter);
    expect(started).toEqual({ error: undefined, hookRan: true });
    await kernel.client(clock).tick({});
    await vi.waitFor(() => expect(counter.count).toBe(1), { timeout: 5_000, interval: 10 });
  });
});
