/**
 * Small contracts and modules for the HTTP gateway's tests, independent of the example shop.
 * `store` is a key-value module with declared errors; `probe` reports its call context, waits on
 * gates the test opens, and fails in every way an operation can.
 */
import { z } from 'zod';
import { onTestFinished } from 'vitest';
import { ErrorKind, callSignal, createKernel, defineContract, defineError, defineModule, operation, silentLogger, type AnyModule, type Kernel, type KernelOptions } from 'keel';
import { createHttpGateway, type HttpGateway, type HttpGatewayOptions } from 'keel/http';

/** No entry has this key. */
export const NotThere = defineError({
  code: 'NOT_THERE',
  kind: ErrorKind.NOT_FOUND,
  data: z.object({ key: z.string() }),
  description: 'No entry has this key.',
  message: (data) => `No entry has key "${data.key}".`,
});

/** The key holds another value already. */
export const Taken = defineError({
  code: 'TAKEN',
  kind: ErrorKind.CONFLICT,
  data: z.object({ key: z.string(), current: z.json() }),
  description: 'The key holds another value already.',
  message: (data) => `Key "${data.key}" is taken.`,
});

export const store = defineContract({
  name: 'store',
  version: '1.0.0',
  description: 'A key-value store for the gateway tests.',
  operations: {
    put: operation({
      description: 'Stores a value under a new key.',
      input: z.object({ key: z.string().min(1).max(64), value: z.json(), tags: z.array(z.string()).max(10).default([]) }),
      output: z.object({ key: z.string(), stored: z.literal(true) }),
      errors: [Taken],
    }),
    get: operation({
      description: 'Reads a value.',
      input: z.object({ key: z.string().min(1).max(64) }),
      output: z.object({ key: z.string(), value: z.json(), tags: z.array(z.string()) }),
      errors: [NotThere],
      idempotent: true,
    }),
    greeting: operation({
      description: 'A plain string output.',
      input: z.object({ name: z.string().max(100) }),
      output: z.string(),
      idempotent: true,
    }),
  },
});

/** One declared error per {@link ErrorKind}, coded `KIND_<KIND>`. */
export const kindErrors = Object.values(ErrorKind).map((kind) =>
  defineError({
    code: `KIND_${kind.toUpperCase().replace('-', '_')}`,
    kind,
    data: z.object({ kind: z.string() }),
    message: (data) => `failed as ${data.kind}`,
  }),
);

export const probe = defineContract({
  name: 'probe',
  version: '1.0.0',
  operations: {
    context: operation({
      description: 'Answers with the call context it received.',
      input: z.object({}),
      output: z.object({
        correlationId: z.string(),
        traceparent: z.string().nullable(),
        caller: z.string(),
        remainingMs: z.number(),
      }),
      timeoutMs: 5000,
      idempotent: true,
    }),
    wait: operation({
      description: 'Waits until the test opens the gate of this id.',
      input: z.object({ gate: z.string() }),
      output: z.object({ gate: z.string() }),
    }),
    fail: operation({
      description: 'Fails as asked.',
      input: z.object({ as: z.string() }),
      output: z.object({}),
      errors: kindErrors,
    }),
  },
});

/**
 * A gate a `probe.wait` call waits on: `entered` resolves when the handler runs, `open()` lets it
 * answer, `fail()` makes it throw; `abandoned` resolves with the reason of the handler's
 * `callSignal()` when it aborts (its caller gave up, or its deadline passed).
 */
export interface Gate {
  readonly entered: Promise<void>;
  readonly abandoned: Promise<unknown>;
  open(): void;
  fail(): void;
}

const gates = new Map<string, { gate: Gate; enter: () => void; abandon: (reason: unknown) => void; opened: Promise<void> }>();

/** Makes the gate `id` for a following `probe.wait({ gate: id })`. */
export function gate(id: string): Gate {
  let enter!: () => void;
  let abandon!: (reason: unknown) => void;
  let open!: () => void;
  let fail!: (error: Error) => void;
  const entered = new Promise<void>((resolve) => (enter = resolve));
  const abandoned = new Promise<unknown>((resolve) => (abandon = resolve));
  const opened = new Promise<void>((resolve, reject) => {
    open = resolve;
    fail = reject;
  });
  opened.catch(() => {}); // a gate failed before its call waits on it is not an unhandled rejection
  const made = { entered, abandoned, open, fail: () => fail(new Error(`gate ${id} failed, as the test asked`)) };
  gates.set(id, { gate: made, enter, abandon, opened });
  return made;
}

/** Opens every gate still closed (for afterEach). */
export function openAllGates(): void {
  for (const entry of gates.values()) entry.gate.open();
  gates.clear();
}

export const storeModule = defineModule({
  contract: store,
  create: () => {
    const entries = new Map<string, { value: unknown; tags: string[] }>();
    return {
      handlers: {
        put: ({ key, value, tags }) => {
          const existing = entries.get(key);
          if (existing !== undefined) throw new Taken({ key, current: existing.value as never });
          entries.set(key, { value, tags });
          return { key, stored: true as const };
        },
        get: ({ key }) => {
          const entry = entries.get(key);
          if (entry === undefined) throw new NotThere({ key });
          return { key, value: entry.value as never, tags: entry.tags };
        },
        greeting: ({ name }) => `hello, ${name}`,
      },
    };
  },
});

export const probeModule = defineModule({
  contract: probe,
  create: () => ({
    handlers: {
      context: (_input, context) => ({
        correlationId: context.correlationId,
        traceparent: context.traceparent ?? null,
        caller: context.caller,
        remainingMs: context.deadline - Date.now(),
      }),
      wait: async ({ gate: id }) => {
        const entry = gates.get(id);
        if (entry === undefined) throw new Error(`no gate ${id}: call gate() first`);
        const signal = callSignal();
        signal.addEventListener('abort', () => entry.abandon(signal.reason), { once: true });
        entry.enter();
        await entry.opened;
        return { gate: id };
      },
      fail: ({ as }) => {
        const declared = kindErrors.find((error) => error.kind === as);
        if (declared !== undefined) throw new declared({ kind: as });
        throw new Error(`secret internal detail: ${as}`);
      },
    },
  }),
});

/** The fixture's manifest. */
export const fixtureModules: readonly AnyModule[] = [storeModule, probeModule];

/** A kernel of the fixture's modules and a gateway in front of it, listening. */
export interface RunningGateway {
  readonly kernel: Kernel;
  readonly gateway: HttpGateway;
  readonly url: string;
  /** Closes the gateway, then stops the kernel in case the gateway left it running. */
  stop(): Promise<void>;
}

/** How {@link runGateway} makes its kernel. */
export interface RunKernelOptions {
  /** Starts the kernel before the gateway is made (default true). */
  readonly startKernel?: boolean;
  /** More options for `createKernel` (a bulkhead, a retry policy, another logger); the modules are the fixture's. */
  readonly kernel?: Omit<KernelOptions, 'modules'>;
}

/**
 * Starts a kernel of the fixture's modules (unless `startKernel` is false), made with the silent
 * logger and `kernel`, and a silent gateway in front of it with `options`, listening on a free port.
 */
export async function runGateway(options: Partial<Omit<HttpGatewayOptions, 'kernel'>> = {}, { startKernel = true, kernel: kernelOptions = {} }: RunKernelOptions = {}): Promise<RunningGateway> {
  const kernel = createKernel({ logger: silentLogger, ...kernelOptions, modules: fixtureModules });
  if (startKernel) await kernel.start();
  let gateway: HttpGateway;
  try {
    gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, ...options });
  } catch (error) {
    await kernel.stop();
    throw error;
  }
  const stop = async (): Promise<void> => {
    // A test that failed with a request held at a gate would otherwise hold close() open.
    openAllGates();
    try {
      await gateway.close();
    } finally {
      await kernel.stop();
    }
  };
  try {
    return { kernel, gateway, url: await gateway.listen(), stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * {@link runGateway} for one test: stopped when the test finishes, passed or failed. Call it
 * inside a test (not in a `beforeAll`), since the stop is tied to the running test.
 */
export async function gatewayForTest(...args: Parameters<typeof runGateway>): Promise<RunningGateway> {
  const running = await runGateway(...args);
  onTestFinished(() => running.stop());
  return running;
}
