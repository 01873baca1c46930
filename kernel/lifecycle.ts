/** The lifecycle states a kernel and each module it hosts go through. */
import { KeelError, KeelErrorCode } from './errors.js';

/**
 * Lifecycle state of a kernel or of one hosted module.
 *
 * @example
 * ```ts
 * const notStarted = kernel.status().modules.filter((module) => module.state !== 'started');
 * if (kernel.state === 'started') await kernel.stop();
 * ```
 */
export const LifecycleState = {
  CREATED: 'created',
  STARTING: 'starting',
  STARTED: 'started',
  STOPPING: 'stopping',
  STOPPED: 'stopped',
  FAILED: 'failed',
} as const;

/** A {@link LifecycleState} value. */
export type LifecycleState = (typeof LifecycleState)[keyof typeof LifecycleState];

/** What start() rejects with when the kernel was stopped before it was over; `cause`, what the stop made the start give up. */
export function stoppedWhileStarting(cause?: unknown): KeelError {
  return new KeelError(
    KeelErrorCode.INVALID_STATE,
    'The kernel was stopped while it was starting (kernel.stop() before kernel.start() was over, such as a SIGTERM during a deploy): ' +
      'the stop stops the modules it had started (await kernel.stop() before exiting, so that they drain), and the others never start. Create a new kernel to start again.',
    cause === undefined ? undefined : { cause },
  );
}
