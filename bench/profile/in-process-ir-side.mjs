// The in-process side of bench/profile/in-process-instructions.sh: calls (sequential, unless
// IN_FLIGHT says otherwise) to the sync (or, with HANDLER=async, an async) `quote` handler of <tree>'s built code, the caller outside any call context (`top`) or inside
// one (`context`, as a handler or a gateway request calls), or Moleculer's local `broker.call` to
// the same handler as the peers bench makes it (`moleculer`: bench/moleculer-peer.ts, `local`). Warms
// up, says "warm", waits for a line on stdin (the counters are zeroed then), makes <calls> more, says
// "done", waits for a line. `HANDLER=async` in the environment: an async handler (keel's and
// Moleculer's) instead of the sync one; `IN_FLIGHT=64`: that many calls in flight (as the peers
// bench's concurrent rows make them) instead of one at a time; `TRACING=1`: keel's tracing on, no span sampled;
// with it, `PARENT=unsampled`: the calls made under an active span that is not sampled, as a
// handler serving a request that was not sampled makes them (with a `parentbased_*` sampler, most
// of a traced deployment's calls); `SIGNAL=shared` or `fresh`: keel's calls with an AbortSignal
// (one for all, as the gateway's per connection, or one per call).
// Before "warm" it idles a second and warms again; with an async handler it holds one call open
// throughout (both: why, below).
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [tree, mode = 'top', callsText = '20000'] = process.argv.slice(2);
const calls = Number(callsText);
const { createKernel, runWithContext, silentLogger } = await import(pathToFileURL(`${tree}/dist/kernel/index.js`).href);
// TRACING=1: keel's tracing on (keel/otel), no span sampled (OTEL_TRACES_SAMPLER, default
// always_off), nothing exported: what tracing costs a call that is not sampled.
if (process.env.TRACING === '1') {
  const { startTracing } = await import(pathToFileURL(`${tree}/dist/adapters/otel/index.js`).href);
  const sampler = process.env.OTEL_TRACES_SAMPLER ?? 'always_off';
  startTracing({ serviceName: 'bench', logger: silentLogger, env: { OTEL_TRACES_SAMPLER: sampler, OTEL_TRACES_EXPORTER: 'none' } });
}
const { pricing, pricingModule: syncModule, QUOTE_INPUT, quote } = await import('./pricing.mjs');
const asyncHandler = process.env.HANDLER === 'async';
const inFlight = Number(process.env.IN_FLIGHT ?? '1');
if (!Number.isInteger(inFlight) || inFlight < 1) throw new Error(`IN_FLIGHT must be a positive integer, not ${process.env.IN_FLIGHT}`);
let call;
let stop;
// HANDLER=async: one call held open from the start to the end (its handler waits for `release`),
// so that keel's deadline scheduler never goes idle, as under a steady stream of calls. Without
// it, the pause before the counted calls (while callgrind's counters are zeroed) let the
// scheduler's timer go idle, and the first counted call took a branch the warm-up's steady stream
// never took (the timer's `ref()`): V8 threw the call path's optimized code away, and under
// valgrind re-optimizing took long enough that much of the counted window ran unoptimized (counts
// of 6 100-6 800 instructions a call against 4 300-5 000: docs/performance.md, "Fourteenth
// round"). Moleculer's async handler makes the same check, so both do the same work a call.
const HOLD_INPUT = { ...QUOTE_INPUT, customerId: 'hold' };
let release;
const released = new Promise((resolve) => {
  release = resolve;
});
const held = (input) => (input.customerId === 'hold' ? released.then(() => quote(input)) : quote(input));
let hold;
if (mode === 'moleculer') {
  const { ServiceBroker } = (await import('moleculer')).default;
  // As bench/moleculer-peer.ts: fastest-validator on the shape keel's zod schema checks, no transporter.
  const broker = new ServiceBroker({ nodeID: `pricing-ir-${process.pid}`, logger: false, transporter: null });
  const lines = { type: 'array', items: { type: 'object', props: { sku: 'string', quantity: { type: 'number', integer: true, positive: true } } } };
  broker.createService({ name: 'pricing', actions: { quote: { params: { customerId: 'string', lines }, handler: asyncHandler ? async (ctx) => held(ctx.params) : (ctx) => quote(ctx.params) } } });
  await broker.start();
  call = () => broker.call('pricing.quote', QUOTE_INPUT);
  hold = () => broker.call('pricing.quote', HOLD_INPUT, { timeout: 3_600_000 });
  stop = () => broker.stop();
} else {
  // `POLICIES=off`: every call policy off, as bench/kernel-peer.ts `--policies off` (what the policies cost).
  const policies = process.env.POLICIES === 'off' ? { retry: false, circuitBreaker: false, bulkhead: false } : JSON.parse(process.env.POLICIES ?? '{}');
  const { defineModule } = await import(pathToFileURL(`${tree}/dist/kernel/index.js`).href);
  const pricingModule = asyncHandler ? defineModule({ contract: pricing, create: () => ({ handlers: { quote: async (input) => held(input) } }) }) : syncModule;
  const kernel = createKernel({ modules: [pricingModule], logger: silentLogger, ...policies });
  await kernel.start();
  const client = kernel.client(pricing);
  // `SIGNAL=shared`: every call with one AbortController's signal, as the gateway passes its
  // connection's; `SIGNAL=fresh`: a new one per call, as a caller that cancels each call on its own.
  const shared = new AbortController().signal;
  if (process.env.SIGNAL === 'shared') call = () => client.quote(QUOTE_INPUT, { signal: shared });
  else if (process.env.SIGNAL === 'fresh') call = () => client.quote(QUOTE_INPUT, { signal: new AbortController().signal });
  else if (process.env.SIGNAL !== undefined) throw new Error(`SIGNAL must be shared or fresh, not ${process.env.SIGNAL}`);
  else call = () => client.quote(QUOTE_INPUT);
  hold = () => client.quote(HOLD_INPUT, { timeoutMs: 3_600_000 });
  stop = () => kernel.stop();
}
const context = { correlationId: 'bench', traceparent: undefined, caller: 'external', deadline: Date.now() + 3_600_000, principal: undefined };
const loop = async (count) => {
  let remaining = count;
  const worker = async () => {
    while (remaining > 0) {
      remaining -= 1;
      await call();
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
};
const inContext = (count) => (mode === 'context' ? runWithContext(context, () => loop(count)) : loop(count));
let run = inContext;
if (process.env.PARENT === 'unsampled') {
  if (process.env.TRACING !== '1') throw new Error('PARENT=unsampled needs TRACING=1');
  const api = await import('@opentelemetry/api');
  // On keel's own empty context, as a handler's span context is (a server span's, derived from it).
  const { KEEL_ROOT_CONTEXT } = await import(pathToFileURL(`${tree}/dist/kernel/transport-entry.js`).href);
  const parent = api.trace.setSpanContext(KEEL_ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 0, isRemote: true });
  run = (count) => api.context.with(parent, () => inContext(count));
}
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
// A held call that fails (a POLICIES with an attempt timeout, say) would leave the count without
// its reason for being: say so and stop, rather than count on.
const holding = asyncHandler
  ? hold().catch((error) => {
      console.error('in-process-ir-side: the held call failed, so the deadline scheduler could go idle:', error);
      process.exit(1);
    })
  : undefined;
await run(calls * 3);
// An idle second, then a second warm-up: whatever else a pause changes (the circuit breaker's
// one-second bucket ends) is then in the feedback the counted calls' code is compiled from.
await new Promise((resolve) => setTimeout(resolve, 1_100));
await run(calls);
console.log('warm');
await lines.next();
await run(calls);
console.log('done');
await lines.next();
release();
await holding;
await stop();
process.exit(0);
