/**
 * The other process of the NATS benchmark. `tsx bench/nats-peer.ts <mode> <url>`:
 * - `keel`: a kernel hosting `pricing` and `tally` over the NATS transport;
 * - `raw`: a plain nats client answering the same quote and counting the same events.
 * Prints `ready` once serving, answers `cpu` on stdin with its CPU time, and exits when its stdin closes.
 */
import { createKernel, silentLogger } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { connect, type Msg } from '@nats-io/transport-node';
import { servePeer } from './peer.js';
import { Counter, RAW_SUBJECTS, pricingModule, quote, tallyModule, tickerModule } from './fixture.js';

const [mode, url] = process.argv.slice(2);
if ((mode !== 'keel' && mode !== 'raw') || url === undefined) {
  console.error('usage: nats-peer.ts keel|raw <nats url>');
  process.exit(2);
}

let stop: () => Promise<void>;
if (mode === 'keel') {
  const transport = await createNatsTransport({ servers: url, logger: silentLogger });
  const kernel = createKernel({
    modules: [pricingModule, tallyModule, tickerModule().module],
    topology: { host: ['pricing', 'tally'], transport },
    logger: silentLogger,
  });
  await kernel.start();
  stop = async () => {
    await kernel.stop();
    await transport.close();
  };
} else {
  const nc = await connect({ servers: url });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const counter = new Counter();
  const fail = (error: Error | null): boolean => {
    if (error !== null) console.error(error);
    return error !== null;
  };
  nc.subscribe(RAW_SUBJECTS.quote, {
    queue: 'pricing',
    callback: (error, msg) => {
      if (fail(error)) return;
      msg.respond(encoder.encode(JSON.stringify(quote(JSON.parse(decoder.decode(msg.data))))));
    },
  });
  nc.subscribe(RAW_SUBJECTS.event, {
    queue: 'tally',
    callback: (error, msg) => {
      if (fail(error)) return;
      JSON.parse(decoder.decode(msg.data));
      counter.add();
    },
  });
  nc.subscribe(RAW_SUBJECTS.expect, {
    callback: (error, msg: Msg) => {
      if (fail(error)) return;
      counter.expect((JSON.parse(decoder.decode(msg.data)) as { count: number }).count);
      msg.respond(encoder.encode('{}'));
    },
  });
  nc.subscribe(RAW_SUBJECTS.waitFor, {
    callback: (error, msg: Msg) => {
      if (fail(error)) return;
      const { waitMs } = JSON.parse(decoder.decode(msg.data)) as { waitMs: number };
      void counter.waitFor(waitMs).then((received) => msg.respond(encoder.encode(JSON.stringify({ received }))));
    },
  });
  await nc.flush();
  stop = () => nc.drain();
}

servePeer('ready', stop);
