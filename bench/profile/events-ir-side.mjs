// One side of events-instructions.sh, driven by stdin so that callgrind's counters can be zeroed
// between rounds. Usage: node bench/profile/events-ir-side.mjs <nats-url> <publisher|subscriber> <keel|raw>
// Prints `ready`; then for each line `N [burst] [pauseMs]` on stdin: the publisher publishes N events
// (batched: all started, then awaited together; with `burst`, in batches of that many with
// `pauseMs` between them, so that a subscriber under callgrind reads them in like chunks from run
// to run) and prints `done` 100 ms later (nats writes what it buffered); the subscriber prints
// `done` once N more events arrived. Exits when stdin closes.
import { createInterface } from 'node:readline';
import { eventSide } from './event-sides.mjs';

const [url, side, mode] = process.argv.slice(2);
const out = (line) => process.stdout.write(`${line}\n`);
let expected = 0;
let received = 0;
const onEvent = () => {
  received += 1;
  if (received === expected) out('done');
};

const { publish, close } = await eventSide({ url, side, mode, onEvent });
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
