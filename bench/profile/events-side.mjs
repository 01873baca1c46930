// One side of the event benchmark of events.mjs. Usage:
//   node [--cpu-prof ...] bench/profile/events-side.mjs <nats-url> <publisher|subscriber> <keel|raw> <count> <rounds> <batched|each>
// The subscriber prints `ready`, then `round <i> <wall ms> <cpu µs>` each time `count` more events arrived.
// The publisher prints `start <i> <wall ms> <cpu µs>`, publishes `count` events, prints `sent <i> <wall ms>`,
// then waits for a line on stdin (the driver's: the subscriber has them) and prints `cpu <i> <cpu µs>`.
// Both exit when stdin closes. keel: a module's emit (batched: all started, then awaited together)
// and a subscribing module's sync handler; raw: nc.publish of the JSON and a queue subscription parsing it.
import { createInterface } from 'node:readline';
import { eventSide } from './event-sides.mjs';

const [url, side, mode, countText, roundsText, style = 'batched'] = process.argv.slice(2);
const count = Number(countText);
const rounds = Number(roundsText);
const wall = () => (performance.timeOrigin + performance.now()).toFixed(3);
const cpu = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const out = (line) => process.stdout.write(`${line}\n`);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

let received = 0;
let round = 0;
const onEvent = () => {
  received += 1;
  if (received === count) {
    received = 0;
    out(`round ${round++} ${wall()} ${cpu()}`);
  }
};

const { publish, close } = await eventSide({ url, side, mode, onEvent });

if (side === 'subscriber') {
  out('ready');
  await lines.next(); // stdin closes
} else {
  for (let index = 0; index < rounds; index += 1) {
    out(`start ${index} ${wall()} ${cpu()}`);
    if (style === 'batched') {
      const pending = [];
      for (let n = 0; n < count; n += 1) pending.push(publish());
      await Promise.all(pending);
    } else {
      for (let n = 0; n < count; n += 1) {
        await publish();
        await Promise.resolve();
      }
    }
    out(`sent ${index} ${wall()}`);
    await lines.next();
    out(`cpu ${index} ${cpu()}`);
  }
  await lines.next();
}
await close();
process.exit(0);
