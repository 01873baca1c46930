/**
 * One kernel in a process of its own, for the benchmarks that compare kernels (policies off and
 * on, tracing off and on, this code and an earlier commit's): each configuration in its own
 * process, as in production, so that no kernel's shapes slow another's calls through V8's shared
 * inline caches. `tsx bench/kernel-peer.ts <mode> [options]`:
 * - `in-process [--handler sync|async] [--policies on|off]`: a kernel hosting `pricing`;
 *   `run` makes 100 000 sequential calls, `run-concurrent` 200 000 with 64 in flight,
 *   `run-hedged` 50 000 sequential calls of a caller that hedges after 1 s (never firing); each
 *   answers its rate (calls per second); `run <count>` (and the others) makes `count` calls;
 * - `nats <url>`: a kernel hosting `pricing` over NATS, answering the benchmark's calls.
 * `trace on` starts keel/otel (first time; `OTEL_EXPORTER_OTLP_ENDPOINT` from the environment)
 * or switches keel's spans back on, `trace off` switches them off; both answer `ok`. The script
 * imports nothing of tracing until told to, so that it also runs against code from before
 * tracing existed (a baseline), which is never told to.
 */
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel } from 'keel';
import { QUOTE_INPUT, pricing, pricingModule, quote } from './fixture.js';
import { concurrent, sequential } from './support.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { handler: { type: 'string', default: 'sync' }, policies: { type: 'string', default: 'on' } },
});
const [mode, url] = positionals;
if ((mode !== 'in-process' && mode !== 'nats') || (mode === 'nats' && url === undefined)) {
  console.error('usage: kernel-peer.ts in-process [--handler sync|async] [--policies on|off] | nats <url>');
  process.exit(2);
}

/** The pricing contract as a caller that hedges its quote sees it (same name and version: the same wire). */
const hedgedPricing = defineContract({
  ...pricing,
  operations: { quote: operation({ ...pricing.operations.quote, hedge: { delayMs: 1_000, maxAttempts: 2 } }) },
});
const asyncPricingModule = defineModule({ contract: pricing, create: () => ({ handlers: { quote: async (input) => quote(input) } }) });
const policies = values.policies === 'off' ? { retry: false, circuitBreaker: false, bulkhead: false } as const : {};

let close = async (): Promise<void> => {};
let kernel: Kernel;
if (mode === 'nats') {
  const { createNatsTransport } = await import('keel/nats');
  const transport = await createNatsTransport({ servers: url as string, logger: silentLogger });
  kernel = createKernel({ modules: [pricingModule], topology: { host: ['pricing'], transport }, logger: silentLogger, ...policies });
  close = () => transport.close();
} else {
  const modules = [values.handler === 'async' ? asyncPricingModule : pricingModule];
  kernel = createKernel({ modules, logger: silentLogger, ...policies });
}
await kernel.start();
const client = kernel.client(pricing);
// A client of its own (the kernel keeps one per contract object and caller); the caller name tells its calls apart.
const hedged = kernel.client(hedgedPricing, { caller: 'hedging' });
let started = false;

const answers: Record<string, (count?: number) => Promise<string>> = {
  run: async (count = 100_000) => String(await sequential(count, () => client.quote(QUOTE_INPUT))),
  'run-concurrent': async (count = 200_000) => String(await concurrent(count, 64, () => client.quote(QUOTE_INPUT))),
  'run-hedged': async (count = 50_000) => String(await sequential(count, () => hedged.quote(QUOTE_INPUT))),
  'trace on': async () => {
    if (!started) {
      started = true;
      (await import('keel/otel')).startTracing({ serviceName: `bench-${mode}` });
    } else {
      (await import('keel/transport')).enableTracing();
    }
    return 'ok';
  },
  'trace off': async () => {
    (await import('keel/transport')).disableTracing();
    return 'ok';
  },
};

// One command at a time, each answered with one line; stdin closed: stop and exit.
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  // `run 5000`: a command and its count; `trace on`: a command alone.
  const command = line.trim();
  const [, name = command, count] = /^(.*?)\s+(\d+)$/.exec(command) ?? [];
  const answer = answers[name];
  if (answer === undefined) return;
  queue = queue.then(async () => {
    process.stdout.write(`${await answer(count === undefined ? undefined : Number(count))}\n`);
  });
});
lines.once('close', () => {
  void queue.then(async () => {
    await kernel.stop();
    await close();
    process.exit(0);
  });
});
process.stdout.write('ready\n');
