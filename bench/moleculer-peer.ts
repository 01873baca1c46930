/**
 * The Moleculer peer of the peers benchmark (bench/peers.ts), in a process of its own.
 * `tsx bench/moleculer-peer.ts <mode> ...`:
 * - `nats <url>`: a broker with Moleculer's NATS transporter serving the `pricing.quote` action;
 * - `local --handler sync|async`: one broker without a transporter serving `pricing.quote` in
 *   process; `run <count>` makes `count` sequential `broker.call`s, `run-concurrent <count>`
 *   makes `count` with 64 in flight; each answers its rate (calls per second).
 * The action validates its params with Moleculer's default validator (fastest-validator) on the
 * shape keel's zod schema checks, and does the work of keel's quote handler (bench/fixture.ts).
 * Prints `ready` once serving, answers `cpu` with its CPU time (µs), exits when stdin closes.
 */
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline';
import moleculer from 'moleculer';
import { QUOTE_INPUT, quote } from './fixture.js';
import { concurrent, sequential } from './support.js';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { handler: { type: 'string', default: 'sync' } } });
const [mode, url] = positionals;
if ((mode !== 'nats' && mode !== 'local') || (mode === 'nats' && url === undefined)) {
  console.error('usage: moleculer-peer.ts nats <url> | local [--handler sync|async]');
  process.exit(2);
}

/** fastest-validator's schema of keel's QuoteInput (bench/fixture.ts). */
const QUOTE_PARAMS = {
  customerId: 'string',
  lines: {
    type: 'array',
    items: { type: 'object', props: { sku: 'string', quantity: { type: 'number', integer: true, positive: true } } },
  },
} as const;

type QuoteParams = Parameters<typeof quote>[0];

const broker = new moleculer.ServiceBroker({
  nodeID: `pricing-${mode}-${process.pid}`,
  logger: false,
  transporter: mode === 'nats' ? { type: 'NATS', options: { url } } : null,
});
broker.createService({
  name: 'pricing',
  actions: {
    quote: {
      params: QUOTE_PARAMS,
      handler:
        values.handler === 'async'
          ? async (ctx: moleculer.Context<QuoteParams>) => quote(ctx.params)
          : (ctx: moleculer.Context<QuoteParams>) => quote(ctx.params),
    },
  },
});
await broker.start();

const call = (): Promise<unknown> => broker.call('pricing.quote', QUOTE_INPUT);
if (mode === 'local' && ((await call()) as { totalCents: number }).totalCents !== 500) throw new Error('Moleculer quoted another total');

const answers: Record<string, (count: number) => Promise<string>> = {
  cpu: async () => {
    const { user, system } = process.cpuUsage();
    return String(user + system);
  },
  run: async (count) => String(await sequential(count, call)),
  'run-concurrent': async (count) => String(await concurrent(count, 64, call)),
};

// One command at a time, each answered with one line; stdin closed: stop and exit.
const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  const [name = '', count = '0'] = line.trim().split(/\s+/);
  const answer = answers[name];
  if (answer === undefined) return;
  queue = queue.then(async () => {
    process.stdout.write(`${await answer(Number(count))}\n`);
  });
});
lines.once('close', () => {
  void queue.then(async () => {
    await broker.stop();
    process.exit(0);
  });
});
process.stdout.write('ready\n');
