/**
 * The transport conformance suite: every promise of DESIGN.md "Semantics", checked against any
 * Transport. Each module runs in its own kernel with its own transport from the target, so
 * every call and event crosses the transport under test. The local transport and the NATS
 * adapter run this suite unchanged. The application is conformance-app.ts; the parts on calls,
 * events and the lifecycle are conformance-calls.ts, -events.ts and -lifecycle.ts, and the
 * policies', data's, identity's and tracing's have files of their own.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { SPLIT, boot, foreignStorage, shutdown, type Booted, type ConformanceTarget } from './conformance-app.js';
import { describeCallConformance } from './conformance-calls.js';
import { describeEventConformance } from './conformance-events.js';
import { describeLifecycleConformance } from './conformance-lifecycle.js';
import { describeDataConformance } from './data-conformance.js';
import { describeBulkheadConformance } from './bulkhead-conformance.js';
import { describeResilienceConformance } from './resilience-conformance.js';
import { describeIdentityConformance } from './identity-conformance.js';
import { describeTracingConformance } from './tracing-conformance.js';
import { describeCancellationConformance } from './cancellation-conformance.js';

export type { ConformanceTarget } from './conformance-app.js';

/**
 * Registers the conformance suite for `target`.
 *
 * @example
 * ```ts
 * const buses = new Map<string, LocalTransport>();
 * describeTransportConformance({
 *   name: 'local',
 *   createTransport: async (namespace) => buses.get(namespace) ?? buses.set(namespace, createLocalTransport()).get(namespace)!,
 *   closeTransport: async () => {},
 *   durableSettled: async (namespace) => buses.get(namespace)!.settled(),
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

    describeCallConformance(target, booted);
    describeEventConformance(target, booted);
    describeLifecycleConformance(target, booted);

    describeDataConformance(target);
    describeIdentityConformance(target);
    describeBulkheadConformance(target);
    describeResilienceConformance(target);
    describeCancellationConformance(target);
    describeTracingConformance(target);
  });
}
