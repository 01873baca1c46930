/**
 * The conformance suite's part on the lifecycle (DESIGN.md "Semantics" 7): readiness, and a stop
 * that drains (no new work accepted, work in flight finished, then dependencies stop).
 */
import { describe, expect, it, vi } from 'vitest';
import { createKernel, defineModule, isKeelError, silentLogger, type Kernel } from 'keel';
import { createClient } from 'keel/transport';
import {
  type Booted,
  type ConformanceTarget,
  WAIT,
  boot,
  expectRejection,
  gateOf,
  gated,
  nextNamespace,
  probe,
  relay,
  shutdown,
  uniqueTag,
} from './conformance-app.js';

/** Registers the part for `target`; `booted` gives the application the suite booted for it. */
export function describeLifecycleConformance(target: ConformanceTarget, booted: () => Booted): void {
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
}
