/**
 * Metrics count from the first event: a process that starts with durable events waiting for it
 * (its start-up backlog) shows every one of them in /metrics. Real parts: a nats-server, two
 * processes of one application started as `keel start` starts them (cli/host.ts), and /metrics
 * read over HTTP.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { defineContract, defineModule, event, operation, silentLogger, type AnyModule } from 'keel';
import { connect, type NatsConnection } from 'nats';
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

/** Events auditor's handler ran for, in this test process. */
let handled = 0;
let backlogHandled: () => void = () => {};
const whenBacklogHandled = new Promise<void>((resolve) => (backlogHandled = resolve));

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
  const hosts: Host[] = [];

  const host = async (names: string[], httpPort?: number): Promise<Host> => {
    const started = await startHost({
      modules,
      host: names,
      env: {},
      natsUrl: server.url,
      logger: silentLogger,
      ...(httpPort === undefined ? {} : { httpPort, httpOperations: 'none' as const }),
    });
    hosts.push(started);
    return started;
  };

  beforeAll(async () => {
    server = await startNatsServer();
    raw = await connect({ servers: server.url });
  });

  afterAll(async () => {
    for (const started of hosts) await started.stop();
    await raw?.close();
    await server?.stop();
  });

  it(`metrics - a process started with ${BACKLOG} durable events waiting shows all ${BACKLOG} in keel_events_handled_total at /metrics`, async () => {
    // auditor's first run makes its durable consumer; the events published while it is down wait there.
    const first = await host(['auditor']);
    await first.stop();
    const publisher = await host(['ledger']);
    for (let n = 0; n < BACKLOG; n += 1) await publisher.kernel.client(ledger).record({ n });
    const jsm = await raw.jetstreamManager();
    expect((await jsm.consumers.info('keel_ledger', 'auditor__recorded')).num_pending).toBe(BACKLOG);
    expect(handled).toBe(0);

    const subscriber = await host(['auditor', 'reporter'], 0);
    // Positive signals: the handler ran for every event, and the consumer holds nothing more
    // (each record reaches the observers before its acknowledgement).
    expect(handled).toBe(BACKLOG);
    await vi.waitFor(async () => {
      const info = await jsm.consumers.info('keel_ledger', 'auditor__recorded');
      expect({ pending: info.num_pending, unacknowledged: info.num_ack_pending }).toEqual({ pending: 0, unacknowledged: 0 });
    }, EVENTUALLY);

    const response = await fetch(`${subscriber.httpUrl}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain(`keel_events_handled_total{contract="ledger",event="recorded",subscriber="auditor",outcome="ok"} ${BACKLOG}\n`);
    expect(text).toContain(`keel_event_handler_duration_seconds_count{contract="ledger",event="recorded",subscriber="auditor"} ${BACKLOG}\n`);
  });
});
