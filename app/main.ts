/**
 * `npm start`: runs the shop. Hosts the modules the topology names (all of them by default),
 * prints what runs here, and stops cleanly on SIGINT or SIGTERM.
 */
import { createKernel, type Kernel } from 'keel';
import { catalog } from '../modules/catalog/contract.js';
import { inventory } from '../modules/inventory/contract.js';
import { modules } from '../modules/index.js';
import { topologyFromEnv } from './topology.js';

const topology = await topologyFromEnv(process.env).catch((error: unknown) => fail('read its topology', error));
const kernel = await startKernel().catch(async (error: unknown) => {
  await topology.transport?.close();
  return fail('start', error);
});

console.log(await summary(kernel));

// Nothing else may hold the process open (the local transport has no sockets), so hold it until a signal.
const keepAlive = setInterval(() => {}, 2 ** 31 - 1);
let stopping = false;

async function stop(signal: NodeJS.Signals): Promise<void> {
  if (stopping) {
    console.error(`${signal} again: exiting without waiting for work in flight.`);
    process.exit(1);
  }
  stopping = true;
  console.log(`${signal} received: finishing work in flight, then stopping.`);
  try {
    await kernel.stop();
    await topology.transport?.close();
  } catch (error) {
    console.error('The shop did not stop cleanly:', error);
    process.exit(1);
  }
  clearInterval(keepAlive);
  console.log('Stopped.');
  process.exit(0);
}

process.on('SIGINT', (signal) => void stop(signal));
process.on('SIGTERM', (signal) => void stop(signal));

async function startKernel(): Promise<Kernel> {
  const created = createKernel({ modules, topology });
  await created.start();
  return created;
}

function fail(what: string, error: unknown): never {
  console.error(`The shop could not ${what}: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}

/** A human summary of what this process runs, with the catalog when it is hosted here. */
async function summary(running: Kernel): Promise<string> {
  const status = running.status();
  const lines = [
    '',
    `keel shop ${status.ready ? 'is ready' : 'started, not ready yet'}`,
    `  hosted here: ${status.modules.map((module) => `${module.name} ${module.version}`).join(', ') || 'nothing (a client of the others)'}`,
    `  elsewhere:   ${status.remote.length ? status.remote.join(', ') : 'nothing (every module runs in this process)'}`,
    `  transports:  ${status.transports.map((transport) => `${transport.name}${transport.ready ? '' : ' (not ready)'}`).join(', ')}`,
  ];
  if (running.hosted.includes(catalog.name)) {
    const { products } = await running.client(catalog).listProducts({});
    const stock = running.hosted.includes(inventory.name) ? running.client(inventory) : undefined;
    lines.push('  catalog:');
    for (const product of products) {
      const onHand = stock ? `  ${(await stock.getStock({ sku: product.sku })).available} available` : '';
      lines.push(`    ${product.sku.padEnd(10)} ${product.name.padEnd(22)} ${formatCents(product.priceCents).padStart(9)}${onHand}`);
    }
  }
  lines.push('Press Ctrl+C to stop.', '');
  return lines.join('\n');
}

function formatCents(cents: number): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' }).format(cents / 100);
}
