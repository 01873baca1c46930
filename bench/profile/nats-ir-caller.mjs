// The caller of nats-instructions.sh, driven by stdin so that callgrind's counters can be zeroed
// between rounds. Usage: node bench/profile/nats-ir-caller.mjs <nats-url> keel|raw [inFlight=64]
//   keel: a pure client kernel calling `pricing.quote` (as nats-caller.mjs; callee nats-callee.mjs,
//         prefix `keel`);
//   raw:  the hand-muxed request of bench/hand-muxer.ts (one reply subscription, a map of pending
//         requests, no timer per request) with the NATS client keel uses, sending the same JSON to
//         `raw.pricing.quote` (callee: nats-raw-callee.mjs with prefix `raw`).
// Makes one call (the callee is there) and prints `ready`; then for each line `N` on stdin makes N
// calls with `inFlight` in flight and prints `done`. Exits when stdin closes.
import { createInterface } from 'node:readline';
import { connect, createInbox } from '@nats-io/transport-node';
import { createKernel, silentLogger } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { QUOTE_INPUT, pricing, pricingModule } from './pricing.mjs';

const [url, mode = 'keel', inFlight = '64'] = process.argv.slice(2);
if (url === undefined || (mode !== 'keel' && mode !== 'raw') || !(Number.isInteger(Number(inFlight)) && Number(inFlight) >= 1)) {
  console.error('usage: nats-ir-caller.mjs <nats-url> keel|raw [inFlight]');
  process.exit(2);
}

/** bench/hand-muxer.ts's HandMuxer, in plain JavaScript. */
class HandMuxer {
  #nc;
  #inbox;
  #prefixLength;
  #pending = new Map();
  #next = 0;
  #encoder = new TextEncoder();
  #decoder = new TextDecoder();

  constructor(nc, inbox) {
    this.#nc = nc;
    this.#inbox = inbox;
    this.#prefixLength = inbox.length + 1;
    nc.subscribe(`${inbox}.*`, { callback: (error, msg) => this.#onReply(error, msg) });
  }

  #onReply(error, msg) {
    if (error !== null) return;
    const token = msg.subject.slice(this.#prefixLength);
    const request = this.#pending.get(token);
    if (request === undefined) return;
    this.#pending.delete(token);
    request.resolve(JSON.parse(this.#decoder.decode(msg.data)));
  }

  request(subject, value) {
    const token = (this.#next++).toString(36);
    const request = { resolve: () => undefined, reject: () => undefined };
    const answer = new Promise((resolve, reject) => {
      request.resolve = resolve;
      request.reject = reject;
    });
    this.#pending.set(token, request);
    this.#nc.publish(subject, this.#encoder.encode(JSON.stringify(value)), { reply: `${this.#inbox}.${token}` });
    return answer;
  }
}

let call;
let close;
if (mode === 'keel') {
  const transport = await createNatsTransport({ servers: url, prefix: 'keel', logger: silentLogger });
  const kernel = createKernel({ modules: [pricingModule], topology: { host: [], transport }, logger: silentLogger });
  await kernel.start();
  const client = kernel.client(pricing);
  call = () => client.quote(QUOTE_INPUT);
  close = async () => {
    await kernel.stop();
    await transport.close();
  };
} else {
  const nc = await connect({ servers: url });
  const muxer = new HandMuxer(nc, createInbox());
  await nc.flush();
  call = () => muxer.request('raw.pricing.quote', QUOTE_INPUT);
  close = () => nc.drain();
}
const check = await call();
if (check.totalCents !== 500) throw new Error(`unexpected quote ${JSON.stringify(check)}`);
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  let remaining = Number(line);
  const worker = async () => {
    while (remaining > 0) {
      remaining -= 1;
      await call();
    }
  };
  await Promise.all(Array.from({ length: Number(inFlight) }, worker));
  process.stdout.write('done\n');
}
await close();
process.exit(0);
