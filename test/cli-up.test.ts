import { spawn, type ChildProcess } from 'node:child_process';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger, type Kernel, type Transport } from 'keel';
import { main, runCli } from 'keel/cli';
import { createNatsTransport } from 'keel/nats';
import { catalog } from '../modules/catalog/contract.js';
import { modules } from '../modules/index.js';
import { orders } from '../modules/orders/contract.js';
import { payments } from '../modules/payments/contract.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

/** Runs `keel up` from source, as `npm run keel -- up` does, and collects its output. */
function keelUp(...argv: string[]): { child: ChildProcess; output: () => string; waitFor: (text: string) => Promise<void>; exited: Promise<number | null> } {
  const child = spawn(process.execPath, ['--import', 'tsx', '--conditions=keel-source', 'cli/bin.ts', 'up', ...argv], {
    cwd: repository,
    env: { ...process.env, KEEL_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const waiters: { text: string; resolve: () => void }[] = [];
  const collect = (chunk: Buffer): void => {
    output += chunk.toString('utf8');
    for (const waiter of waiters.filter((entry) => output.includes(entry.text))) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    output: () => output,
    exited,
    waitFor: (text) =>
      output.includes(text)
        ? Promise.resolve()
        : Promise.race([
            new Promise<void>((resolve) => waiters.push({ text, resolve })),
            exited.then((code) => {
              throw new Error(`keel up exited (${code}) before printing "${text}". Its output:\n${output}`);
            }),
          ]),
  };
}

describe('cli - keel up', () => {
  let server: NatsServer;
  let transport: Transport;
  let caller: Kernel;

  beforeAll(async () => {
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    caller = createKernel({ modules, logger: silentLogger, topology: { host: [], transport } });
    await caller.start();
  });

  afterAll(async () => {
    await caller?.stop();
    await transport?.close();
  });

  it('cli - runs the split shop topology, answers across processes, and drains every process on SIGTERM', async () => {
    const up = keelUp('topologies/split.ts', '--nats', server.url);
    try {
      await up.waitFor('keel up: ready: all 3 processes (storefront, back-office, notifications)');

      const { products } = await caller.client(catalog).listProducts({});
      const sku = (products[0] as { sku: string }).sku;
      const order = await caller.client(orders).placeOrder({
        customerId: 'cli-up',
        lines: [{ sku, quantity: 1 }],
        card: { token: 'tok_visa' },
      });
      expect(order).toMatchObject({ customerId: 'cli-up' });
      expect(await caller.client(orders).getOrder({ orderId: order.orderId })).toMatchObject({ status: order.status });
      // Orders (the storefront) charged the card in payments (the back office).
      const { payments: charged } = await caller.client(payments).listPayments({ customerId: 'cli-up' });
      expect(charged).toEqual([expect.objectContaining({ paymentId: order.paymentId, amountCents: order.totalCents })]);
    } finally {
      up.child.kill('SIGTERM');
    }
    expect(await up.exited, up.output()).toBe(0);
    const output = up.output();
    for (const name of ['storefront', 'back-office', 'notifications']) {
      expect(output).toContain(`keel up:   ${name} stopped cleanly`);
    }
    expect(output).toContain('keel up: stopped');
  });


  it('cli - says how to get nats-server when a topology needs NATS and none is on PATH', async () => {
    let stderr = '';
    const code = await runCli(main, ['up', 'topologies/per-module.ts'], {
      cwd: repository,
      env: { KEEL_NATS_SERVER_BIN: '/nonexistent/nats-server' },
      stdout: { write: () => true },
      stderr: { write: (text: string) => (stderr += text) },
    });
    expect(code).toBe(1);
    expect(stderr).toContain('error E_NATS_SERVER: Cannot run "/nonexistent/nats-server"');
    expect(stderr).toContain('apt-get install nats-server');
  });
});
