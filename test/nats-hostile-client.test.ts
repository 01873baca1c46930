/**
 * A hostile or sloppy foreign NATS client against a keel process: header blocks the nats client
 * cannot decode, on a notification, a durable event and a reply, written as raw `HPUB`s (no NATS
 * client writes them, but any socket can). Each must be refused where it lands, with the process
 * still reading its connection afterwards: nats.js runs subscription callbacks inside its socket
 * reader, so a callback that throws ends the reader ("reader closed") and the connection goes
 * deaf until it is found stale minutes later; an async handler that rejects unhandled ends the
 * process.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { connect as connectTcp, type Socket } from 'node:net';
import { once } from 'node:events';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { keelEventHeaders, natsHeaders } from './support/keel-headers.js';
import { natsAuthorization, natsUsers, type NatsUser } from '../cli/deploy/nats-config.js';
import { NATS_CLIENT_USER } from '../cli/deploy/nats-permissions.js';
import { parseTopology } from '../cli/topology.js';
import { modules as shopModules } from '../modules/index.js';
import { linesLogger, type LogLine } from './support/log-lines.js';

const orders = defineContract({
  name: 'orders',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
  events: {
    orderCancelled: event({ payload: z.object({ orderId: z.string() }) }),
    refundIssued: event({ payload: z.object({ orderId: z.string() }), delivery: 'durable' }),
  },
});

const inventory = defineContract({
  name: 'inventory',
  version: '1.0.0',
  operations: { onHand: operation({ input: z.object({ sku: z.string() }), output: z.object({ onHand: z.number() }) }) },
});

/** A module keel calls but does not serve: the test's raw socket answers for it. */
const pricing = defineContract({
  name: 'pricing',
  version: '1.0.0',
  operations: { quote: operation({ input: z.object({ sku: z.string() }), output: z.object({ cents: z.number() }) }) },
});

const handled: string[] = [];
const modules = [
  defineModule({ contract: orders, create: () => ({ handlers: { noop: () => ({}) } }) }),
  defineModule({
    contract: inventory,
    subscribesTo: [orders],
    create: () => ({
      handlers: { onHand: () => ({ onHand: 7 }) },
      events: {
        orders: {
          orderCancelled: ({ orderId }) => void handled.push(`orderCancelled:${orderId}`),
          refundIssued: ({ orderId }) => void handled.push(`refundIssued:${orderId}`),
        },
      },
    }),
  }),
];


const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

/** keel's five event headers as a block, with a line nats refuses to decode (a key with a space). */
function undecodableEventBlock(id: string): Buffer {
  const lines = Object.entries(keelEventHeaders('orders', id)).map(([key, value]) => `${key}: ${value}\r\n`);
  return Buffer.from(`NATS/1.0\r\n${lines.join('')}Bad Key: x\r\n\r\n`, 'latin1');
}

describe('nats - a foreign client sends header blocks nats cannot decode', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;
  let raw: Socket;
  const lines: LogLine[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  /** Publishes `body` on `subject` with `block` as its header block, as a raw HPUB, and waits for the server's PONG. */
  const hpub = async (subject: string, block: Buffer, body: Uint8Array, reply = ''): Promise<void> => {
    raw.write(
      Buffer.concat([
        Buffer.from(`HPUB ${subject} ${reply === '' ? '' : `${reply} `}${block.length} ${block.length + body.length}\r\n`),
        block,
        body,
        Buffer.from('\r\nPING\r\n'),
      ]),
    );
  };
  const onHand = async (): Promise<unknown> =>
    (await nc.request('keel.inventory.onHand', json({ sku: 'a' }), { headers: natsHeaders({ 'Keel-Contract-Version': '1.0.0' }), timeout: 5_000 })).json();

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: linesLogger(lines) });
    kernel = createKernel({ modules, contracts: [pricing], topology: { transport }, logger: silentLogger });
    await kernel.start();
    nc = await connect({ servers: server.url });
    raw = connectTcp(server.port, '127.0.0.1');
    await once(raw, 'connect');
    raw.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n');
  });

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    raw?.destroy();
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it('nats - drops a notification event whose header block nats cannot decode, with one warn line, and keeps reading: the next event is handled, a call answered', async () => {
    await hpub('keel.orders.events.orderCancelled', undecodableEventBlock('undecodable'), json({ orderId: 'undecodable' }));
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'after' }), { headers: natsHeaders(keelEventHeaders('orders', 'after')) });
    await vi.waitFor(() => expect(handled).toContain('orderCancelled:after'), { timeout: 10_000, interval: 20 });
    expect(handled).not.toContain('orderCancelled:undecodable');
    expect(await onHand()).toEqual({ onHand: 7 });
    const dropped = lines.filter((line) => line.level === 'warn' && line.message.startsWith('dropped events without keel headers'));
    expect(dropped).toHaveLength(1);
    expect(String(dropped[0]?.record['problem'])).toMatch(/header block nats cannot decode/);
  });

  it('nats - terminates a durable event whose header block nats cannot decode, without handling or dead-lettering it; the process lives on and handles the next one', async () => {
    const acked = `_INBOX.hostile.${Date.now()}`;
    const stored = new Promise<string>((resolve) => nc.subscribe(acked, { max: 1, callback: (_error, msg) => resolve(msg.string()) }));
    await nc.flush();
    await hpub('keel.orders.durable.refundIssued', undecodableEventBlock('undecodable-refund'), json({ orderId: 'undecodable-refund' }), acked);
    expect(await stored).toContain('"stream":"keel_orders"');
    const js = jetstream(nc);
    await js.publish('keel.orders.durable.refundIssued', json({ orderId: 'real-refund' }), { headers: natsHeaders(keelEventHeaders('orders', 'real-refund')) });
    await vi.waitFor(() => expect(handled).toContain('refundIssued:real-refund'), { timeout: 10_000, interval: 20 });
    const jsm = await jetstreamManager(nc);
    await vi.waitFor(
      async () => {
        const info = await jsm.consumers.info('keel_orders', 'inventory__refundIssued');
        expect({ pending: info.num_pending, unacknowledged: info.num_ack_pending }).toEqual({ pending: 0, unacknowledged: 0 });
      },
      { timeout: 10_000, interval: 50 },
    );
    expect(handled).not.toContain('refundIssued:undecodable-refund');
    expect((await jsm.streams.info('keel__dead-letters')).state.messages).toBe(0);
    expect(unhandled).toEqual([]);
    const terminated = lines.filter((line) => line.level === 'warn' && line.message.startsWith('terminated durable events without keel headers'));
    expect(terminated).toHaveLength(1);
    expect(String(terminated[0]?.record['problem'])).toMatch(/header block nats cannot decode/);
  });

  it("nats - dead-letters an invalid durable event that carries JetStream's publish conditions (Nats-Expected-Stream): the letter is stored, without them", async () => {
    const jsm = await jetstreamManager(nc);
    const letters = async (): Promise<number> => (await jsm.streams.info('keel__dead-letters')).state.messages;
    const before = await letters();
    // The original meets its condition on keel_orders; a copy of it would fail on the dead-letter stream.
    await nc.request('keel.orders.durable.refundIssued', encoder.encode('{not json'), {
      headers: natsHeaders({ ...keelEventHeaders('orders', 'expected-stream'), 'Nats-Expected-Stream': 'keel_orders' }),
      timeout: 5_000,
    });
    await vi.waitFor(async () => expect(await letters()).toBe(before + 1), { timeout: 10_000, interval: 50 });
    const letter = await jsm.streams.getMessage('keel__dead-letters', { last_by_subj: 'keel._dead-letter.inventory.orders.refundIssued' });
    expect(letter?.header.get('Keel-Event-Id')).toBe('expected-stream');
    expect(letter?.header.get('Nats-Expected-Stream')).toBe('');
    expect(lines.filter((line) => line.message.startsWith('could not store a dead letter'))).toEqual([]);
  });

  it('nats - refuses a Keel-Deadline past Number.MAX_SAFE_INTEGER and a Keel-Timeout-Ms past the longest timer with INVALID_INPUT naming the header, and serves the bounds', async () => {
    const ask = (values: Record<string, string>) =>
      nc.request('keel.inventory.onHand', json({ sku: 'a' }), { headers: natsHeaders({ 'Keel-Contract-Version': '1.0.0', ...values }), timeout: 5_000 });
    for (const [header, value] of [
      ['Keel-Deadline', '9999999999999999'],
      ['Keel-Deadline', '9'.repeat(400)],
      ['Keel-Timeout-Ms', '2147483648'],
      ['Keel-Timeout-Ms', '99999999999999999999'],
    ] as const) {
      const reply = await ask({ [header]: value });
      expect(reply.headers?.get('Nats-Service-Error-Code'), `${header} ${value.length} digits`).toBe('400');
      expect(reply.json()).toMatchObject({ code: 'INVALID_INPUT', message: expect.stringContaining(`header ${header}`) });
    }
    expect((await ask({ 'Keel-Deadline': String(Number.MAX_SAFE_INTEGER) })).json()).toEqual({ onHand: 7 });
    expect((await ask({ 'Keel-Timeout-Ms': '2147483647' })).json()).toEqual({ onHand: 7 });
  });

  it('nats - a call answered with a header block nats cannot decode fails INTERNAL at once, naming it, and the next call is answered', async () => {
    // The raw socket stands in for a sloppy foreign pricing service: the first reply's block is
    // undecodable, the second a plain success.
    let answered = 0;
    const service = connectTcp(server.port, '127.0.0.1');
    await once(service, 'connect');
    service.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\nSUB keel.pricing.quote 1\r\nPING\r\n');
    await new Promise<void>((resolve) => service.once('data', () => resolve()));
    service.on('data', (chunk: Buffer) => {
      for (const match of chunk.toString('latin1').matchAll(/HMSG keel\.pricing\.quote 1 (\S+) \d+ \d+\r\n/g)) {
        const reply = match[1] as string;
        const body = Buffer.from('{"cents":100}');
        answered += 1;
        if (answered === 1) {
          const block = Buffer.from('NATS/1.0\r\nBad Key: x\r\n\r\n', 'latin1');
          service.write(Buffer.concat([Buffer.from(`HPUB ${reply} ${block.length} ${block.length + body.length}\r\n`), block, body, Buffer.from('\r\n')]));
        } else {
          service.write(Buffer.concat([Buffer.from(`PUB ${reply} ${body.length}\r\n`), body, Buffer.from('\r\n')]));
        }
      }
    });
    try {
      const client = kernel.client(pricing);
      const started = Date.now();
      const failure = await client.quote({ sku: 'a' }, { timeoutMs: 5_000, retry: false }).then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({ code: 'INTERNAL', message: expect.stringMatching(/header block/) });
      expect(Date.now() - started).toBeLessThan(4_000);
      expect(await client.quote({ sku: 'a' }, { timeoutMs: 5_000 })).toEqual({ cents: 100 });
      expect(await onHand()).toEqual({ onHand: 7 });
    } finally {
      service.destroy();
    }
  });
});

describe("nats - an error escaping keel's handling of a message (here, a logger that throws) neither deafens the connection nor ends the process", () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;
  const lines: LogLine[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  beforeAll(async () => {
    process.on('unhandledRejection', onUnhandled);
    server = await startNatsServer();
    // Its warn throws: the refusal of an event without keel's headers logs at warn, inside the
    // subscription's callback (a notification) and inside the async handling (a durable event).
    const recorded = linesLogger(lines);
    const throwing: Logger = {
      ...recorded,
      warn: () => {
        throw new Error('the logger broke');
      },
      child: () => throwing,
    };
    transport = await createNatsTransport({ servers: server.url, logger: throwing });
    kernel = createKernel({ modules, logger: silentLogger, topology: { transport } });
    await kernel.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    process.off('unhandledRejection', onUnhandled);
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it('nats - a notification whose refusal throws is dropped with one error line, and the next event is handled', async () => {
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'guard-bare' }));
    nc.publish('keel.orders.events.orderCancelled', json({ orderId: 'guard-after' }), { headers: natsHeaders(keelEventHeaders('orders', 'guard-after')) });
    await vi.waitFor(() => expect(handled).toContain('orderCancelled:guard-after'), { timeout: 10_000, interval: 20 });
    const escaped = lines.filter((line) => line.level === 'error' && line.message.startsWith('an error escaped the handling of a NATS message'));
    expect(escaped).toHaveLength(1);
    expect(escaped[0]?.record).toMatchObject({ event: 'orders.orderCancelled', subscriber: 'inventory' });
    expect(String((escaped[0]?.record['err'] as Error).message)).toBe('the logger broke');
  });

  it('nats - a durable event whose refusal throws is no unhandled rejection: the process lives on and handles the next one', async () => {
    const js = jetstream(nc);
    await js.publish('keel.orders.durable.refundIssued', json({ orderId: 'guard-bare-refund' }));
    await js.publish('keel.orders.durable.refundIssued', json({ orderId: 'guard-real-refund' }), { headers: natsHeaders(keelEventHeaders('orders', 'guard-real-refund')) });
    await vi.waitFor(() => expect(handled).toContain('refundIssued:guard-real-refund'), { timeout: 10_000, interval: 20 });
    expect(handled).not.toContain('refundIssued:guard-bare-refund');
    expect(unhandled).toEqual([]);
  });
});

describe('nats - a caller names a JetStream API subject as its reply subject, under the generated permissions', () => {
  // The shop, one process per module, locked down as keel deploy and keel up lock it.
  const names = shopModules.map((module) => module.name as string);
  const users = natsUsers(parseTopology({ processes: Object.fromEntries(names.map((name) => [name, { modules: [name] }])) }, names, 'per-module'), shopModules);
  const userOf = (name: string): NatsUser => users.find((user) => user.user === name) as NatsUser;
  /** catalog's subjects, served by keel as catalog's user: a stand-in for the shop's catalog, which needs a database. */
  const catalog = defineContract({
    name: 'catalog',
    version: '3.0.0',
    operations: { getProduct: operation({ input: z.object({ sku: z.string() }), output: z.object({ sku: z.string() }) }) },
  });
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  const connections: NatsConnection[] = [];
  const lines: LogLine[] = [];
  const as = async (user: NatsUser): Promise<NatsConnection> => {
    const connection = await connect({ servers: server.url, user: user.user, pass: user.password, inboxPrefix: user.inboxPrefix, reconnect: false });
    connections.push(connection);
    return connection;
  };

  beforeAll(async () => {
    server = await startNatsServer({ extraConfig: natsAuthorization(users) });
    const user = userOf('catalog');
    transport = await createNatsTransport({ servers: server.url, user: user.user, password: user.password, inboxPrefix: user.inboxPrefix, logger: linesLogger(lines) });
    kernel = createKernel({
      modules: [defineModule({ contract: catalog, create: () => ({ handlers: { getProduct: ({ sku }) => ({ sku }) } }) })],
      topology: { transport },
      logger: silentLogger,
    });
    await kernel.start();
  });

  afterAll(async () => {
    for (const connection of connections) await connection.close();
    await kernel?.stop();
    await transport?.close();
    await server?.stop();
  });

  it("nats - keel answers no call nor $SRV question on a reply subject in $JS.API: the client user, refused a purge of orders' stream, cannot have catalog send it", async () => {
    // orders' stream holds two durable events, stored as orders' user.
    const orders = await as(userOf('orders'));
    const jsm = await jetstreamManager(orders);
    await jsm.streams.add({ name: 'keel_orders', subjects: ['keel.orders.durable.>'] });
    await jetstream(orders).publish('keel.orders.durable.orderPlaced', json({}));
    await jetstream(orders).publish('keel.orders.durable.orderPlaced', json({}));
    const stored = async (): Promise<number> => (await jsm.streams.info('keel_orders')).state.messages;
    expect(await stored()).toBe(2);

    const client = await as(userOf(NATS_CLIENT_USER));
    const purge = '$JS.API.STREAM.PURGE.keel_orders';
    await expect(client.request(purge, '{}', { timeout: 2_000 })).rejects.toThrow(/Permissions Violation for Publish/);
    client.publish('$SRV.PING', '', { reply: purge });
    client.publish('keel.catalog.getProduct', json({ sku: 'x' }), { reply: purge, headers: natsHeaders({ 'Keel-Contract-Version': '3.0.0' }) });
    // catalog's answers to the same questions from the client's inbox, after the two above on the same connections.
    const ping = await client.request('$SRV.PING.catalog', '', { timeout: 5_000 });
    expect(ping.json()).toMatchObject({ name: 'catalog' });
    const answer = await client.request('keel.catalog.getProduct', json({ sku: 'y' }), { headers: natsHeaders({ 'Keel-Contract-Version': '3.0.0' }), timeout: 5_000 });
    expect(answer.json()).toEqual({ sku: 'y' });
    await orders.flush();
    expect(await stored()).toBe(2);
    const dropped = lines.filter((line) => line.level === 'warn' && line.message.startsWith('dropped requests whose reply subject is a reserved NATS subject'));
    expect(dropped).toHaveLength(1);
    expect(dropped[0]?.record).toMatchObject({ module: 'catalog', operation: 'getProduct', reply: purge });
  });

  it("nats - keel answers no call nor $SRV question on a reply subject in its own subject space: the client user cannot have catalog store a forged dead letter or a durable event of orders", async () => {
    // A module that subscribes to a durable event may make the dead-letter stream, and the publisher's.
    const subscriber = users.find((user) => user.publish.includes('$JS.API.STREAM.CREATE.keel__dead-letters')) as NatsUser;
    const orders = await as(subscriber);
    const jsm = await jetstreamManager(orders);
    await jsm.streams.add({ name: 'keel__dead-letters', subjects: ['keel._dead-letter.>'] });
    await jsm.streams.add({ name: 'keel_orders', subjects: ['keel.orders.durable.>'] }); // as the test above made it: the same configuration is no change
    const stored = async (): Promise<number[]> => [(await jsm.streams.info('keel__dead-letters')).state.messages, (await jsm.streams.info('keel_orders')).state.messages];
    const before = await stored();
    const client = await as(userOf(NATS_CLIENT_USER));
    for (const reply of ['keel._dead-letter.notifications.orders.orderPlaced', 'keel.orders.durable.orderPlaced']) {
      client.publish('$SRV.PING', '', { reply });
      client.publish('keel.catalog.getProduct', json({ sku: 'x' }), { reply, headers: natsHeaders({ 'Keel-Contract-Version': '3.0.0' }) });
    }
    // catalog's answers to the same questions from the client's inbox, after the four above on the same connections.
    const ping = await client.request('$SRV.PING.catalog', '', { timeout: 5_000 });
    expect(ping.json()).toMatchObject({ name: 'catalog' });
    const answer = await client.request('keel.catalog.getProduct', json({ sku: 'y' }), { headers: natsHeaders({ 'Keel-Contract-Version': '3.0.0' }), timeout: 5_000 });
    expect(answer.json()).toEqual({ sku: 'y' });
    await orders.flush();
    expect(await stored()).toEqual(before);
  });
});
