// The caller of a keel call over NATS: a pure client kernel (`topology: { host: [], transport }`)
// making `count` `pricing.quote` calls with `inFlight` in flight. Usage:
//   node [--cpu-prof ...] bench/profile/nats-caller.mjs <nats-url> [count=300000] [inFlight=64] [prefix]
// Prints `load <ms>` (ms since process start, when the calls begin) and `done <ms> <calls/s> <caller
// CPU µs per call>` (user + system, this process, from the first call to the last).
import { createKernel, silentLogger } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { QUOTE_INPUT, pricing, pricingModule } from './pricing.mjs';

const [url, count = '300000', inFlight = '64', prefix = 'keel'] = process.argv.slice(2);
if (url === undefined) {
  console.error('usage: nats-caller.mjs <nats-url> [count] [inFlight] [prefix]');
  process.exit(2);
}
const transport = await createNatsTransport({ servers: url, prefix, logger: silentLogger });
const kernel = createKernel({ modules: [pricingModule], topology: { host: [], transport }, logger: silentLogger });
await kernel.start();
const client = kernel.client(pricing);
await client.quote(QUOTE_INPUT); // the callee is there

let remaining = Number(count);
const worker = async () => {
  while (remaining > 0) {
    remaining -= 1;
    await client.quote(QUOTE_INPUT);
  }
};
const started = performance.now();
const cpuAtStart = process.cpuUsage();
process.stdout.write(`load ${started.toFixed(0)}\n`);
await Promise.all(Array.from({ length: Number(inFlight) }, worker));
const elapsed = performance.now() - started;
const cpu = process.cpuUsage(cpuAtStart);
process.stdout.write(`done ${performance.now().toFixed(0)} ${Math.round(Number(count) / (elapsed / 1000))} ${((cpu.user + cpu.system) / Number(count)).toFixed(2)}\n`);
await kernel.stop();
await transport.close();
process.exit(0);
