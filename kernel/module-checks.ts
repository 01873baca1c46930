/**
 * The checks a module is defined with: a spec that is no object, a missing contract or
 * `create`, a misspelt field, and `dependsOn`, `subscribesTo`, `providers` or `data` out of shape,
 * each refused with an `INVALID_MODULE` error that names the module and says what to write; and
 * those of the instance its `create()` returns, when the kernel starts it.
 */
import type { AnyContract } from './contract.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { AnyEvent } from './contract.js';
import type { Handlers } from './module-handlers.js';
import { MAX_TIMEOUT_MS } from './timeouts.js';
import { Fanout } from './transport.js';
import type { AnyModule, ModuleInstance, ModuleSpec } from './module.js';
import { describeValue } from './options.js';
import { didYouMean } from './nearest-name.js';

/**
 * The keys of `object` that are not among `known`, as the words of a refusal: `unknown field
 * "contarct" (did you mean contract? it takes ...)`; undefined when there are none.
 */
function unknownKeys(object: object, known: readonly string[], noun: string): string | undefined {
  const unknown = Object.keys(object).filter((key) => !known.includes(key));
  if (unknown.length === 0) return undefined;
  const hint = didYouMean(unknown, known, (key) => `"${key}"`);
  return `unknown ${noun}${unknown.length > 1 ? 's' : ''} ${unknown.map((key) => `"${key}"`).join(', ')} (${hint}it takes ${known.join(', ')})`;
}

/** Every field `defineModule` takes: another is a misspelling, refused rather than dropped. */
const MODULE_SPEC_KEYS = ['contract', 'dependsOn', 'subscribesTo', 'providers', 'data', 'create'] as const;

/** Refuses a spec `defineModule` cannot build a module from, naming the field and what it must be. */
export function checkModuleSpec<
  C extends AnyContract,
  Deps extends readonly AnyContract[],
  Subs extends readonly AnyContract[],
  H extends Handlers<C>,
>(spec: ModuleSpec<C, Deps, Subs, H>): void {
  if (typeof spec !== 'object' || spec === null) {
    throw new KeelError(KeelErrorCode.INVALID_MODULE, `defineModule takes an object such as { contract, create }, got ${describeValue(spec)}.`);
  }
  const name = spec.contract?.name;
  const fail = (message: string): never => {
    throw new KeelError(KeelErrorCode.INVALID_MODULE, `Module "${String(name)}": ${message}`);
  };
  if (typeof name !== 'string' || typeof spec.contract.token !== 'symbol') {
    fail('`contract` must be a contract made with defineContract().');
  }
  if (typeof spec.create !== 'function') fail('`create` must be a function returning { handlers }.');
  const unknownFields = unknownKeys(spec, MODULE_SPEC_KEYS, 'field');
  if (unknownFields !== undefined) fail(`${unknownFields}.`);
  for (const field of ['dependsOn', 'subscribesTo'] as const) {
    if (spec[field] !== undefined && !Array.isArray(spec[field])) fail(`\`${field}\` must be an array of contracts, got ${describeValue(spec[field])}.`);
  }
  if (spec.providers !== undefined && typeof spec.providers !== 'function') {
    fail(`\`providers\` must be a function of bind, got ${describeValue(spec.providers)}.`);
  }
  for (const dependency of spec.dependsOn ?? []) {
    if (dependency === undefined || typeof dependency.token !== 'symbol') {
      fail('every entry of `dependsOn` must be a contract (did an import cycle leave it undefined?).');
    }
    if (dependency.name === name) fail('a module cannot depend on its own contract.');
  }
  for (const source of spec.subscribesTo ?? []) {
    if (source === undefined || typeof source.token !== 'symbol') {
      fail('every entry of `subscribesTo` must be a contract (did an import cycle leave it undefined?).');
    }
  }
  if (spec.data !== undefined) {
    const migrations = (spec.data as { migrations?: unknown } | null)?.migrations;
    if (!(migrations instanceof URL) && (typeof migrations !== 'string' || migrations === '')) {
      fail("`data.migrations` must be the folder of its .sql migrations: new URL('./migrations/', import.meta.url).");
    }
  }
}

/** Every option an event handler takes besides its function: another is a misspelling, refused rather than dropped. */
const EVENT_HANDLER_KEYS = ['handle', 'fanout', 'maxAttempts', 'timeoutMs', 'ownTransaction'] as const;

/**
 * Refuses an event handler's options that are unknown or out of shape, or that would change
 * nothing (`ownTransaction` where no inbox runs), or cannot be kept (every-instance delivery of a
 * durable event): checked with the module's other handlers, before its start hook runs and
 * before any of its handlers is subscribed. `fail` throws, naming the module.
 */
export function checkEventHandlerOptions(
  options: Readonly<Record<string, unknown>>,
  source: string,
  event: string,
  definition: AnyEvent,
  ownsData: boolean,
  fail: (message: string) => never,
): void {
  // A plain object's other keys are misspellings; an instance of a class of the application's (its
  // handle a method, its fields its state) keeps what else it holds.
  const label = `${source}.${event}`;
  const prototype = Object.getPrototypeOf(options) as unknown;
  const unknownOptions = prototype === Object.prototype || prototype === null ? unknownKeys(options, EVENT_HANDLER_KEYS, 'option') : undefined;
  if (unknownOptions !== undefined) fail(`the handler of ${label} has ${unknownOptions}.`);
  const { fanout, maxAttempts, timeoutMs, ownTransaction } = options;
  const fanouts = Object.values(Fanout) as readonly unknown[];
  if (fanout !== undefined && !fanouts.includes(fanout)) {
    fail(`the handler of ${label} has fanout ${describeValue(fanout)}; give ${fanouts.map((value) => `'${String(value)}'`).join(' or ')}, or leave it out.`);
  }
  if (fanout === Fanout.EVERY_INSTANCE && definition.delivery === 'durable') {
    fail(
      `every-instance delivery of ${label} is not supported because the event is durable; ` +
        'durable events are delivered once per module. Use a notification event for every-instance fan-out.',
    );
  }
  if (maxAttempts !== undefined && !(Number.isSafeInteger(maxAttempts) && (maxAttempts as number) >= 1)) {
    fail(`the handler of ${label} has maxAttempts ${describeValue(maxAttempts)}; give a whole number of deliveries, 1 or more, or leave it out.`);
  }
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
    fail(`the handler of ${label} has timeoutMs ${describeValue(timeoutMs)}; give a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}, or leave it out.`);
  }
  if (ownTransaction !== undefined && typeof ownTransaction !== 'boolean') {
    fail(`the handler of ${label} has ownTransaction ${describeValue(ownTransaction)}; give true or false, or leave it out.`);
  }
  if (ownTransaction === true && (definition.delivery !== 'durable' || !ownsData)) {
    fail(
      `ownTransaction on the handler of ${label} would change nothing: only a durable event's handler in a module that owns data runs in an inbox transaction` +
        `${definition.delivery === 'durable' ? ', and this module declares no data' : `, and ${event} is a notification event`}. Leave it out.`,
    );
  }
}

/** Refuses an instance whose handlers do not match its contract, or that handles events it does not subscribe to. */
export function checkInstance(module: AnyModule, instance: ModuleInstance<AnyContract, readonly AnyContract[]>): void {
  const fail = (message: string): never => {
    throw new KeelError(KeelErrorCode.INVALID_MODULE, `Module "${module.name}": ${message}`);
  };
  if (typeof instance !== 'object' || instance === null || typeof instance.handlers !== 'object') {
    fail('create() must return an object with `handlers`.');
  }
  for (const hook of ['start', 'stop'] as const) {
    if (instance[hook] !== undefined && typeof instance[hook] !== 'function') {
      fail(`create() returned a \`${hook}\` that is not a function; return ${hook}: async () => { ... }, or leave it out.`);
    }
  }
  const operations = Object.keys((module.contract as AnyContract).operations);
  const handlers = Object.keys(instance.handlers);
  const missing = operations.filter((name) => typeof (instance.handlers as Record<string, unknown>)[name] !== 'function');
  const extra = handlers.filter((name) => !operations.includes(name));
  if (missing.length) fail(`no handler for operation(s) ${missing.join(', ')}.`);
  if (extra.length) fail(`handler(s) ${extra.join(', ')} match no operation of its contract.`);
  const events = (instance.events ?? {}) as Record<string, Record<string, unknown>>;
  const sources = new Map((module.subscribesTo as readonly AnyContract[]).map((contract) => [contract.name, contract]));
  for (const [sourceName, handlers] of Object.entries(events)) {
    const source = sources.get(sourceName);
    if (source === undefined) fail(`handles events of "${sourceName}" but does not list it in subscribesTo.`);
    for (const [event, handler] of Object.entries(handlers ?? {})) {
      if (!Object.hasOwn((source as AnyContract).events, event)) fail(`handles ${sourceName}.${event}, which that contract does not declare.`);
      const callable = typeof handler === 'function' ? handler : (handler as { handle?: unknown })?.handle;
      if (typeof callable !== 'function') fail(`the handler of ${sourceName}.${event} is not a function.`);
      if (typeof handler !== 'function') {
        const definition = (source as AnyContract).events[event] as AnyEvent;
        checkEventHandlerOptions(handler as Record<string, unknown>, sourceName, event, definition, module.data !== undefined, fail);
      }
    }
  }
}
