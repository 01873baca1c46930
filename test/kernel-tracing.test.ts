/**
 * Tracing inside one process (the local transport): what the conformance suite does not cover
 * because it is about one kernel's own paths. In-process spans switched off; a call that waited
 * in a bulkhead queue; an idempotent replay; which outcomes mark a server span ERROR; a
 * thenable that answers and then throws is reported once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { INVALID_SPAN_CONTEXT, SpanKind, SpanStatusCode, context, trace, type Attributes } from '@opentelemetry/api';
import { InMemorySpanExporter, SamplingDecision, SimpleSpanProcessor, TracerProvider, type ReadableSpan, type Sampler } from '@opentelemetry/sdk-trace';
import { KeelError, KeelErrorCode, createKernel, defineContract, defineModule, operation, silentLogger, type Kernel } from 'keel';
import { KeelContextManager, disableTracing, enableTracing, logFields, newTraceparent, spanContextOf, traceparentOf, type CallRecord } from 'keel/transport';

const inner = defineContract({
  name: 'inner',
  version: '1.0.0',
  operations: {
    look: operation({ input: z.object({ tag: z.string() }), output: z.object({ tag: z.string() }), idempotent: true }),
    hold: operation({ input: z.object({ tag: z.string() }), output: z.object({ tag: z.string() }), idempotent: true }),
    bump: operation({ input: z.object({ tag: z.string() }), output: z.object({ runs: z.number() }) }),
    broken: operation({ input: z.object({}), output: z.object({}), idempotent: true }),
    twice: operation({ input: z.object({}), output: z.object({ ok: z.boolean() }), idempotent: true }),
  },
});

const outer = defineContract({
  name: 'outer',
  version: '1.0.0',
  operations: { ask: operation({ input: z.object({ tag: z.string() }), output: z.object({ tag: z.string() }), idempotent: true }) },
});

/** Log fields each handler saw, by tag. */
const seen = new Map<string, Record<string, unknown>>();
/** Gates `hold` waits on, by tag. */
const gates = new Map<string, () => void>();
let runs = 0;
const SOON = { timeout: 10_000 } as const;

const innerModule = defineModule({
  contract: inner,
  create: () => ({
    handlers: {
      look: ({ tag }) => {
        seen.set(`look:${tag}`, logFields());
        return { tag };
      },
      hold: async ({ tag }) => {
        seen.set(`hold:${tag}`, logFields());
        await new Promise<void>((resolve) => gates.set(tag, resolve));
        return { tag };
      },
      bump: () => ({ runs: ++runs }),
      broken: () => {
        throw new Error('broken on purpose, as the test asks');
      },
      // A thenable that answers and then throws from then(): the call is answered once, reported once.
      twice: () =>
        ({
          then(ok: (value: { ok: boolean }) => void) {
            ok({ ok: true });
            throw new Error('thrown after answering, as the test asks');
          },
        }) as unknown as { ok: boolean },
    },
  }),
});

const outerModule = defineModule({
  contract: outer,
  dependsOn: [inner],
  create: ({ get }) => {
    const client = get(inner);
    return { handlers: { ask: ({ tag }) => client.look({ tag }) } };
  },
});

let kernel: Kernel | undefined;
const exporter = new InMemorySpanExporter();

async function startTraced(inProcessSpans: boolean, options: Partial<Parameters<typeof createKernel>[0]> = {}): Promise<Kernel> {
  exporter.reset();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  enableTracing({ provider, inProcessSpans });
  // The test's own "request" span, as an application's HTTP framework would start it.
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new KeelContextManager());
  kernel = createKernel({ modules: [innerModule, outerModule], logger: silentLogger, ...options });
  await kernel.start();
  return kernel;
}

afterEach(async () => {
  await kernel?.stop();
  kernel = undefined;
  disableTracing();
  trace.disable();
  context.disable();
});

const spansOf = (traceId: string): ReadableSpan[] => exporter.getFinishedSpans().filter((span) => span.spanContext().traceId === traceId);
const one = (spans: readonly ReadableSpan[], name: string, kind: SpanKind): ReadableSpan => {
  const found = spans.filter((span) => span.name === name && span.kind === kind);
  expect(found, `one ${SpanKind[kind]} span "${name}" among: ${spans.map((span) => `${span.name} [${SpanKind[span.kind]}]`).join(', ')}`).toHaveLength(1);
  return found[0] as ReadableSpan;
};

describe('kernel tracing in one process', () => {
  it('with in-process spans off, calls between modules of one process make no span, and a handler logs under the span active at the caller', async () => {
    const running = await startTraced(false);
    const tracer = trace.getTracer('test');
    const answered = await tracer.startActiveSpan('request', async (span) => {
      try {
        return await running.client(outer).ask({ tag: 'off' });
      } finally {
        span.end();
      }
    });
    expect(answered).toEqual({ tag: 'off' });
    const request = exporter.getFinishedSpans().find((span) => span.name === 'request') as ReadableSpan;
    expect(exporter.getFinishedSpans().map((span) => span.name)).toEqual(['request']);
    expect(seen.get('look:off')).toMatchObject({ trace_id: request.spanContext().traceId, span_id: request.spanContext().spanId, module: 'inner' });
  });

  it('with in-process spans on, the same calls make client and server spans under the span active at the caller', async () => {
    const running = await startTraced(true);
    const tracer = trace.getTracer('test');
    await tracer.startActiveSpan('request', async (span) => {
      try {
        return await running.client(outer).ask({ tag: 'on' });
      } finally {
        span.end();
      }
    });
    const request = exporter.getFinishedSpans().find((span) => span.name === 'request') as ReadableSpan;
    const spans = spansOf(request.spanContext().traceId);
    expect(one(spans, 'outer/ask', SpanKind.CLIENT).parentSpanContext?.spanId).toBe(request.spanContext().spanId);
    const served = one(spans, 'inner/look', SpanKind.SERVER);
    expect(seen.get('look:on')).toMatchObject({ span_id: served.spanContext().spanId });
    expect(spans).toHaveLength(5);
  });

  it('a call that waited in the bulkhead queue runs under its own server span, not under the call that held the slot', async () => {
    const running = await startTraced(true, { bulkheads: { inner: { maxConcurrent: 1, maxQueued: 4 } } });
    const first = newTraceparent();
    const second = newTraceparent();
    const held = running.client(inner).hold({ tag: 'first' }, { traceparent: first });
    // Bounds, not timings: expect.poll's 1 s default can pass during an event-loop stall on a loaded machine.
    await expect.poll(() => gates.has('first'), SOON).toBe(true);
    const queued = running.client(inner).hold({ tag: 'second' }, { traceparent: second });
    await expect.poll(() => running.status().bulkheads.find((bulkhead) => bulkhead.module === 'inner')?.queued, SOON).toBe(1);
    gates.get('first')?.();
    await expect.poll(() => gates.has('second'), SOON).toBe(true);
    gates.get('second')?.();
    await Promise.all([held, queued]);
    const served = one(spansOf(second.slice(3, 35)), 'inner/hold', SpanKind.SERVER);
    expect(seen.get('hold:second')).toMatchObject({ trace_id: second.slice(3, 35), span_id: served.spanContext().spanId });
    expect(one(spansOf(first.slice(3, 35)), 'inner/hold', SpanKind.SERVER).spanContext().spanId).not.toBe(served.spanContext().spanId);
  });

  it('an idempotent replay is a server span with keel.idempotency.replayed, and the handler ran once', async () => {
    const running = await startTraced(true);
    const key = `key-${Math.random().toString(36).slice(2)}`;
    const first = newTraceparent();
    const second = newTraceparent();
    const before = runs;
    const answers = [
      await running.client(inner).bump({ tag: 'x' }, { idempotencyKey: key, traceparent: first }),
      await running.client(inner).bump({ tag: 'x' }, { idempotencyKey: key, traceparent: second }),
    ];
    expect(answers).toEqual([{ runs: before + 1 }, { runs: before + 1 }]);
    expect(one(spansOf(first.slice(3, 35)), 'inner/bump', SpanKind.SERVER).attributes['keel.idempotency.replayed']).toBeUndefined();
    const replayed = one(spansOf(second.slice(3, 35)), 'inner/bump', SpanKind.SERVER);
    expect(replayed.attributes).toMatchObject({ 'keel.idempotency.replayed': true, 'rpc.status_code': 'ok' });
  });

  it('an undeclared error (INTERNAL) marks the server span ERROR as well as the client span', async () => {
    const running = await startTraced(true);
    const traceparent = newTraceparent();
    await expect(running.client(inner).broken({}, { traceparent })).rejects.toMatchObject({ code: 'INTERNAL' });
    const spans = spansOf(traceparent.slice(3, 35));
    for (const kind of [SpanKind.CLIENT, SpanKind.SERVER]) {
      const span = one(spans, 'inner/broken', kind);
      expect(span.status.code).toBe(SpanStatusCode.ERROR);
      expect(span.attributes).toMatchObject({ 'error.type': 'INTERNAL', 'rpc.status_code': 'INTERNAL' });
    }
  });

  it('a thenable that answers and then throws is served once: one server span, one callServed record', async () => {
    const running = await startTraced(true);
    const records: CallRecord[] = [];
    running.observe({ callServed: (record) => records.push(record) });
    const traceparent = newTraceparent();
    expect(await running.client(inner).twice({}, { traceparent })).toEqual({ ok: true });
    // A later call's record is the positive signal that a second record of the first would have come.
    await running.client(inner).look({ tag: 'after-twice' });
    expect(records.map((record) => `${record.operation}:${record.outcome}`)).toEqual(['twice:ok', 'look:ok']);
    const served = one(spansOf(traceparent.slice(3, 35)), 'inner/twice', SpanKind.SERVER);
    expect(served.status.code).toBe(SpanStatusCode.UNSET);
  });

  it('attributesAtStart false: the spans that record carry the very attributes they carry by default; a sampler sees them at start by default only, and a span not sampled is still made', async () => {
    /** Each span's name, kind and attributes, and what the sampler saw of each, for one call through outer to inner. */
    const traced = async (attributesAtStart: boolean | undefined, record: (name: string) => boolean) => {
      const sampled: Record<string, Attributes> = {};
      const sampler: Sampler = {
        shouldSample: (_context, _traceId, name, _kind, attributes) => {
          sampled[name] = { ...attributes };
          return { decision: record(name) ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD };
        },
        toString: () => 'the test sampler',
      };
      exporter.reset();
      enableTracing({ provider: new TracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor({ exporter })] }), attributesAtStart });
      kernel = createKernel({ modules: [innerModule, outerModule], logger: silentLogger });
      await kernel.start();
      expect(await kernel.client(outer).ask({ tag: 'start' })).toEqual({ tag: 'start' });
      await kernel.stop();
      kernel = undefined;
      // Each call has a correlation id of its own: compared by its presence.
      const spans = exporter.getFinishedSpans().map((span) => ({
        name: span.name,
        kind: SpanKind[span.kind],
        attributes: { ...span.attributes, ...('keel.correlation_id' in span.attributes ? { 'keel.correlation_id': 'one' } : {}) },
      }));
      return { spans, sampled };
    };
    const every = () => true;
    const byDefault = await traced(undefined, every);
    const late = await traced(false, every);
    expect(byDefault.spans.map((span) => `${span.name} [${span.kind}]`)).toEqual(['inner/look [SERVER]', 'inner/look [CLIENT]', 'outer/ask [SERVER]', 'outer/ask [CLIENT]']);
    expect(late.spans).toEqual(byDefault.spans);
    expect(byDefault.spans[0]?.attributes).toMatchObject({ 'rpc.system.name': 'keel', 'rpc.method': 'inner/look', 'keel.transport': 'local', 'keel.caller': 'outer' });
    expect(byDefault.sampled['outer/ask']).toMatchObject({ 'rpc.method': 'outer/ask', 'keel.caller': expect.any(String) });
    expect(late.sampled).toEqual({ 'outer/ask': {}, 'inner/look': {} });
    // Not sampled: the call still answers (above) and its context goes on; the span that records is complete.
    const some = await traced(false, (name) => name === 'inner/look');
    expect(some.spans.map((span) => span.name)).toEqual(['inner/look', 'inner/look']);
    expect(some.spans).toEqual(late.spans.slice(0, 2));
  });

  it('noSpanUnderUnsampled: under a request span not sampled a call makes no span, its handler logging under the request\'s ids, and a request span that records stays open; under a sampled one, or one not valid (a no-op span), its spans as ever', async () => {
    // The request spans are sampled, recorded only, or dropped by name; keel's own would all be sampled, were they made.
    const decisions: Record<string, SamplingDecision> = { 'request dropped': SamplingDecision.NOT_RECORD, 'request recorded': SamplingDecision.RECORD };
    const sampler: Sampler = { shouldSample: (_c, _t, name) => ({ decision: decisions[name] ?? SamplingDecision.RECORD_AND_SAMPLED }), toString: () => 'by name' };
    exporter.reset();
    const provider = new TracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    enableTracing({ provider, attributesAtStart: false, noSpanUnderUnsampled: true });
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new KeelContextManager());
    kernel = createKernel({ modules: [innerModule, outerModule], logger: silentLogger });
    await kernel.start();
    const running = kernel;
    const tracer = trace.getTracer('test');
    /** Calls outer.ask under a request span named `name`; the request span, still open unless it was ended. */
    const under = (name: string, tag: string) =>
      tracer.startActiveSpan(name, async (span) => {
        expect(await running.client(outer).ask({ tag })).toEqual({ tag });
        return span;
      });

    const dropped = await under('request dropped', 'dropped');
    dropped.end();
    const recorded = await under('request recorded', 'recorded');
    expect(recorded.isRecording()).toBe(true);
    recorded.end();
    const sampled = await under('request sampled', 'sampled');
    sampled.end();

    // Only the sampled request's trace reached the exporter: its five spans (the request, a client and a server span per call).
    expect(exporter.getFinishedSpans().map((span) => span.spanContext().traceId)).toEqual(Array(5).fill(sampled.spanContext().traceId));
    for (const [tag, request] of [['dropped', dropped], ['recorded', recorded]] as const) {
      expect(seen.get(`look:${tag}`)).toMatchObject({ trace_id: request.spanContext().traceId, span_id: request.spanContext().spanId });
    }
    const served = one(spansOf(sampled.spanContext().traceId), 'inner/look', SpanKind.SERVER);
    expect(seen.get('look:sampled')).toMatchObject({ span_id: served.spanContext().spanId });

    // A parent that is not valid (a no-op tracer's span) is no parent: keel's spans start a trace of their own.
    exporter.reset();
    await context.with(trace.setSpan(context.active(), trace.wrapSpanContext(INVALID_SPAN_CONTEXT)), () => running.client(outer).ask({ tag: 'invalid' }));
    const traces = new Set(exporter.getFinishedSpans().map((span) => span.spanContext().traceId));
    expect(exporter.getFinishedSpans()).toHaveLength(4);
    expect([...traces]).not.toContain(INVALID_SPAN_CONTEXT.traceId);
    expect(traces.size).toBe(1);
  });

  it('spanContextOf reads the traceparent traceparentOf just wrote as parsing it does: the same remote span context for that string, for another of the same digits and for the one written before it, none for zero, upper-case or short ids, and never an object another reader holds', () => {
    const cases = [
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 },
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 },
      { traceId: '00000000000000000000000000000000', spanId: '00f067aa0ba902b7', traceFlags: 1 },
      { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '0000000000000000', traceFlags: 0 },
      { traceId: '4BF92F3577B34DA6A3CE929D0E0E4736', spanId: '00f067aa0ba902b7', traceFlags: 1 },
      { traceId: '0af7651916cd43dd8448eb211c803190', spanId: 'b7ad6b7169203331', traceFlags: 3 },
      { traceId: '0af7651916cd43dd8448eb211c803190', spanId: 'b7ad6b71692033', traceFlags: 1 },
    ];
    for (const spanContext of cases) {
      const written = traceparentOf(spanContext);
      expect(traceparentOf(spanContext)).toBe(written);
      // The same digits in a string of their own (as a callee over a wire reads them): parsed.
      const parsed = spanContextOf([...written].join(''));
      const read = spanContextOf(written);
      expect(read, written).toEqual(parsed);
      if (read !== undefined) {
        expect(read).toEqual({ traceId: spanContext.traceId, spanId: spanContext.spanId, traceFlags: spanContext.traceFlags & 1, isRemote: true });
        expect(spanContextOf(written)).not.toBe(read);
      }
    }
    // Two span contexts of other ids, one formatted after the other: each string reads its own.
    const [first, second] = [cases[0], cases[5]] as [(typeof cases)[0], (typeof cases)[0]];
    const firstWritten = traceparentOf(first);
    const secondWritten = traceparentOf(second);
    expect(spanContextOf(secondWritten)).toEqual({ ...second, traceFlags: 1, isRemote: true });
    expect(spanContextOf(firstWritten)).toEqual({ ...first, isRemote: true });
    expect(spanContextOf(secondWritten)).toEqual({ ...second, traceFlags: 1, isRemote: true });
    // A span context written to after it was formatted: formatted again, and the old string still reads its own digits.
    const changing = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };
    const before = traceparentOf(changing);
    changing.spanId = 'aaaaaaaaaaaaaaaa';
    expect(spanContextOf(before)).toEqual({ traceId: changing.traceId, spanId: 'b7ad6b7169203331', traceFlags: 1, isRemote: true });
    expect(traceparentOf(changing)).toBe(`00-${changing.traceId}-aaaaaaaaaaaaaaaa-01`);
  });

  it('noSpanUnderUnsampled: under a parent that records but is not sampled, a call that is retried notes its retry on a span of its own (one that records nothing), never on the parent', async () => {
    const sampler: Sampler = {
      shouldSample: (_c, _t, name) => ({ decision: name === 'request recorded' ? SamplingDecision.RECORD : SamplingDecision.RECORD_AND_SAMPLED }),
      toString: () => 'by name',
    };
    exporter.reset();
    const provider = new TracerProvider({ sampler, spanProcessors: [new SimpleSpanProcessor({ exporter })] });
    enableTracing({ provider, noSpanUnderUnsampled: true });
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new KeelContextManager());
    let attempts = 0;
    const flaky = defineContract({ name: 'flaky', version: '1.0.0', operations: { once: operation({ input: z.object({}), output: z.object({}), idempotent: true }) } });
    const flakyModule = defineModule({
      contract: flaky,
      create: () => ({
        handlers: {
          once: async () => {
            attempts += 1;
            if (attempts === 1) throw new KeelError(KeelErrorCode.UNAVAILABLE, 'unavailable once, as the test asks');
            return {};
          },
        },
      }),
    });
    kernel = createKernel({ modules: [flakyModule], logger: silentLogger });
    await kernel.start();
    const running = kernel;
    const request = await trace.getTracer('test').startActiveSpan('request recorded', async (span) => {
      expect(await running.client(flaky).once({})).toEqual({});
      return span;
    });
    expect(attempts).toBe(2);
    expect(request.isRecording()).toBe(true);
    // A span recorded but not sampled is never exported: its events are read on the SDK's span itself.
    expect((request as unknown as ReadableSpan).events.map((event) => event.name)).toEqual([]);
    request.end();
  });

  it("with tracing on, the served side of an in-process call (the operation's auth predicate, the callServed observer, the handler) sees none of its caller's own AsyncLocalStorage values, as behind a wire; the caller's code after the call sees its own", async () => {
    const mine = new AsyncLocalStorage<string>();
    const seen: Record<string, string | undefined> = {};
    const Principal = z.object({ sub: z.string(), roles: z.array(z.string()) });
    const guarded = defineContract({
      name: 'guarded',
      version: '1.0.0',
      operations: {
        look: operation({
          input: z.object({}),
          output: z.object({}),
          auth: () => {
            seen['auth'] = mine.getStore() ?? 'none';
            return true;
          },
        }),
      },
    });
    const guardedModule = defineModule({
      contract: guarded,
      create: () => ({
        handlers: {
          look: () => {
            seen['handler'] = mine.getStore() ?? 'none';
            return {};
          },
        },
      }),
    });
    exporter.reset();
    enableTracing({ provider: new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] }) });
    kernel = createKernel({ modules: [guardedModule], principal: Principal, logger: silentLogger });
    kernel.observe({ callServed: () => void (seen['observer'] = mine.getStore() ?? 'none') });
    await kernel.start();
    const running = kernel;
    seen['caller'] = await mine.run('request 42', async () => {
      await running.client(guarded).look({}, { principal: { sub: 'ada', roles: [] } });
      return mine.getStore();
    });
    expect(seen).toEqual({ auth: 'none', handler: 'none', observer: 'none', caller: 'request 42' });
    // The server span was made: the path with tracing on was taken.
    expect(exporter.getFinishedSpans().map((span) => `${span.name} [${SpanKind[span.kind]}]`)).toContain('guarded/look [SERVER]');
  });
});
