/**
 * A process of the tracing benchmark. `tsx --conditions=keel-source bench/tracing-peer.ts <mode> [url]`:
 * - `in-process`: a kernel hosting `pricing` with a synchronous handler; `run` makes 100 000
 *   sequential calls and answers their rate (calls per second);
 * - `nats <url>`: a kernel hosting `pricing` over NATS, answering the benchmark's calls.
 * `trace on` starts keel/otel (first time; `OTEL_EXPORTER_OTLP_ENDPOINT` from the environment)
 * or switches keel's spans back on, `trace off` switches them off; both answer `ok`. The script
 * imports nothing of tracing until told to, so that it also runs against the code before tracing
 * existed (the benchmark's baseline), which is never told to.
 */
import { createKernel, silentLogger, type Kernel } from 'keel';
import { QUOTE_INPUT, pricing, pricingModule } from './fixture.js';
import { sequential } from './support.js';

const [mode, url] = process.argv.slice(2);
if ((mode !== 'in-process' && mode !== 'nats') || (mode === 'nats' && url === undefined)) {
  console.error('usage: tracing-peer.ts in-process | nats <url>');
  process.exit(2);
}

let close = async (): Promise<void> => {};
let kernel: Kernel;
if (mode === 'nats') {
  const { createNatsTransport } = await import('keel/nats');
  const transport = await createNatsTransport({ servers: url as string, logger: silentLogger });
  kernel = createKernel({ modules: [pricingModule], topology: { host: ['pricing'], transport }, logger: silentLogger });
  close = () => transport.close();
} else {
  kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
}
await kernel.start();
const client = kernel.client(pricing);
let started = false;

const answers: Record<string, () => Promise<string>> = {
  run: async () => String(await sequential(100_000, () => client.quote(QUOTE_INPUT))),
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
const { createInterface } = await import('node:readline');
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  const answer = answers[line.trim()];
  if (answer === undefined) return;
  queue = queue.then(async () => {
    process.stdout.write(`${await answer()}\n`);
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
