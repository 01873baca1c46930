/**
 * The server process of the HTTP benchmark. `tsx bench/http-peer.ts <mode>`:
 * - `gateway`: the keel HTTP gateway (its defaults) over a kernel hosting `pricing`;
 * - `gateway-no-metrics`: the same with `metrics: false`;
 * - `gateway-no-security-headers`: the defaults with `securityHeaders: false` (what helmet's headers cost);
 * - `bare`: a bare fastify route answering the same JSON, in a process that runs no keel code;
 * - `bare-als`: the same bare route in a process where a keel handler has run, so that Node's
 *   AsyncLocalStorage (keel's call context) has turned its promise hooks on.
 * Prints the operation's URL once listening, answers `cpu` on stdin with its CPU time (µs), and
 * exits when its stdin closes.
 */
import { fastify } from 'fastify';
import { createKernel, silentLogger } from 'keel';
import { createHttpGateway } from 'keel/http';
import { servePeer } from './peer.js';
import { QUOTE_INPUT, pricing, pricingModule, quote } from './fixture.js';

const mode = process.argv[2];
let url: string;
let stop: () => Promise<void>;
if (mode === 'gateway' || mode === 'gateway-no-metrics' || mode === 'gateway-no-security-headers') {
  const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
  await kernel.start();
  // The rate limit is off: the load comes from one address, which the default limit would answer with 429s.
  const gateway = await createHttpGateway({
    kernel,
    port: 0,
    logger: silentLogger,
    rateLimit: false,
    ...(mode === 'gateway-no-metrics' ? { metrics: false } : {}),
    ...(mode === 'gateway-no-security-headers' ? { securityHeaders: false } : {}),
  });
  url = `${await gateway.listen()}/pricing/quote`;
  stop = () => gateway.close();
} else if (mode === 'bare' || mode === 'bare-als') {
  if (mode === 'bare-als') {
    const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
    await kernel.start();
    await kernel.client(pricing).quote(QUOTE_INPUT);
    await kernel.stop();
  }
  const server = fastify({ logger: false });
  server.post('/pricing/quote', async (request, reply) =>
    reply.type('application/json; charset=utf-8').send(JSON.stringify(quote(request.body as typeof QUOTE_INPUT))),
  );
  url = `${await server.listen({ port: 0, host: '127.0.0.1' })}/pricing/quote`;
  stop = () => server.close();
} else {
  console.error('usage: http-peer.ts gateway|gateway-no-metrics|gateway-no-security-headers|bare|bare-als');
  process.exit(2);
}

servePeer(url, stop);
