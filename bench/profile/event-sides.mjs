// One side of the event benchmarks (events-side.mjs, events-ir-side.mjs, events-publish.mjs), the
// same in each: keel, a kernel hosting the emitting `ticker` module (publisher) or the subscribing
// `tally` module with a synchronous handler (subscriber); raw, nc.publish of the JSON, or a queue
// subscription that parses it; raw-bytes and raw-headers, raw events carrying keel's header block
// (built once, or through nats.js per event; docs/performance.md, "Twentieth round"). Usage:
//   const { publish, close } = await eventSide({ url, side: 'publisher' | 'subscriber', mode: 'keel' | 'raw' | 'raw-bytes' | 'raw-headers', onEvent });
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
  const { connect, headers } = await import('@nats-io/transport-node');
  const nc = await connect({ servers: url });
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const payload = { sku: 'KB-1', quantity: 2 };
  if (side === 'subscriber') {
    nc.subscribe('bench.raw.ticked', { queue: 'tally', callback: (_error, msg) => { JSON.parse(decoder.decode(msg.data)); onEvent(); } });
    await nc.flush();
  }
  if (mode === 'raw-headers') {
    // keel's five event headers, the same names and value lengths (176 bytes on the wire): how much
    // of the gap to keel is the header block's bytes and nats.js's header encoding.
    const prefix = Math.random().toString(16).slice(2, 18).padEnd(16, '0');
    let sequence = 0;
    return {
      publish: () => {
        const id = `${prefix}-${(++sequence).toString(36)}`;
        const block = headers();
        block.set('Keel-Contract-Version', '1.0.0');
        block.set('Keel-Event-Id', id);
        block.set('Keel-Correlation-Id', id);
        block.set('Keel-Publisher', 'ticker');
        block.set('Keel-Published-At', String(Date.now()));
        nc.publish('bench.raw.ticked', encoder.encode(JSON.stringify(payload)), { headers: block });
      },
      close: () => nc.close(),
    };
  }
  if (mode === 'raw-bytes') {
    // The same 176 bytes of header block, built once: the bytes alone, without building them.
    const block = encoder.encode(
      'NATS/1.0\r\nKeel-Contract-Version: 1.0.0\r\nKeel-Event-Id: 0123456789abcdef-1\r\nKeel-Correlation-Id: 0123456789abcdef-1\r\n' +
        `Keel-Publisher: ticker\r\nKeel-Published-At: ${Date.now()}\r\n\r\n`,
    );
    const prebuilt = { encode: () => block };
    return { publish: () => nc.publish('bench.raw.ticked', encoder.encode(JSON.stringify(payload)), { headers: prebuilt }), close: () => nc.close() };
  }
  return {
    publish: () => nc.publish('bench.raw.ticked', encoder.encode(JSON.stringify(payload))),
    close: () => nc.close(),
  };
}
