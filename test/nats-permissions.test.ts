import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, errors as natsErrors, type NatsConnection } from '@nats-io/transport-node';
import { createKernel, silentLogger } from 'keel';
import type { payments } from '../modules/payments/contract.js';
import { createNatsTransport } from 'keel/nats';
import { foreignServices } from './support/foreign-services.js';
import { natsAuthorization, natsPasswordHash, natsUserEnvironment, natsUsers, type NatsUser } from '../cli/deploy/nats-config.js';
import { NATS_CLIENT_USER, natsPermissions } from '../cli/deploy/nats-permissions.js';
import { parseTopology } from '../cli/topology.js';
import { modules } from '../modules/index.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { describeShopSuite } from './support/shop-suite.js';
import { ONE_PROCESS_PER_MODULE, bootShop } from './support/topologies.js';

const PREFIX = 'keel.locked';
const names = modules.map((module) => module.name as string);
/** The shop, one process per module, as its topology file says, under its own subject prefix. */
const perModule = parseTopology(
  { nats: { prefix: PREFIX }, processes: Object.fromEntries(names.map((name) => [name, { modules: [name] }])) },
  names,
  'per-module',
);
const users = natsUsers(perModule, modules);
const userOf = (name: string): NatsUser => users.find((user) => user.user === name) as NatsUser;
/** orders' permissions without its event subjects: its stream's API, but no publish of its events. */
const muted: NatsUser = {
  ...userOf('orders'),
  user: 'orders-muted',
  inboxPrefix: '_INBOX_keel_locked.orders-muted',
  publish: userOf('orders').publish.filter((subject) => !subject.startsWith(`${PREFIX}.orders.`)),
  subscribe: userOf('orders').subscribe.map((subject) => subject.replace('_INBOX_keel_locked.orders.', '_INBOX_keel_locked.orders-muted.')),
};

/** The storefront group of the shop split as topologies/split.ts splits it: catalog and orders on one connection. */
const storefront: NatsUser = natsUsers(
  parseTopology(
    {
      nats: { prefix: PREFIX },
      processes: { storefront: { modules: ['catalog', 'orders'] }, rest: { modules: names.filter((name) => name !== 'catalog' && name !== 'orders') } },
    },
    names,
    'split',
  ),
  modules,
).find((user) => user.user === 'storefront') as NatsUser;

describe('nats permissions - derived from the module graph', () => {
  const permissions = natsPermissions(perModule, modules);
  const of = (group: string) => permissions.find((user) => user.user === group)!;

  it('nats permissions - orders may call the operations of catalog, inventory and payments and no other module', () => {
    const calls = of('orders').publish.filter((subject) => /^keel\.locked\.[a-z-]+\.[a-zA-Z]+$/.test(subject));
    expect(new Set(calls.map((subject) => subject.split('.')[2]))).toEqual(new Set(['catalog', 'inventory', 'payments']));
    expect(calls).toContain('keel.locked.payments.charge');
    expect(of('orders').publish).toContain('$SRV.INFO.payments');
    // It cancels calls to those modules only.
    expect(of('orders').publish.filter((subject) => subject.includes('._cancel.')).sort()).toEqual([
      'keel.locked._cancel.catalog',
      'keel.locked._cancel.inventory',
      'keel.locked._cancel.payments',
    ]);
    expect(of('notifications').publish.some((subject) => subject.startsWith('keel.locked.payments.'))).toBe(false);
  });

  it('nats permissions - a group serves only its own operation subjects and its $SRV discovery, and reads only its own inbox', () => {
    const subscribe = of('payments').subscribe;
    expect(subscribe).toContain('keel.locked.payments.refund');
    expect(subscribe).toContain('_INBOX_keel_locked.payments.>');
    expect(subscribe).toContain('$SRV.PING.payments.*');
    expect(subscribe.filter((subject) => subject.includes('._cancel.'))).toEqual(['keel.locked._cancel.payments']);
    expect(subscribe.filter((subject) => subject.startsWith('_INBOX'))).toEqual(['_INBOX_keel_locked.payments.>']);
    expect(subscribe.some((subject) => subject === '>' || subject.endsWith('.>') && !subject.startsWith('_INBOX_'))).toBe(false);
    expect(subscribe.some((subject) => subject.startsWith('keel.locked.orders.'))).toBe(false);
  });

  it('nats permissions - a group publishes its own events only, and the JetStream API of its own stream and consumers only', () => {
    const orders = of('orders').publish;
    expect(orders).toEqual(expect.arrayContaining(['keel.locked.orders.durable.orderPlaced', '$JS.API.STREAM.CREATE.keel_locked_orders', '$JS.API.INFO']));
    expect(orders.some((subject) => subject.includes('payments.durable') || subject.includes('.events.'))).toBe(false);
    const notifications = of('notifications').publish;
    expect(notifications).toEqual(
      expect.arrayContaining([
        '$JS.API.CONSUMER.MSG.NEXT.keel_locked_orders.notifications__orderPlaced',
        '$JS.ACK.keel_locked_payments.notifications__paymentRefunded.>',
        'keel.locked._dead-letter.notifications.orders.orderPlaced',
      ]),
    );
    expect(notifications.some((subject) => subject.includes('inventory__'))).toBe(false);
    expect(notifications).not.toContain('$JS.API.STREAM.UPDATE.keel_locked_orders');
    // Notification events of a subscribed contract are subscribed to on core NATS.
    expect(of('notifications').subscribe).toContain('keel.locked.payments.events.paymentCaptured');
  });

  it('nats permissions - a gateway exposing every operation over HTTP may call every operation of the other modules but the internal ones, which its hosted modules\' dependencies still reach', () => {
    const gatewayed = parseTopology({ processes: { web: { modules: ['catalog'], http: 8080 }, rest: { modules: ['*'] } } }, names, 'gateway');
    const web = natsPermissions(gatewayed, modules).find((user) => user.user === 'web')!;
    expect(web.publish).toEqual(expect.arrayContaining(['keel.orders.placeOrder', 'keel.payments.getPayment', 'keel.notifications.listNotifications']));
    expect(web.publish).not.toContain('keel.catalog.getProduct');
    // The saga's steps are internal: the gateway never sends them, so its credentials cannot either.
    for (const subject of ['keel.payments.refund', 'keel.payments.charge', 'keel.inventory.reserve']) expect(web.publish).not.toContain(subject);
    // A gateway group hosting orders reaches them as orders' dependencies.
    const storefrontGateway = parseTopology({ processes: { web: { modules: ['orders'], http: 8080 }, rest: { modules: ['*'] } } }, names, 'gateway');
    expect(natsPermissions(storefrontGateway, modules).find((user) => user.user === 'web')!.publish).toEqual(
      expect.arrayContaining(['keel.payments.charge', 'keel.payments.refund', 'keel.inventory.reserve']),
    );
  });
});

describe('nats permissions - enforced by a real nats-server with the generated configuration', () => {
  let server: NatsServer;
  const connections: NatsConnection[] = [];
  /** A raw NATS client (not keel) as `user`, with its inbox prefix, collecting the errors the server reports. */
  const as = async (user: NatsUser) => {
    const nc = await connect({ servers: server.url, user: user.user, pass: user.password, inboxPrefix: user.inboxPrefix, reconnect: false });
    connections.push(nc);
    const errors: string[] = [];
    void (async () => {
      for await (const status of nc.status()) if (status.type === 'error') errors.push(status.error instanceof natsErrors.PermissionViolationError ? 'PERMISSIONS_VIOLATION' : String(status.error));
    })();
    return { nc, errors };
  };

  beforeAll(async () => {
    server = await startNatsServer({ extraConfig: natsAuthorization([...users, muted, storefront]) });
  });

  afterAll(async () => {
    for (const nc of connections) await nc.close();
  });

  it('nats permissions - an anonymous connection is refused', async () => {
    const error = await connect({ servers: server.url, reconnect: false }).then(
      (nc) => nc.close().then(() => 'connected'),
      (reason: unknown) => String(reason),
    );
    expect(error).toMatch(/Authorization Violation/i);
  });

  /** What the server answers a subscription to `subject` on `nc`: the error that ends it, or what came instead. */
  const subscription = async (nc: NatsConnection, subject: string): Promise<string> => {
    const sub = nc.subscribe(subject);
    try {
      for await (const _ of sub) return 'a message arrived';
      return 'closed without error';
    } catch (error) {
      return String(error);
    }
  };

  it('nats permissions - a group cannot subscribe to ">", to "_INBOX.>" or to another group\'s inbox', async () => {
    const { nc } = await as(userOf('catalog'));
    for (const subject of ['>', '_INBOX.>', `${userOf('orders').inboxPrefix}.>`]) {
      expect(await subscription(nc, subject), subject).toContain(`Permissions Violation for Subscription to "${subject}"`);
    }
  });

  /**
   * Publishes `subject` as `user` on a connection of its own that does nothing else, and resolves
   * with the status the server reported for it (nats.js reports the code only, hence one
   * connection per publish).
   */
  const publishAs = async (user: NatsUser, subject: string): Promise<string> => {
    const { nc, errors } = await as(user);
    nc.publish(subject, '{}', { reply: `${user.inboxPrefix}.x` });
    await nc.flush();
    // A PING answered after the publish: the server handled the publish, and any -ERR for it came first.
    await nc.flush();
    return errors.join(' | ') || 'accepted';
  };

  it('nats permissions - notifications cannot call payments.refund, which it does not depend on, while orders can', async () => {
    const payments = await as(userOf('payments'));
    const received: string[] = [];
    payments.nc.subscribe(`${PREFIX}.payments.refund`, { callback: (_error, msg) => void received.push(msg.reply ?? '') });
    await payments.nc.flush();
    expect(await publishAs(userOf('notifications'), `${PREFIX}.payments.refund`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('orders'), `${PREFIX}.payments.refund`)).toBe('accepted');
    await payments.nc.flush();
    // Only orders' request reached payments: it was sent after the refused one.
    expect(received).toEqual([`${userOf('orders').inboxPrefix}.x`]);
  });

  it('nats permissions - a caller may cancel calls to the modules it depends on only, and only the callee\'s group hears the cancel', async () => {
    const payments = await as(userOf('payments'));
    const heard: string[] = [];
    payments.nc.subscribe(`${PREFIX}._cancel.payments`, { callback: (_error, msg) => void heard.push(msg.string()) });
    await payments.nc.flush();
    expect(await publishAs(userOf('notifications'), `${PREFIX}._cancel.payments`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('orders'), `${PREFIX}._cancel.payments`)).toBe('accepted');
    await payments.nc.flush();
    expect(heard).toHaveLength(1);
    // Another group cannot listen to payments' cancels.
    const { nc } = await as(userOf('orders'));
    expect(await subscription(nc, `${PREFIX}._cancel.payments`)).toContain(`Permissions Violation for Subscription to "${PREFIX}._cancel.payments"`);
  });

  it('nats permissions - orders cannot publish another module\'s events, notification or durable, but publishes its own', async () => {
    expect(await publishAs(userOf('orders'), `${PREFIX}.payments.durable.paymentRefunded`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('orders'), `${PREFIX}.catalog.events.productAdded`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('inventory'), `${PREFIX}.orders.durable.orderCancelled`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('orders'), `${PREFIX}.orders.durable.orderCancelled`)).toBe('accepted');
  });

  it('nats permissions - a group cannot touch the JetStream API of another module\'s stream or consumers', async () => {
    expect(await publishAs(userOf('catalog'), '$JS.API.STREAM.DELETE.keel_locked_orders')).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('orders'), '$JS.API.STREAM.PURGE.keel_locked_orders')).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf('notifications'), '$JS.API.CONSUMER.MSG.NEXT.keel_locked_orders.inventory__orderPlaced')).toBe(
      'PERMISSIONS_VIOLATION',
    );
    expect(await publishAs(userOf('notifications'), '$JS.API.CONSUMER.INFO.keel_locked_orders.notifications__orderPlaced')).toBe('accepted');
    // Its own consumer, filtered to its event only: pointed at every event of orders, it is refused.
    expect(await publishAs(userOf('notifications'), '$JS.API.CONSUMER.CREATE.keel_locked_orders.notifications__orderPlaced.keel.locked.orders.durable.>')).toBe(
      'PERMISSIONS_VIOLATION',
    );
    expect(await publishAs(userOf('notifications'), '$JS.API.CONSUMER.DURABLE.CREATE.keel_locked_orders.notifications__orderPlaced')).toBe(
      'PERMISSIONS_VIOLATION',
    );
    expect(await publishAs(userOf('notifications'), '$JS.API.CONSUMER.CREATE.keel_locked_orders.notifications__orderPlaced.keel.locked.orders.durable.orderPlaced')).toBe(
      'accepted',
    );
  });

  it('nats permissions - $SRV discovery works with the inbox prefixes: the client pings and asks payments, which answers', async () => {
    const payments = await as(userOf('payments'));
    const service = await foreignServices(payments.nc).add({ name: 'payments', version: '1.0.0' });
    const client = await as(userOf(NATS_CLIENT_USER));
    const pings = [];
    for await (const ping of await foreignServices(client.nc).client({ strategy: 'timer', maxWait: 1_000 }).ping('payments')) pings.push(ping);
    expect(pings.map((ping) => ping.name)).toEqual(['payments']);
    expect(client.errors).toEqual([]);
    await service.stop();
  });

  it('nats permissions - a group hosting two modules answers a $SRV question to all for each of them (keel status sees both)', async () => {
    expect(storefront.responses).toBe(2);
    const group = await as(storefront);
    const catalogService = await foreignServices(group.nc).add({ name: 'catalog', version: '1.0.0' });
    const ordersService = await foreignServices(group.nc).add({ name: 'orders', version: '1.0.0' });
    const client = await as(userOf(NATS_CLIENT_USER));
    const pings = [];
    for await (const ping of await foreignServices(client.nc).client({ strategy: 'timer', maxWait: 1_000 }).ping()) pings.push(ping);
    // With one reply per request (allow_responses: true), the second service's answer was refused.
    expect(pings.map((ping) => ping.name).sort()).toEqual(['catalog', 'orders']);
    expect(group.errors).toEqual([]);
    await catalogService.stop();
    await ordersService.stop();
  });

  it('nats permissions - the client user calls operations but cannot serve one nor publish an event', async () => {
    const { nc } = await as(userOf(NATS_CLIENT_USER));
    const sub = nc.subscribe(`${PREFIX}.payments.refund`);
    await expect(
      (async () => {
        for await (const _ of sub) break;
      })(),
    ).rejects.toThrow(/Permissions Violation for Subscription/);
    expect(await publishAs(userOf(NATS_CLIENT_USER), `${PREFIX}.orders.durable.orderCancelled`)).toBe('PERMISSIONS_VIOLATION');
    expect(await publishAs(userOf(NATS_CLIENT_USER), `${PREFIX}.payments.refund`)).toBe('accepted');
  });
  it('nats permissions - a durable event its user may not publish fails at once, UNAVAILABLE naming the violation, not TIMEOUT after retries', { timeout: 60_000 }, async () => {
    const transport = await createNatsTransport({
      servers: server.url,
      prefix: PREFIX,
      user: muted.user,
      password: muted.password,
      inboxPrefix: muted.inboxPrefix,
      logger: silentLogger,
      jetStreamTimeoutMs: 2_000,
      publishAttempts: 9,
      publishRetryDelayMs: 5_000,
    });
    try {
      const version = modules.find((module) => module.name === 'orders')!.contract.version;
      const started = performance.now();
      const failure = await transport
        .publish({
          contract: 'orders',
          version,
          event: 'orderCancelled',
          delivery: 'durable',
          payload: {},
          metadata: { id: 'muted-1', correlationId: 'muted-1', traceparent: undefined, publisher: 'orders', publishedAt: Date.now() },
        })
        .then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/refused its publish.*Permissions Violation/) });
      // One attempt, refused: not the retries with their delays (eight, each capped at 3 s: 12 s at least before giving up).
      expect(performance.now() - started).toBeLessThan(10_000);
    } finally {
      await transport.close();
    }
  });

  it('nats permissions - a call its user may not publish fails INVALID_CONFIG, "was not sent", naming the subject, once: not TIMEOUT at its deadline, not retried', async () => {
    const notifications = userOf('notifications');
    const transport = await createNatsTransport({
      servers: server.url,
      prefix: PREFIX,
      user: notifications.user,
      password: notifications.password,
      inboxPrefix: notifications.inboxPrefix,
      logger: silentLogger,
    });
    const paymentsContract = modules.find((module) => module.name === 'payments')!.contract as typeof payments;
    const kernel = createKernel({ contracts: [paymentsContract], topology: { host: [], transport }, logger: silentLogger });
    const retried: unknown[] = [];
    kernel.observe({ callRetried: (record) => void retried.push(record) });
    await kernel.start();
    try {
      const failure = await kernel
        .client(paymentsContract)
        .listPayments({ customerId: 'c-42' }, { timeoutMs: 5_000 })
        .then(() => undefined, (error: unknown) => error);
      expect(failure).toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringMatching(/^payments\.listPayments was not sent: NATS refused this process's user permission to publish to keel\.locked\.payments\.listPayments; nothing ran/),
      });
      // Sent again it would be refused again: the kernel's default retry leaves it.
      expect(retried).toEqual([]);
    } finally {
      await kernel.stop();
      await transport.close();
    }
  });

  it('nats permissions - a transport whose user may not subscribe to its reply subject is refused at its start, INVALID_CONFIG naming KEEL_NATS_INBOX_PREFIX', async () => {
    const notifications = userOf('notifications');
    const refused = await createNatsTransport({ servers: server.url, prefix: PREFIX, user: notifications.user, password: notifications.password, logger: silentLogger }).then(
      async (transport) => {
        await transport.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringMatching(/^NATS refused this process's user permission to subscribe to its reply subject _INBOX\.\S+, so no call it makes could get an answer\. Set KEEL_NATS_INBOX_PREFIX/),
    });
  });

  it('nats permissions - the server logs each refusal (what the shop check below relies on)', () => {
    expect(server.output()).toMatch(/Publish Violation|Permissions Violation for Publish/);
    expect(server.output()).toMatch(/Subscription Violation|Permissions Violation for Subscription/);
  });
});

/** The server the shop suite runs on, for the check after it. */
let lockedShopServer: NatsServer | undefined;

describe('nats permissions - the shop, one process per module, under the generated permissions', () => {
  const environment = (name: string): Record<string, string> => natsUserEnvironment(userOf(name));
  describeShopSuite('one process per module over a locked-down NATS, on postgres', async () => {
    // As keel deploy writes it: bcrypt hashes in the server's configuration, each process with its own password.
    lockedShopServer = await startNatsServer({ extraConfig: natsAuthorization(users, { hashPasswords: true }) });
    return bootShop(ONE_PROCESS_PER_MODULE, lockedShopServer.url, PREFIX, 'postgres', {
      processEnv: environment,
      localEnv: environment(NATS_CLIENT_USER),
    });
  });
});

describe('nats permissions - a configuration holding bcrypt hashes of the passwords (keel deploy\'s)', () => {
  let hashed: NatsServer;
  const block = natsAuthorization(users, { hashPasswords: true });
  beforeAll(async () => {
    hashed = await startNatsServer({ extraConfig: block });
  });
  afterAll(async () => {
    await hashed?.stop();
  });

  it('nats permissions - holds no password, and nats-server lets a user in with its password and refuses a wrong one', async () => {
    for (const user of users) expect(block).not.toContain(user.password);
    expect(block).toMatch(/password: "\$2b\$11\$[./A-Za-z0-9]{53}"/);
    const catalog = userOf('catalog');
    const nc = await connect({ servers: hashed.url, user: catalog.user, pass: catalog.password, inboxPrefix: catalog.inboxPrefix, reconnect: false });
    await nc.flush();
    await nc.close();
    const refused = await connect({ servers: hashed.url, user: catalog.user, pass: `${catalog.password}x`, reconnect: false }).then(
      (connection) => connection.close().then(() => 'connected'),
      (reason: unknown) => String(reason),
    );
    expect(refused).toMatch(/Authorization Violation/i);
  });

  it("nats permissions - a hash is the same for the same user and password (a redeploy writes the same file), another for another user, and a password over bcrypt's 72 bytes is refused", () => {
    const password = userOf('catalog').password;
    expect(natsPasswordHash('catalog', password)).toBe(natsPasswordHash('catalog', password));
    expect(natsPasswordHash('orders', password)).not.toBe(natsPasswordHash('catalog', password));
    expect(natsPasswordHash('catalog', 'x'.repeat(72))).toMatch(/^\$2b\$11\$/);
    // 37 two-byte characters: 74 bytes, of which bcrypt would check only the first 72.
    expect(() => natsPasswordHash('catalog', 'é'.repeat(37))).toThrow(/"catalog" is 74 bytes/);
  });
});

describe('nats permissions - nothing the shop does is refused', () => {
  it('nats permissions - the server logged no permission violation while the shop suite ran (every subject it uses is allowed)', () => {
    // The shop suite above ran first: the server's log holds a line for each refused publish or subscription.
    expect(lockedShopServer?.output()).toBeDefined();
    expect(lockedShopServer?.output()).not.toMatch(/Violation/i);
  });
});
