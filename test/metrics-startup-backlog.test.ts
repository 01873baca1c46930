/**
 * Metrics count from the first event: a process that starts with durable events waiting for it
 * (its start-up backlog) shows every one of them in /metrics. Real parts: a nats-server,
 * processes of one application started as `keel start` starts them (cli/host.ts) or as
 * `npm start` does (metrics made before the kernel starts, the gateway after), and /metrics read
 * over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type AnyModule } from 'keel';
import { createHttpGateway, createKernelMetrics } from 'keel/http';
import { createNatsTransport } from 'keel/nats';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startHost, type Host } from '../cli/host.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

/** Events waiting for the subscriber when it starts. */
const BACKLOG = 50;
const EVENTUALLY = { timeout: 15_000, interval: 20 } as const;

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: { record: operation({ input: z.object({ n: z.number().int() }), output: z.object({}) }) },
  events: { recorded: event({ payload: z.object({ n: z.number().int() }), delivery: 'durable' }) },
});

const auditor = defineContract({
  name: 'auditor',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

const reporter = defineContract({
  name: 'reporter',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

/** Events auditor's handler ran for in the current round, and what resolves once it ran for the whole backlog. */
let handled = 0;
let backlogHandled: () => void = () => {};
let whenBacklogHandled = Promise.resolve();

/** Starts a round: the next {@link BACKLOG} events auditor handles. */
function newRound(): void {
  handled = 0;
  whenBacklogHandled = new Promise<void>((resolve) => (backlogHandled = resolve));
}

const modules: AnyModule[] = [
  defineModule({
    contract: ledger,
    create: ({ emit }) => ({
      handlers: {
        record: async ({ n }) => {
          await emit('recorded', { n });
          return {};
        },
      },
    }),
  }),
  defineModule({
    contract: auditor,
    subscribesTo: [ledger],
    create: () => ({
      handlers: { noop: () => ({}) },
      events: {
        ledger: {
          recorded: () => {
            handled += 1;
            if (handled === BACKLOG) backlogHandled();
          },
        },
      },
    }),
  }),
  // Starts after auditor (it depends on it) and only once auditor handled the whole backlog: the
  // backlog is handled inside kernel.start(), as it is when a process starts slower than its
  // consumers drain (the shop's notifications process opening its database).
  defineModule({
    contract: reporter,
    dependsOn: [auditor],
    create: () => ({ handlers: { noop: () => ({}) }, start: () => whenBacklogHandled }),
  }),
];

describe('metrics - the start-up backlog', () => {
  let server: NatsServer;
  let raw: NatsConnection;
  const stops: (() => Promise<void>)[] = [];
  let publish: (n: number) => Promise<unknown>;

  const host = async (names: string[], httpPort?: number): Promise<Host> => {
    const started = await startHost({
      modules,
      host: names,
      env: {},
      natsUrl: server.url,
      logger: silentLogger,
      ...(httpPort === undefined ? {} : { httpPort, httpOperations: 'none' as const }),
    });
    stops.push(() => started.stop());
    return started;
  };

  /** Publishes the backlog while auditor runs nowhere, and checks it waits on auditor's durable consumer. */
  const publishBacklog = async (): Promise<void> => {
    newRound();
    for (let n = 0; n < BACKLOG; n += 1) await publish(n);
    const info = await (await jetstreamManager(raw)).consumers.info('keel_ledger', 'auditor__recorded');
    expect(info.num_pending).toBe(BACKLOG);
    expect(handled).toBe(0);
  };

  /** Positive signals that the backlog is handled: the handler ran for every event, and the consumer holds nothing more (each record reaches the observers before its acknowledgement). */
  const backlogDone = async (): Promise<void> => {
    expect(handled).toBe(BACKLOG);
    const jsm = await jetstreamManager(raw);
    await vi.waitFor(async () => {
      const info = await jsm.consumers.info('keel_ledger', 'auditor__recorded');
      expect({ pending: info.num_pending, unacknowledged: info.num_ack_pending }).toEqual({ pending: 0, unacknowledged: 0 });
    }, EVENTUALLY);
  };

  const scrape = async (url: string | undefined): Promise<string> => {
    const response = await fetch(`${url}/metrics`);
    expect(response.status).toBe(200);
    return response.text();
  };

  beforeAll(async () => {
    server = await startNatsServer();
    raw = await connect({ servers: server.url });
    // auditor's first run makes its durable consumer: the events published while it is down wait there.
    const first = await host(['auditor']);
    await first.stop();
    const publisher = await host(['ledger']);
    publish = (n) => publisher.kernel.client(ledger).record({ n });
  });

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    await raw?.close();
    await server?.stop();
  });

  it(`metrics - a process started as keel start starts it, with ${BACKLOG} durable events waiting, shows all ${BACKLOG} in keel_events_handled_total at /metrics`, async () => {
    await publishBacklog();
    const subscriber = await host(['auditor', 'reporter'], 0);
    await backlogDone();

    const text = await scrape(subscriber.httpUrl);
    expect(text).toContain(`keel_events_handled_total{contract="ledger",event="recorded",subscriber="auditor",outcome="ok"} ${BACKLOG}\n`);
    expect(text).toContain(`keel_event_handler_duration_seconds_count{contract="ledger",event="recorded",subscriber="auditor"} ${BACKLOG}\n`);
    await subscriber.stop();
  });

  it(`metrics - metrics made before kernel.start() and given to a gateway made after it count all ${BACKLOG} events waiting, and outlive the gateway`, async () => {
    await publishBacklog();
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    const kernel = createKernel({ modules, topology: { host: ['auditor', 'reporter'], transport }, logger: silentLogger });
    stops.push(async () => {
      await kernel.stop();
      await transport.close();
    });
    const metrics = createKernelMetrics(kernel);
    await kernel.start();
    await backlogDone();
    const gateway = await createHttpGateway({ kernel, metrics, contracts: [], docsPath: false, port: 0, stopKernelOnClose: false, logger: silentLogger });
    const text = await scrape(await gateway.listen());
    expect(text).toContain(`keel_events_handled_total{contract="ledger",event="recorded",subscriber="auditor",outcome="ok"} ${BACKLOG}\n`);

    // The gateway serves the metrics it was given and leaves them open: they go on counting after it closed.
    await gateway.close();
    newRound();
    await publish(BACKLOG);
    await vi.waitFor(async () => {
      expect(await metrics.registry.metrics()).toContain(
        `keel_events_handled_total{contract="ledger",event="recorded",subscriber="auditor",outcome="ok"} ${BACKLOG + 1}\n`,
      );
    }, EVENTUALLY);
    metrics.close();
  });
});
