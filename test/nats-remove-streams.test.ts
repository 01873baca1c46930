/**
 * JetStream streams left behind by tests: `removeEventStreams` deletes what keel made for one
 * prefix and nothing else, and the test harness `keel new` generates (test/support/application.ts)
 * calls it when it stops, on a real nats-server.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StorageType, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, operation, silentLogger, type AnyModule, type Kernel, type Transport } from 'keel';
import { createNatsTransport, removeEventStreams } from 'keel/nats';
import { testSupportFile } from '../cli/templates/module.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const ticker = defineContract({
  name: 'ticker',
  version: '1.0.0',
  operations: { tick: operation({ input: z.object({}), output: z.object({ ok: z.boolean() }) }) },
  events: { ticked: event({ delivery: 'durable', payload: z.object({ at: z.number() }) }) },
});
const tickerModule = defineModule({
  contract: ticker,
  create: ({ emit }) => ({
    handlers: {
      tick: async () => {
        await emit('ticked', { at: Date.now() });
        return { ok: true };
      },
    },
  }),
});
const listenerModule = defineModule({
  contract: defineContract({ name: 'listener', version: '1.0.0', operations: {} }),
  subscribesTo: [ticker],
  create: () => ({ handlers: {}, events: { ticker: { ticked: () => {} } } }),
});
const modules: readonly AnyModule[] = [tickerModule, listenerModule];

/** What the generated test/support/application.ts exports. */
interface GeneratedHarness {
  startApplication(modules: readonly AnyModule[]): Promise<{ readonly caller: Kernel; stop(): Promise<void> }>;
}

describe('nats - removing the JetStream streams of a prefix', () => {
  let server: NatsServer;
  let nc: NatsConnection;

  const streamNames = async (): Promise<string[]> => {
    const jsm = await jetstreamManager(nc);
    const names: string[] = [];
    for await (const stream of jsm.streams.list()) names.push(stream.config.name);
    return names.sort();
  };

  /** Runs the two modules over NATS with `prefix` and publishes one durable event, so that their streams and consumers exist. */
  const runWith = async (prefix: string): Promise<void> => {
    const transport: Transport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    const kernel: Kernel = createKernel({ modules, topology: { transport }, logger: silentLogger });
    await kernel.start();
    await kernel.client(ticker).tick({});
    await kernel.stop();
    await transport.close();
  };

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('nats - removeEventStreams deletes the streams keel made for its prefix, and leaves another prefix\'s and foreign streams', async () => {
    await runWith('acme');
    await runWith('acme.shop');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'acme_audit', subjects: ['audit.>'] });
    expect(await streamNames()).toEqual(['acme__dead-letters', 'acme_audit', 'acme_shop__dead-letters', 'acme_shop_ticker', 'acme_ticker']);
    const consumers: string[] = [];
    for await (const consumer of jsm.consumers.list('acme_ticker')) consumers.push(consumer.name);
    expect(consumers).toEqual(['listener__ticked']);

    expect((await removeEventStreams({ servers: server.url, prefix: 'acme' })).sort()).toEqual(['acme__dead-letters', 'acme_ticker']);
    expect(await streamNames()).toEqual(['acme_audit', 'acme_shop__dead-letters', 'acme_shop_ticker']);
    expect((await removeEventStreams({ servers: server.url, prefix: 'acme.shop' })).sort()).toEqual(['acme_shop__dead-letters', 'acme_shop_ticker']);
    expect(await streamNames()).toEqual(['acme_audit']);
    await jsm.streams.delete('acme_audit');
  });

  it('nats - removeEventStreams removes every stream of its prefix when they take more than one page of the listing (256 a page)', async () => {
    const jsm = await jetstreamManager(nc);
    const count = 300;
    for (let index = 0; index < count; index += 1) {
      const module = `m${String(index).padStart(3, '0')}`;
      await jsm.streams.add({ name: `paged_${module}`, subjects: [`paged.${module}.durable.>`], storage: StorageType.Memory });
    }
    try {
      expect((await streamNames()).filter((name) => name.startsWith('paged_'))).toHaveLength(count);
      const removed = await removeEventStreams({ servers: server.url, prefix: 'paged' });
      expect(removed).toHaveLength(count);
      expect((await streamNames()).filter((name) => name.startsWith('paged_'))).toEqual([]);
    } finally {
      // Whatever a failure left, so that the tests after this one start from a clean server.
      for (const name of await streamNames()) if (name.startsWith('paged_')) await jsm.streams.delete(name);
    }
  }, 60_000);

  it('nats - removeEventStreams refuses to run without a prefix', async () => {
    const refused = await removeEventStreams({ servers: server.url } as never).catch((error: unknown) => error);
    expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('removeEventStreams: prefix must be given');
  });

  it('cli - the generated test harness removes the streams and consumers it made when it stops', async () => {
    // The generated test/support/application.ts, written inside this repository so that 'keel' resolves to it.
    const folder = mkdtempSync(join(fileURLToPath(new URL('.', import.meta.url)), '.harness-'));
    const previous = process.env['KEEL_NATS_URL'];
    try {
      writeFileSync(join(folder, 'application.ts'), testSupportFile());
      const harness = (await import(pathToFileURL(join(folder, 'application.ts')).href)) as GeneratedHarness;
      process.env['KEEL_NATS_URL'] = server.url;
      const app = await harness.startApplication(modules);
      await app.caller.client(ticker).tick({});
      const made = (await streamNames()).filter((name) => name.startsWith('test-'));
      expect(made).toEqual([expect.stringMatching(/^test-[0-9a-f]{8}__dead-letters$/), expect.stringMatching(/^test-[0-9a-f]{8}_ticker$/)]);
      await app.stop();
      expect(await streamNames()).toEqual([]);
    } finally {
      if (previous === undefined) delete process.env['KEEL_NATS_URL'];
      else process.env['KEEL_NATS_URL'] = previous;
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
