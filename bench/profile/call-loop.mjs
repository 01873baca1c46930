// The gateway's keel call alone, in a loop: pricing.quote with the call options the HTTP gateway passes (a new
// correlation id each, its abort signal), observed by createKernelMetrics as the gateway's metrics observe it.
// Usage (bench/profile/call-instructions.sh runs it under callgrind): node bench/profile/call-loop.mjs <warm> <calls>: warms, prints "ready", waits for a line on stdin, makes <calls>, prints "done", exits when stdin ends.
import { createInterface } from 'node:readline';
import { createKernel, silentLogger } from 'keel';
import { createKernelMetrics } from 'keel/http';
import { newCorrelationId } from 'keel/transport';
import { pricing, pricingModule } from './pricing.mjs';

const [warm, n] = [Number(process.argv[2]), Number(process.argv[3])];
const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
createKernelMetrics(kernel, { defaultMetrics: false });
await kernel.start();
const client = kernel.client(pricing, { caller: 'http' });
const signal = new AbortController().signal;
const calls = async (count) => {
  for (let i = 0; i < count; i += 1) {
    const input = JSON.parse('{"customerId":"c-1","lines":[{"sku":"KB-1","quantity":2}]}');
    await client.quote(input, { correlationId: newCorrelationId(), traceparent: undefined, timeoutMs: undefined, signal, idempotencyKey: undefined, principal: undefined });
  }
};
await calls(warm);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
process.stdout.write('ready\n');
await lines.next();
await calls(n);
process.stdout.write('done\n');
await lines.next();
process.exit(0);
