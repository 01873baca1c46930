// The publishing side alone, for A/B runs on a busy machine: `rounds` rounds of `count` events
// published in one go (keel: a module's emit; raw: nc.publish of the JSON) to a nats-server with
// no subscriber; prints the CPU per event (user + system) of each round and the lowest. Usage:
//   node bench/profile/events-publish.mjs <nats-url> [keel|raw] [count=40000] [rounds=8]
import { setTimeout as sleep } from 'node:timers/promises';
import { eventSide } from './event-sides.mjs';

const [url, mode = 'keel', count = '40000', rounds = '8'] = process.argv.slice(2);
const { publish, close } = await eventSide({ url, side: 'publisher', mode });
const perEvent = [];
for (let round = 0; round < Number(rounds); round += 1) {
  const before = process.cpuUsage();
  const pending = [];
  for (let n = 0; n < Number(count); n += 1) pending.push(publish());
  await Promise.all(pending);
  await sleep(30); // the client writes what it buffered
  const { user, system } = process.cpuUsage(before);
  perEvent.push((user + system) / Number(count));
}
const kept = perEvent.slice(1);
console.log(`${mode} publish CPU per event: min ${Math.min(...kept).toFixed(2)} µs, rounds ${kept.map((v) => v.toFixed(2)).join(' ')}`);
await close();
process.exit(0);
