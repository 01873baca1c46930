// The callee of a keel call over NATS: a kernel hosting `pricing`. Usage:
//   node [--cpu-prof ...] bench/profile/nats-callee.mjs <nats-url> [prefix]
// Prints `ready <ms>` (ms since process start) once it serves; stops and exits (writing its
// profile) when stdin closes or on SIGTERM/SIGINT.
import { createKernel, silentLogger } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { pricingModule } from './pricing.mjs';

const [url, prefix = 'keel'] = process.argv.slice(2);
if (url === undefined) {
  console.error('usage: nats-callee.mjs <nats-url> [prefix]');
  process.exit(2);
}
const transport = await createNatsTransport({ servers: url, prefix, logger: silentLogger });
const kernel = createKernel({ modules: [pricingModule], topology: { host: ['pricing'], transport }, logger: silentLogger });
await kernel.start();
process.stdout.write(`ready ${performance.now().toFixed(0)}\n`);

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  await kernel.stop();
  await transport.close();
  process.exit(0);
};
process.stdin.resume();
process.stdin.once('end', stop);
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
