import { beforeAll } from 'vitest';
import { silentLogger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
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
});
