/**
 * A caller's signal watched by many calls with one listener (kernel/signal-watch.ts), where the
 * conformance suite (conformance-calls.ts: one signal for many calls, both transports) does not
 * reach: the watch's own rules, a signal that takes no new property, and, in process, a signal
 * its handler aborted before the call began to wait.
 */
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { createLocalTransport, unwatchSignal, watchSignal, type AbortableCall } from 'keel/transport';

const kernels: Kernel[] = [];
afterEach(async () => {
  for (const kernel of kernels.splice(0)) await kernel.stop();
});

/** A call that counts its aborts. */
function counted(): AbortableCall & { aborts: number } {
  const call = {
    aborts: 0,
    abort() {
      call.aborts += 1;
    },
  };
  return call;
}

describe('watchSignal', () => {
  it('aborts every call watching a signal once, and no call that stopped watching; one listener for all of them', () => {
    const controller = new AbortController();
    const [a, b, c, left] = [counted(), counted(), counted(), counted()];
    for (const call of [a, b, left, c]) watchSignal(controller.signal, call);
    unwatchSignal(controller.signal, left);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort();
    expect([a.aborts, b.aborts, c.aborts, left.aborts]).toEqual([1, 1, 1, 0]);
  });

  it('aborts a call that joins while the signal\'s abort runs at once, and no call that left before the abort reached it', () => {
    const controller = new AbortController();
    const late = counted();
    const settled = counted();
    let lateAbortsAtJoin = -1;
    const first: AbortableCall & { aborts: number } = {
      aborts: 0,
      abort() {
        first.aborts += 1;
        // What the first call's abort set off: another call settled, a third joined.
        unwatchSignal(controller.signal, settled);
        watchSignal(controller.signal, late);
        lateAbortsAtJoin = late.aborts;
      },
    };
    watchSignal(controller.signal, first);
    watchSignal(controller.signal, settled);
    controller.abort();
    expect([first.aborts, settled.aborts, late.aborts, lateAbortsAtJoin]).toEqual([1, 0, 1, 1]);
  });

  it('aborts at once a call that joins a signal that aborted already, watched before or not', () => {
    const watched = new AbortController();
    watchSignal(watched.signal, counted());
    watched.abort();
    const never = new AbortController();
    never.abort();
    const [afterWatched, afterNever] = [counted(), counted()];
    watchSignal(watched.signal, afterWatched);
    watchSignal(never.signal, afterNever);
    expect([afterWatched.aborts, afterNever.aborts]).toEqual([1, 1]);
  });

  it('listens to a timeout or composite signal only while a call waits (Node keeps those alive while listened to); to a plain one, once for good', () => {
    const plain = new AbortController().signal;
    const timeout = AbortSignal.timeout(60_000);
    const composite = AbortSignal.any([new AbortController().signal]);
    for (const signal of [plain, timeout, composite]) {
      const call = counted();
      watchSignal(signal, call);
      expect(getEventListeners(signal, 'abort')).toHaveLength(1);
      unwatchSignal(signal, call);
    }
    expect([plain, timeout, composite].map((signal) => getEventListeners(signal, 'abort').length)).toEqual([1, 0, 0]);
    // Listened to again when a call waits, and that call aborted with the signal.
    const source = new AbortController();
    const any = AbortSignal.any([source.signal]);
    const [a, b] = [counted(), counted()];
    watchSignal(any, a);
    unwatchSignal(any, a);
    watchSignal(any, b);
    source.abort();
    expect([a.aborts, b.aborts]).toEqual([0, 1]);
  });

  it('aborts every call watching even when one call\'s abort throws, and throws that error from the listener afterwards', () => {
    // A stand-in signal, so that the listener's throw reaches this test rather than Node's uncaught-exception path.
    let listener: (() => void) | undefined;
    const signal = {
      aborted: false,
      addEventListener: (_type: string, added: () => void) => {
        listener = added;
      },
      removeEventListener: () => {},
    } as unknown as AbortSignal;
    const [before, after] = [counted(), counted()];
    const throwing: AbortableCall = {
      abort() {
        throw new Error('an adapter bug');
      },
    };
    for (const call of [before, throwing, after]) watchSignal(signal, call);
    expect(listener).toBeDefined();
    expect(() => listener?.()).toThrow('an adapter bug');
    expect([before.aborts, after.aborts]).toEqual([1, 1]);
  });

  it('aborts a call that joins a timeout signal that fired while no call watched it', async () => {
    const timeout = AbortSignal.timeout(1);
    const before = counted();
    watchSignal(timeout, before);
    unwatchSignal(timeout, before);
    await vi.waitFor(() => expect(timeout.aborted).toBe(true));
    const after = counted();
    watchSignal(timeout, after);
    expect([before.aborts, after.aborts]).toEqual([0, 1]);
  });

  it('aborts a call that joins a composite signal that aborted while no call watched it', () => {
    const source = new AbortController();
    const any = AbortSignal.any([source.signal]);
    const before = counted();
    watchSignal(any, before);
    unwatchSignal(any, before);
    source.abort();
    const after = counted();
    watchSignal(any, after);
    expect([before.aborts, after.aborts]).toEqual([0, 1]);
  });

  it('watches a signal that takes no new property (Object.preventExtensions) as any other', () => {
    const controller = new AbortController();
    Object.preventExtensions(controller.signal);
    const [a, b] = [counted(), counted()];
    watchSignal(controller.signal, a);
    watchSignal(controller.signal, b);
    unwatchSignal(controller.signal, b);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    controller.abort();
    expect([a.aborts, b.aborts]).toEqual([1, 0]);
  });
});

describe('a caller\'s signal in process', () => {
  const gate = defineContract({
    name: 'gate',
    version: '1.0.0',
    operations: { enter: operation({ input: z.object({ key: z.string() }), output: z.object({ entered: z.boolean() }) }) },
  });
  const controllers = new Map<string, AbortController>();
  const opens: (() => void)[] = [];
  const module = defineModule({
    contract: gate,
    create: () => ({
      handlers: {
        enter: ({ key }) => {
          // The handler's synchronous part aborts its caller's signal, then waits for a gate the test opens.
          controllers.get(key)?.abort();
          return new Promise<{ entered: boolean }>((resolve) => opens.push(() => resolve({ entered: true })));
        },
      },
    }),
  });

  it('cancels a call whose signal its handler aborted before its first await with CANCELLED at once, not TIMEOUT at its deadline', async () => {
    const kernel = createKernel({ modules: [module], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const controller = new AbortController();
    controllers.set('k-1', controller);
    try {
      const error = await kernel.client(gate).enter({ key: 'k-1' }, { signal: controller.signal, timeoutMs: 2_000 }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(isKeelError(error, 'CANCELLED'), String(error)).toBe(true);
    } finally {
      for (const open of opens.splice(0)) open();
    }
  });

  it('cancels a call whose signal takes no new property (Object.preventExtensions) when it aborts', async () => {
    const kernel = createKernel({ modules: [module], logger: silentLogger, retry: false });
    kernels.push(kernel);
    await kernel.start();
    const controller = new AbortController();
    Object.preventExtensions(controller.signal);
    try {
      const pending = kernel.client(gate).enter({ key: 'k-2' }, { signal: controller.signal, timeoutMs: 60_000 }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(opens).toHaveLength(1);
      controller.abort();
      const error = await pending;
      expect(isKeelError(error, 'CANCELLED'), String(error)).toBe(true);
    } finally {
      for (const open of opens.splice(0)) open();
    }
  });
});

describe('a hedged call\'s own signal (reused once its call settled with no attempt out)', () => {
  const hedged = defineContract({
    name: 'hedged',
    version: '1.0.0',
    operations: {
      read: operation({ input: z.object({ hold: z.boolean() }), output: z.object({ read: z.boolean() }), idempotent: true, hedge: { delayMs: 60_000, maxAttempts: 2 } }),
    },
  });
  const releases: (() => void)[] = [];
  const module = defineModule({
    contract: hedged,
    create: () => ({
      handlers: {
        read: ({ hold }) => (hold ? new Promise<{ read: boolean }>((resolve) => releases.push(() => resolve({ read: true }))) : Promise.resolve({ read: true })),
      },
    }),
  });

  it('answers the hedged calls after one its caller cancelled: the aborted signal of that call is never handed on', async () => {
    const kernel = createKernel({ modules: [module], logger: silentLogger });
    kernels.push(kernel);
    await kernel.start();
    const client = kernel.client(hedged);
    try {
      // Settled with no attempt out: their signals are kept for the next hedged calls.
      for (let index = 0; index < 5; index += 1) expect(await client.read({ hold: false })).toEqual({ read: true });
      const controller = new AbortController();
      const cancelled = client.read({ hold: true }, { signal: controller.signal }).then(
        () => undefined,
        (caught: unknown) => caught,
      );
      expect(releases).toHaveLength(1);
      controller.abort();
      expect(isKeelError(await cancelled, 'CANCELLED')).toBe(true);
      for (let index = 0; index < 5; index += 1) expect(await client.read({ hold: false })).toEqual({ read: true });
    } finally {
      for (const release of releases.splice(0)) release();
    }
  });

  it('hands a hedged call\'s signal on to no later call when a transport left a listener of its own on it', async () => {
    // A transport that listens to each call's signal and never stops (an adapter's bug): its
    // listeners must not pile up on one signal handed from call to call.
    const bus = createLocalTransport({ logger: silentLogger });
    const seen: AbortSignal[] = [];
    const leaky: Transport = {
      name: 'leaky',
      inProcess: true,
      call: (address, input, context, options) => {
        if (options?.signal !== undefined) {
          seen.push(options.signal);
          options.signal.addEventListener('abort', () => {}, { once: true });
        }
        return bus.call(address, input, context, options);
      },
      serve: (served) => bus.serve(served),
      publish: (event) => bus.publish(event),
      subscribe: (subscription) => bus.subscribe(subscription),
      status: () => bus.status(),
      close: () => bus.close(),
    };
    // One kernel serves the module on the transport, another calls it through the transport.
    const server = createKernel({ modules: [module], logger: silentLogger, topology: { host: ['hedged'], transport: leaky } });
    const caller = createKernel({ contracts: [hedged], logger: silentLogger, topology: { host: [], transport: leaky } });
    kernels.push(caller, server);
    await server.start();
    await caller.start();
    for (let index = 0; index < 5; index += 1) expect(await caller.client(hedged).read({ hold: false })).toEqual({ read: true });
    expect(seen).toHaveLength(5);
    expect(new Set(seen).size).toBe(5);
  });
});
