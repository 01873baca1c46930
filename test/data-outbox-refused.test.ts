/**
 * An outbox event the transport refuses for good (larger than nats-server's max_payload) is set
 * aside, named in an error log, and does not hold back the events written after it.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKernel, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { audit, auditModule, ledger, ledgerModule } from './fixtures/data/modules.js';
import { postgresUnderTest } from './support/databases.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const postgres = postgresUnderTest();
let nats: NatsServer;
const transports: Transport[] = [];
const kernels: Kernel[] = [];

beforeAll(async () => {
  nats = await startNatsServer({ maxPayload: 4096 });
});
afterAll(async () => {
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
  await postgres.cleanup();
  await nats?.stop();
});

describe('data - an outbox event refused for good', () => {
  it('sets aside an event larger than the server takes, logs its id as an error, and still publishes the events after it', async () => {
    const errors: { message: string; fields: Record<string, unknown> }[] = [];
    const logger: Logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: (fields, message) => void errors.push({ message, fields: fields as Record<string, unknown> }),
      child: () => logger,
    };
    const boot = async (host: string[], log: Logger): Promise<Kernel> => {
      const transport = await createNatsTransport({ servers: nats.url, logger: silentLogger });
      transports.push(transport);
      const kernel = createKernel({ modules: [auditModule, ledgerModule], topology: { host, transport }, database: await postgres.fresh(), logger: log });
      await kernel.start();
      kernels.push(kernel);
      return kernel;
    };
    const auditor = await boot(['audit'], silentLogger);
    const writer = await boot(['ledger'], logger);

    await writer.client(ledger).add({ label: 'x'.repeat(8_000) });
    await writer.client(ledger).add({ label: 'after the big one' });

    // The event after it arrives: the big one no longer holds the outbox back.
    await vi.waitFor(async () => expect((await auditor.client(audit).seen({})).labels).toEqual(['after the big one']), { timeout: 15_000, interval: 100 });
    const refused = errors.find((record) => record.message.startsWith('outbox event refused for good'));
    expect(refused?.fields).toMatchObject({ module: 'ledger', event: 'entryAdded', eventId: expect.any(String), seq: 1 });
    expect(refused?.fields['err']).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });
});
