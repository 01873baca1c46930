// One side of events-instructions.sh, driven by stdin so that callgrind's counters can be zeroed
// between rounds. Usage: node bench/profile/events-ir-side.mjs <nats-url> <publisher|subscriber> <keel|raw>
// Prints `ready`; then for each line `N [burst] [pauseMs]` on stdin: the publisher publishes N events
// (batched: all started, then awaited together; with `burst`, in batches of that many with
// `pauseMs` between them, so that a subscriber under callgrind reads them in like chunks from run
// to run) and prints `done` 100 ms later (nats writes what it buffered); the subscriber prints
// `done` once N more events arrived. Exits when stdin closes.
import { createInterface } from 'node:readline';

const [url, side, mode] = process.argv.slice(2);
const out = (line) => process.stdout.write(`${line}\n`);
let expected = 0;
let received = 0;
const onEvent = () => {
  received += 1;
  if (received === expected) out('done');
};

let publish;
let close;
if (mode === 'keel') {
  const { createKernel, silentLogger } = await import('keel');
  const { createNatsTransport } = await import('keel/nats');
  const { tickerModule, tallyModule, TICK_PAYLOAD } = await import('./ticker.mjs');
  const transport = await createNatsTransport({ servers: url, prefix: 'keel', logger: silentLogger });
  const ticker = tickerModule();
  const modules = [ticker.module, tallyModule(onEvent)];
  const kernel = createKernel({ modules, topology: { host: [side === 'publisher' ? 'ticker' : 'tally'], transport }, logger: silentLogger });
  await kernel.start();
  publish = () => ticker.holder.emit('ticked', TICK_PAYLOAD);
  close = async () => {
    await kernel.stop();
    await transport.close();
  };
} else {
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: url });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const payload = { sku: 'KB-1', quantity: 2 };
  if (side === 'subscriber') {
    nc.subscribe('bench.raw.ticked', { queue: 'tally', callback: (_error, msg) => { JSON.parse(decoder.decode(msg.data)); onEvent(); } });
  }
  await nc.flush();
  publish = () => nc.publish('bench.raw.ticked', encoder.encode(JSON.stringify(payload)));
  close = () => nc.close();
}
out('ready');
for await (const line of createInterface({ input: process.stdin })) {
  const [count, burst = count, pauseMs = 0] = line.split(' ').map(Number);
  if (side === 'subscriber') {
    received = 0;
    expected = count;
    continue;
  }
  for (let sent = 0; sent < count; sent += burst) {
    const pending = [];
    for (let n = 0; n < Math.min(burst, count - sent); n += 1) pending.push(publish());
    await Promise.all(pending);
    if (pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
  out('done');
}
await close();
process.exit(0);
