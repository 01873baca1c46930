/**
 * keel's call context lives on the OpenTelemetry context: one AsyncLocalStorage holds an OTel
 * `Context`, and the {@link CallContext} is one value in it, next to the active span. With
 * tracing on, keel registers {@link KeelContextManager} as OTel's global context manager, so
 * spans (keel's and any instrumentation's) and keel's call context travel together.
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { createContextKey, ROOT_CONTEXT, type Context, type ContextManager } from '@opentelemetry/api';

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

/** What a handler runs for: its module and operation, or the event it handles. */
export interface HandlerScope {
  readonly module: string;
  readonly operation?: string;
  readonly event?: string;
}

/**
 * The context a handler (or `runWithContext`) runs in: the call context, and what the handler
 * runs for, in one object; other keys are the parent's.
 */
class CallNode implements Context {
  constructor(
    private readonly call: unknown,
    private readonly handler: HandlerScope | undefined,
    private readonly parent: Context | undefined,
  ) {}

  getValue(key: symbol): unknown {
    if (key === CALL_CONTEXT_KEY) return this.call;
    if (key === HANDLER_KEY && this.handler !== undefined) return this.handler;
    return this.parent?.getValue(key);
  }

  setValue(key: symbol, value: unknown): Context {
    return new ChainContext(key, value, this);
  }

  deleteValue(key: symbol): Context {
    return new ChainContext(key, undefined, this);
  }
}

/** `parent` (default: the active context) with the call context `call`, run for `handler` when given. */
export function withCall(call: unknown, handler?: HandlerScope, parent: Context | undefined = contextStorage.getStore()): Context {
  return new CallNode(call, handler, parent);
}

/** The one store of the process's contexts. */
export const contextStorage = new AsyncLocalStorage<Context>();

/**
 * True when AsyncLocalStorage is built on AsyncContextFrame (Node 24 and later by default, Node 22
 * with `--experimental-async-context-frame`). There, `run` makes two frames (each a copy of the
 * current one): one to enter, one to restore. An AsyncResource restores the frame it was made in
 * without making one, so {@link runInStore} enters with one frame. On the async_hooks-based
 * implementation (Node 20, 22) `run` is the cheaper way.
 */
const CONTEXT_FRAMES = ((): boolean => {
  const major = Number(process.versions.node.split('.')[0]);
  const flags = `${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`;
  if (major >= 24) return !flags.includes('--no-async-context-frame');
  return flags.includes('--experimental-async-context-frame');
})();

function enterAndRun<A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R {
  contextStorage.enterWith(store);
  return fn(a, b);
}

/**
 * `fn(a, b)` with `store` as the active context, as `contextStorage.run(store, fn, a, b)`, and
 * the caller's context back when it returns or throws; what `fn` starts (promises, timers)
 * keeps `store`. The handler's way in, once per served call: see {@link CONTEXT_FRAMES}.
 */
export function runInStore<A, B, R>(store: Context, fn: (a: A, b: B) => R, a: A, b: B): R {
  if (!CONTEXT_FRAMES) return contextStorage.run(store, fn, a, b);
  return new AsyncResource('keel.call').runInAsyncScope(enterAndRun<A, B, R>, null, store, fn, a, b);
}

/** The active OTel context (keel's store), `ROOT_CONTEXT` outside any. */
export function activeContext(): Context {
  return contextStorage.getStore() ?? ROOT_CONTEXT;
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
