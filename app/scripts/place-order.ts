/**
 * `npm run place-order -- <sku> [quantity] [customerId]`: places one order with a running shop
 * over NATS, knowing only the shop's contracts. It imports no module code, no manifest and no
 * database: a kernel with `contracts` and a NATS transport makes typed clients whose declared
 * errors arrive as the contract's classes. Reads the NATS settings from the environment
 * (`KEEL_NATS_URL`, `KEEL_NATS_PREFIX`, …, as docs/topologies.md lists them).
 *
 * Prints the order as JSON and exits 0; a declared error of placeOrder is printed and exits 1;
 * anything else (no shop answering, a wrong argument) exits 2.
 */
import { createKernel, silentLogger } from 'keel';
import { createNatsTransport, natsOptionsFromEnv } from 'keel/nats';
import { UnknownProduct } from '../../modules/catalog/contract.js';
import { OutOfStock } from '../../modules/inventory/contract.js';
import { orders } from '../../modules/orders/contract.js';
import { PaymentDeclined, TestCard } from '../../modules/payments/contract.js';

/** Anything but a declared error of placeOrder: its message, exit 2. */
function giveUp(error: unknown): never {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(2);
}

const [sku, quantity = '1', customerId = 'c-script'] = process.argv.slice(2);
let nats: ReturnType<typeof natsOptionsFromEnv>;
try {
  nats = natsOptionsFromEnv(process.env);
} catch (error) {
  giveUp(error);
}
if (sku === undefined || nats === undefined) {
  process.stderr.write('usage: KEEL_NATS_URL=nats://127.0.0.1:14222 npm run place-order -- <sku> [quantity] [customerId]\n');
  process.exit(2);
}

// A server that cannot be reached, or that refuses these credentials, is not a declared error: exit 2, with what NATS said.
const transport = await createNatsTransport({ ...nats, logger: silentLogger }).catch(giveUp);
const kernel = createKernel({ contracts: [orders], topology: { transport }, logger: silentLogger });
try {
  const order = await kernel.client(orders).placeOrder({ customerId, lines: [{ sku, quantity: Number(quantity) }], card: { token: TestCard.VISA } });
  process.stdout.write(`${JSON.stringify(order)}\n`);
} catch (error) {
  if (error instanceof UnknownProduct) process.stderr.write(`No product ${error.data.sku} in the catalog.\n`);
  else if (error instanceof OutOfStock) process.stderr.write(`Only ${error.data.available} of ${error.data.sku} left.\n`);
  else if (error instanceof PaymentDeclined) process.stderr.write(`The card was declined: ${error.data.reason}.\n`);
  else process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = error instanceof UnknownProduct || error instanceof OutOfStock || error instanceof PaymentDeclined ? 1 : 2;
} finally {
  await kernel.stop();
  await transport.close();
}
