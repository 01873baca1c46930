/**
 * Events that arrive with keel's headers but break their contract (the payload, or the
 * principal against the kernel's principal schema) are dropped by the kernel's subscription,
 * whatever the transport; only NATS can deliver them, since an in-process publish is checked
 * when emitted. Whoever may publish the subject could send thousands: the kernel writes one
 * line per 10 s for each kind, with how many it left out.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { connect, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { keelEventHeaders, natsHeaders } from './support/keel-headers.js';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
  events: { posted: event({ payload: z.object({ entry: z.string() }) }) },
});

const handled: string[] = [];

const auditor = defineContract({ name: 'auditor', version: '1.0.0', operations: { noop: operation({ input: z.object({}), output: z.object({}) }) } });
const modules = [
  defineModule({ contract: ledger, create: () => ({ handlers: { noop: () => ({}) } }) }),
  defineModule({
    contract: auditor,
    subscribesTo: [ledger],
    create: () => ({ handlers: { noop: () => ({}) }, events: { ledger: { posted: ({ entry }) => void handled.push(entry) } } }),
  }),
];

const encoder = new TextEncoder();

/** keel's headers on an event of `ledger`, as a plain NATS client sends them. */
const keelHeaders = (id: string, extra: Record<string, string> = {}): MsgHdrs => natsHeaders(keelEventHeaders('ledger', id, extra));

describe('nats - events that break their contract, in the log', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;
  const lines: { level: string; message: string; record: Record<string, unknown> }[] = [];

  beforeAll(async () => {
    server = await startNatsServer({ jetstream: false });
    const record = (level: string) => (fields: object, message: string) => void lines.push({ level, message, record: fields as Record<string, unknown> });
    const logger: Logger = { ...silentLogger, error: record('error'), warn: record('warn'), child: () => logger };
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    kernel = createKernel({ modules, topology: { transport }, logger, principal: z.object({ sub: z.string().min(1), roles: z.array(z.string()) }) });
    await kernel.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it('nats - 30 events whose payload breaks the contract and 30 whose principal breaks the schema log one line each kind, with suppressed; the next real event is handled', async () => {
    for (let index = 0; index < 30; index += 1) {
      nc.publish('keel.ledger.events.posted', encoder.encode(JSON.stringify({ amount: index })), { headers: keelHeaders(`bad-payload-${index}`) });
      nc.publish('keel.ledger.events.posted', encoder.encode(JSON.stringify({ entry: `bad-principal-${index}` })), {
        headers: keelHeaders(`bad-principal-${index}`, { 'Keel-Principal': JSON.stringify({ sub: '', roles: [] }) }),
      });
    }
    // Published after the 60 on the same connection, to the same subscriber: once handled, all 60 were read.
    nc.publish('keel.ledger.events.posted', encoder.encode(JSON.stringify({ entry: 'real' })), { headers: keelHeaders('real') });
    await vi.waitFor(() => expect(handled).toContain('real'), { timeout: 10_000, interval: 20 });
    expect(handled).toEqual(['real']);
    const dropped = lines.filter((line) => line.level === 'error' && line.message.startsWith('dropped an event'));
    expect(dropped.map((line) => line.message.replace(/ \(at most.*$/, '')).sort()).toEqual([
      'dropped an event whose payload breaks its contract',
      'dropped an event whose principal does not match the principal schema',
    ]);
    for (const line of dropped) expect(line.record).toMatchObject({ suppressed: 0, event: 'ledger.posted', eventId: expect.stringMatching(/^bad-(payload|principal)-0$/) });
  });
});
