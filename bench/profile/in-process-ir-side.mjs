// The in-process side of bench/profile/in-process-instructions.sh: sequential calls to the sync
// `quote` handler of <tree>'s built code, the caller outside any call context (`top`) or inside
// one (`context`, as a handler or a gateway request calls). Warms up, says "warm", waits for a line
// on stdin (the counters are zeroed then), makes <calls> more, says "done", waits for a line.
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const [tree, mode = 'top', callsText = '20000'] = process.argv.slice(2);
const calls = Number(callsText);
const { createKernel, runWithContext, silentLogger } = await import(pathToFileURL(`${tree}/dist/kernel/index.js`).href);
const { pricing, pricingModule, QUOTE_INPUT } = await import('./pricing.mjs');
const kernel = createKernel({ modules: [pricingModule], logger: silentLogger });
await kernel.start();
const client = kernel.client(pricing);
const context = { correlationId: 'bench', traceparent: undefined, caller: 'external', deadline: Date.now() + 3_600_000, principal: undefined };
const loop = async (count) => {
  for (let i = 0; i < count; i += 1) await client.quote(QUOTE_INPUT);
};
const run = (count) => (mode === 'context' ? runWithContext(context, () => loop(count)) : loop(count));
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
await run(calls * 3);
console.log('warm');
await lines.next();
await run(calls);
console.log('done');
await lines.next();
await kernel.stop();
process.exit(0);
