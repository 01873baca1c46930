/**
 * In-process call cost: a keel call through the kernel (input and output validation on,
 * call context, deadline) against a direct async function call, in the same run.
 */
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger } from 'keel';
import { concurrent, interleaved, latencies, median, rate, sequential, versusTarget } from './support.js';

const Line = z.object({ sku: z.string(), quantity: z.number().int().positive() });
const pricing = defineContract({
  name: 'pricing',
  version: '1.0.0',
  operations: {
    quote: operation({
      input: z.object({ customerId: z.string(), lines: z.array(Line) }),
      output: z.object({ totalCents: z.number().int(), currency: z.string() }),
      idempotent: true,
    }),
  },
});

type QuoteInput = z.input<typeof pricing.operations.quote.input>;
type QuoteOutput = z.output<typeof pricing.operations.quote.output>;

function quote(input: QuoteInput): QuoteOutput {
  let totalCents = 0;
  for (const line of input.lines) totalCents += line.quantity * 250;
  return { totalCents, currency: 'EUR' };
}

/** Runs the in-process benchmark; returns the report section. */
export async function benchInProcess(): Promise<{ markdown: string; summary: Record<string, number> }> {
  const pricingAsync = defineContract({ ...pricing, name: 'pricing-async' });
  const kernel = createKernel({
    modules: [
      defineModule({ contract: pricing, create: () => ({ handlers: { quote: (input) => quote(input) } }) }),
      defineModule({ contract: pricingAsync, create: () => ({ handlers: { quote: async (input) => quote(input) } }) }),
    ],
    logger: silentLogger,
  });
  await kernel.start();
  const syncClient = kernel.client(pricing);
  const asyncClient = kernel.client(pricingAsync);
  const direct = async (input: QuoteInput): Promise<QuoteOutput> => quote(input);
  const input: QuoteInput = { customerId: 'c-1', lines: [{ sku: 'KB-1', quantity: 2 }] };

  const N = 200_000;
  const ROUNDS = 5;
  // Measured before any call context exists: Node 20's AsyncLocalStorage is still idle.
  const idleSeq = await median(ROUNDS, () => sequential(N, () => direct(input)));
  const idleConc = await median(ROUNDS, () => concurrent(N, 64, () => direct(input)));
  // Then keel and the direct call (now with AsyncLocalStorage's promise hooks on, as in any keel
  // app) in interleaved rounds, so that a noisy neighbour slows every case alike.
  const seq = await interleaved(ROUNDS, {
    active: () => sequential(N, () => direct(input)),
    sync: () => sequential(N, () => syncClient.quote(input)),
    async: () => sequential(N, () => asyncClient.quote(input)),
  });
  const conc = await interleaved(ROUNDS, {
    active: () => concurrent(N, 64, () => direct(input)),
    sync: () => concurrent(N, 64, () => syncClient.quote(input)),
    async: () => concurrent(N, 64, () => asyncClient.quote(input)),
  });
  const [activeSeq, syncSeq, asyncSeq] = [seq['active']!, seq['sync']!, seq['async']!];
  const [activeConc, syncConc, asyncConc] = [conc['active']!, conc['sync']!, conc['async']!];
  const directLatency = await latencies(50_000, () => direct(input));
  const keelLatency = await latencies(50_000, () => asyncClient.quote(input));
  await kernel.stop();

  const cost = (baseline: number, keel: number) => `${(baseline / keel).toFixed(2)}×`;
  const worstCost = Math.max(activeSeq / asyncSeq, activeConc / asyncConc, activeSeq / syncSeq, activeConc / syncConc);
  const markdown = [
    '### In-process call (validation on) vs direct async call',
    '',
    'A `quote` operation with a small nested input (`{ customerId, lines: [{ sku, quantity }] }`),',
    'validated on the way in and out, with call context and deadline, against `await quote(input)`.',
    'keel carries call context in AsyncLocalStorage; on Node 20 that turns on promise hooks that',
    'tax every promise in the process, so the direct call is measured twice: before any keel call',
    '("ALS idle") and after ("ALS active", the condition of every keel application). Medians of',
    `${ROUNDS} rounds of ${N / 1000}k calls; the ALS-active and keel cases run in interleaved rounds.`,
    '',
    '| case | direct, ALS idle | direct, ALS active | keel, sync handler | keel, async handler | keel cost vs direct (active) |',
    '|---|---|---|---|---|---|',
    `| sequential | ${rate(idleSeq)} | ${rate(activeSeq)} | ${rate(syncSeq)} | ${rate(asyncSeq)} | ${cost(activeSeq, syncSeq)} / ${cost(activeSeq, asyncSeq)} |`,
    `| 64 concurrent | ${rate(idleConc)} | ${rate(activeConc)} | ${rate(syncConc)} | ${rate(asyncConc)} | ${cost(activeConc, syncConc)} / ${cost(activeConc, asyncConc)} |`,
    `| p50 / p99 latency | | ${directLatency.p50.toFixed(2)} / ${directLatency.p99.toFixed(2)} µs | | ${keelLatency.p50.toFixed(2)} / ${keelLatency.p99.toFixed(2)} µs | |`,
    '',
    `Target: a keel call costs at most 5× a direct async call — ${worstCost <= 5 ? 'met' : 'NOT met'} (worst case ${versusTarget(worstCost, 5)}).`,
    "Against Moleculer's local call (sync and async handlers, each in processes of its own), measured in the same run:",
    'see "keel vs Moleculer and NestJS" (`npm run bench -- peers`).',
    '',
  ].join('\n');
  return { markdown, summary: { idleSeq, activeSeq, syncSeq, asyncSeq, idleConc, activeConc, syncConc, asyncConc, worstCost } };
}
