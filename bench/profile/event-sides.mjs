// One side of the event benchmarks (events-side.mjs, events-ir-side.mjs, events-publish.mjs), the
// same in each: keel, a kernel hosting the emitting `ticker` module (publisher) or the subscribing
// `tally` module with a synchronous handler (subscriber); raw, nc.publish of the JSON, or a queue
// subscription that parses it. Usage:
//   const { publish, close } = await eventSide({ url, side: 'publisher' | 'subscriber', mode: 'keel' | 'raw', onEvent });
export async function eventSide({ url, side, mode, onEvent = () => {} }) {
  if (mode === 'keel') {
    const { createKernel, silentLogger } = await import('keel');
    const { createNatsTransport } = await import('keel/nats');
    const { tickerModule, tallyModule, TICK_PAYLOAD } = await import('./ticker.mjs');
    const transport = await createNatsTransport({ servers: url, prefix: 'keel', logger: silentLogger });
    const ticker = tickerModule();
    const modules = [ticker.module, tallyModule(onEvent)];
    const kernel = createKernel({ modules, topology: { host: [side === 'publisher' ? 'ticker' : 'tally'], transport }, logger: silentLogger });
    await kernel.start();
    return {
      publish: () => ticker.holder.emit('ticked', TICK_PAYLOAD),
      close: async () => {
        await kernel.stop();
        await transport.close();
      },
    };
  }
  const { connect } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: url });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const payload = { sku: 'KB-1', quantity: 2 };
  if (side === 'subscriber') {
    nc.subscribe('bench.raw.ticked', { queue: 'tally', callback: (_error, msg) => { JSON.parse(decoder.decode(msg.data)); onEvent(); } });
    await nc.flush();
  }
  return {
    publish: () => nc.publish('bench.raw.ticked', encoder.encode(JSON.stringify(payload))),
    close: () => nc.close(),
  };
}
