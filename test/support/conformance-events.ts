/**
 * The conformance suite's part on events (DESIGN.md "Semantics" 5): delivered once per
 * subscribing module, balanced or to every instance, never waited for by the publisher, durable
 * ones kept and redelivered, and what the kernel's observers see of them.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Kernel } from 'keel';
import type { EventRecord } from 'keel/transport';
import {
  type Booted,
  type ConformanceTarget,
  type LogEntry,
  WAIT,
  addKernel,
  boot,
  capturingLogger,
  gateOf,
  pingAndAwaitMarker,
  probe,
  shutdown,
  uniqueTag,
} from './conformance-app.js';

/** Registers the part for `target`; `booted` gives the application the suite booted for it. */
export function describeEventConformance(target: ConformanceTarget, booted: () => Booted): void {
  describe('events', () => {
    it("delivers each event once to each subscribing module, with the publisher's keel context and none of the AsyncLocalStorage values of the publisher or of where the kernels were started", async () => {
      const tag = uniqueTag('once');
      const traceparent = '00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      await booted().client.client(probe).ping({ tag }, { correlationId: `corr-${tag}`, traceparent });
      await vi.waitFor(() => {
        const got = booted().received.filter((r) => r.tag === tag && r.event === 'pinged');
        expect(got.map((r) => r.module).sort()).toEqual(['auditor', 'listener']);
      }, WAIT);
      // A second copy would have arrived before a later event of the same publisher does.
      await pingAndAwaitMarker(booted(), ['auditor', 'listener']);
      const got = booted().received.filter((r) => r.tag === tag && r.event === 'pinged');
      expect(got).toHaveLength(2);
      // Not the publisher's own AsyncLocalStorage value: only keel's context crosses to a subscriber.
      for (const r of got) expect(r).toMatchObject({ correlationId: `corr-${tag}`, traceparent, caller: 'probe', attempt: 1, foreign: null });
    });

    it('gives an event emitted outside any call a correlation of its own: its correlation id is its event id, one chain per event', async () => {
      const tags = [uniqueTag('outside'), uniqueTag('outside')];
      const emit = booted().shared.emit;
      if (emit === undefined) throw new Error('the probe module was not created');
      for (const tag of tags) await emit('pinged', { tag });
      await vi.waitFor(() => expect(booted().received.filter((r) => tags.includes(r.tag) && r.event === 'pinged')).toHaveLength(4), WAIT);
      const got = booted().received.filter((r) => tags.includes(r.tag) && r.event === 'pinged');
      for (const r of got) expect(r.correlationId).toBe(r.id);
      const chains = new Set(got.map((r) => r.correlationId));
      expect(chains.size).toBe(2);
    });

    it('gives each subscribing module its own copy of the payload', async () => {
      const tag = uniqueTag('copy');
      await booted().client.client(probe).ping({ tag });
      await vi.waitFor(() => expect(booted().received.filter((r) => r.tag === tag && r.event === 'pinged')).toHaveLength(2), WAIT);
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
      }, WAIT);
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
        expect(entries.some((entry) => entry.record['correlation_id'] === `corr-${bad}`)).toBe(true);
      }, WAIT);
      const reported = entries.filter((entry) => entry.record['correlation_id'] === `corr-${bad}` && entry.level !== 'debug');
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
      }, WAIT);
      const after = Date.now();
      for (const delivery of app().received.filter((r) => r.tag === tag)) {
        expect(delivery.remainingMs).toBeGreaterThan(0);
        expect(delivery.remainingMs).toBeLessThanOrEqual(EVENT_TIMEOUT_MS);
        expect(delivery.deadline).toBeGreaterThanOrEqual(before + EVENT_TIMEOUT_MS);
        expect(delivery.deadline).toBeLessThanOrEqual(after + EVENT_TIMEOUT_MS);
      }
    });
  });

}
