/**
 * `$SRV.STATS` of a keel module, read with the plain `nats` client: the standard fields as the
 * `nats` client's service framework counts them, and keel's own counters in each endpoint's
 * `data` (docs/wire-protocol.md, "Statistics").
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, headers, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { KeelError, createKernel, defineContract, defineError, defineModule, operation, silentLogger, type Kernel, type Transport } from 'keel';
import { ENDPOINT_STATS_TYPE, createNatsTransport, isEndpointStatsData, type EndpointStatsData, type ServiceEndpointStats, type ServiceStats } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const SLOW_MS = 40;

const Refused = defineError({ code: 'REFUSED', kind: 'conflict', data: z.object({ reason: z.string() }) });

const counter = defineContract({
  name: 'counter',
  version: '1.0.0',
  operations: {
    add: operation({ input: z.object({ by: z.number().int() }), output: z.object({ total: z.number() }), errors: [Refused] }),
    crash: operation({ input: z.object({}), output: z.object({}) }),
    slow: operation({ input: z.object({}), output: z.object({ tookMs: z.number() }) }),
  },
});

/** Lets the test hold the slow handler while it reads the statistics. */
let release: () => void = () => undefined;
let entered: Promise<void> = Promise.resolve();
let slowStarted: () => void = () => undefined;

function holdSlow(): void {
  entered = new Promise((resolve) => {
    slowStarted = resolve;
  });
}

let total = 0;

const counterModule = defineModule({
  contract: counter,
  create: () => ({
    handlers: {
      add: ({ by }) => {
        if (by < 0) throw new Refused({ reason: 'negative' });
        total += by;
        return { total };
      },
      crash: () => {
        throw new Error('boom');
      },
      slow: async () => {
        const started = performance.now();
        const released = new Promise<void>((resolve) => {
          release = resolve;
        });
        slowStarted();
        await released;
        await sleep(SLOW_MS);
        return { tookMs: performance.now() - started };
      },
    },
  }),
});

type Endpoint = ServiceEndpointStats;

describe('nats - service statistics', () => {
  let server: NatsServer;
  let hostTransport: Transport;
  let callerTransport: Transport;
  let host: Kernel;
  let caller: Kernel;
  let nc: NatsConnection;

  const stats = async (): Promise<Map<string, Endpoint>> => {
    const reply = (await nc.request('$SRV.STATS.counter', undefined, { timeout: 5_000 })).json<ServiceStats>();
    return new Map((reply.endpoints ?? []).map((endpoint) => [endpoint.name, endpoint as Endpoint]));
  };
  const keelData = (endpoint: Endpoint | undefined): EndpointStatsData => {
    expect(isEndpointStatsData(endpoint?.data)).toBe(true);
    return endpoint?.data as EndpointStatsData;
  };
  const request = (operationName: string, body: string) => {
    const requestHeaders = headers();
    requestHeaders.set('Keel-Contract-Version', '1.0.0');
    return nc.request(`keel.counter.${operationName}`, new TextEncoder().encode(body), { headers: requestHeaders, timeout: 5_000 });
  };

  beforeAll(async () => {
    server = await startNatsServer();
    hostTransport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    host = createKernel({ modules: [counterModule], topology: { host: ['counter'], transport: hostTransport }, logger: silentLogger });
    await host.start();
    callerTransport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    caller = createKernel({ modules: [counterModule], topology: { host: [], transport: callerTransport }, logger: silentLogger });
    await caller.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await caller?.stop();
    await host?.stop();
    await callerTransport?.close();
    await hostTransport?.close();
  });

  it('nats - reports keel counters per endpoint in $SRV.STATS data, zero before the first call', async () => {
    const before = await stats();
    expect([...before.keys()].sort()).toEqual(['add', 'crash', 'slow']);
    expect(keelData(before.get('add'))).toEqual({
      type: ENDPOINT_STATS_TYPE,
      num_requests: 0,
      num_errors: 0,
      processing_time: 0,
      average_processing_time: 0,
      num_no_reply: 0,
    });
  });

  it('nats - counts declared errors, undeclared throws and invalid input as errors in data', async () => {
    const client = caller.client(counter);
    await client.add({ by: 2 });
    await client.add({ by: 3 });
    await expect(client.add({ by: -1 })).rejects.toBeInstanceOf(Refused);
    await expect(client.crash({})).rejects.toSatisfy((error) => error instanceof KeelError && error.code === 'INTERNAL');
    // Invalid input, straight from a plain NATS client: against the schema, and not JSON at all.
    expect((await request('add', '{"by":"two"}')).headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect((await request('add', 'not json')).headers?.get('Nats-Service-Error-Code')).toBe('400');

    const endpoints = await stats();
    const add = keelData(endpoints.get('add'));
    expect(add).toMatchObject({ num_requests: 5, num_errors: 3 });
    expect(add.last_error).toMatch(/^INVALID_INPUT: /);
    expect(add.processing_time).toBeGreaterThan(0);
    expect(add.average_processing_time).toBe(Math.round(add.processing_time / add.num_requests));
    const crash = keelData(endpoints.get('crash'));
    expect(crash).toMatchObject({ num_requests: 1, num_errors: 1 });
    expect(crash.last_error).toMatch(/^INTERNAL: counter\.crash failed with an internal error/);

    // The standard fields, as documented: keel answers the service API itself, so they are the same true counters.
    expect(endpoints.get('add')).toMatchObject({ num_requests: 5, num_errors: 3, last_error: add.last_error, processing_time: add.processing_time });
    expect(endpoints.get('crash')).toMatchObject({ num_requests: 1, num_errors: 1, last_error: crash.last_error });
  });

  it('nats - counts a request in data when it is answered, with processing time covering the whole handler', async () => {
    holdSlow();
    const call = caller.client(counter).slow({});
    await entered;
    const during = await stats();
    expect(during.get('slow')?.num_requests).toBe(0); // standard: counted when answered, as data
    expect(keelData(during.get('slow')).num_requests).toBe(0); // keel: counted when answered
    release();
    const { tookMs } = await call;
    expect(tookMs).toBeGreaterThanOrEqual(SLOW_MS - 1);

    const slow = keelData((await stats()).get('slow'));
    expect(slow).toMatchObject({ num_requests: 1, num_errors: 0 });
    expect(slow.last_error).toBeUndefined();
    expect(slow.processing_time).toBeGreaterThanOrEqual(Math.floor(tookMs * 1e6));
    expect(slow.processing_time).toBeGreaterThanOrEqual((SLOW_MS - 1) * 1e6);
    expect(slow.average_processing_time).toBe(slow.processing_time);
  });
});
