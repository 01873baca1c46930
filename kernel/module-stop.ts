/**
 * The bounded waits of a hosted module's stop (kernel/module-host.ts): its inbox's drain, which
 * gives back the durable events still held once the drain's time is over, and its stop hook,
 * waited for until the bound of the process's stop (stop-bounds.ts).
 */
import { within } from './in-flight.js';
import type { Inbox } from './inbox.js';
import type { Bulkhead } from './bulkhead.js';
import type { AnyContract } from './contract.js';
import type { AnyModule, ModuleInstance } from './module.js';
import type { HostServices } from './host-services.js';
import { STOP_HOOK_FLOOR_MS, kernelStopBoundMs, leftOf } from './stop-bounds.js';

/** What the steps of a stop read of the module they stop: its ModuleHost (module-host.ts). */
export interface StoppingModule {
  readonly module: AnyModule;
  readonly services: HostServices;
  /** The module's bulkhead, closed once the inbox's drain is over its time; undefined when off. */
  readonly bulkhead: Bulkhead | undefined;
}

/**
 * Lets the inbox's transactions end by `drainEnds` (a `performance.now()`: the end of the
 * module's drain; a transport's own drain, NATS's, may end while their handlers still run), then gives back the
 * durable events it still holds (rolled back, delivered again later) and waits for the rollbacks,
 * for the commits of the events handled before them, and for the last attempts it keeps (a
 * transport that counts every delivery would bring those back past maxAttempts): so that the
 * database closes now rather than when the handlers end.
 */
export async function drainInbox(host: StoppingModule, inbox: Inbox | undefined, drainEnds: number): Promise<void> {
  if (inbox === undefined) return;
  if (await within(inbox.idle(), Math.max(0, drainEnds - performance.now()))) return;
  // A call still queued never starts (it is answered UNAVAILABLE): it would take a connection the kept events wait for.
  host.bulkhead?.close();
  const before = inbox.givenBack;
  const kept = inbox.giveBack();
  const fields = { module: host.module.name, drainTimeoutMs: host.services.drainTimeoutMs };
  if (kept > 0) {
    host.services.logger.warn(
      { ...fields, kept, givenBack: inbox.givenBack - before },
      'waiting for durable events on their last attempt before stopping: JetStream counts every delivery, so they are not given back ' +
        '(each until it ends or its timeoutMs, once it has a connection); the other events are given back',
    );
  }
  await inbox.idle();
  const givenBack = inbox.givenBack - before;
  if (givenBack === 0) return;
  host.services.logger.warn(
    { ...fields, givenBack, kept },
    'gave back the durable events whose handlers still ran or waited when drainTimeoutMs was over ' +
      '(their work rolled back; delivered again later, not as failures)',
  );
}

/**
 * The module's stop hook, waited for until {@link kernelStopBoundMs} after the process's stop `began`:
 * what is left of `drainTimeoutMs`, and {@link STOP_HOOK_FLOOR_MS} (or `drainTimeoutMs`, when
 * shorter) past it, so that a drain that used all of its time still leaves the hooks a moment to
 * flush. A hook that never ends (a queue that is never closed, a socket that never answers) would
 * hold the process's stop for ever, until its platform's SIGKILL; it takes the time of the hooks
 * of the modules stopped after it instead. Past the bound the stop goes on, as past a drain's.
 */
export async function runStopHook(
  host: StoppingModule,
  instance: ModuleInstance<AnyContract, readonly AnyContract[]> | undefined,
  began: number,
): Promise<void> {
  const { logger, drainTimeoutMs } = host.services;
  const boundMs = leftOf(kernelStopBoundMs(drainTimeoutMs), began);
  const hook = Promise.resolve()
    .then(() => instance?.stop?.())
    .catch((error: unknown) => logger.error({ err: error, module: host.module.name }, 'module stop hook failed'));
  if (!(await within(hook, boundMs))) {
    logger.error(
      { module: host.module.name, drainTimeoutMs, waitedMs: Math.round(boundMs) },
      'module stop hook still running at the end of the stop\'s time (drainTimeoutMs and 5 s, for every module of the process); ' +
        'stopping the module anyway (its relay and database connection close now). ' +
        (boundMs < 1
          ? 'The drains and stop hooks of the modules stopped before it used that time up: find which one logged first, and bound what it waits for, or raise drainTimeoutMs'
          : 'Make the hook end in time (bound what it waits for), or raise drainTimeoutMs'),
    );
  }
}
