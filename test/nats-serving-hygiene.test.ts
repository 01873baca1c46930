/**
 * Serving-side hygiene over NATS (issue 13, docs/security.md "Serving-side hygiene"): the attacks
 * found from a plain NATS client, re-run with the plain `nats` package against a real server and
 * a keel process, each refused. Every absence is proven after a later message that had to come
 * after the refused one (an answer, a handled event, a drained consumer), never after a sleep.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { ServiceStats } from 'keel/nats';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type Kernel, type Transport } from 'keel';
import type { DeadLetter, DroppedRecord } from 'keel/transport';
import { DEFAULT_NATS_TRANSPORT_OPTIONS, createNatsTransport, isEndpointStatsData } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { keelEventHeaders, natsHeaders } from './support/keel-headers.js';
import { linesLogger, type LogLine } from './support/log-lines.js';

// --- the keel side ------------------------------------------------------------------------------

const orders = defineContract({
  name: 'orders',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
  events: {
    orderCancelled: event({ payload: z.object({ orderId: z.string() }) }),
    refundIssued: event({ payload: z.object({ orderId: z.string(), amount: z.number() }), delivery: 'durable' }),
  },
});

const inventory = defineContract({
  name: 'inventory',
  version: '1.0.0',
  operations: {
    restock: operation({ input: z.object({ sku: z.string(), quantity: z.number().int() }), output: z.object({ onHand: z.number() }) }),
    onHand: operation({ input: z.object({ sku: z.string() }), output: z.object({ onHand: z.number() }) }),
  },
});

const stock = new Map<string, number>();
const handled: string[] = [];
const deadLetters: DeadLetter[] = [];

const modules = [
  defineModule({ contract: orders, create: () => ({ handlers: { noop: () => ({}) } }) }),
  defineModule({
    contract: inventory,
    subscribesTo: [orders],
    create: () => ({
      handlers: {
        restock: ({ sku, quantity }) => {
          stock.set(sku, (stock.get(sku) ?? 0) + quantity);
          return { onHand: stock.get(sku) ?? 0 };
        },
        onHand: ({ sku }) => ({ onHand: stock.get(sku) ?? 0 }),
      },
      events: {
        orders: {
          orderCancelled: ({ orderId }) => {
            handled.push(`orderCancelled:${orderId}`);
          },
          refundIssued: ({ orderId }) => {
            handled.push(`refundIssued:${orderId}`);
          },
        },
      },
    }),
  }),
];


// --- the foreign client -------------------------------------------------------------------------

const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));


const DEAD_LETTER_LIMIT = 5;

describe('nats - serving-side hygiene, attacked from a plain NATS client', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;
  const lines: LogLine[] = [];

  const call = (operationName: string, input: unknown, values: Record<string, string>) =>
    nc.request(`keel.inventory.${operationName}`, json(input), { headers: natsHeaders(values), timeout: 5_000 });
  const onHand = async (sku: string): Promise<number> =>
    (await call('onHand', { sku }, { 'Keel-Contract-Version': '1.0.0' })).json<{ onHand: number }>().onHand;
  const warnings = (text: string): LogLine[] => lines.filter((line) => line.level === 'warn' && line.message.includes(text));

  /** Waits until the durable consumer has nothing waiting and nothing unacknowledged: every delivery is final. */
  const consumerDrained = async (): Promise<void> => {
    const jsm = await jetstreamManager(nc);
    await vi.waitFor(
      async () => {
        const info = await jsm.consumers.info('keel_orders', 'inventory__refundIssued');
        expect({ pending: info.num_pending, unacknowledged: info.num_ack_pending }).toEqual({ pending: 0, unacknowledged: 0 });
      },
      { timeout: 15_000, interval: 50 },
    );
  };

  beforeAll(async () => {
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: linesLogger(lines), deadLetterMaxMessages: DEAD_LETTER_LIMIT });
    kernel = createKernel({ modules, topology: { transport }, logger: silentLogger, onDeadLetter: (letter) => deadLetters.push(letter) });
    await kernel.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it('nats - refuses a restock whose Keel-Deadline passed an hour ago with TIMEOUT (504), and applies nothing', async () => {
    const late = await call('restock', { sku: 'late', quantity: 5 }, { 'Keel-Contract-Version': '1.0.0', 'Keel-Deadline': String(Date.now() - 3_600_000) });
    expect(late.headers?.get('Nats-Service-Error-Code')).toBe('504');
    expect(late.json()).toMatchObject({ type: 'keel', code: 'TIMEOUT' });
    expect(late.json<{ message: string }>().message).toContain('was not run');
    expect(await onHand('late')).toBe(0);

    const inTime = await call('restock', { sku: 'late', quantity: 5 }, { 'Keel-Contract-Version': '1.0.0', 'Keel-Deadline': String(Date.now() + 5_000) });
    expect(inTime.json()).toEqual({ onHand: 5 });
  });

  it('nats - refuses a restock without Keel-Contract-Version (INVALID_INPUT, 400) before its handler runs', async () => {
    const reply = await nc.request('keel.inventory.restock', json({ sku: 'unversioned', quantity: 5 }), { timeout: 5_000 });
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('400');
    expect(reply.json<{ code: string; message: string }>()).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining('Keel-Contract-Version') });
    expect(await onHand('unversioned')).toBe(0);
  });

  it('nats - counts 50 requests without a reply subject in $SRV.STATS data (num_no_reply) and for the kernel\'s observers (keel_requests_dropped_total), and logs one line for them', async () => {
    const before = lines.length;
    const dropped: DroppedRecord[] = [];
    const stopObserving = kernel.observe({ requestDropped: (record) => void dropped.push(record) });
    for (let index = 0; index < 50; index += 1) {
      nc.publish('keel.inventory.restock', json({ sku: 'no-reply', quantity: 1 }), { headers: natsHeaders({ 'Keel-Contract-Version': '1.0.0' }) });
    }
    // Answered after the 50 were read: same connection, same subscriber.
    expect(await onHand('no-reply')).toBe(0);

    const stats = (await nc.request('$SRV.STATS.inventory', undefined, { timeout: 5_000 })).json<ServiceStats>();
    const restock = stats.endpoints?.find((endpoint) => endpoint.name === 'restock');
    expect(isEndpointStatsData(restock?.data)).toBe(true);
    expect((restock?.data as { num_no_reply: number }).num_no_reply).toBe(50);
    const logged = warnings('without a reply subject').filter((line) => lines.indexOf(line) >= before);
    expect(logged).toHaveLength(1);
    expect(logged[0]?.record).toMatchObject({ module: 'inventory', operation: 'restock', suppressed: 0 });
    stopObserving();
    expect(dropped).toHaveLength(50);
    expect(dropped[0]).toEqual({ contract: 'inventory', operation: 'restock', transport: 'nats', reason: 'no-reply' });
  });

  it('nats - drops a schema-valid orderCancelled with no headers, in another module\'s name, or with an event id over 255 characters, and handles one with keel\'s headers', async () => {
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'forged-bare' }));
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'forged-name' }), {
      headers: natsHeaders({ ...keelEventHeaders('orders', 'forged-name'), 'Keel-Publisher': 'payments' }),
    });
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'forged-version' }), {
      headers: natsHeaders({ ...keelEventHeaders('orders', 'forged-version'), 'Keel-Contract-Version': 'latest' }),
    });
    // An inbox keys its rows by the id: PostgreSQL's index refuses one of about 8 kB, so such an event failed every attempt.
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'forged-long-id' }), { headers: natsHeaders(keelEventHeaders('orders', 'i'.repeat(256))) });
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'real' }), { headers: natsHeaders(keelEventHeaders('orders', 'real')) });
    await vi.waitFor(() => expect(handled).toContain('orderCancelled:real'), { timeout: 10_000, interval: 20 });
    expect(handled.filter((entry) => entry.startsWith('orderCancelled:forged'))).toEqual([]);
    const logged = warnings('without keel headers').filter((line) => line.message.startsWith('dropped'));
    expect(logged).toHaveLength(1);
    expect(String(logged[0]?.record['problem'])).toContain('missing Keel-Contract-Version, Keel-Event-Id, Keel-Correlation-Id, Keel-Publisher, Keel-Published-At');
  });

  it('nats - logs one line for 30 notification events of each malformed kind with keel\'s headers (body not JSON, another major, a principal not JSON), and handles the next real one', async () => {
    const before = lines.length;
    const kinds = {
      body: (index: number) => nc.publish('keel.orders.events.orderCancelled', encoder.encode('{not json'), { headers: natsHeaders(keelEventHeaders('orders', `bad-body-${index}`)) }),
      major: (index: number) =>
        nc.publish('keel.orders.events.orderCancelled', json({ orderId: `other-major-${index}` }), {
          headers: natsHeaders({ ...keelEventHeaders('orders', `other-major-${index}`), 'Keel-Contract-Version': '2.0.0' }),
        }),
      principal: (index: number) =>
        nc.publish('keel.orders.events.orderCancelled', json({ orderId: `bad-principal-${index}` }), {
          headers: natsHeaders({ ...keelEventHeaders('orders', `bad-principal-${index}`), 'Keel-Principal': '{nope' }),
        }),
    };
    for (let index = 0; index < 30; index += 1) for (const publish of Object.values(kinds)) publish(index);
    // Published after the 90 on the same connection, to the same subscriber: once handled, all 90 were read.
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'after-the-flood' }), { headers: natsHeaders(keelEventHeaders('orders', 'after-the-flood')) });
    await vi.waitFor(() => expect(handled).toContain('orderCancelled:after-the-flood'), { timeout: 10_000, interval: 20 });
    expect(handled.filter((entry) => /other-major|bad-principal/.test(entry))).toEqual([]);
    const dropped = lines.slice(before).filter((line) => line.level === 'error' && line.message.startsWith('dropped an event'));
    expect(dropped.map((line) => line.message.replace(/ \(at most.*$/, '')).sort()).toEqual([
      'dropped an event published with another major contract version',
      'dropped an event whose body is not JSON',
      'dropped an event whose principal header is not JSON',
    ]);
    for (const line of dropped) expect(line.record['suppressed']).toEqual(expect.any(Number));
  });

  it('nats - terminates a durable refundIssued with no headers without handling or dead-lettering it, and handles one with keel\'s headers', async () => {
    const js = jetstream(nc);
    await js.publish('keel.orders.durable.refundIssued', json({ orderId: 'forged-refund', amount: 999.99 }));
    await js.publish('keel.orders.durable.refundIssued', json({ orderId: 'real-refund', amount: 5 }), { headers: natsHeaders(keelEventHeaders('orders', 'real-refund')) });
    await vi.waitFor(() => expect(handled).toContain('refundIssued:real-refund'), { timeout: 10_000, interval: 20 });
    await consumerDrained();
    expect(handled).not.toContain('refundIssued:forged-refund');
    expect(deadLetters).toEqual([]);
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('keel__dead-letters')).state.messages).toBe(0);
    expect(warnings('without keel headers').filter((line) => line.message.startsWith('terminated durable'))).toHaveLength(1);
  });

  it(`nats - keeps at most deadLetterMaxMessages (${DEAD_LETTER_LIMIT}) dead letters when 12 forged invalid events arrive`, async () => {
    const js = jetstream(nc);
    for (let index = 0; index < 12; index += 1) {
      const id = `invalid-${index}`;
      await js.publish('keel.orders.durable.refundIssued', json({ orderId: id, amount: 'lots' }), { headers: natsHeaders(keelEventHeaders('orders', id)), msgID: id });
    }
    await vi.waitFor(() => expect(deadLetters).toHaveLength(12), { timeout: 15_000, interval: 50 });
    await consumerDrained();
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info('keel__dead-letters');
    expect(info.config).toMatchObject({ max_msgs: DEAD_LETTER_LIMIT, max_bytes: DEFAULT_NATS_TRANSPORT_OPTIONS.deadLetterMaxBytes, discard: 'old' });
    expect(info.state.messages).toBe(DEAD_LETTER_LIMIT);
    const newest = (await jsm.streams.getMessage('keel__dead-letters', { last_by_subj: 'keel._dead-letter.inventory.orders.refundIssued' }))!;
    expect(newest.header.get('Keel-Event-Id')).toBe('invalid-11');
  });
});
