/**
 * The shop split per module, on PostgreSQL and NATS, under a bounded placeOrder load while
 * nats-server is killed for a few seconds and the orders process is killed with SIGKILL once,
 * then checked in the database for what issue 12 promises:
 *
 * - every placed order has exactly one customer notification and one stock commit;
 * - every order answered 200 is placed in the database;
 * - no payment is captured for an order that is not placed, once recovery has run;
 * - a retry with the same key charged once (each key's customer has at most one order and one charge).
 *
 * Used by test/shop-chaos.test.ts (part of `npm test`, a small run) and bench/data.ts (the figures in
 * docs/data.md). Traffic goes to loopback only; every process is stopped at the end.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { freePort } from '../../cli/nats-server.js';
import { createTestDatabase } from './databases.js';
import { startNatsServer } from './nats-server.js';
import { SHOP_AUTH_ENV, bearer } from './shop-auth.js';
import { startShopProcess, type ShopProcess } from './topologies.js';

/** How hard and how long. */
export interface ChaosOptions {
  /** Orders placed, each with its own idempotency key and customer. */
  readonly orders: number;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** How long nats-server stays down, in ms (killed once a third of the orders were sent). */
  readonly natsOutageMs: number;
  /** Kill the orders process with SIGKILL (once two thirds were sent), then start it again. */
  readonly killOrders: boolean;
  /** How long one order may keep being retried, in ms. */
  readonly retryForMs: number;
  /** Progress lines. */
  readonly log?: (line: string) => void;
}

/** What happened, and what the database says. */
export interface ChaosReport {
  readonly orders: number;
  readonly elapsedMs: number;
  /** Orders answered 200 per second, over the load (chaos included). */
  readonly placedPerSecond: number;
  /** Final answers by HTTP status (after retries). */
  readonly finalStatuses: Readonly<Record<string, number>>;
  /** Requests sent again with the same key after a 5xx, a 409 in-use or a network error. */
  readonly retries: number;
  /** Keys still not answered with a final status when their retry time ran out. */
  readonly gaveUp: number;
  /** Orders placed in the database. */
  readonly placed: number;
  /** Violations of each promise (order ids or customer ids): all empty when the shop kept them. */
  readonly violations: {
    readonly placedWithoutOneNotification: readonly string[];
    readonly placedWithoutOneStockCommit: readonly string[];
    readonly answered200NotPlaced: readonly string[];
    readonly capturedNotPlaced: readonly string[];
    readonly keyChargedMoreThanOnce: readonly string[];
    readonly unfinishedAfterRecovery: readonly string[];
  };
  /** When the chaos happened, ms after the load started. */
  readonly natsKilledAtMs: number | undefined;
  readonly ordersKilledAtMs: number | undefined;
  /** What the processes logged about the orders that broke a promise (to diagnose a failure). */
  readonly evidence: readonly string[];
}

const MODULES = ['catalog', 'inventory', 'payments', 'orders', 'notifications'] as const;
const SKU = 'CB-USB-C';

/** Runs the load and the chaos, waits for recovery, and reads the database. */
export async function runShopChaos(options: ChaosOptions): Promise<ChaosReport> {
  const log = options.log ?? (() => undefined);
  const nats = await startNatsServer();
  const database = await createTestDatabase();
  const prefix = `chaos${process.pid}`;
  const env = { DATABASE_URL: database.url, KEEL_DATA_DIR: '' };
  const processes = new Map<string, ShopProcess>();
  const ended: ShopProcess[] = [];
  const start = (module: string) =>
    startShopProcess({ name: module, modules: [module], natsUrl: nats.url, prefix, env: { ...env, KEEL_PROCESS_NAME: module } });
  try {
    // One at a time: the first creates the schemas' roles; five processes at once on 2 cores also time out.
    for (const module of MODULES) processes.set(module, await start(module));
    const port = await freePort();
    processes.set(
      'gateway',
      // Its gateway verifies the admin's token of the restock below (SHOP_AUTH_SECRET).
      await startShopProcess({ name: 'gateway', modules: ['none'], natsUrl: nats.url, prefix, env: { PORT: String(port), KEEL_PROCESS_NAME: 'gateway', ...SHOP_AUTH_ENV } }),
    );
    const base = `http://127.0.0.1:${port}`;
    await until(async () => (await fetch(`${base}/readyz`).catch(() => undefined))?.status === 200, 'the gateway to be ready');
    log(`shop up: ${[...processes.keys()].join(', ')}, gateway ${base}`);
    const restocked = await post(base, '/inventory/restock', { sku: SKU, quantity: options.orders * 2 + 10 }, await bearer());
    if (restocked.status !== 200) throw new Error(`restocking ${SKU} as an admin failed: ${restocked.status} ${JSON.stringify(restocked.body)}`);

    const statuses: Record<string, number> = {};
    const answered200 = new Set<string>();
    let retries = 0;
    let gaveUp = 0;
    let sent = 0;
    let natsKilledAtMs: number | undefined;
    let ordersKilledAtMs: number | undefined;
    const started = performance.now();
    const chaos: Promise<void>[] = [];

    const placeOne = async (index: number): Promise<void> => {
      const key = `chaos-key-${index}`;
      const body = { customerId: `chaos-customer-${index}`, lines: [{ sku: SKU, quantity: 1 }], card: { token: 'tok_visa' } };
      const giveUpAt = performance.now() + options.retryForMs;
      for (let attempt = 0; ; attempt += 1) {
        if (attempt > 0) retries += 1;
        const answer = await post(base, '/orders/placeOrder', body, { 'idempotency-key': key }).catch(() => undefined);
        const status = answer?.status;
        const transient = status === undefined || status >= 500 || (status === 409 && answer?.code === 'IDEMPOTENCY_KEY_IN_USE');
        if (!transient) {
          const label = status === 200 ? '200' : `${status} ${answer?.code ?? ''}`.trim();
          statuses[label] = (statuses[label] ?? 0) + 1;
          if (status === 200) answered200.add(String((answer?.body as { orderId?: unknown }).orderId));
          return;
        }
        if (performance.now() > giveUpAt) {
          gaveUp += 1;
          statuses[`gave up after ${status ?? 'no answer'}`] = (statuses[`gave up after ${status ?? 'no answer'}`] ?? 0) + 1;
          return;
        }
        await sleep(Math.min(200 * 2 ** attempt, 2_000));
      }
    };

    const worker = async (): Promise<void> => {
      while (sent < options.orders) {
        const index = sent++;
        if (index === Math.floor(options.orders / 3) && options.natsOutageMs > 0) {
          natsKilledAtMs = performance.now() - started;
          chaos.push(
            (async () => {
              log(`killing nats-server for ${options.natsOutageMs} ms`);
              await nats.kill();
              await sleep(options.natsOutageMs);
              await nats.start();
              log('nats-server back');
            })(),
          );
        }
        if (index === Math.floor((2 * options.orders) / 3) && options.killOrders) {
          ordersKilledAtMs = performance.now() - started;
          chaos.push(
            (async () => {
              log('killing the orders process (SIGKILL)');
              const killed = processes.get('orders');
              await killed?.stop('SIGKILL');
              if (killed !== undefined) ended.push(killed);
              processes.set('orders', await start('orders'));
              log('orders process back');
            })(),
          );
        }
        await placeOne(index);
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    await Promise.all(chaos);
    const elapsedMs = performance.now() - started;
    log(`load done in ${Math.round(elapsedMs)} ms: ${JSON.stringify(statuses)}, ${retries} retries`);

    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const unfinished = await settle(client, log);
      const violations = await check(client, answered200);
      const placed = Number((await client.query("select count(*)::int as n from orders.orders where status = 'placed'")).rows[0].n);
      const broken = new Set([...Object.values(violations).flat(), ...unfinished]);
      const jetStream = broken.size > 0 ? await jetStreamState(nats.url) : [];
      const evidence = [...ended, ...processes.values()].flatMap((child) =>
        child
          .output()
          .split('\n')
          .filter((line) => [...broken].some((id) => line.includes(id)) || /dead-letter|gave up|outbox relay/.test(line))
          .map((line) => `${child.name}: ${line.slice(0, 600)}`),
      ).concat(jetStream);
      return {
        orders: options.orders,
        elapsedMs,
        placedPerSecond: (answered200.size * 1000) / elapsedMs,
        finalStatuses: statuses,
        retries,
        gaveUp,
        placed,
        violations: { ...violations, unfinishedAfterRecovery: unfinished },
        natsKilledAtMs,
        ordersKilledAtMs,
        evidence,
      };
    } finally {
      await client.end();
    }
  } finally {
    await Promise.all([...processes.values()].map((child) => child.stop('SIGTERM', 10_000).catch(() => undefined)));
    await nats.stop();
    await database.drop().catch(() => undefined);
  }
}

/** Every stream's message counts and every consumer's delivery state, to tell where a lost event went. */
async function jetStreamState(url: string): Promise<string[]> {
  const { connect } = await import('nats');
  const nc = await connect({ servers: url });
  try {
    const jsm = await nc.jetstreamManager();
    const lines: string[] = [];
    for await (const stream of jsm.streams.list()) {
      lines.push(`stream ${stream.config.name}: ${stream.state.messages} messages, seq ${stream.state.first_seq}..${stream.state.last_seq}`);
      for await (const consumer of jsm.consumers.list(stream.config.name)) {
        lines.push(
          `  consumer ${consumer.name}: delivered ${consumer.delivered.stream_seq}, ack floor ${consumer.ack_floor.stream_seq}, ` +
            `pending ${consumer.num_pending}, ack pending ${consumer.num_ack_pending}, redelivered ${consumer.num_redelivered}`,
        );
      }
    }
    return lines;
  } finally {
    await nc.close();
  }
}

async function until(probe: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

interface Answer {
  readonly status: number;
  readonly body: unknown;
  readonly code: string | undefined;
}

async function post(base: string, path: string, body: unknown, headers: Readonly<Record<string, string>> = {}): Promise<Answer> {
  const response = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(20_000),
  });
  const parsed: unknown = await response.json().catch(() => undefined);
  return { status: response.status, body: parsed, code: (parsed as { code?: string } | undefined)?.code };
}

/**
 * Waits until recovery finished every order and every outbox is sent (at most two minutes):
 * returns the orders still unfinished then.
 */
async function settle(client: pg.Client, log: (line: string) => void): Promise<string[]> {
  const end = Date.now() + 120_000;
  for (;;) {
    const unfinished = (
      await client.query("select order_id from orders.orders where status in ('pending', 'compensating', 'cancelling') order by order_id")
    ).rows.map((row: { order_id: string }) => row.order_id);
    const unsent = Number(
      (
        await client.query(
          `select (select count(*) from orders.keel_outbox where sent_at is null)
                + (select count(*) from inventory.keel_outbox where sent_at is null)
                + (select count(*) from payments.keel_outbox where sent_at is null) as n`,
        )
      ).rows[0].n,
    );
    if (unfinished.length === 0 && unsent === 0) return [];
    if (Date.now() > end) return unfinished;
    log(`waiting for recovery: ${unfinished.length} unfinished orders, ${unsent} unsent events`);
    await sleep(2_000);
  }
}

/** The promises, read from the database as the modules left it. */
async function check(client: pg.Client, answered200: ReadonlySet<string>) {
  const ids = async (sql: string): Promise<string[]> => (await client.query(sql)).rows.map((row: { id: string }) => row.id);
  // Events are handled asynchronously: give the notifications and the stock commits time to land.
  const end = Date.now() + 60_000;
  let placedWithoutOneNotification: string[];
  let placedWithoutOneStockCommit: string[];
  for (;;) {
    placedWithoutOneNotification = await ids(`
      select o.order_id as id from orders.orders o
      left join notifications.notifications n on n.order_id = o.order_id and n.topic = 'order-placed'
      where o.status = 'placed' group by o.order_id having count(n.order_id) <> 1`);
    placedWithoutOneStockCommit = await ids(`
      select o.order_id as id from orders.orders o
      left join inventory.reservations r on r.order_id = o.order_id and r.status = 'committed'
      where o.status = 'placed' group by o.order_id having count(r.order_id) <> 1`);
    if ((placedWithoutOneNotification.length === 0 && placedWithoutOneStockCommit.length === 0) || Date.now() > end) break;
    await sleep(1_000);
  }
  const placed = new Set(await ids("select order_id as id from orders.orders where status = 'placed'"));
  const answered200NotPlaced = [...answered200].filter((orderId) => !placed.has(orderId));
  const capturedNotPlaced = await ids(`
    select p.order_id as id from payments.payments p
    left join orders.orders o on o.order_id = p.order_id
    where p.status = 'captured' and (o.order_id is null or o.status <> 'placed')`);
  const keyChargedMoreThanOnce = await ids(`
    select customer_id as id from payments.payments group by customer_id having count(*) > 1
    union
    select customer_id as id from orders.orders group by customer_id having count(*) > 1`);
  return { placedWithoutOneNotification, placedWithoutOneStockCommit, answered200NotPlaced, capturedNotPlaced, keyChargedMoreThanOnce };
}

/** The report as the lines of a Markdown section. */
export function chaosMarkdown(report: ChaosReport, options: ChaosOptions): string {
  const count = (list: readonly string[]) => (list.length === 0 ? '0 ✓' : `${list.length} ✗ (${list.slice(0, 5).join(', ')})`);
  const v = report.violations;
  return [
    `${report.orders} placeOrder requests, ${options.concurrency} in flight, each with its own Idempotency-Key and customer, retried with the`,
    `same key after a 5xx, an IDEMPOTENCY_KEY_IN_USE or no answer (for at most ${options.retryForMs / 1000} s). nats-server killed for`,
    `${options.natsOutageMs / 1000} s at ${Math.round((report.natsKilledAtMs ?? 0) / 1000)} s; the orders process killed with SIGKILL at ${Math.round((report.ordersKilledAtMs ?? 0) / 1000)} s and started again.`,
    '',
    '| promise | violations |',
    '|---|---|',
    `| every placed order has exactly one customer notification | ${count(v.placedWithoutOneNotification)} |`,
    `| every placed order has exactly one stock commit | ${count(v.placedWithoutOneStockCommit)} |`,
    `| every order answered 200 is placed in the database | ${count(v.answered200NotPlaced)} |`,
    `| no payment captured for an order that is not placed, once recovery ran | ${count(v.capturedNotPlaced)} |`,
    `| a retried key charged once (one order, one payment per key's customer) | ${count(v.keyChargedMoreThanOnce)} |`,
    `| no order left unfinished after recovery | ${count(v.unfinishedAfterRecovery)} |`,
    '',
    `Final answers: ${Object.entries(report.finalStatuses)
      .map(([status, n]) => `${n} × ${status}`)
      .join(', ')}; ${report.retries} retries; ${report.placed} orders placed; ` +
      `${report.placedPerSecond.toFixed(1)} orders/s answered 200 over ${(report.elapsedMs / 1000).toFixed(1)} s, chaos included.`,
  ].join('\n');
}
