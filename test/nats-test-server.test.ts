import { describe, expect, it } from 'vitest';
import { RetentionPolicy, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { startNatsServer } from './support/nats-server.js';

describe('nats - the test server helper', () => {
  it('nats - names the binary and how to install it when nats-server is missing', async () => {
    await expect(startNatsServer({ binary: 'keel-no-such-nats-server' })).rejects.toThrow(/keel-no-such-nats-server.*apt-get install nats-server/s);
  });

  it('nats - restarts on the same port with the same JetStream store, and applies max_payload', async () => {
    const server = await startNatsServer({ maxPayload: 4096 });
    try {
      const first = await connect({ servers: server.url });
      expect(first.info?.max_payload).toBe(4096);
      const jsm = await jetstreamManager(first);
      await jsm.streams.add({ name: 'kept', subjects: ['kept.>'], retention: RetentionPolicy.Limits });
      await first.close();

      await server.restart();
      const second = await connect({ servers: `127.0.0.1:${server.port}` });
      expect((await (await jetstreamManager(second)).streams.info('kept')).config.name).toBe('kept');
      await second.close();
    } finally {
      await server.stop();
    }
    expect(server.running).toBe(false);
  });
});
