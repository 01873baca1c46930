/**
 * keel's call context lives on the OpenTelemetry context: one AsyncLocalStorage holds an OTel
 * `Context`, and the {@link CallContext} is one value in it, next to the active span. With
 * tracing on, keel registers {@link KeelContextManager} as OTel's global context manager, so
 * spans (keel's and any instrumentation's) and keel's call context travel together.
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import type { Context, ContextManager } from '@opentelemetry/api';
import { createContextKey, ROOT_CONTEXT } from './otel-api.js';

/** The key of keel's {@link CallContext} on an OTel context. */
export const CALL_CONTEXT_KEY = createContextKey('keel call context');

/** The key of what a handler is running for (module and operation or event), for log lines. */
export const HANDLER_KEY = createContextKey('keel handler');

/**
 * An OTel context as a chain of single values: setting one costs one small object (OTel's own
 * BaseContext copies a Map), which matters on keel's in-process hot path.
 */
class ChainContext implements Context {
  constructor(
    private readonly key: symbol,
    private readonly value: unknown,
    private readonly parent: Context | undefined,
  ) {}

  getValue(key: symbol): unknown {
    if (this.key === key) return this.value;
    return this.parent?.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return new ChainContext(key, value, this);
  }

  deleteValue(key: symbol): Context {
    return new ChainContext(key, undefined, this);
  }
}

/**
 * An empty OTel context of keel's own, to derive contexts from instead of OTel's
 * `ROOT_CONTEXT`: each value set on it costs one small object, where `ROOT_CONTEXT.setValue`
 * copies a Map (about 2.5 k instructions a span on keel's paths; docs/performance.md,
 * "Tracing: a request that is not sampled").
 *
 * @example
 * ```ts
 * const context = trace.setSpan(KEEL_ROOT_CONTEXT, span);
 * ```
 */
export const KEEL_ROOT_CONTEXT: Context = new ChainContext(Symbol('keel root'), undefined, undefined);

/** What a handler runs for: its module and operation, or the event it handles. */
export interface HandlerScope {
  readonly module: string;
  readonly operation?: string;
  readonly event?: string;
}

/** The key of the innermost {@link CallNode}: the frame of the call or event being handled. */
export const CALL_NODE_KEY = createContextKey('keel call node');

/** What a served call's answer can do for its handler's signal (see `Answer.watch` in transport.ts). */
export interface WatchedAnswer {
  watch?(controller: AbortController): void;
}

/**
 * The context a handler (or `runWithContext`) runs in: the call context, and what the handler
 * runs for, in one object; other keys are the parent's. Also the handler's frame for its
 * cancellation signal (call-signal.ts): the answer its transport gave, and the signal once the
 * handler asked for it (`callSignal()`), made then and only then.
 */
export class CallNode implements Context {
  /** Set by call-signal.ts the first time the handler asks for its signal. */
  cancellation: { readonly signal: AbortSignal; readonly timedOut: boolean; release(): void; abort(reason: Error): void } | undefined = undefined;

  constructor(
    readonly call: unknown,
    readonly handler: HandlerScope | undefined,
    private readonly parent: Context | undefined,
    /**
     * The served call's answer, whose transport may tell the handler that its caller gave up;
     * undefined for events and `runWithContext`, and once the handler finished (served.ts).
     */
    public answer: WatchedAnswer | undefined = undefined,
  ) {}

  getValue(key: symbol): unknown {
    if (key === CALL_CONTEXT_KEY) return this.call;
    if (key === HANDLER_KEY && this.handler !== undefined) return this.handler;
    if (key === CALL_NODE_KEY) return this;
    return this.parent?.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return new ChainContext(key, value, this);
  }

  deleteValue(key: symbol): Context {
    return new ChainContext(key, undefined, this);
  }
}

/** `parent` (default: the active context) with the call context `call`, run for `handler` when given (for `answer`, a served call's). */
export function withCall(call: unknown, handler?: HandlerScope, parent: Context | undefined = contextStorage.getStore(), answer?: WatchedAnswer): CallNode {
  return new CallNode(call, handler, parent, answer);
}

/** The one store of the process's contexts. */
export const contextStorage = new AsyncLocalStorage<Context>();

function enterAndRun<A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R {
  contextStorage.enterWith(store);
  return fn(a, b);
}

function runAndRestore<A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R {
  return contextStorage.run(store, fn, a, b);
}

/** `fn(a, b)` with `store` as keel's active context, in the frame of a {@link handlerEntry}. */
export type HandlerEntry = <A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B) => R;

/**
 * The async context this file was loaded in: the application's top level, where nothing is
 * entered yet, when keel is imported statically (README, "Context"). Handler entries are made on
 * it, and {@link detached} runs on it.
 */
const ROOT_FRAME = new AsyncResource('keel.root');

/**
 * `fn()` on the async context keel was loaded in: none of any caller's values, keel's or another
 * AsyncLocalStorage's. For what keel starts that outlives its caller (connections, consumers,
 * shared timers, retries): it must neither carry nor keep alive one request's context.
 */
export function detached<R>(fn: () => R): R {
  return ROOT_FRAME.runInAsyncScope(fn);
}

/**
 * On async_hooks where a resource keeps one object of every store: a resource per call, made on
 * its entry's, so that what the handler itself enters with `enterWith` (some libraries do) is its
 * call's only, not written on the entry's resource that every later call of the module runs in.
 */
function runOwnResource<A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R {
  return new AsyncResource('keel.call').runInAsyncScope(runAndRestore<A, B, R>, null, store, fn, a, b);
}

/**
 * Which way a call enters its handler on this Node, found by trying once when keel is loaded
 * (not from the version and flags, which a release or a flag spelled otherwise could belie):
 * - `frame`: AsyncLocalStorage on AsyncContextFrame (Node 24 and later, 22 with
 *   `--experimental-async-context-frame`), where a frame is a `Map` of every store, copied whole
 *   each time one is entered (`run` makes two: one to enter, one to restore); a resource holds the
 *   frame it was made in, so a value entered in one resource's scope is not the resource's;
 * - `own-scope`: async_hooks keeping each store as a property of the current resource (Node 20
 *   and 22): an object whose prototype is a resource runs as a scope of its own, what is entered
 *   there stays on it, and the resource's values are read through the prototype;
 * - `resource-per-call`: any other async_hooks (a resource holding one object of every store,
 *   which such an object would share with its prototype: Node 24 and later with
 *   `--no-async-context-frame`), or a `runInAsyncScope` that refuses such an object.
 * Exported for the tests, which check that each line takes the way meant for it.
 */
export const HANDLER_ENTRY_PATH = ((): 'frame' | 'own-scope' | 'resource-per-call' => {
  const probe = new AsyncLocalStorage<string>();
  try {
    const base = new AsyncResource('keel.probe');
    base.runInAsyncScope(() => probe.enterWith('base'));
    const entered = (Object.create(base) as AsyncResource).runInAsyncScope(() => {
      probe.enterWith('first');
      return probe.getStore();
    });
    const second = (Object.create(base) as AsyncResource).runInAsyncScope(() => probe.getStore());
    if (entered !== 'first') return 'resource-per-call';
    if (second === undefined) return 'frame';
    return second === 'base' && base.runInAsyncScope(() => probe.getStore()) === 'base' ? 'own-scope' : 'resource-per-call';
  } catch {
    return 'resource-per-call';
  } finally {
    // An enabled AsyncLocalStorage is visited at every async resource's start, for good.
    probe.disable();
  }
})();

/**
 * The way into a module's handlers, made when the module is served or subscribes: each handler
 * then runs with `store` (its call's context) as keel's active context, on top of an async
 * context with nothing else in it: not its caller's, and not that of wherever `kernel.start()`
 * ran (a request's, for a kernel started lazily). Over a wire the caller's context cannot reach
 * a handler either: what other AsyncLocalStorages the caller had entered is not the handler's on
 * either transport (keel's own context crosses in `store`). What the handler starts (promises,
 * timers) keeps `store`; the caller's context is back when the handler returns or throws.
 *
 * `carried`: one AsyncLocalStorage of keel's own whose caller's value does cross an in-process
 * call (the open transactions of module-data.ts, by which a module's query on an embedded
 * database refuses to wait for its caller's transaction).
 *
 * On AsyncContextFrame (Node 24) this is also the cheap way in: one `AsyncResource`, made here,
 * holds an empty frame, and each call enters it and makes its own from nothing, where `run`
 * copied the caller's frame twice (docs/performance.md, "In process, fourth round"). On
 * async_hooks (Node 20, 22), where `enterWith` writes on the current resource, each call runs on
 * an object of its own whose prototype is that resource ({@link HANDLER_ENTRY_PATH}): the resource's
 * async id and its (empty) stores, and what is entered on it its call's only, for the price of
 * one small object rather than a new `AsyncResource` and a second `runInAsyncScope`.
 */
export function handlerEntry(carried?: AsyncLocalStorage<unknown>): HandlerEntry {
  const frame = ROOT_FRAME.runInAsyncScope(() => new AsyncResource('keel.handler'));
  if (HANDLER_ENTRY_PATH === 'own-scope') {
    if (carried === undefined) {
      return <A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R =>
        (Object.create(frame) as AsyncResource).runInAsyncScope(enterAndRun<A, B, R>, null, store, fn, a, b);
    }
    return <A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R => {
      const value = carried.getStore();
      const scope = Object.create(frame) as AsyncResource;
      if (value === undefined) return scope.runInAsyncScope(enterAndRun<A, B, R>, null, store, fn, a, b);
      return scope.runInAsyncScope(() => {
        carried.enterWith(value);
        return enterAndRun(store, fn, a, b);
      });
    };
  }
  const enter = HANDLER_ENTRY_PATH === 'frame' ? enterAndRun : runOwnResource;
  if (carried === undefined) {
    return <A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R => frame.runInAsyncScope(enter<A, B, R>, null, store, fn, a, b);
  }
  return <A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R => {
    const value = carried.getStore();
    if (value === undefined) return frame.runInAsyncScope(enter<A, B, R>, null, store, fn, a, b);
    return frame.runInAsyncScope(() => carried.run(value, enter<A, B, R>, store, fn, a, b));
  };
}

/** The active OTel context (keel's store), `ROOT_CONTEXT` outside any. */
export function activeContext(): Context {
  return contextStorage.getStore() ?? ROOT_CONTEXT;
}

/** The active context to derive one from (a span's): keel's store, {@link KEEL_ROOT_CONTEXT} outside any, which derives cheaply. */
export function derivableContext(): Context {
  return contextStorage.getStore() ?? KEEL_ROOT_CONTEXT;
}

/** `parent` (default: the active context) with `key` set to `value`, cheaply. */
export function withValue(key: symbol, value: unknown, parent: Context | undefined = contextStorage.getStore()): Context {
  return new ChainContext(key, value, parent);
}

/**
 * OTel's context manager backed by keel's store. `keel/otel` registers it; an application that
 * sets up the OTel SDK itself registers it instead of `AsyncLocalStorageContextManager`:
 *
 * @example
 * ```ts
 * import { context } from '@opentelemetry/api';
 * import { KeelContextManager } from 'keel/transport';
 *
 * context.setGlobalContextManager(new KeelContextManager());
 * ```
 */
export class KeelContextManager implements ContextManager {
  active(): Context {
    return activeContext();
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    context: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return contextStorage.run(context, () => fn.call(thisArg, ...args));
  }

  bind<T>(context: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    const bound = function (this: unknown, ...args: unknown[]): unknown {
      return contextStorage.run(context, () => fn.apply(this, args));
    };
    return bound as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    return this;
  }
}
