// A raw responder for `pricing.quote`, the baseline of nats-cpu.mjs: one plain queue
// subscription with the NATS client keel uses, that parses the request's JSON body, computes the
// quote and answers with JSON. No headers read, no validation. Usage (like nats-callee.mjs):
//   node bench/profile/nats-raw-callee.mjs <nats-url> [prefix]
import { connect } from '@nats-io/transport-node';
import { quote } from './pricing.mjs';

const [url, prefix = 'keel'] = process.argv.slice(2);
const nc = await connect({ servers: url });
nc.subscribe(`${prefix}.pricing.quote`, {
  queue: 'pricing',
  callback: (error, msg) => {
    if (error !== null) return;
    msg.respond(Buffer.from(JSON.stringify(quote(JSON.parse(Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.length).toString('utf8')))), 'utf8'));
  },
});
await nc.flush();
process.stdout.write(`ready ${performance.now().toFixed(0)}\n`);
process.stdin.resume();
process.stdin.once('end', async () => {
  await nc.drain();
  process.exit(0);
});
