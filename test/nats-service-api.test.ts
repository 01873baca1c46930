/**
 * keel answers the NATS service API (`$SRV.PING/INFO/STATS`) itself (adapters/nats/service-api.ts).
 * A foreign client's service framework must still discover keel modules: here the maintained
 * `@nats-io/services` client (`Svcm(nc).client()`), with no keel code on the asking side.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import type { ServiceIdentity, ServiceInfo, ServiceStats } from '@nats-io/services';
import { foreignServices } from './support/foreign-services.js';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { ENDPOINT_STATS_TYPE, createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const echo = defineContract({
  name: 'echo',
  version: '1.2.0',
  description: 'Says it back',
  operations: {
    say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }),
    shout: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }),
  },
});

const echoModule = defineModule({
  contract: echo,
  create: () => ({ handlers: { say: ({ text }) => ({ text }), shout: ({ text }) => ({ text: text.toUpperCase() }) } }),
});

async function all<T>(iterator: Promise<AsyncIterable<T>>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of await iterator) items.push(item);
  return items;
}

describe('nats - service API answered by keel, read by a foreign service client', () => {
  let server: NatsServer;
  let transports: Transport[] = [];
  let kernels: Kernel[] = [];
  let nc: NatsConnection;

  beforeAll(async () => {
    server = await startNatsServer();
    // Two instances of the module: every instance answers the service API.
    for (let index = 0; index < 2; index += 1) {
      const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
      const kernel = createKernel({ modules: [echoModule], topology: { transport }, logger: silentLogger });
      await kernel.start();
      transports.push(transport);
      kernels.push(kernel);
    }
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    for (const kernel of kernels) await kernel.stop();
    for (const transport of transports) await transport.close();
    transports = [];
    kernels = [];
  });

  const client = () => foreignServices(nc).client({ strategy: 'stall', maxWait: 2_000, stall: 300 });

  it('nats - ping, info and stats find every instance, by all, by name and by id, with the standard fields', async () => {
    const pings = await all<ServiceIdentity>(client().ping());
    const echoes = pings.filter((ping) => ping.name === 'echo');
    expect(echoes).toHaveLength(2);
    for (const ping of echoes) {
      expect(ping).toEqual({
        type: 'io.nats.micro.v1.ping_response',
        name: 'echo',
        id: expect.any(String),
        version: '1.2.0',
        metadata: { 'keel.prefix': 'keel', 'keel.protocol': '1' },
      });
    }
    expect(new Set(echoes.map((ping) => ping.id)).size).toBe(2);
    expect(await all<ServiceIdentity>(client().ping('echo'))).toHaveLength(2);

    const id = echoes[0]?.id ?? '';
    const infos = await all<ServiceInfo>(client().info('echo', id));
    expect(infos).toHaveLength(1);
    expect(infos[0]).toMatchObject({ type: 'io.nats.micro.v1.info_response', name: 'echo', id, version: '1.2.0', description: 'Says it back' });
    expect(infos[0]?.endpoints.map((endpoint) => [endpoint.name, endpoint.subject, endpoint.queue_group]).sort()).toEqual([
      ['say', 'keel.echo.say', 'echo'],
      ['shout', 'keel.echo.shout', 'echo'],
    ]);

    const requestHeaders = headers();
    requestHeaders.set('Keel-Contract-Version', '1.0.0');
    const reply = await nc.request('keel.echo.say', JSON.stringify({ text: 'hi' }), { headers: requestHeaders, timeout: 5_000 });
    expect(reply.json()).toEqual({ text: 'hi' });
    const stats = (await all<ServiceStats>(client().stats('echo'))).filter((stat) => stat.name === 'echo');
    expect(stats).toHaveLength(2);
    for (const stat of stats) {
      expect(stat).toMatchObject({ type: 'io.nats.micro.v1.stats_response', name: 'echo', version: '1.2.0' });
      expect(Number.isNaN(Date.parse(stat.started))).toBe(false);
      for (const endpoint of stat.endpoints ?? []) {
        expect(endpoint).toMatchObject({ queue_group: 'echo', data: { type: ENDPOINT_STATS_TYPE } });
        expect(endpoint.num_requests).toBe((endpoint.data as { num_requests: number }).num_requests);
      }
    }
    const says = stats.flatMap((stat) => stat.endpoints ?? []).filter((endpoint) => endpoint.name === 'say');
    expect(says.reduce((sum, endpoint) => sum + endpoint.num_requests, 0)).toBe(1);
  });

  it('nats - an instance stops answering the service API when it stops', async () => {
    const before = (await all<ServiceIdentity>(client().ping('echo'))).map((ping) => ping.id);
    expect(before).toHaveLength(2);
    await kernels[1]?.stop();
    const after = (await all<ServiceIdentity>(client().ping('echo'))).map((ping) => ping.id);
    expect(after).toHaveLength(1);
    expect(before).toContain(after[0]);
  });
});
