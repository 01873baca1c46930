/**
 * The checks a module is defined with: a spec that is no object, a missing contract or
 * `create`, a misspelt field, and `dependsOn`, `subscribesTo`, `providers` or `data` out of shape,
 * each refused with an `INVALID_MODULE` error that names the module and says what to write.
 */
import type { AnyContract } from './contract.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { AnyEvent } from './contract.js';
import type { EventHandlerOptions, Handlers } from './module-handlers.js';
import { MAX_TIMEOUT_MS } from './timeouts.js';
import type { ModuleSpec } from './module.js';
import { describeValue } from './options.js';
import { didYouMean } from './nearest-name.js';

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
  const unknown = Object.keys(spec).filter((key) => !(MODULE_SPEC_KEYS as readonly string[]).includes(key));
  if (unknown.length > 0) {
    const hint = didYouMean(unknown, MODULE_SPEC_KEYS, (key) => `"${key}"`);
    fail(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((key) => `"${key}"`).join(', ')} (${hint}it takes ${MODULE_SPEC_KEYS.join(', ')}).`);
  }
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

/**
 * What is wrong with an event handler's `maxAttempts` or `timeoutMs`, as the words that follow
 * "the handler of {event} has", or undefined when both are sound or left out (checked when its
 * module starts: its handlers are made by `create`).
 */
export function handlerOptionRefusal(options: Partial<EventHandlerOptions<AnyEvent>>): string | undefined {
  const { maxAttempts, timeoutMs } = options;
  if (maxAttempts !== undefined && !(Number.isSafeInteger(maxAttempts) && maxAttempts >= 1)) {
    return `maxAttempts ${describeValue(maxAttempts)}; give a whole number of deliveries, 1 or more`;
  }
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && Number.isFinite(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_TIMEOUT_MS)) {
    return `timeoutMs ${describeValue(timeoutMs)}; give a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;
  }
  return undefined;
}
