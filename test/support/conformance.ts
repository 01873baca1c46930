/**
 * The transport conformance suite: every promise of DESIGN.md "Semantics", checked against any
 * Transport. Each module runs in its own kernel with its own transport from the target, so
 * every call and event crosses the transport under test. The local transport and the NATS
 * adapter run this suite unchanged.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  KeelError,
  createKernel,
  currentContext,
  defineContract,
  defineError,
  defineModule,
  event,
  isKeelError,
  operation,
  silentLogger,
  type AnyModule,
  type Kernel,
  type Logger,
  type Transport,
} from 'keel';
import { ContractError, RemoteFailure, createClient, type EventRecord } from 'keel/transport';
import { describeDataConformance } from './data-conformance.js';
import { describeBulkheadConformance } from './bulkhead-conformance.js';
import { describeResilienceConformance } from './resilience-conformance.js';
import { describeIdentityConformance } from './identity-conformance.js';
import { describeTracingConformance } from './tracing-conformance.js';

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

const Item = z.object({
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

const ContextView = z.object({
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
const foreignStorage = new AsyncLocalStorage<string>();

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

const UnrelatedError = defineError({ code: 'UNRELATED', data: z.object({}) });

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

interface Received {
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

function viewOf(): z.infer<typeof ContextView> {
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
function thenable<T>(produce: () => T): PromiseLike<T> {
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
class Gate {
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
interface Shared {
  /** `instance:tag` of every auditor delivery, recorded when its handler starts. */
  readonly handling: string[];
  /** `instance:key` of every hold / heldNested call, recorded when its handler starts. */
  readonly started: string[];
  /** `instance:module` of every stop hook that ran, in order. */
  readonly stops: string[];
  /** `tag:attempt` of every `retried` delivery the listener handled without throwing. */
  readonly retriedOk: string[];
  readonly gates: Map<string, Gate>;
}

function newShared(): Shared {
  return { handling: [], started: [], stops: [], retriedOk: [], gates: new Map() };
}

/** The gate named `key`, made by whichever of the test and a handler asks first. */
function gateOf(shared: Shared, key: string): Gate {
  let gate = shared.gates.get(key);
  if (gate === undefined) {
    gate = new Gate();
    shared.gates.set(key, gate);
  }
  return gate;
}

function makeModules(received: Received[], instance: string, shared: Shared) {
  const { handling } = shared;
  let stored: z.infer<typeof Item> | null = null;
  const sharedItem = { id: 'shared', tags: ['a'], nested: { count: 1 } };
  const failures = new Map<string, number>();

  const probeModule = defineModule({
    contract: probe,
    create: ({ emit }) => ({
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
    }),
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

  const record = (module: string, eventName: string) => (payload: { tag: string }, context: { attempt: number; correlationId: string; caller: string; traceparent: string | undefined }) => {
    const ambient = currentContext();
    if (ambient === undefined) throw new Error('no event context in handler');
    received.push({
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

function manifest(received: Received[], instance: string, shared: Shared = newShared()): AnyModule[] {
  const m = makeModules(received, instance, shared);
  return [m.probeModule, m.relayModule, m.listenerModule, m.auditorModule, m.ghostModule];
}

interface Booted {
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

interface BootOptions {
  readonly defaultTimeoutMs?: number;
  readonly eventTimeoutMs?: number;
  readonly logger?: Logger;
}

let bootCount = 0;

function nextNamespace(): string {
  bootCount += 1;
  return `app${bootCount}`;
}

async function boot(
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
async function addKernel(target: ConformanceTarget, booted: Booted, name: string, host: readonly string[]): Promise<Kernel> {
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

async function shutdown(target: ConformanceTarget, booted: Booted | undefined): Promise<void> {
  if (booted === undefined) return;
  await booted.client.stop();
  for (const kernel of [...booted.kernels.values()].reverse()) await kernel.stop();
  for (const transport of booted.transports) await target.closeTransport(transport);
}

interface LogEntry {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly record: Record<string, unknown>;
}

/** A logger that keeps every record, with the bindings of the child it was written through. */
function capturingLogger(entries: LogEntry[], bindings: Record<string, unknown> = {}): Logger {
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

const SPLIT = [
  { name: 'probe-1', host: ['probe'] },
  { name: 'relay-1', host: ['relay'] },
  { name: 'listener-1', host: ['listener'] },
  { name: 'auditor-1', host: ['auditor'] },
] as const;

async function expectRejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** How long a test waits for a positive signal (a handler started, a delivery seen). */
const WAIT = { timeout: 10_000, interval: 10 } as const;

function uniqueTag(label: string): string {
  return `${label}-${Math.random().toString(36).slice(2, 10)}`;
}

/**
 * The positive signal that proves an absence: pings a new tag through `app`'s probe and waits
 * until each of `receivers` (a module, or a kernel's instance name) has handled its `event`
 * notification. Whatever the same publisher sent before (a duplicate, a kept notification)
 * would have reached them first.
 */
async function pingAndAwaitMarker(app: Booted, receivers: readonly string[], event = 'pinged'): Promise<void> {
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

/**
 * Registers the conformance suite for `target`.
 *
 * @example
 * ```ts
 * const buses = new Map<string, Transport>();
 * describeTransportConformance({
 *   name: 'local',
 *   createTransport: async (namespace) => buses.get(namespace) ?? buses.set(namespace, createLocalTransport()).get(namespace)!,
 *   closeTransport: async () => {},
 * });
 * ```
 */
export function describeTransportConformance(target: ConformanceTarget): void {
  describe(`transport conformance - ${target.name}`, () => {
    let app: Booted | undefined;
    const booted = (): Booted => {
      if (app === undefined) throw new Error('application not booted');
      return app;
    };

    beforeAll(async () => {
      // Started inside a value of the application's own, as a kernel started lazily by a first
      // request would be: no handler may read it later (the 'context' and 'events' tests).
      app = await foreignStorage.run('where the kernels started', () => boot(target, SPLIT));
    });
    afterAll(async () => {
      await shutdown(target, app);
    });

    describe('value semantics', () => {
      it('gives the callee a copy of the input: mutating the caller object afterwards changes nothing', async () => {
        const item = { id: uniqueTag('v'), tags: ['x'], nested: { count: 1 } };
        const probeClient = booted().client.client(probe);
        const answer = await probeClient.echo({ item });
        item.tags.push('mutated');
        item.nested.count = 99;
        const { item: stored } = await probeClient.stored({});
        expect(stored).toEqual({ id: item.id, tags: ['x'], nested: { count: 1 } });
        expect(answer.item).not.toBe(item);
        expect(answer.item.nested).not.toBe(item.nested);
      });

      it('gives the caller a copy of the output: mutating a result never reaches the callee', async () => {
        const probeClient = booted().client.client(probe);
        const first = await probeClient.shared({});
        first.item.tags.push('mutated');
        first.item.nested.count = 42;
        const second = await probeClient.shared({});
        expect(second.item).toEqual({ id: 'shared', tags: ['a'], nested: { count: 1 } });
      });

      it('applies schema defaults on the callee side', async () => {
        expect(await booted().client.client(probe).withDefault({ name: 'ada' })).toEqual({ text: 'hello ada' });
      });
    });

    describe('validation at the boundary', () => {
      it('refuses invalid input with INVALID_INPUT naming contract, operation and field', async () => {
        const error = await expectRejection(
          booted().client.client(probe).echo({ item: { id: 7, tags: [], nested: { count: 1 } } } as never),
        );
        expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
        expect(error.message).toContain('probe.echo');
        expect(error.message).toContain('item.id');
        expect((error as KeelError).details).toMatchObject({ contract: 'probe', operation: 'echo' });
        expect(((error as KeelError).details?.['issues'] as unknown[]).length).toBeGreaterThan(0);
      });

      it('settles a handler that returns a thenable (not a native promise) with its value, or its declared error', async () => {
        const probeClient = booted().client.client(probe);
        expect(await probeClient.fail({ mode: 'thenable-ok' })).toEqual({ ok: true });
        const error = await expectRejection(probeClient.fail({ mode: 'thenable-declared' }));
        expect(error).toBeInstanceOf(Rejected);
        expect((error as InstanceType<typeof Rejected>).data).toEqual({ reason: 'from a thenable', limit: 1 });
      });

      it('refuses at emit an event payload that breaks its contract, notification or durable, with INVALID_EVENT naming the event and the field, and delivers nothing', async () => {
        const app = booted();
        const tag = uniqueTag('invalid-event');
        const probeClient = app.client.client(probe);
        for (const [event, field] of [['pinged', 'explode'], ['recorded', 'failTimes']] as const) {
          const refused = await probeClient.emitInvalid({ tag, event });
          expect(refused).toMatchObject({ code: 'INVALID_EVENT', details: { contract: 'probe', event } });
          expect(refused.message).toContain(`probe.${event}`);
          expect(refused.message).toContain(field);
          expect(refused.details?.['issues']).toContainEqual(expect.objectContaining({ path: [field] }));
        }
        // Nothing was published: a notification would have reached both subscribers before a later
        // one from the same publisher does, and a durable one would be delivered or waiting.
        await pingAndAwaitMarker(app, ['auditor', 'listener']);
        await target.durableSettled(app.namespace);
        expect(app.received.filter((r) => r.tag === tag)).toEqual([]);
        expect(app.deadLetters.filter((letter) => letter.tag === tag)).toEqual([]);
      });

      it('reports a handler output that breaks the contract as INVALID_OUTPUT', async () => {
        const error = await expectRejection(booted().client.client(probe).fail({ mode: 'bad-output' }));
        expect(isKeelError(error, 'INVALID_OUTPUT')).toBe(true);
        expect(error.message).toContain('probe.fail');
      });
    });

    describe('errors', () => {
      it('rebuilds a declared error as the declared class with code and data', async () => {
        const error = await expectRejection(booted().client.client(probe).fail({ mode: 'declared' }));
        expect(error).toBeInstanceOf(Rejected);
        expect(error).toBeInstanceOf(ContractError);
        expect(Rejected.is(error)).toBe(true);
        const rejected = error as InstanceType<typeof Rejected>;
        expect(rejected.code).toBe('REJECTED');
        expect(rejected.data).toEqual({ reason: 'over limit', limit: 3 });
        expect(rejected.message).toBe('rejected: over limit');
        expect(rejected.correlationId).toEqual(expect.any(String));
      });

      it('propagates a declared error through a module that re-declares it', async () => {
        const error = await expectRejection(booted().client.client(relay).forward({ mode: 'declared' }));
        expect(error).toBeInstanceOf(Rejected);
      });

      it('turns an undeclared throw into INTERNAL with a correlation id and no stack, and keeps serving', async () => {
        const probeClient = booted().client.client(probe);
        const error = await expectRejection(probeClient.fail({ mode: 'undeclared' }, { correlationId: 'corr-internal-1' }));
        expect(isKeelError(error, 'INTERNAL')).toBe(true);
        expect((error as KeelError).correlationId).toBe('corr-internal-1');
        expect(error.message).toContain('corr-internal-1');
        expect(error.message).not.toContain('secret stack trace');
        expect(await probeClient.withDefault({ name: 'still alive' })).toEqual({ text: 'hello still alive' });
      });

      it("logs an undeclared throw on the callee's logger, once, at error level, with its message, its stack and the correlation id the caller got", async () => {
        const entries: LogEntry[] = [];
        const app = await boot(target, [{ name: 'probe-log', host: ['probe'] }], { logger: capturingLogger(entries) });
        try {
          // No correlation id given: the one the kernel made is the one the caller got.
          const error = await expectRejection(app.client.client(probe).fail({ mode: 'undeclared' }));
          expect(isKeelError(error, 'INTERNAL')).toBe(true);
          const { correlationId } = error as KeelError;
          expect(correlationId).toMatch(/\S{8,}/);
          // Only the callee's kernel logs to `entries` (the caller's is silent).
          const logged = entries.filter((entry) => entry.record['correlationId'] === correlationId && entry.level !== 'debug');
          expect(logged).toHaveLength(1);
          expect(logged[0]).toMatchObject({ level: 'error', record: { operation: 'probe.fail' } });
          const err = logged[0]?.record['err'] as Error;
          expect(err).toBeInstanceOf(Error);
          expect(err.message).toBe('boom: a secret stack trace');
          expect(err.stack).toContain('boom: a secret stack trace');
          expect(err.stack).toMatch(/\n\s+at /);
        } finally {
          await shutdown(target, app);
        }
      });

      it('turns a contract error the operation does not declare into INTERNAL', async () => {
        const error = await expectRejection(booted().client.client(probe).fail({ mode: 'undeclared-contract-error' }));
        expect(isKeelError(error, 'INTERNAL')).toBe(true);
      });

      it('reports a dependency failure the handler lets through as INTERNAL, never as retryable NO_RESPONDERS', async () => {
        const error = await expectRejection(
          booted().client.client(relay).nestedFailure({ kind: 'no-responders' }, { correlationId: 'corr-nested-1' }),
        );
        expect(isKeelError(error, 'INTERNAL')).toBe(true);
        expect((error as KeelError).retryable).toBe(false);
        expect((error as KeelError).correlationId).toBe('corr-nested-1');
      });

      it('reports invalid input the handler sent to a dependency as INTERNAL, not as the caller\'s INVALID_INPUT', async () => {
        const error = await expectRejection(booted().client.client(relay).nestedFailure({ kind: 'invalid-input' }));
        expect(isKeelError(error, 'INTERNAL')).toBe(true);
      });

      it('answers NO_RESPONDERS, retryable, when nothing serves the module', async () => {
        const error = await expectRejection(booted().client.client(ghost).boo({}, { timeoutMs: 3_000 }));
        expect(isKeelError(error, 'NO_RESPONDERS')).toBe(true);
        expect((error as KeelError).retryable).toBe(true);
      });

      it('refuses a caller whose contract major version differs with VERSION_MISMATCH', async () => {
        const probeV2 = defineContract({ ...probe, version: '2.0.0' });
        const transport = await target.createTransport(booted().namespace);
        try {
          const client = createClient(probeV2, transport, { caller: 'external', defaultTimeoutMs: 3_000 });
          const error = await expectRejection(client.withDefault({ name: 'x' }));
          expect(isKeelError(error, 'VERSION_MISMATCH')).toBe(true);
          const minor = createClient(defineContract({ ...probe, version: '1.9.0' }), transport, {
            caller: 'external',
            defaultTimeoutMs: 3_000,
          });
          expect(await minor.withDefault({ name: 'x' })).toEqual({ text: 'hello x' });
        } finally {
          await target.closeTransport(transport);
        }
      });

      it('answers UNKNOWN_OPERATION, not retryable, to a newer minor asking for an operation the module lacks; VERSION_MISMATCH on another major', async () => {
        const extra = operation({ input: z.object({}), output: z.object({}) });
        const newer = defineContract({ ...probe, version: '1.9.0', operations: { ...probe.operations, purge: extra } });
        const nextMajor = defineContract({ ...probe, version: '2.0.0', operations: { ...probe.operations, purge: extra } });
        const transport = await target.createTransport(booted().namespace);
        try {
          const options = { caller: 'external', defaultTimeoutMs: 3_000 } as const;
          const unknown = await expectRejection(createClient(newer, transport, options).purge({}));
          expect(isKeelError(unknown, 'UNKNOWN_OPERATION')).toBe(true);
          expect((unknown as KeelError).retryable).toBe(false);
          expect(unknown.message).toContain(`Module "probe" ${probe.version} has no operation "purge"`);
          expect(await createClient(newer, transport, options).withDefault({ name: 'y' })).toEqual({ text: 'hello y' });
          const mismatch = await expectRejection(createClient(nextMajor, transport, options).purge({}));
          expect(isKeelError(mismatch, 'VERSION_MISMATCH')).toBe(true);
          expect(mismatch.message).toContain('probe 2.0.0');
        } finally {
          await target.closeTransport(transport);
        }
      });
    });

    describe('deadlines', () => {
      it('times out a slow call at the per-call deadline with TIMEOUT, not retryable', async () => {
        const error = await expectRejection(booted().client.client(probe).slow({ ms: 1_500 }, { timeoutMs: 100 }));
        expect(isKeelError(error, 'TIMEOUT')).toBe(true);
        expect((error as KeelError).retryable).toBe(false);
      });

      it('applies the operation timeout when the call sets none', async () => {
        const error = await expectRejection(booted().client.client(probe).slowWithTimeout({ ms: 1_500 }));
        expect(isKeelError(error, 'TIMEOUT')).toBe(true);
      });

      it('applies the kernel default when neither call nor operation sets one', async () => {
        const quick = await boot(target, [{ name: 'probe-quick', host: ['probe'] }], { defaultTimeoutMs: 150 });
        try {
          const error = await expectRejection(quick.client.client(probe).slow({ ms: 1_500 }));
          expect(isKeelError(error, 'TIMEOUT')).toBe(true);
        } finally {
          await shutdown(target, quick);
        }
      });

      it('cancels a call with CANCELLED, not retryable, when the caller aborts it while its handler runs, and keeps serving', async () => {
        const app = booted();
        const key = uniqueTag('cancel');
        const controller = new AbortController();
        try {
          const pending = expectRejection(app.client.client(probe).hold({ key }, { signal: controller.signal }));
          await vi.waitFor(() => expect(app.shared.started).toContain(`probe-1:${key}`), WAIT);
          controller.abort();
          const error = await pending;
          expect(isKeelError(error, 'CANCELLED')).toBe(true);
          expect((error as KeelError).retryable).toBe(false);
          expect(await app.client.client(probe).withDefault({ name: 'after cancel' })).toEqual({ text: 'hello after cancel' });
        } finally {
          gateOf(app.shared, key).open();
        }
      });

      it('lets a call finish when it is within its deadline', async () => {
        expect(await booted().client.client(probe).slow({ ms: 20 }, { timeoutMs: 3_000 })).toEqual({ slept: 20 });
      });

      it('gives a nested call no more than what is left of the outer deadline', async () => {
        // 4 s is less than every default in play (5 s in the suite, 10 s in the kernel), so a lost
        // deadline would show as a later one on either side.
        const before = Date.now();
        const answer = await booted().client.client(relay).context({}, { timeoutMs: 4_000 });
        const after = Date.now();
        expect(answer.own.deadline).toBeGreaterThanOrEqual(before + 4_000);
        expect(answer.own.deadline).toBeLessThanOrEqual(after + 4_000);
        expect(answer.nested.deadline).toBeLessThanOrEqual(answer.own.deadline);
        expect(answer.nested.deadline).toBeLessThanOrEqual(after + 4_000);
      });

      it('refuses a call that arrives after its deadline with TIMEOUT, before its handler runs', async () => {
        const { client, transports } = booted();
        const transport = transports[0] as Transport;
        const item = (id: string) => ({ id, tags: ['deadline'], nested: { count: 1 } });
        const before = item(uniqueTag('before'));
        await client.client(probe).echo({ item: before });
        const address = (operation: string) => ({ contract: probe.name, version: probe.version, operation });
        const context = (correlationId: string, deadline: number) => ({ correlationId, traceparent: undefined, caller: 'external', deadline });
        // The transport itself, as a peer with a late clock or a replayed message would reach it:
        // a kernel client refuses to send such a call.
        const late = await expectRejection(transport.call(address('echo'), { item: item(uniqueTag('late')) }, context('late-1', Date.now() - 3_600_000)));
        expect(late instanceof RemoteFailure ? late.envelope.code : (late as KeelError).code).toBe('TIMEOUT');
        // A later call on the same transport reaches the module after the late one: the late echo stored nothing.
        expect(await transport.call(address('stored'), {}, context('late-2', Date.now() + 5_000))).toEqual({ item: before });
      });

      it('fails the outer call with TIMEOUT when the nested call runs out of the inherited budget', async () => {
        const error = await expectRejection(
          booted().client.client(relay).slowNested({ delayMs: 50, nestedMs: 2_000 }, { timeoutMs: 400 }),
        );
        expect(isKeelError(error, 'TIMEOUT')).toBe(true);
      });
    });

    describe('context', () => {
      it('carries correlation id, traceparent, caller and deadline into the callee', async () => {
        const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        const before = Date.now();
        const view = await booted().client.client(probe).context({}, { correlationId: 'corr-ctx-1', traceparent, timeoutMs: 3_000 });
        const after = Date.now();
        expect(view).toMatchObject({ correlationId: 'corr-ctx-1', traceparent, caller: 'external' });
        // The caller's deadline itself, not one the callee made up from its own default.
        expect(view.deadline).toBeGreaterThanOrEqual(before + 3_000);
        expect(view.deadline).toBeLessThanOrEqual(after + 3_000);
      });

      it('keeps correlation id and traceparent across nested calls and names the calling module', async () => {
        const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
        const answer = await booted().client.client(relay).context({}, { correlationId: 'corr-ctx-2', traceparent });
        expect(answer.own).toMatchObject({ correlationId: 'corr-ctx-2', traceparent, caller: 'external' });
        expect(answer.nested).toMatchObject({ correlationId: 'corr-ctx-2', traceparent, caller: 'relay' });
      });

      it("gives a handler keel's call context but none of the caller's own AsyncLocalStorage values, nor those of where the kernels were started, at the first call and the nested one", async () => {
        const view = await foreignStorage.run('the caller', () => booted().client.client(probe).context({}, { correlationId: 'corr-ctx-foreign' }));
        expect(view).toMatchObject({ correlationId: 'corr-ctx-foreign', foreign: null });
        const answer = await foreignStorage.run('the caller', () => booted().client.client(relay).context({}, { correlationId: 'corr-ctx-foreign-2' }));
        expect(answer.own).toMatchObject({ correlationId: 'corr-ctx-foreign-2', foreign: null });
        expect(answer.nested).toMatchObject({ correlationId: 'corr-ctx-foreign-2', caller: 'relay', foreign: null });
      });

      it('makes a correlation id when the caller gives none', async () => {
        const view = await booted().client.client(probe).context({});
        expect(view.correlationId).toMatch(/\S{8,}/);
      });

      it('carries a 128-character correlation id unchanged, and refuses one or a traceparent that a header could not carry, before calling', async () => {
        const longest = `id-${'x'.repeat(125)}`;
        expect((await booted().client.client(probe).context({}, { correlationId: longest })).correlationId).toBe(longest);
        for (const correlationId of ['with\nnewline', ' padded ', 'has space', '', 'x'.repeat(129), 'café']) {
          const error = await expectRejection(booted().client.client(probe).context({}, { correlationId }));
          expect(isKeelError(error, 'INVALID_INPUT'), `${JSON.stringify(correlationId)}: ${String(error)}`).toBe(true);
          expect(error.message).toContain(`correlationId for probe.context must be 1 to 128 visible ASCII characters`);
        }
        const traceparent = await expectRejection(booted().client.client(probe).context({}, { traceparent: 'not-a-traceparent' }));
        expect(isKeelError(traceparent, 'INVALID_INPUT')).toBe(true);
        expect(traceparent.message).toContain('traceparent for probe.context must be a W3C traceparent');
      });
    });

    describe('events', () => {
      it("delivers each event once to each subscribing module, with the publisher's keel context and none of the AsyncLocalStorage values of the publisher or of where the kernels were started", async () => {
        const tag = uniqueTag('once');
        const traceparent = '00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        await booted().client.client(probe).ping({ tag }, { correlationId: `corr-${tag}`, traceparent });
        await vi.waitFor(() => {
          const got = booted().received.filter((r) => r.tag === tag && r.event === 'pinged');
          expect(got.map((r) => r.module).sort()).toEqual(['auditor', 'listener']);
        });
        // A second copy would have arrived before a later event of the same publisher does.
        await pingAndAwaitMarker(booted(), ['auditor', 'listener']);
        const got = booted().received.filter((r) => r.tag === tag && r.event === 'pinged');
        expect(got).toHaveLength(2);
        // Not the publisher's own AsyncLocalStorage value: only keel's context crosses to a subscriber.
        for (const r of got) expect(r).toMatchObject({ correlationId: `corr-${tag}`, traceparent, caller: 'probe', attempt: 1, foreign: null });
      });

      it('gives each subscribing module its own copy of the payload', async () => {
        const tag = uniqueTag('copy');
        await booted().client.client(probe).ping({ tag });
        await vi.waitFor(() => expect(booted().received.filter((r) => r.tag === tag && r.event === 'pinged')).toHaveLength(2));
        const [first, second] = booted().received.filter((r) => r.tag === tag && r.event === 'pinged');
        expect(first?.payload).toEqual(second?.payload);
        expect(first?.payload).not.toBe(second?.payload);
      });

      it('keeps delivering after a handler throws', async () => {
        const bad = uniqueTag('explode');
        const good = uniqueTag('after');
        const probeClient = booted().client.client(probe);
        await probeClient.ping({ tag: bad, explode: true });
        await probeClient.ping({ tag: good });
        await vi.waitFor(() => {
          expect(booted().received.some((r) => r.tag === good && r.module === 'listener' && r.event === 'pinged')).toBe(true);
        });
      });

      it('redelivers a durable event until the handler succeeds: attempts 1, 2 and 3, then none, and no dead letter', async () => {
        const app = booted();
        const tag = uniqueTag('durable');
        const attempts = () => app.received.filter((r) => r.tag === tag && r.event === 'recorded').map((r) => r.attempt);
        await app.client.client(probe).ping({ tag, failTimes: 2 });
        await vi.waitFor(() => expect(attempts()).toEqual([1, 2, 3]), { timeout: 20_000, interval: 50 });
        // A fourth attempt or a dead letter would come on a timer: wait until nothing is left to deliver.
        await target.durableSettled(app.namespace);
        expect(attempts()).toEqual([1, 2, 3]);
        expect(app.deadLetters.filter((letter) => letter.tag === tag)).toEqual([]);
      });

      it('dead-letters a durable event after its last attempt: attempts 1, 2 and 3, one dead letter, then nothing more', async () => {
        const app = booted();
        const tag = uniqueTag('dead');
        const attempts = () => app.received.filter((r) => r.tag === tag && r.event === 'recorded').map((r) => r.attempt);
        await app.client.client(probe).ping({ tag, failTimes: 10 });
        await vi.waitFor(() => expect(app.deadLetters).toContainEqual({ tag, attempts: 3 }), { timeout: 20_000, interval: 50 });
        await target.durableSettled(app.namespace);
        expect(attempts()).toEqual([1, 2, 3]);
        expect(app.deadLetters.filter((letter) => letter.tag === tag)).toEqual([{ tag, attempts: 3 }]);
      });

      it('does not let a durable event that keeps failing hold up later ones of the same subscriber: a later event is handled while the first is still retried, which then succeeds once', async () => {
        const app = booted();
        const stuck = uniqueTag('stuck');
        const later = uniqueTag('later');
        // The listener fails `stuck` for as long as its gate is closed (up to 50 attempts).
        const gate = gateOf(app.shared, stuck);
        const attempts = (tag: string) => app.received.filter((r) => r.tag === tag && r.event === 'retried').map((r) => r.attempt);
        const probeClient = app.client.client(probe);
        try {
          await probeClient.emitRetried({ tag: stuck });
          // It failed and is being retried.
          await vi.waitFor(() => expect(attempts(stuck).length).toBeGreaterThanOrEqual(2), WAIT);
          await probeClient.emitRetried({ tag: later });
          await vi.waitFor(() => expect(attempts(later)).toEqual([1]), WAIT);
          // Still retried after the later event was handled: it was not given up on to make way.
          const seen = attempts(stuck).length;
          await vi.waitFor(() => expect(attempts(stuck).length).toBeGreaterThan(seen), WAIT);
          expect(app.deadLetters.filter((letter) => letter.tag === stuck)).toEqual([]);
        } finally {
          gate.open();
        }
        await vi.waitFor(() => expect(app.shared.retriedOk.filter((entry) => entry.startsWith(`${stuck}:`))).toHaveLength(1), WAIT);
        // Handled once: no attempt after the one that succeeded, nothing dead-lettered.
        await target.durableSettled(app.namespace);
        const all = attempts(stuck);
        expect(all).toEqual(Array.from({ length: all.length }, (_, index) => index + 1));
        expect(app.shared.retriedOk.filter((entry) => entry.startsWith(`${stuck}:`) || entry.startsWith(`${later}:`))).toEqual([
          `${later}:1`,
          `${stuck}:${all.length}`,
        ]);
        expect(attempts(later)).toEqual([1]);
        expect(app.deadLetters.filter((letter) => letter.tag === stuck || letter.tag === later)).toEqual([]);
      });

      it('balances across instances of one module, each event once, and delivers to every instance only when opted in', async () => {
        const twice = await boot(target, [
          { name: 'probe-b', host: ['probe'] },
          { name: 'listener-b1', host: ['listener'] },
          { name: 'listener-b2', host: ['listener'] },
        ]);
        try {
          // 20 events: a fair split leaves one instance idle with probability 2 × 2^-20.
          const tags = Array.from({ length: 20 }, (_, index) => uniqueTag(`fanout${index}`));
          const probeClient = twice.client.client(probe);
          for (const tag of tags) await probeClient.ping({ tag });
          const delivered = (event: string) => twice.received.filter((r) => r.event === event && tags.includes(r.tag));
          const expectSettled = () => {
            const pinged = delivered('pinged');
            expect(pinged).toHaveLength(tags.length);
            expect(new Set(pinged.map((r) => r.tag)).size).toBe(tags.length);
            expect([...new Set(pinged.map((r) => r.instance))].sort()).toEqual(['listener-b1', 'listener-b2']);
            const recorded = delivered('recorded');
            expect(recorded).toHaveLength(tags.length);
            expect(new Set(recorded.map((r) => r.tag)).size).toBe(tags.length);
            const broadcast = delivered('broadcast');
            expect(broadcast).toHaveLength(2 * tags.length);
            for (const tag of tags) {
              expect(broadcast.filter((r) => r.tag === tag).map((r) => r.instance).sort()).toEqual(['listener-b1', 'listener-b2']);
            }
          };
          await vi.waitFor(expectSettled, { timeout: 10_000, interval: 50 });
          // A second notification would have arrived before a later one reaches both instances.
          await pingAndAwaitMarker(twice, ['listener-b1', 'listener-b2'], 'broadcast');
          // A durable event delivered again comes on a timer, not behind a later event: no marker proves it absent.
          await target.durableSettled(twice.namespace);
          expectSettled();
        } finally {
          await shutdown(target, twice);
        }
      });

      it('keeps durable events published while the subscribing module is stopped, and delivers them when it is back', async () => {
        const app = await boot(target, [
          { name: 'probe-k', host: ['probe'] },
          { name: 'listener-k1', host: ['listener'] },
        ]);
        try {
          await (app.kernels.get('listener-k1') as Kernel).stop();
          const tags = [uniqueTag('kept'), uniqueTag('kept')];
          for (const tag of tags) await app.client.client(probe).ping({ tag });
          // Nothing reaches the stopped listener-k1: the checks below find every delivery of these
          // tags at listener-k2, the durable ones as first attempts.
          await addKernel(target, app, 'listener-k2', ['listener']);
          await vi.waitFor(
            () => {
              const recorded = app.received.filter((r) => tags.includes(r.tag) && r.event === 'recorded');
              expect(recorded.map((r) => [r.tag, r.instance, r.attempt])).toEqual(tags.map((tag) => [tag, 'listener-k2', 1]));
            },
            { timeout: 10_000, interval: 50 },
          );
          // Notifications are at most once: neither transport keeps them for a module that is not
          // running. Kept ones would have reached listener-k2 before a notification published now does.
          await pingAndAwaitMarker(app, ['listener-k2'], 'broadcast');
          // A durable one delivered again would come on a timer: see ConformanceTarget.durableSettled.
          await target.durableSettled(app.namespace);
          expect(app.received.filter((r) => tags.includes(r.tag) && r.event !== 'recorded')).toEqual([]);
          expect(app.received.filter((r) => tags.includes(r.tag))).toHaveLength(tags.length);
        } finally {
          await shutdown(target, app);
        }
      });

      it('drains on stop: an event handler in flight finishes before stop resolves', async () => {
        const app = await boot(target, [
          { name: 'probe-d', host: ['probe'] },
          { name: 'auditor-d', host: ['auditor'] },
        ]);
        try {
          // The auditor's handler sleeps a second for this tag.
          const tag = uniqueTag('slow-subscriber-drain');
          await app.client.client(probe).ping({ tag });
          await vi.waitFor(() => expect(app.handling).toContain(`auditor-d:${tag}`), { timeout: 5_000, interval: 10 });
          const handled = () => app.received.filter((r) => r.tag === tag && r.module === 'auditor');
          const stopped = (app.kernels.get('auditor-d') as Kernel).stop();
          expect(handled()).toHaveLength(0);
          await stopped;
          expect(handled()).toHaveLength(1);
        } finally {
          await shutdown(target, app);
        }
      });

      it('does not make the publisher wait for subscribers: the publishing call returns while a subscriber still holds the event', async () => {
        const app = booted();
        const tag = uniqueTag('held-subscriber');
        // The auditor's handler holds this tag until the gate opens.
        const gate = gateOf(app.shared, tag);
        try {
          await app.client.client(probe).ping({ tag });
          await vi.waitFor(() => expect(app.handling).toContain(`auditor-1:${tag}`), WAIT);
          expect(app.received.some((r) => r.tag === tag && r.module === 'auditor')).toBe(false);
        } finally {
          gate.open();
        }
        await vi.waitFor(() => expect(app.received.some((r) => r.tag === tag && r.module === 'auditor')).toBe(true), WAIT);
      });
    });

    describe('events, observed', () => {
      const EVENT_TIMEOUT_MS = 2_000;
      const entries: LogEntry[] = [];
      const records: EventRecord[] = [];
      let observed: Booted | undefined;
      const app = (): Booted => {
        if (observed === undefined) throw new Error('application not booted');
        return observed;
      };

      beforeAll(async () => {
        observed = await boot(
          target,
          [
            { name: 'probe-o', host: ['probe'] },
            { name: 'listener-o', host: ['listener'] },
          ],
          { logger: capturingLogger(entries), eventTimeoutMs: EVENT_TIMEOUT_MS },
        );
        (observed.kernels.get('listener-o') as Kernel).observe({ eventHandled: (record) => records.push(record) });
      });
      afterAll(async () => {
        await shutdown(target, observed);
      });

      it('reports a failing handler to the logger and to observers, and keeps delivering', async () => {
        const bad = uniqueTag('reported');
        const good = uniqueTag('reported-after');
        const probeClient = app().client.client(probe);
        await probeClient.ping({ tag: bad, explode: true }, { correlationId: `corr-${bad}` });
        await probeClient.ping({ tag: good }, { correlationId: `corr-${good}` });
        await vi.waitFor(() => {
          expect(app().received.some((r) => r.tag === good && r.module === 'listener' && r.event === 'pinged')).toBe(true);
          expect(entries.some((entry) => entry.record['correlationId'] === `corr-${bad}`)).toBe(true);
        });
        const reported = entries.filter((entry) => entry.record['correlationId'] === `corr-${bad}` && entry.level !== 'debug');
        expect(reported).toHaveLength(1);
        expect(reported[0]).toMatchObject({
          level: 'warn',
          message: expect.stringContaining('"listener"'),
          record: { module: 'listener', event: 'probe.pinged', attempt: 1, err: expect.objectContaining({ message: 'listener exploded on purpose' }) },
        });
        expect(records).toContainEqual(
          expect.objectContaining({ contract: 'probe', event: 'pinged', subscriber: 'listener', attempt: 1, outcome: 'INTERNAL' }),
        );
        expect(records).toContainEqual(
          expect.objectContaining({ contract: 'probe', event: 'pinged', subscriber: 'listener', attempt: 1, outcome: 'ok' }),
        );
      });

      it("gives an event handler its own deadline, eventTimeoutMs after delivery, not the publishing call's", async () => {
        const tag = uniqueTag('event-deadline');
        const before = Date.now();
        await app().client.client(probe).ping({ tag }, { timeoutMs: 20_000 });
        await vi.waitFor(() => {
          const events = app().received.filter((r) => r.tag === tag).map((r) => r.event);
          expect(events.sort()).toEqual(['broadcast', 'pinged', 'recorded']);
        });
        const after = Date.now();
        for (const delivery of app().received.filter((r) => r.tag === tag)) {
          expect(delivery.remainingMs).toBeGreaterThan(0);
          expect(delivery.remainingMs).toBeLessThanOrEqual(EVENT_TIMEOUT_MS);
          expect(delivery.deadline).toBeGreaterThanOrEqual(before + EVENT_TIMEOUT_MS);
          expect(delivery.deadline).toBeLessThanOrEqual(after + EVENT_TIMEOUT_MS);
        }
      });
    });

    describe('lifecycle', () => {
      it('reports every kernel of a split application ready once its start has resolved, the client kernel that hosts nothing too', async () => {
        for (const kernel of booted().kernels.values()) expect(kernel.ready()).toBe(true);
        expect(booted().client.ready()).toBe(true);
      });

      it('is not ready, and does not serve, while a hosted module is still starting', async () => {
        let openGate = (): void => {};
        const gate = new Promise<void>((resolve) => (openGate = resolve));
        let enteredStart = (): void => {};
        const inStart = new Promise<void>((resolve) => (enteredStart = resolve));
        const gatedModule = defineModule({
          contract: gated,
          create: () => ({
            handlers: { noop: () => ({}) },
            start: async () => {
              enteredStart();
              await gate;
            },
          }),
        });
        const namespace = nextNamespace();
        const transport = await target.createTransport(namespace);
        const callerTransport = await target.createTransport(namespace);
        const kernel = createKernel({ modules: [gatedModule], topology: { host: ['gated'], transport }, logger: silentLogger });
        try {
          expect(kernel.ready()).toBe(false);
          const started = kernel.start();
          await inStart;
          expect(kernel.ready()).toBe(false);
          expect(kernel.status()).toMatchObject({ state: 'starting', ready: false, modules: [{ name: 'gated', state: 'starting' }] });
          const client = createClient(gated, callerTransport, { caller: 'external', defaultTimeoutMs: 2_000 });
          const early = await expectRejection(client.noop({}));
          expect(isKeelError(early, 'NO_RESPONDERS')).toBe(true);
          openGate();
          await started;
          expect(kernel.ready()).toBe(true);
          expect(await client.noop({})).toEqual({});
        } finally {
          openGate();
          await kernel.stop();
          await target.closeTransport(callerTransport);
          await target.closeTransport(transport);
        }
      });

      it('drains on stop: not ready at once; while an in-flight call still runs, new calls are refused NO_RESPONDERS; the in-flight call finishes, stop resolves after it, and later calls find no responder', async () => {
        const draining = await boot(target, [{ name: 'probe-drain', host: ['probe'] }]);
        const key = uniqueTag('drain');
        try {
          const probeClient = draining.client.client(probe);
          const inFlight = probeClient.hold({ key }, { timeoutMs: 10_000 });
          await vi.waitFor(() => expect(draining.shared.started).toContain(`probe-drain:${key}`), WAIT);
          const kernel = draining.kernels.get('probe-drain') as Kernel;
          let stopResolved = false;
          const stopped = kernel.stop().then(() => {
            stopResolved = true;
          });
          expect(kernel.ready()).toBe(false);
          // The module has begun its drain (stop() itself returns before that).
          await vi.waitFor(() => expect(kernel.status().modules).toEqual([expect.objectContaining({ name: 'probe', state: 'stopping' })]), WAIT);
          // Over a broker the drain takes effect once the server has it: a call sent before that is
          // still served. From then on, every new call is refused as not delivered (safe to retry),
          // while the held call still runs.
          const outcomes: string[] = [];
          await vi.waitFor(
            async () => {
              const outcome = await probeClient.withDefault({ name: 'late' }, { timeoutMs: 2_000 }).then(
                () => 'served',
                (error: unknown) => (isKeelError(error, 'NO_RESPONDERS') ? 'NO_RESPONDERS' : String(error)),
              );
              outcomes.push(outcome);
              expect(outcome).toBe('NO_RESPONDERS');
            },
            { timeout: 5_000, interval: 20 },
          );
          expect(outcomes.slice(0, -1).filter((outcome) => outcome !== 'served')).toEqual([]);
          expect(stopResolved).toBe(false);
          gateOf(draining.shared, key).open();
          expect(await inFlight).toEqual({ key });
          await stopped;
          const error = await expectRejection(probeClient.withDefault({ name: 'later' }, { timeoutMs: 2_000 }));
          expect(isKeelError(error, 'NO_RESPONDERS')).toBe(true);
        } finally {
          gateOf(draining.shared, key).open();
          await shutdown(target, draining);
        }
      });

      it("stops a module before its dependency hosted in the same kernel: the dependency still serves the dependent's in-flight call during its drain, then stops", async () => {
        const app = await boot(target, [{ name: 'pair', host: ['probe', 'relay'] }]);
        const key = uniqueTag('stop-order');
        try {
          const pending = app.client.client(relay).heldNested({ key }, { timeoutMs: 10_000 });
          await vi.waitFor(() => expect(app.shared.started).toContain(`pair:${key}`), WAIT);
          const kernel = app.kernels.get('pair') as Kernel;
          const state = (module: string) => kernel.status().modules.find((entry) => entry.name === module)?.state;
          const stopped = kernel.stop();
          // relay drains its call first; probe has not begun to stop.
          await vi.waitFor(() => expect(state('relay')).toBe('stopping'), WAIT);
          expect(state('probe')).toBe('started');
          // The held call now calls probe, which must still serve it.
          gateOf(app.shared, key).open();
          expect(await pending).toEqual({ text: `hello ${key}` });
          await stopped;
          expect(app.shared.stops).toEqual(['pair:relay', 'pair:probe']);
        } finally {
          gateOf(app.shared, key).open();
          await shutdown(target, app);
        }
      });
    });

    describeDataConformance(target);
    describeIdentityConformance(target);
    describeBulkheadConformance(target);
    describeResilienceConformance(target);
    describeTracingConformance(target);
  });
}
