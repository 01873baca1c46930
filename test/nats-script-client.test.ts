/**
 * A caller that knows only contracts: a kernel with `contracts` and a NATS transport reaches
 * the shop served by another kernel over a real nats-server, with typed results and declared
 * errors; the script app/scripts/place-order.ts does the same in a child process. And a
 * process's `status().remote` names only the modules it reaches.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPGliteDatabase } from 'keel/pglite';
import { catalog, UnknownProduct } from '../modules/catalog/contract.js';
import { inventory } from '../modules/inventory/contract.js';
import { orders, OrderNotFound } from '../modules/orders/contract.js';
import { modules } from '../modules/index.js';
import { Principal } from '../app/principal.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { refusedPorts } from './support/refused-ports.js';
import { AS_ADMIN, asCustomer } from './support/shop-auth.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const SCRIPT = 'app/scripts/place-order.ts';

describe('kernel - a contracts-only client over NATS', () => {
  let server: NatsServer;
  const prefix = `keel.script-${randomUUID().slice(0, 8)}`;
  let shopTransport: Transport;
  let database: DatabaseEngine;
  let shop: Kernel;
  let scriptTransport: Transport;
  let script: Kernel;
  const transports: Transport[] = [];

  const transport = async (): Promise<Transport> => {
    const made = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    transports.push(made);
    return made;
  };

  beforeAll(async () => {
    server = await startNatsServer();
    shopTransport = await transport();
    database = await createPGliteDatabase();
    shop = createKernel({ modules, topology: { transport: shopTransport }, principal: Principal, database, logger: silentLogger });
    await shop.start();
    scriptTransport = await transport();
    script = createKernel({ contracts: [orders, catalog], principal: Principal, topology: { transport: scriptTransport }, logger: silentLogger });
  });

  afterAll(async () => {
    await script?.stop();
    await shop?.stop();
    for (const made of transports) await made.close();
    await database?.close();
    await server?.stop();
  });

  it('kernel - a kernel with contracts and no modules gets typed results over NATS', async () => {
    expect(script.hosted).toEqual([]);
    const placed = await script.client(orders).placeOrder({ customerId: 'c-script', lines: [{ sku: 'KB-001', quantity: 2 }], card: { token: 'tok_visa' } });
    expectTypeOf(placed.totalCents).toEqualTypeOf<number>();
    expect(placed).toMatchObject({ customerId: 'c-script', status: 'placed' });
    const read = await script.client(orders).getOrder({ orderId: placed.orderId }, asCustomer('c-script'));
    expect(read.orderId).toBe(placed.orderId);
    const { products } = await script.client(catalog).listProducts({});
    expect(products.map((product) => product.sku)).toContain('KB-001');
  });

  it('kernel - a contracts-only client gets declared errors as the contract classes (instanceof), over NATS', async () => {
    const missing = await script.client(orders).getOrder({ orderId: 'o-nope' }, AS_ADMIN).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(OrderNotFound);
    expect((missing as InstanceType<typeof OrderNotFound>).data).toEqual({ orderId: 'o-nope' });
    const unknown = await script
      .client(orders)
      .placeOrder({ customerId: 'c-script', lines: [{ sku: 'NO-SUCH', quantity: 1 }], card: { token: 'tok_visa' } })
      .catch((error: unknown) => error);
    expect(unknown).toBeInstanceOf(UnknownProduct);
  });

  it('kernel - a contracts-only kernel reports the modules it made clients of as remote, and no others', () => {
    expect(script.status().remote).toEqual(['orders', 'catalog']);
  });

  it('kernel - a client of a contract neither in the manifest nor in contracts is refused, naming the contracts option', () => {
    const refused = (() => {
      try {
        return script.client(inventory);
      } catch (error) {
        return error;
      }
    })();
    expect(isKeelError(refused, 'INVALID_TOPOLOGY')).toBe(true);
    expect((refused as Error).message).toContain('No module in the manifest implements "inventory", nor is it in the kernel\'s contracts');
  });

  it('kernel - contracts without a transport, or a value that is not a contract, are refused at createKernel', () => {
    expect(() => createKernel({ contracts: [orders], logger: silentLogger })).toThrow(
      /The kernel's contracts list "orders", whose modules run elsewhere, but no transport reaches them/,
    );
    expect(() => createKernel({ contracts: [{ name: 'orders' } as never], topology: { transport: scriptTransport }, logger: silentLogger })).toThrow(
      'createKernel: contracts.0 must be a contract made with defineContract()',
    );
  });

  it('kernel - a split process reaches only what its hosted modules depend on or subscribe to', () => {
    const status = (host: string[]) => createKernel({ modules, topology: { host, transport: scriptTransport }, logger: silentLogger }).status().remote;
    expect(status(['orders'])).toEqual(['catalog', 'inventory', 'payments']);
    expect(status(['notifications'])).toEqual(['payments', 'orders']);
    expect(status(['catalog'])).toEqual([]);
    expect(status(['catalog', 'inventory'])).toEqual(['orders']);
  });

  it('kernel - a process hosting nothing reaches the modules it makes clients of (a gateway)', () => {
    const gateway = createKernel({ modules, topology: { host: [], transport: scriptTransport }, logger: silentLogger });
    expect(gateway.status().remote).toEqual([]);
    gateway.client(orders);
    gateway.client(catalog);
    expect(gateway.status().remote).toEqual(['catalog', 'orders']);
  });

  it('app - the place-order script imports only contracts, keel and keel/nats', () => {
    const imports = [...readFileSync(new URL(`../${SCRIPT}`, import.meta.url), 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((match) => match[1]);
    expect(imports.length).toBeGreaterThan(0);
    for (const path of imports) expect(path).toMatch(/^(keel|keel\/nats|\.\.\/\.\.\/modules\/[a-z-]+\/contract\.js)$/);
  });

  it('app - the place-order script places an order over NATS in a child process, a declared error exits 1, and no server exits 2 saying so', async () => {
    const placed = await runScript(['KB-001', '1', 'c-child']);
    expect(placed.code, placed.stderr).toBe(0);
    const order = JSON.parse(placed.stdout) as { orderId: string; customerId: string; status: string };
    expect(order).toMatchObject({ customerId: 'c-child', status: 'placed' });
    expect((await script.client(orders).getOrder({ orderId: order.orderId }, asCustomer('c-child'))).customerId).toBe('c-child');

    const unknown = await runScript(['NO-SUCH']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('No product NO-SUCH in the catalog.\n');

    // No server there: not a declared error, so exit 2 with what NATS said, no stack.
    const [closed] = await refusedPorts(1);
    const unreachable = await runScript(['KB-001'], { KEEL_NATS_URL: `nats://127.0.0.1:${closed}` });
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr).toMatch(new RegExp(`^Could not connect to NATS at nats://127\\.0\\.0\\.1:${closed}: .*\\n$`));
    // Three child processes in turn, each compiling the script through tsx: seconds each on a loaded machine.
  }, 90_000);

  async function runScript(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=keel-source', SCRIPT, ...args], {
      cwd: root,
      env: { ...process.env, KEEL_NATS_URL: server.url, KEEL_NATS_PREFIX: prefix, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    return { code, stdout, stderr };
  }
});
