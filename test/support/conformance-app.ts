/**
 * The application the transport conformance suite (conformance.ts) runs: its contracts and
 * modules (probe, relay, listener, auditor, gated, ghost), each module in a kernel of its own
 * with its own transport from the target, and the helpers its tests share (boot, addKernel,
 * shutdown, the positive signal of an absence).
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { expect, vi } from 'vitest';
import { z } from 'zod';
import {
  KeelError,
  createKernel,
  currentContext,
  defineContract,
  defineError,
  defineModule,
  event,
  operation,
  silentLogger,
  type AnyModule,
  type Kernel,
  type Logger,
  type Transport,
} from 'keel';

/** What a transport must provide to run the suite. */
export interface ConformanceTarget {
  readonly name: string;
  /**
   * A transport for one kernel. Transports made with the same `namespace` reach each other;
   * different namespaces are isolated (for NATS: a different subject prefix).
   */
  createTransport(namespace: string): Promise<Transport>;
  /** Releases a transport made by `createTransport`. */
  closeTransport(transport: Transport): Promise<void>;
  /**
   * Resolves once no durable event of the application `namespace` is waiting for delivery or
   * unacknowledged, so none can be delivered again: the positive signal for "handled once" (for
   * NATS, its JetStream consumers' counts; in process, the bus's `settled()`). A durable event
   * delivered again comes on a timer, not behind a later event, so no marker can prove it absent.
   */
  durableSettled(namespace: string): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Test application: probe (callee), relay (calls probe), listener and auditor (subscribers).

export const Item = z.object({
  id: z.string(),
  tags: z.array(z.string()),
  nested: z.object({ count: z.number().int() }),
});

export const Rejected = defineError({
  code: 'REJECTED',
  kind: 'conflict',
  data: z.object({ reason: z.string(), limit: z.number() }),
  message: (data) => `rejected: ${data.reason}`,
});

export const ContextView = z.object({
  correlationId: z.string(),
  traceparent: z.string().nullable(),
  caller: z.string(),
  deadline: z.number(),
  /** What the handler read from an AsyncLocalStorage of the application's own (not keel's). */
  foreign: z.string().nullable(),
});

/**
 * An AsyncLocalStorage of the application's own: callers and publishers enter it, and handlers
 * must not see their value (over a wire they could not), only keel's call context.
 */
export const foreignStorage = new AsyncLocalStorage<string>();

export const probe = defineContract({
  name: 'probe',
  version: '1.2.0',
  operations: {
    echo: operation({ input: z.object({ item: Item }), output: z.object({ item: Item }) }),
    stored: operation({ input: z.object({}), output: z.object({ item: Item.nullable() }) }),
    shared: operation({ input: z.object({}), output: z.object({ item: Item }) }),
    withDefault: operation({
      input: z.object({ name: z.string(), greeting: z.string().default('hello') }),
      output: z.object({ text: z.string() }),
    }),
    fail: operation({
      input: z.object({
        mode: z.enum(['declared', 'undeclared', 'undeclared-contract-error', 'bad-output', 'thenable-ok', 'thenable-declared']),
      }),
      output: z.object({ ok: z.boolean() }),
      errors: [Rejected],
    }),
    slow: operation({ input: z.object({ ms: z.number().int() }), output: z.object({ slept: z.number() }) }),
    slowWithTimeout: operation({
      input: z.object({ ms: z.number().int() }),
      output: z.object({ slept: z.number() }),
      timeoutMs: 200,
    }),
    context: operation({ input: z.object({}), output: ContextView }),
    ping: operation({
      input: z.object({ tag: z.string(), explode: z.boolean().default(false), failTimes: z.number().int().default(0) }),
      output: z.object({ ok: z.boolean() }),
    }),
    /** Records `instance:key` as started, then holds until the test opens the gate `key`. */
    hold: operation({ input: z.object({ key: z.string() }), output: z.object({ key: z.string() }) }),
    /** Emits `event` with a payload that breaks its contract for `tag`, and answers with what emit refused it with. */
    emitInvalid: operation({
      input: z.object({ tag: z.string(), event: z.enum(['pinged', 'recorded']) }),
      output: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.json()).nullable() }),
    }),
    /** Emits the durable `retried` event, which the listener fails while the gate named by its tag is closed. */
    emitRetried: operation({ input: z.object({ tag: z.string() }), output: z.object({}) }),
  },
  events: {
    pinged: event({ payload: z.object({ tag: z.string(), explode: z.boolean() }) }),
    recorded: event({ payload: z.object({ tag: z.string(), failTimes: z.number().int() }), delivery: 'durable' }),
    broadcast: event({ payload: z.object({ tag: z.string() }) }),
    retried: event({ payload: z.object({ tag: z.string() }), delivery: 'durable' }),
  },
});

export const UnrelatedError = defineError({ code: 'UNRELATED', data: z.object({}) });

export const relay = defineContract({
  name: 'relay',
  version: '1.0.0',
  operations: {
    context: operation({
      input: z.object({}),
      output: z.object({ own: ContextView, nested: ContextView }),
    }),
    slowNested: operation({
      input: z.object({ delayMs: z.number().int(), nestedMs: z.number().int() }),
      output: z.object({ slept: z.number() }),
    }),
    forward: operation({
      input: z.object({ mode: z.enum(['declared', 'undeclared']) }),
      output: z.object({ ok: z.boolean() }),
      errors: [Rejected],
    }),
    nestedFailure: operation({
      input: z.object({ kind: z.enum(['no-responders', 'invalid-input']) }),
      output: z.object({ ok: z.boolean() }),
    }),
    /** Records `instance:key` as started, holds until the gate `key` opens, then calls probe.withDefault. */
    heldNested: operation({ input: z.object({ key: z.string() }), output: z.object({ text: z.string() }) }),
  },
});

export const listener = defineContract({
  name: 'listener',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

export const auditor = defineContract({
  name: 'auditor',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

/** A module whose start hook the readiness test holds open. */
export const gated = defineContract({
  name: 'gated',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

export const ghost = defineContract({
  name: 'ghost',
  version: '1.0.0',
  operations: { boo: operation({ input: z.object({}), output: z.object({}) }) },
});

export interface Received {
  /** The event's id. */
  readonly id: string;
  readonly traceparent: string | undefined;
  readonly module: string;
  readonly instance: string;
  readonly event: string;
  readonly tag: string;
  readonly attempt: number;
  readonly correlationId: string;
  readonly caller: string;
  readonly payload: unknown;
  /** The handler's context deadline, read through currentContext(). */
  readonly deadline: number;
  /** What was left of it when the handler ran. */
  readonly remainingMs: number;
  /** What the handler read from the application's own AsyncLocalStorage (see foreignStorage). */
  readonly foreign: string | null;
}

export function viewOf(): z.infer<typeof ContextView> {
  const context = currentContext();
  if (context === undefined) throw new Error('no call context in handler');
  return {
    correlationId: context.correlationId,
    traceparent: context.traceparent ?? null,
    caller: context.caller,
    deadline: context.deadline,
    foreign: foreignStorage.getStore() ?? null,
  };
}

/** A PromiseLike that is not a Promise, settling on a later macrotask with what `produce` returns or throws. */
export function thenable<T>(produce: () => T): PromiseLike<T> {
  return {
    then(onValue, onError) {
      return new Promise<T>((resolve, reject) =>
        setTimeout(() => {
          try {
            resolve(produce());
          } catch (error) {
            reject(error);
          }
        }, 1),
      ).then(onValue, onError);
    },
  };
}

/** A latch the test opens: handlers that hold on it wait until then. */
export class Gate {
  isOpen = false;
  readonly opened: Promise<void>;
  #open: () => void = () => {};

  constructor() {
    this.opened = new Promise<void>((resolve) => (this.#open = resolve));
  }

  open(): void {
    this.isOpen = true;
    this.#open();
  }
}

/** What the test and the modules of every kernel of one application share. */
export interface Shared {
  /** `instance:tag` of every auditor delivery, recorded when its handler starts. */
  readonly handling: string[];
  /** `instance:key` of every hold / heldNested call, recorded when its handler starts. */
  readonly started: string[];
  /** `instance:module` of every stop hook that ran, in order. */
  readonly stops: string[];
  /** `tag:attempt` of every `retried` delivery the listener handled without throwing. */
  readonly retriedOk: string[];
  readonly gates: Map<string, Gate>;
  /** The probe module's `emit`, kept so that a test can emit outside any call (the last probe instance created). */
  emit?: (event: 'pinged', payload: { tag: string }) => Promise<void>;
}

export function newShared(): Shared {
  return { handling: [], started: [], stops: [], retriedOk: [], gates: new Map() };
}

/** The gate named `key`, made by whichever of the test and a handler asks first. */
export function gateOf(shared: Shared, key: string): Gate {
  let gate = shared.gates.get(key);
  if (gate === undefined) {
    gate = new Gate();
    shared.gates.set(key, gate);
  }
  return gate;
}

export function makeModules(received: Received[], instance: string, shared: Shared) {
  const { handling } = shared;
  let stored: z.infer<typeof Item> | null = null;
  const sharedItem = { id: 'shared', tags: ['a'], nested: { count: 1 } };
  const failures = new Map<string, number>();

  const probeModule = defineModule({
    contract: probe,
    create: ({ emit }) => {
      shared.emit = (event, payload) => emit(event, { explode: false, ...payload });
      return {
        handlers: {
          echo: ({ item }) => {
            stored = item;
            return { item };
          },
          stored: () => ({ item: stored }),
          shared: () => ({ item: sharedItem }),
          withDefault: ({ name, greeting }) => ({ text: `${greeting} ${name}` }),
          fail: ({ mode }) => {
            if (mode === 'declared') throw new Rejected({ reason: 'over limit', limit: 3 });
            if (mode === 'undeclared-contract-error') throw new UnrelatedError({});
            if (mode === 'bad-output') return { ok: 'yes' } as unknown as { ok: boolean };
            // A thenable that is not a native promise: the answer pipeline settles it like one.
            if (mode === 'thenable-ok') return thenable(() => ({ ok: true })) as unknown as { ok: boolean };
            if (mode === 'thenable-declared') {
              return thenable(() => {
                throw new Rejected({ reason: 'from a thenable', limit: 1 });
              }) as unknown as { ok: boolean };
            }
            throw new Error('boom: a secret stack trace');
          },
          slow: async ({ ms }) => {
            await sleep(ms);
            return { slept: ms };
          },
          slowWithTimeout: async ({ ms }) => {
            await sleep(ms);
            return { slept: ms };
          },
          context: () => viewOf(),
          ping: async ({ tag, explode, failTimes }) => {
            // Published with a value of the application's own entered, which subscribers must not see.
            await foreignStorage.run('probe, publishing', () => emit('pinged', { tag, explode }));
            await emit('recorded', { tag, failTimes });
            await emit('broadcast', { tag });
            return { ok: true };
          },
          hold: async ({ key }) => {
            shared.started.push(`${instance}:${key}`);
            await gateOf(shared, key).opened;
            return { key };
          },
          emitInvalid: async ({ tag, event }) => {
            try {
              // A field of the wrong type: `tag` itself is valid, so a subscriber that got it would record it.
              if (event === 'pinged') await emit('pinged', { tag, explode: 'yes' } as never);
              else await emit('recorded', { tag, failTimes: 1.5 });
            } catch (error) {
              const refused = error as KeelError;
              return { code: String(refused.code), message: refused.message, details: (refused.details as Record<string, z.core.util.JSONType> | undefined) ?? null };
            }
            return { code: 'none', message: 'emit accepted the payload', details: null };
          },
          emitRetried: async ({ tag }) => {
            await emit('retried', { tag });
            return {};
          },
        },
        stop: () => {
          shared.stops.push(`${instance}:probe`);
        },
      };
    },
  });

  const relayModule = defineModule({
    contract: relay,
    dependsOn: [probe, ghost],
    create: ({ get }) => {
      const probeClient = get(probe);
      const ghostClient = get(ghost);
      return {
        handlers: {
          // The nested call is made with a value of the application's own entered, which probe must not see.
          context: async () => ({ own: viewOf(), nested: await foreignStorage.run('relay, calling', () => probeClient.context({})) }),
          slowNested: async ({ delayMs, nestedMs }) => {
            await sleep(delayMs);
            return probeClient.slow({ ms: nestedMs });
          },
          forward: async ({ mode }) => probeClient.fail({ mode }),
          nestedFailure: async ({ kind }) => {
            if (kind === 'no-responders') await ghostClient.boo({});
            else await probeClient.echo({ item: { id: 42 } } as never);
            return { ok: true };
          },
          heldNested: async ({ key }) => {
            shared.started.push(`${instance}:${key}`);
            await gateOf(shared, key).opened;
            return probeClient.withDefault({ name: key });
          },
        },
        stop: () => {
          shared.stops.push(`${instance}:relay`);
        },
      };
    },
  });

  const record = (module: string, eventName: string) => (payload: { tag: string }, context: { id: string; attempt: number; correlationId: string; caller: string; traceparent: string | undefined }) => {
    const ambient = currentContext();
    if (ambient === undefined) throw new Error('no event context in handler');
    received.push({
      id: context.id,
      traceparent: context.traceparent,
      module,
      instance,
      event: eventName,
      tag: payload.tag,
      attempt: context.attempt,
      correlationId: context.correlationId,
      caller: context.caller,
      payload,
      deadline: ambient.deadline,
      remainingMs: ambient.deadline - Date.now(),
      foreign: foreignStorage.getStore() ?? null,
    });
  };

  const listenerModule = defineModule({
    contract: listener,
    subscribesTo: [probe],
    create: () => ({
      handlers: { noop: () => ({}) },
      events: {
        probe: {
          pinged: (payload, context) => {
            record('listener', 'pinged')(payload, context);
            if (payload.explode) throw new Error('listener exploded on purpose');
          },
          recorded: {
            maxAttempts: 3,
            handle: (payload, context) => {
              const seen = failures.get(payload.tag) ?? 0;
              failures.set(payload.tag, seen + 1);
              record('listener', 'recorded')(payload, context);
              if (seen < payload.failTimes) throw new Error(`failing on purpose (${seen + 1}/${payload.failTimes})`);
            },
          },
          broadcast: { fanout: 'every-instance', handle: record('listener', 'broadcast') },
          retried: {
            maxAttempts: 50,
            handle: (payload, context) => {
              record('listener', 'retried')(payload, context);
              if (shared.gates.get(payload.tag)?.isOpen === false) throw new Error('failing until the test opens the gate');
              shared.retriedOk.push(`${payload.tag}:${context.attempt}`);
            },
          },
        },
      },
    }),
  });

  const auditorModule = defineModule({
    contract: auditor,
    subscribesTo: [probe],
    create: () => ({
      handlers: { noop: () => ({}) },
      events: {
        probe: {
          pinged: async (payload, context) => {
            handling.push(`${instance}:${payload.tag}`);
            const gate = shared.gates.get(payload.tag);
            if (gate !== undefined) await gate.opened;
            else if (payload.tag.startsWith('slow-subscriber')) await sleep(1_000);
            record('auditor', 'pinged')(payload, context);
          },
        },
      },
    }),
  });

  const ghostModule = defineModule({ contract: ghost, create: () => ({ handlers: { boo: () => ({}) } }) });

  return { probeModule, relayModule, listenerModule, auditorModule, ghostModule };
}

export function manifest(received: Received[], instance: string, shared: Shared = newShared()): AnyModule[] {
  const m = makeModules(received, instance, shared);
  return [m.probeModule, m.relayModule, m.listenerModule, m.auditorModule, m.ghostModule];
}

export interface Booted {
  readonly namespace: string;
  readonly client: Kernel;
  readonly kernels: Map<string, Kernel>;
  readonly transports: Transport[];
  readonly received: Received[];
  /** `instance:tag` of every auditor delivery, recorded when its handler starts. */
  readonly handling: string[];
  /** Gates, started holds and stop hooks, shared with the modules of every kernel. */
  readonly shared: Shared;
  readonly deadLetters: { tag: string; attempts: number }[];
  readonly options: BootOptions;
}

export interface BootOptions {
  readonly defaultTimeoutMs?: number;
  readonly eventTimeoutMs?: number;
  readonly logger?: Logger;
}

let bootCount = 0;

export function nextNamespace(): string {
  bootCount += 1;
  return `app${bootCount}`;
}

export async function boot(
  target: ConformanceTarget,
  placement: readonly { readonly name: string; readonly host: readonly string[] }[],
  options: BootOptions = {},
): Promise<Booted> {
  const namespace = nextNamespace();
  const transports: Transport[] = [];
  const received: Received[] = [];
  const shared = newShared();
  const transport = await target.createTransport(namespace);
  transports.push(transport);
  const client = createKernel({
    modules: manifest(received, 'client', shared),
    topology: { host: [], transport },
    logger: silentLogger,
    defaultTimeoutMs: options.defaultTimeoutMs ?? 5_000,
  });
  await client.start();
  const booted: Booted = { namespace, client, kernels: new Map(), transports, received, handling: shared.handling, shared, deadLetters: [], options };
  for (const { name, host } of placement) await addKernel(target, booted, name, host);
  return booted;
}

/** Starts one more kernel of a booted application, hosting `host`, as if in another process. */
export async function addKernel(target: ConformanceTarget, booted: Booted, name: string, host: readonly string[]): Promise<Kernel> {
  const { options } = booted;
  const transport = await target.createTransport(booted.namespace);
  booted.transports.push(transport);
  const kernel = createKernel({
    modules: manifest(booted.received, name, booted.shared),
    topology: { host, transport },
    logger: options.logger ?? silentLogger,
    defaultTimeoutMs: options.defaultTimeoutMs ?? 5_000,
    eventTimeoutMs: options.eventTimeoutMs,
    onDeadLetter: (letter) => booted.deadLetters.push({ tag: (letter.payload as { tag: string }).tag, attempts: letter.metadata.attempt }),
  });
  booted.kernels.set(name, kernel);
  await kernel.start();
  return kernel;
}

export async function shutdown(target: ConformanceTarget, booted: Booted | undefined): Promise<void> {
  if (booted === undefined) return;
  await booted.client.stop();
  for (const kernel of [...booted.kernels.values()].reverse()) await kernel.stop();
  for (const transport of booted.transports) await target.closeTransport(transport);
}

export interface LogEntry {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly record: Record<string, unknown>;
}

/** A logger that keeps every record, with the bindings of the child it was written through. */
export function capturingLogger(entries: LogEntry[], bindings: Record<string, unknown> = {}): Logger {
  const at = (level: LogEntry['level']) => (record: Record<string, unknown>, message: string) => {
    entries.push({ level, message, record: { ...bindings, ...record } });
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => capturingLogger(entries, { ...bindings, ...more }),
  };
}

export const SPLIT = [
  { name: 'probe-1', host: ['probe'] },
  { name: 'relay-1', host: ['relay'] },
  { name: 'listener-1', host: ['listener'] },
  { name: 'auditor-1', host: ['auditor'] },
] as const;

export async function expectRejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** How long a test waits for a positive signal (a handler started, a delivery seen). */
export const WAIT = { timeout: 10_000, interval: 10 } as const;

export function uniqueTag(label: string): string {
  return `${label}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * The positive signal that proves an absence: pings a new tag through `app`'s probe and waits
 * until each of `receivers` (a module, or a kernel's instance name) has handled its `event`
 * notification. Whatever the same publisher sent before (a duplicate, a kept notification)
 * would have reached them first.
 */
export async function pingAndAwaitMarker(app: Booted, receivers: readonly string[], event = 'pinged'): Promise<void> {
  const marker = uniqueTag('marker');
  await app.client.client(probe).ping({ tag: marker });
  await vi.waitFor(
    () => {
      const got = app.received.filter((r) => r.tag === marker && r.event === event);
      for (const receiver of receivers) expect(got.some((r) => r.module === receiver || r.instance === receiver), receiver).toBe(true);
    },
    { timeout: 10_000, interval: 20 },
  );
}
