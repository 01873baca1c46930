/**
 * The conformance suite's part on tracing, the same on every transport: with keel's tracing on,
 * one call from outside makes one trace whose tree follows the call (client span → server span
 * → the handler's client span → the nested server span) and its event (producer span →
 * consumer span); log fields inside a handler name the handler's own span; a declared error
 * marks the client span ERROR and the server span only with its code; an undeclared one marks both ERROR. Each module runs in a kernel of its own, so every hop crosses
 * the transport under test. Spans are kept by the SDK's in-memory exporter in this process.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { KeelError, KeelErrorCode, createKernel, defineContract, defineError, defineModule, event, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { disableTracing, enableTracing, logFields, newTraceparent } from 'keel/transport';
import type { ConformanceTarget } from './conformance.js';

const Sold = defineError({ code: 'SOLD_OUT', kind: 'conflict', data: z.object({ sku: z.string() }) });

const shelf = defineContract({
  name: 'shelf',
  version: '1.0.0',
  operations: { take: operation({ input: z.object({ sku: z.string() }), output: z.object({ left: z.number() }), errors: [Sold] }) },
});

const till = defineContract({
  name: 'till',
  version: '1.0.0',
  operations: { sell: operation({ input: z.object({ sku: z.string(), tag: z.string() }), output: z.object({ left: z.number() }), errors: [Sold] }) },
  events: { sold: event({ payload: z.object({ sku: z.string(), tag: z.string() }), delivery: 'durable' }) },
});

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

const flaked = new Set<string>();

/** Log fields each handler saw, by tag. */
const seen = new Map<string, Record<string, unknown>>();

const shelfModule = defineModule({
  contract: shelf,
  create: () => ({
    handlers: {
      take: ({ sku }) => {
        if (sku === 'gone') throw new Sold({ sku });
        if (sku === 'broken') throw new Error('broken on purpose, as the test asks');
        // A sku starting with "flaky" is UNAVAILABLE on its first run, settled later (not in the caller's stack): the caller retries.
        if (sku.startsWith('flaky') && !flaked.has(sku)) {
          flaked.add(sku);
          return new Promise<{ left: number }>((_, reject) => setImmediate(() => reject(new KeelError(KeelErrorCode.UNAVAILABLE, 'unavailable once, as the test asks'))));
        }
        return { left: 3 };
      },
    },
  }),
});

/** The till module's `emit`, kept so that a test can emit outside any call. */
let emitOutsideAnyCall: ((payload: { sku: string; tag: string }) => Promise<void>) | undefined;

const tillModule = defineModule({
  contract: till,
  dependsOn: [shelf],
  create: ({ get, emit }) => {
    const stock = get(shelf);
    emitOutsideAnyCall = (payload) => emit('sold', payload);
    return {
      handlers: {
        sell: async ({ sku, tag }) => {
          seen.set(`sell:${tag}`, logFields());
          const taken = await stock.take({ sku });
          await emit('sold', { sku, tag });
          return taken;
        },
      },
    };
  },
});

const ledgerModule = defineModule({
  contract: ledger,
  subscribesTo: [till],
  create: () => ({
    handlers: { noop: () => ({}) },
    events: {
      till: {
        sold: {
          maxAttempts: 3,
          handle: (payload, context) => {
            // A tag starting with "redeliver" fails its first delivery: the second is a redelivery.
            if (payload.tag.startsWith('redeliver') && context.attempt === 1) throw new Error('fails once, as the test asks');
            seen.set(`sold:${payload.tag}`, { ...logFields(), attempt: context.attempt });
          },
        },
      },
    },
  }),
});

const byName = (spans: readonly ReadableSpan[], name: string, kind: SpanKind): ReadableSpan => {
  const found = spans.filter((span) => span.name === name && span.kind === kind);
  expect(found, `one ${SpanKind[kind]} span "${name}" among: ${spans.map((span) => `${span.name} [${SpanKind[span.kind]}]`).join(', ')}`).toHaveLength(1);
  return found[0] as ReadableSpan;
};

const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

/** Registers the tracing conformance tests for `target`, inside its suite. */
export function describeTracingConformance(target: ConformanceTarget): void {
  describe('tracing (one trace per request, across every hop)', () => {
    const exporter = new InMemorySpanExporter();
    const kernels: Kernel[] = [];
    const transports: Transport[] = [];
    let caller: Kernel | undefined;
    const namespace = `tracing${process.pid}`;

    const start = async (modules: Parameters<typeof createKernel>[0]['modules'], host: string[]): Promise<Kernel> => {
      const transport = await target.createTransport(namespace);
      transports.push(transport);
      const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger });
      kernels.push(kernel);
      await kernel.start();
      return kernel;
    };

    const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });

    beforeAll(async () => {
      enableTracing({ provider });
      const modules = [shelfModule, tillModule, ledgerModule];
      await start(modules, ['shelf']);
      await start(modules, ['till']);
      await start(modules, ['ledger']);
      caller = await start(modules, []);
    }, 60_000);
    afterAll(async () => {
      disableTracing();
      for (const kernel of [...kernels].reverse()) await kernel.stop();
      for (const transport of transports) await target.closeTransport(transport);
    });

    /** The spans of the trace of `traceId`, once the consumer span of `tag` has ended. */
    const traceOf = async (traceId: string, tag: string): Promise<ReadableSpan[]> => {
      await expect.poll(() => seen.has(`sold:${tag}`), { timeout: 10_000 }).toBe(true);
      await expect
        .poll(() => exporter.getFinishedSpans().some((span) => span.name === 'process till.sold' && span.spanContext().traceId === traceId), { timeout: 10_000 })
        .toBe(true);
      return exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
    };

    it('one call makes one trace: client → server → nested client → nested server, and producer → consumer, each the child of the one before', async () => {
      const traceparent = newTraceparent();
      const traceId = traceparent.slice(3, 35);
      await (caller as Kernel).client(till).sell({ sku: 'kb', tag: 'tree' }, { traceparent });
      const spans = await traceOf(traceId, 'tree');

      const outer = byName(spans, 'till/sell', SpanKind.CLIENT);
      const served = byName(spans, 'till/sell', SpanKind.SERVER);
      const nested = byName(spans, 'shelf/take', SpanKind.CLIENT);
      const nestedServed = byName(spans, 'shelf/take', SpanKind.SERVER);
      const produced = byName(spans, 'send till.sold', SpanKind.PRODUCER);
      const consumed = byName(spans, 'process till.sold', SpanKind.CONSUMER);
      expect(parentOf(outer)).toBe(traceparent.slice(36, 52));
      expect(parentOf(served)).toBe(outer.spanContext().spanId);
      expect(parentOf(nested)).toBe(served.spanContext().spanId);
      expect(parentOf(nestedServed)).toBe(nested.spanContext().spanId);
      expect(parentOf(produced)).toBe(served.spanContext().spanId);
      expect(parentOf(consumed)).toBe(produced.spanContext().spanId);
      expect(spans).toHaveLength(6);
    });

    it('an event emitted outside any call: its producer and consumer spans carry its event id as the conversation id', async () => {
      if (emitOutsideAnyCall === undefined) throw new Error('the till module was not created');
      await emitOutsideAnyCall({ sku: 'kb', tag: 'outside' });
      await expect.poll(() => seen.has('sold:outside'), { timeout: 10_000 }).toBe(true);
      const traceId = seen.get('sold:outside')?.['trace_id'] as string;
      const spans = await traceOf(traceId, 'outside');
      const consumed = byName(spans, 'process till.sold', SpanKind.CONSUMER);
      const eventId = consumed.attributes['messaging.message.id'];
      expect(typeof eventId).toBe('string');
      expect(consumed.attributes['messaging.message.conversation_id']).toBe(eventId);
      expect(byName(spans, 'send till.sold', SpanKind.PRODUCER).attributes['messaging.message.conversation_id']).toBe(eventId);
    });

    /** One sale's spans carry the RPC and messaging conventions (checked for `tag`'s trace). */
    const expectConventions = async (tag: string): Promise<void> => {
      const traceparent = newTraceparent();
      await (caller as Kernel).client(till).sell({ sku: 'kb', tag }, { traceparent });
      const spans = await traceOf(traceparent.slice(3, 35), tag);
      expect(byName(spans, 'till/sell', SpanKind.SERVER).attributes).toMatchObject({
        'rpc.system.name': 'keel',
        'rpc.method': 'till/sell',
        'rpc.status_code': 'ok',
        'keel.caller': 'external',
      });
      expect(byName(spans, 'shelf/take', SpanKind.CLIENT).attributes).toMatchObject({ 'rpc.method': 'shelf/take', 'keel.caller': 'till' });
      expect(byName(spans, 'send till.sold', SpanKind.PRODUCER).attributes).toMatchObject({ 'messaging.destination.name': 'till.sold', 'messaging.operation.type': 'send' });
      expect(byName(spans, 'process till.sold', SpanKind.CONSUMER).attributes).toMatchObject({
        'messaging.system': 'keel',
        'messaging.operation.type': 'process',
        'messaging.destination.name': 'till.sold',
        'messaging.consumer.group.name': 'ledger',
      });
    };

    it('spans carry the RPC and messaging conventions: rpc.system.name, rpc.method, rpc.status_code; messaging.destination.name, the subscriber as consumer group', async () => {
      await expectConventions('attributes');
    });

    it('with attributesAtStart false (keel/otel\'s way), the same attributes, set once each span started', async () => {
      enableTracing({ provider, attributesAtStart: false });
      try {
        await expectConventions('attributes-late');
      } finally {
        enableTracing({ provider });
      }
    });

    it('a handler\'s log fields name its own span: trace_id and span_id of the server span, of the consumer span in an event handler', async () => {
      const traceparent = newTraceparent();
      await (caller as Kernel).client(till).sell({ sku: 'kb', tag: 'logs' }, { traceparent });
      const spans = await traceOf(traceparent.slice(3, 35), 'logs');
      const served = byName(spans, 'till/sell', SpanKind.SERVER).spanContext();
      const consumed = byName(spans, 'process till.sold', SpanKind.CONSUMER).spanContext();
      expect(seen.get('sell:logs')).toMatchObject({ trace_id: served.traceId, span_id: served.spanId, module: 'till', operation: 'sell' });
      expect(seen.get('sold:logs')).toMatchObject({ trace_id: consumed.traceId, span_id: consumed.spanId, module: 'ledger', event: 'till.sold' });
    });

    it('with noSpanUnderUnsampled, a call under a traceparent not sampled makes no span on any hop: both handlers, the event\'s too, log the caller\'s ids', async () => {
      enableTracing({ provider, noSpanUnderUnsampled: true });
      try {
        const traceparent = `${newTraceparent().slice(0, 53)}00`;
        await (caller as Kernel).client(till).sell({ sku: 'kb', tag: 'unsampled' }, { traceparent });
        await expect.poll(() => seen.has('sold:unsampled'), { timeout: 10_000 }).toBe(true);
        // Had a hop made a span of its own (not sampled, not exported), its handler would log that span's id.
        const callerIds = { trace_id: traceparent.slice(3, 35), span_id: traceparent.slice(36, 52) };
        expect(seen.get('sell:unsampled')).toMatchObject(callerIds);
        expect(seen.get('sold:unsampled')).toMatchObject(callerIds);
      } finally {
        enableTracing({ provider });
      }
    });

    it('a redelivered durable event starts a trace of its own, linked to the producer span; the failed first delivery is an ERROR span child of it', async () => {
      const traceparent = newTraceparent();
      const traceId = traceparent.slice(3, 35);
      await (caller as Kernel).client(till).sell({ sku: 'kb', tag: 'redeliver' }, { traceparent });
      await expect.poll(() => seen.get('sold:redeliver')?.['attempt'], { timeout: 20_000 }).toBe(2);
      const producer = () => exporter.getFinishedSpans().find((span) => span.name === 'send till.sold' && span.spanContext().traceId === traceId);
      await expect.poll(() => producer() !== undefined, { timeout: 10_000 }).toBe(true);
      const produced = (producer() as ReadableSpan).spanContext();
      const redelivered = () =>
        exporter.getFinishedSpans().find((span) => span.name === 'process till.sold' && span.links.some((link) => link.context.spanId === produced.spanId));
      await expect.poll(() => redelivered() !== undefined, { timeout: 10_000 }).toBe(true);
      const second = redelivered() as ReadableSpan;
      expect(second.spanContext().traceId).not.toBe(traceId);
      expect(second.parentSpanContext).toBeUndefined();
      expect(second.attributes).toMatchObject({ 'keel.delivery.attempt': 2 });
      expect(second.links[0]?.attributes).toMatchObject({ 'keel.link': 'redelivery' });
      const first = exporter.getFinishedSpans().find((span) => span.name === 'process till.sold' && span.spanContext().traceId === traceId);
      expect(first?.parentSpanContext?.spanId).toBe(produced.spanId);
      expect(first?.status.code).toBe(SpanStatusCode.ERROR);
      expect(seen.get('sold:redeliver')).toMatchObject({ trace_id: second.spanContext().traceId, span_id: second.spanContext().spanId });
    });

    it('a retried call is one client span with a retry event and two server spans under it, the second with keel.call.attempt 2', async () => {
      const traceparent = newTraceparent();
      const traceId = traceparent.slice(3, 35);
      const sku = `flaky-${process.pid}-${Math.random().toString(36).slice(2)}`;
      await (caller as Kernel).client(shelf).take({ sku }, { traceparent });
      await expect.poll(() => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId).length, { timeout: 10_000 }).toBe(3);
      const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
      const client = byName(spans, 'shelf/take', SpanKind.CLIENT);
      expect(client.events.map((event) => [event.name, event.attributes?.['keel.call.attempt']])).toEqual([['retry', 2]]);
      const servers = spans.filter((span) => span.kind === SpanKind.SERVER);
      expect(servers.map((span) => parentOf(span))).toEqual([client.spanContext().spanId, client.spanContext().spanId]);
      expect(servers.map((span) => span.attributes['keel.call.attempt']).sort()).toEqual([2, undefined]);
    });

    it('a declared error marks the client span ERROR; the server span keeps status UNSET (the caller\'s fault), both with error.type set to its code', async () => {
      const traceparent = newTraceparent();
      await expect((caller as Kernel).client(shelf).take({ sku: 'gone' }, { traceparent })).rejects.toMatchObject({ code: 'SOLD_OUT' });
      const traceId = traceparent.slice(3, 35);
      await expect.poll(() => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId).length, { timeout: 10_000 }).toBe(2);
      const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
      expect(byName(spans, 'shelf/take', SpanKind.CLIENT).status.code).toBe(SpanStatusCode.ERROR);
      expect(byName(spans, 'shelf/take', SpanKind.SERVER).status.code).toBe(SpanStatusCode.UNSET);
      for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
        expect(byName(spans, 'shelf/take', kind).attributes).toMatchObject({ 'error.type': 'SOLD_OUT', 'rpc.status_code': 'SOLD_OUT' });
      }
    });

    it('an undeclared error (INTERNAL) marks the server span ERROR as well as the client span', async () => {
      const traceparent = newTraceparent();
      await expect((caller as Kernel).client(shelf).take({ sku: 'broken' }, { traceparent })).rejects.toMatchObject({ code: 'INTERNAL' });
      const traceId = traceparent.slice(3, 35);
      await expect.poll(() => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId).length, { timeout: 10_000 }).toBe(2);
      const spans = exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
      for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
        expect(byName(spans, 'shelf/take', kind).status.code).toBe(SpanStatusCode.ERROR);
        expect(byName(spans, 'shelf/take', kind).attributes).toMatchObject({ 'error.type': 'INTERNAL' });
      }
    });
  });
}
