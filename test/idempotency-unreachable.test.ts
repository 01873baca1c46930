/**
 * A keyed call to a module whose database is away (its network cut): the key cannot be claimed,
 * so nothing ran, and the caller must hear UNAVAILABLE (not delivered: safe to retry, with the
 * same key) rather than INTERNAL (which no retry policy retries). Once the database is back, the
 * same key runs the operation once. In one process and over NATS.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { createKernel, isKeelError, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPostgresDatabase } from 'keel/postgres';
import { tally, tallyInMemory, tallyWithData } from './fixtures/idempotency/modules.js';
import { CuttableProxy } from './support/cuttable-proxy.js';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const databases: TestDatabase[] = [];
const proxies: CuttableProxy[] = [];
const kernels: Kernel[] = [];
const transports: Transport[] = [];
let nats: NatsServer | undefined;
afterAll(async () => {
  for (const proxy of proxies) await proxy.open().catch(() => undefined);
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
  for (const proxy of proxies) await proxy.cut();
  for (const database of databases) await database.drop();
  await nats?.stop();
});

const vias = {
  'in one process': async (): Promise<Transport | undefined> => undefined,
  'over NATS': async (prefix: string): Promise<Transport | undefined> => {
    nats ??= await startNatsServer();
    const transport = await createNatsTransport({ servers: nats.url, prefix, logger: silentLogger });
    transports.push(transport);
    return transport;
  },
};

describe.each(Object.entries(vias))('idempotency - a keyed call whose module cannot reach its database, %s', (_name, transportOf) => {
  it('is UNAVAILABLE saying nothing ran, and the same key runs the operation once when the database is back', { timeout: 60_000 }, async () => {
    const database = await createTestDatabase();
    databases.push(database);
    const url = new URL(database.url);
    const proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port) });
    proxies.push(proxy);
    await proxy.open();
    url.port = String(proxy.port);
    const prefix = `unreach${randomUUID().slice(0, 8)}`;
    const transport = await transportOf(prefix);
    const callee = createKernel({
      modules: [tallyWithData],
      logger: silentLogger,
      database: createPostgresDatabase({ url: url.toString(), connectTimeoutMs: 2_000 }),
      ...(transport === undefined ? {} : { topology: { transport } }),
    });
    await callee.start();
    kernels.push(callee);
    let caller = callee;
    if (transport !== undefined) {
      caller = createKernel({ modules: [tallyInMemory], logger: silentLogger, topology: { host: [], transport: (await transportOf(prefix)) as Transport } });
      await caller.start();
      kernels.push(caller);
    }
    const client = caller.client(tally);
    const key = randomUUID();

    await proxy.cut();
    const refused = await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 }).catch((caught: unknown) => caught);
    expect(isKeelError(refused, 'UNAVAILABLE'), String(refused)).toBe(true);
    expect((refused as Error).message).toContain('tally.bump: the module could not reach its database to claim idempotency key');
    expect((refused as Error).message).toContain('Nothing ran; retry later with the same key');
    // The database's own error (its address, its host name) stays in the callee's logs: the answer may reach an HTTP client.
    expect((refused as Error).message).not.toMatch(/ECONN|127\.0\.0\.1|Connection terminated|timeout exceeded/);

    await proxy.open();
    expect(await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 })).toEqual({ count: 1 });
    // The key holds the outcome: the same request again is a replay, not a second run.
    expect(await client.bump({ by: 1 }, { idempotencyKey: key, retry: false, timeoutMs: 10_000 })).toEqual({ count: 1 });
  });
});
