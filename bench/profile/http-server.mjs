// The server of the gateway profile: `gateway` (createHttpGateway with its defaults but the rate
// limit, as bench/http-peer.ts), `bare` (a fastify route answering the same JSON) or `bare-call`
// (the bare route answering with the gateway's keel call). Usage:
//   node [--cpu-prof ...] bench/profile/http-server.mjs gateway|bare|bare-call
// Prints `ready <ms> <url>` once listening; closes and exits (writing its profile) when stdin closes.
// GATEWAY_OPTIONS='{"metrics":false}' (JSON) adds options to the gateway's, to weigh one feature;
// TRACING=1 turns keel's tracing on (no span sampled).
import { fastify } from 'fastify';
import { createKernel, defineModule, silentLogger } from 'keel';
import { createHttpGateway } from 'keel/http';
import { pricing, pricingModule, quote } from './pricing.mjs';

const mode = process.argv[2];
// TRACING=1: keel's tracing on, no span sampled (OTEL_TRACES_SAMPLER=always_off), to weigh the
// span hooks' own work per request without an exporter's.
if (process.env.TRACING === '1') {
  const { startTracing } = await import('keel/otel');
  startTracing({ serviceName: 'bench', logger: silentLogger, env: { OTEL_TRACES_SAMPLER: 'always_off' } });
}
let url;
let close;
// HANDLER=async: the `quote` handler async (an application's handler awaits its database), so that
// the call waits on the gateway's per-connection signal; sync by default.
const served = process.env.HANDLER === 'async' ? defineModule({ contract: pricing, create: () => ({ handlers: { quote: async (input) => quote(input) } }) }) : pricingModule;
if (mode === 'gateway') {
  const kernel = createKernel({ modules: [served], logger: silentLogger });
  const extra = JSON.parse(process.env.GATEWAY_OPTIONS ?? '{}');
  const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, rateLimit: false, ...extra });
  await kernel.start();
  url = `${await gateway.listen()}/pricing/quote`;
  close = () => gateway.close();
} else if (mode === 'bare') {
  const server = fastify({ logger: false });
  server.post('/pricing/quote', async (request, reply) => reply.type('application/json; charset=utf-8').send(JSON.stringify(quote(request.body))));
  url = `${await server.listen({ port: 0, host: '127.0.0.1' })}/pricing/quote`;
  close = () => server.close();
} else if (mode === 'bare-call') {
  // The bare route making the gateway's keel call (no metrics, no headers): what the call itself costs a request.
  const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
  await kernel.start();
  const client = kernel.client(pricing, { caller: 'http' });
  const server = fastify({ logger: false });
  server.post('/pricing/quote', (request, reply) =>
    client.quote(request.body).then((output) => reply.type('application/json; charset=utf-8').send(JSON.stringify(output))));
  url = `${await server.listen({ port: 0, host: '127.0.0.1' })}/pricing/quote`;
  close = () => server.close();
} else {
  console.error('usage: http-server.mjs gateway|bare|bare-call');
  process.exit(2);
}
process.stdout.write(`ready ${performance.now().toFixed(0)} ${url}\n`);
process.stdin.resume();
process.stdin.once('end', async () => {
  await close();
  process.exit(0);
});
