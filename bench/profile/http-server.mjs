// The server of the gateway profile: `gateway` (createHttpGateway with its defaults but the rate
// limit, as bench/http-peer.ts) or `bare` (a fastify route answering the same JSON). Usage:
//   node [--cpu-prof ...] bench/profile/http-server.mjs gateway|bare
// Prints `ready <ms> <url>` once listening; closes and exits (writing its profile) when stdin closes.
import { fastify } from 'fastify';
import { createKernel, silentLogger } from 'keel';
import { createHttpGateway } from 'keel/http';
import { pricingModule, quote } from './pricing.mjs';

const mode = process.argv[2];
let url;
let close;
if (mode === 'gateway') {
  const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
  const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, rateLimit: false });
  await kernel.start();
  url = `${await gateway.listen()}/pricing/quote`;
  close = () => gateway.close();
} else if (mode === 'bare') {
  const server = fastify({ logger: false });
  server.post('/pricing/quote', async (request, reply) => reply.type('application/json; charset=utf-8').send(JSON.stringify(quote(request.body))));
  url = `${await server.listen({ port: 0, host: '127.0.0.1' })}/pricing/quote`;
  close = () => server.close();
} else {
  console.error('usage: http-server.mjs gateway|bare');
  process.exit(2);
}
process.stdout.write(`ready ${performance.now().toFixed(0)} ${url}\n`);
process.stdin.resume();
process.stdin.once('end', async () => {
  await close();
  process.exit(0);
});
