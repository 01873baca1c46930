import { beforeAll, expect, vi } from 'vitest';
import { silentLogger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { describeTransportConformance } from './support/conformance.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

// One real nats-server for this file; each test application gets its own subject prefix, so
// applications booted by different tests never see each other's modules, streams or consumers.
let server: NatsServer;
beforeAll(async () => {
  server = await startNatsServer();
});

describeTransportConformance({
  name: 'nats',
  createTransport: (namespace: string): Promise<Transport> =>
    createNatsTransport({
      servers: server.url,
      prefix: `keel.${namespace}`,
      logger: silentLogger,
      redeliveryDelayMs: 50,
      reconnectTimeWaitMs: 100,
    }),
  closeTransport: (transport) => transport.close(),
  // Every durable consumer of the application's streams with nothing waiting and nothing
  // unacknowledged: JetStream will deliver none of its events again.
  durableSettled: async (namespace) => {
    const nc = await connect({ servers: server.url });
    try {
      const jsm = await jetstreamManager(nc);
      const prefix = `keel.${namespace}.`;
      await vi.waitFor(
        async () => {
          const unsettled: string[] = [];
          for await (const stream of jsm.streams.list()) {
            if (!(stream.config.subjects ?? []).some((subject) => subject.startsWith(prefix))) continue;
            for await (const consumer of jsm.consumers.list(stream.config.name)) {
              if (consumer.num_pending > 0 || consumer.num_ack_pending > 0) {
                unsettled.push(`${stream.config.name}/${consumer.name}: ${consumer.num_pending} waiting, ${consumer.num_ack_pending} unacknowledged`);
              }
            }
          }
          expect(unsettled).toEqual([]);
        },
        { timeout: 15_000, interval: 50 },
      );
    } finally {
      await nc.close();
    }
  },
});
