/**
 * The principal on the wire, sent by a plain NATS client: a `Keel-Principal` header that is not
 * JSON, or JSON the application's principal schema refuses, is answered UNAUTHENTICATED (401)
 * before any handler runs; on a durable event it is dead-lettered as INVALID_EVENT, never handled.
 * A well-formed one is taken as is: only processes the NATS permissions allow to publish on keel's
 * subjects can send one (docs/security.md, "Caller identity").
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { connect, type Msg, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, operation, silentLogger, type Kernel, type Transport } from 'keel';
import type { DeadLetter } from 'keel/transport';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';
import { natsHeaders } from './support/keel-headers.js';

const Principal = z.object({ sub: z.string().min(1), roles: z.array(z.string()) });

const badge = defineContract({
  name: 'badge',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ sub: z.string().nullable() }) }),
    enter: operation({ input: z.object({}), output: z.object({ entered: z.string() }), auth: 'required' }),
  },
  events: { swiped: event({ payload: z.object({ door: z.string() }), delivery: 'durable' }) },
});

const guard = defineContract({ name: 'guard', version: '1.0.0', operations: {} });

const handled: string[] = [];
const swipes: { door: string; sub: string | null }[] = [];

const badgeModule = defineModule({
  contract: badge,
  create: () => ({
    handlers: {
      whoami: (_input, context) => {
        handled.push('whoami');
        return { sub: context.principal?.sub ?? null };
      },
      enter: (_input, context) => ({ entered: context.principal?.sub ?? '' }),
    },
  }),
});

const guardModule = defineModule({
  contract: guard,
  subscribesTo: [badge],
  create: () => ({
    handlers: {},
    events: { badge: { swiped: ({ door }, context) => void swipes.push({ door, sub: context.principal?.sub ?? null }) } },
  }),
});

const encoder = new TextEncoder();

// The headers keel sends on every message: a message without them is refused before its principal is read.
function keelHeaders(extra: Record<string, string> = {}): MsgHdrs {
  return natsHeaders({ 'Keel-Contract-Version': '1.0.0', 'Keel-Correlation-Id': 'forged-1', 'Keel-Published-At': String(Date.now()), ...extra });
}

describe('nats - the principal header, sent by a plain NATS client', () => {
  let server: NatsServer;
  let transport: Transport;
  let kernel: Kernel;
  let nc: NatsConnection;
  const deadLetters: DeadLetter[] = [];

  const request = (operationName: string, principal?: string): Promise<Msg> =>
    nc.request(`keel.badge.${operationName}`, encoder.encode('{}'), {
      headers: keelHeaders(principal === undefined ? {} : { 'Keel-Principal': principal }),
      timeout: 5_000,
    });

  beforeAll(async () => {
    server = await startNatsServer();
    transport = await createNatsTransport({ servers: server.url, logger: silentLogger, redeliveryDelayMs: 50 });
    kernel = createKernel({
      modules: [badgeModule, guardModule],
      topology: { transport },
      principal: Principal,
      logger: silentLogger,
      onDeadLetter: (letter) => deadLetters.push(letter),
    });
    await kernel.start();
    nc = await connect({ servers: server.url });
  });

  afterAll(async () => {
    await nc?.close();
    await kernel?.stop();
    await transport?.close();
  });

  it('nats - refuses a request whose Keel-Principal is not JSON, or does not match the principal schema, with UNAUTHENTICATED 401; the handler never runs', async () => {
    for (const forged of ['not json', '{"sub":""}', '{"sub":"mallory","roles":"admin"}', `{"sub":"${'x'.repeat(9_000)}","roles":[]}`]) {
      const reply = await request('whoami', forged);
      expect(reply.headers?.get('Nats-Service-Error-Code'), forged.slice(0, 40)).toBe('401');
      expect(reply.json()).toMatchObject({ type: 'keel', code: 'UNAUTHENTICATED' });
    }
    // A later valid request is handled: had a forged one reached the handler, it would be listed first.
    expect((await request('whoami', '{"sub":"ada","roles":[]}')).json()).toEqual({ sub: 'ada' });
    expect(handled).toEqual(['whoami']);
  });

  it("nats - refuses a request without Keel-Principal to an operation whose auth is 'required' with UNAUTHENTICATED 401; serves one with a principal", async () => {
    const refused = await request('enter');
    expect(refused.headers?.get('Nats-Service-Error-Code')).toBe('401');
    expect(refused.json()).toMatchObject({ code: 'UNAUTHENTICATED' });
    expect((await request('enter', '{"sub":"ada","roles":[]}')).json()).toEqual({ entered: 'ada' });
  });

  it('nats - dead-letters a durable event whose Keel-Principal the schema refuses as INVALID_EVENT without handling it; hands a valid one to the handler', async () => {
    const js = jetstream(nc);
    const publish = (door: string, principal: string) =>
      js.publish('keel.badge.durable.swiped', encoder.encode(JSON.stringify({ door })), {
        headers: keelHeaders({ 'Keel-Event-Id': `swipe-${door}`, 'Keel-Principal': principal, 'Keel-Publisher': 'badge' }),
      });
    await publish('forged', '{"sub":"","roles":["admin"]}');
    await publish('garbled', '{not json');
    await publish('front', '{"sub":"ada","roles":[]}');
    await vi.waitFor(() => {
      expect(swipes).toEqual([{ door: 'front', sub: 'ada' }]);
      expect(deadLetters.map((letter) => [(letter.payload as { door?: string } | undefined)?.door, (letter.error as { code?: string }).code])).toEqual(
        expect.arrayContaining([
          ['forged', 'INVALID_EVENT'],
          [undefined, 'INVALID_EVENT'],
        ]),
      );
    }, { timeout: 10_000, interval: 20 });
    expect(swipes).toEqual([{ door: 'front', sub: 'ada' }]);
  });
});
