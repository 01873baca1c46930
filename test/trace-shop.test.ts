/**
 * One placeOrder through the HTTP gateway is one trace, in one process and with every module in
 * its own process over NATS: the shop runs as in production (`app/main.ts`), exporting with the
 * OTel SDK that `OTEL_EXPORTER_OTLP_ENDPOINT` switches on, to a real OTLP/HTTP receiver (JSON
 * protocol). The trace's tree: gateway → orders → catalog, inventory and payments; orderPlaced →
 * its inventory and notifications consumers. The processes' log lines carry the trace id.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createServer } from 'node:net';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { startOtlpReceiver, treeOf, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { startShopProcess, type ShopProcess } from './support/topologies.js';

const MODULES = ['catalog', 'inventory', 'payments', 'orders', 'notifications'];

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

interface Placement {
  readonly name: string;
  /** Child processes: the modules of each; the first serves HTTP. */
  readonly processes: readonly (readonly string[])[];
}

const PLACEMENTS: readonly Placement[] = [
  { name: 'in one process', processes: [MODULES] },
  { name: 'with every module in its own process over NATS', processes: [['orders'], ['catalog'], ['inventory'], ['payments'], ['notifications']] },
];

/** The one span of `kind` named `name` in `spans`, with a readable failure listing the trace. */
function one(spans: readonly ReceivedSpan[], traceId: string, name: string, kind: ReceivedSpan['kind'], extra: (span: ReceivedSpan) => boolean = () => true): ReceivedSpan {
  const found = spans.filter((span) => span.traceId === traceId && span.name === name && span.kind === kind && extra(span));
  expect(found.length, `one ${kind} span "${name}" in the trace:\n${treeOf(spans, traceId)}`).toBe(1);
  return found[0] as ReceivedSpan;
}

for (const placement of PLACEMENTS) {
  describe(`tracing - one placeOrder through the HTTP gateway ${placement.name}`, () => {
    let receiver: OtlpReceiver;
    let nats: NatsServer | undefined;
    const processes: ShopProcess[] = [];
    let base = '';
    const split = placement.processes.length > 1;

    beforeAll(async () => {
      receiver = await startOtlpReceiver();
      if (split) nats = await startNatsServer();
      // The HTTP process last: the others are serving by the time it takes requests.
      const order = [...placement.processes.slice(1), placement.processes[0] as readonly string[]];
      for (const modules of order) {
        const http = modules === placement.processes[0];
        // Its port picked just before it starts, not before the others: another listener on the box could take it meanwhile.
        const port = http ? await freePort() : 0;
        if (http) base = `http://127.0.0.1:${port}`;
        processes.push(
          await startShopProcess({
            name: modules.join('+'),
            modules,
            natsUrl: nats?.url ?? '',
            prefix: 'keel.traced',
            env: {
              KEEL_HTTP_PORT: http ? String(port) : 'off',
              OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
              OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
              OTEL_BSP_SCHEDULE_DELAY: '100',
              KEEL_LOG_FORMAT: 'json',
              ...(split ? {} : { KEEL_NATS_PREFIX: '' }),
            },
          }),
        );
      }
      // The kernel starts before the gateway listens: wait until it answers.
      await vi.waitFor(async () => expect((await fetch(`${base}/readyz`)).status).toBe(200), { timeout: 30_000, interval: 100 });
    }, 180_000);

    afterAll(async () => {
      for (const child of processes.reverse()) await child.stop('SIGTERM');
      await nats?.stop();
      await receiver?.close();
    });

    it('makes one trace: POST /orders/placeOrder → orders → catalog, inventory, payments; create orders.orderPlaced → its inventory and notifications consumers; logs carry its trace id', async () => {
      const answer = await fetch(`${base}/orders/placeOrder`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ customerId: 'c-traced', lines: [{ sku: 'KB-001', quantity: 1 }], card: { token: 'tok_visa' } }),
      });
      expect(answer.status, await answer.clone().text()).toBe(200);

      const isGateway = (span: ReceivedSpan): boolean => span.kind === 'server' && span.name === 'POST /orders/placeOrder';
      const spans = await receiver.waitFor((received) => {
        const gateway = received.find(isGateway);
        if (gateway === undefined) return false;
        const consumers = received.filter((span) => span.traceId === gateway.traceId && span.name === 'process orders.orderPlaced');
        return consumers.length >= 2;
      }, 30_000);
      const gateway = spans.find(isGateway) as ReceivedSpan;
      const traceId = gateway.traceId;
      const tree = treeOf(spans, traceId);
      expect(gateway.parentSpanId, tree).toBeUndefined();
      expect(gateway.attributes).toMatchObject({ 'http.request.method': 'POST', 'http.route': '/orders/placeOrder', 'http.response.status_code': 200 });

      const call = one(spans, traceId, 'orders/placeOrder', 'client');
      expect(call.parentSpanId, tree).toBe(gateway.spanId);
      const served = one(spans, traceId, 'orders/placeOrder', 'server');
      expect(served.parentSpanId, tree).toBe(call.spanId);
      expect(served.attributes).toMatchObject({ 'rpc.system.name': 'keel', 'rpc.method': 'orders/placeOrder', 'rpc.status_code': 'ok' });

      for (const [contract, operation] of [['catalog', 'getProduct'], ['inventory', 'reserve'], ['payments', 'charge']] as const) {
        const nested = one(spans, traceId, `${contract}/${operation}`, 'client');
        expect(nested.parentSpanId, tree).toBe(served.spanId);
        expect(nested.attributes['keel.caller']).toBe('orders');
        // catalog.getProduct is hedged: on a slow box a second attempt may go out, a second server span under the one client span.
        const callees = spans.filter((span) => span.traceId === traceId && span.name === `${contract}/${operation}` && span.kind === 'server');
        expect(callees.length, tree).toBeGreaterThanOrEqual(1);
        expect(callees.length, tree).toBe(1 + nested.events.filter((event) => event.name === 'hedge' || event.name === 'retry').length);
        for (const callee of callees) {
          expect(callee.parentSpanId, tree).toBe(nested.spanId);
          if (split) expect(callee.serviceName, tree).toBe(contract);
        }
      }

      const created = one(spans, traceId, 'create orders.orderPlaced', 'producer');
      expect(created.parentSpanId, tree).toBe(served.spanId);
      for (const subscriber of ['inventory', 'notifications']) {
        const consumed = one(spans, traceId, 'process orders.orderPlaced', 'consumer', (span) => span.attributes['messaging.consumer.group.name'] === subscriber);
        expect(consumed.parentSpanId, tree).toBe(created.spanId);
        if (split) expect(consumed.serviceName, tree).toBe(subscriber);
      }
      if (split) expect(served.serviceName).toBe('orders');

      // The outbox relay sent the event later, in a trace of its own linked to the span that wrote it.
      const relayed = await receiver.waitFor((received) => received.some((span) => span.name === 'send orders.orderPlaced' && span.links.some((link) => link.spanId === created.spanId)), 30_000);
      const send = relayed.find((span) => span.name === 'send orders.orderPlaced' && span.links.some((link) => link.spanId === created.spanId));
      expect(send?.traceId).not.toBe(traceId);
      // It carries the request's correlation id, as the span that wrote the event does.
      expect(created.attributes['messaging.message.conversation_id']).toEqual(expect.any(String));
      expect(send?.attributes['messaging.message.conversation_id']).toBe(created.attributes['messaging.message.conversation_id']);

      // The notifications handler's "e-mail sent" line carries the trace and its consumer span.
      const notified = one(spans, traceId, 'process orders.orderPlaced', 'consumer', (span) => span.attributes['messaging.consumer.group.name'] === 'notifications');
      const lines = processes.flatMap((child) => child.output().split('\n')).filter((line) => line.startsWith('{'));
      const sent = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line['msg'] === 'e-mail sent' && line['trace_id'] === traceId);
      expect(sent, `an "e-mail sent" line with trace_id ${traceId}`).toMatchObject({ span_id: notified.spanId, module: 'notifications', event: 'orders.orderPlaced' });
    });
  });
}
