/** The lifecycle states a kernel and each module it hosts go through. */

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
