/**
 * An operation its contract declares `internal`: other modules call it, in one process and over
 * NATS, and the HTTP gateway does not serve it. A request for it is a 404 that says so, the
 * OpenAPI document leaves it out, `getOperations` may not name it, and the HTTP client's type has
 * no method for it (a JavaScript caller's call is refused without a request).
 */
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Client, type Kernel, type Transport } from 'keel';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { createHttpClient, type HttpClient } from 'keel/http-client';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const stock = defineContract({
  name: 'stock',
  version: '1.0.0',
  operations: {
    level: operation({ input: z.object({ sku: z.string() }), output: z.object({ units: z.number() }), idempotent: true }),
    reserve: operation({ input: z.object({ sku: z.string(), units: z.number() }), output: z.object({ reserved: z.number() }), internal: true }),
  },
});
const till = defineContract({
  name: 'till',
  version: '1.0.0',
  operations: { sell: operation({ input: z.object({ sku: z.string() }), output: z.object({ reserved: z.number() }) }) },
});

const modules = [
  defineModule({ contract: stock, create: () => ({ handlers: { level: () => ({ units: 9 }), reserve: ({ units }) => ({ reserved: units }) } }) }),
  defineModule({
    contract: till,
    dependsOn: [stock],
    create: ({ get }) => {
      const stockClient = get(stock);
      return { handlers: { sell: ({ sku }) => stockClient.reserve({ sku, units: 1 }) } };
    },
  }),
];

describe('http - an internal operation', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let url: string;

  beforeAll(async () => {
    kernel = createKernel({ modules, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, stopKernelOnClose: false });
    url = await gateway.listen();
  });
  afterAll(async () => {
    await gateway?.close();
    await kernel?.stop();
  });

  it('http - is not served: a POST is a 404 naming it internal, and the module\'s other operations are served', async () => {
    const refused = await fetch(`${url}/stock/reserve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sku":"a","units":5}' });
    expect(refused.status).toBe(404);
    expect(refused.headers.get('allow')).toBeNull();
    expect(await refused.json()).toMatchObject({
      code: 'ROUTE_NOT_FOUND',
      detail: 'No route POST /stock/reserve: stock.reserve is internal (its contract says so): other modules call it, the HTTP gateway does not serve it.',
    });
    const unknown = await fetch(`${url}/stock/nothing`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(((await unknown.json()) as { detail: string }).detail).toBe('Module "stock" has no operation "nothing"; its operations are level (POST /stock/<operation>).');
    const level = await fetch(`${url}/stock/level`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sku":"a"}' });
    expect(await level.json()).toEqual({ units: 9 });
  });

  it('http - a module calls it through the gateway\'s request: till.sell reserves through stock.reserve', async () => {
    const sold = await fetch(`${url}/till/sell`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sku":"a"}' });
    expect(await sold.json()).toEqual({ reserved: 1 });
  });

  it('http - the OpenAPI document leaves it out, and getOperations may not name it', async () => {
    expect(Object.keys(gateway.openapi.paths).sort()).toEqual(['/stock/level', '/till/sell']);
    expect(JSON.stringify(gateway.openapi)).not.toContain('stock.reserve');
    const refused = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, getOperations: ['stock.reserve'] }).then(
      async (other) => {
        await other.close();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(isKeelError(refused, 'INVALID_CONFIG')).toBe(true);
    expect((refused as Error).message).toContain('getOperations names "stock.reserve", which its contract declares internal (the gateway does not serve it)');
  });

  it('http - the HTTP client refuses it with UNKNOWN_OPERATION, saying why, without a request', async () => {
    let requests = 0;
    const client = createHttpClient(stock, {
      baseUrl: url,
      fetch: (input, init) => {
        requests += 1;
        return fetch(input, init);
      },
    });
    // @ts-expect-error -- the client's type has no method for an internal operation; the call below is a plain JavaScript caller's
    const refused = await client.reserve({ sku: 'a', units: 1 }).catch((error: unknown) => error);
    expect(isKeelError(refused, 'UNKNOWN_OPERATION')).toBe(true);
    expect((refused as Error).message).toMatch(/^stock\.reserve is internal \(its contract says so\)/);
    expect(requests).toBe(0);
    expect(await client.level({ sku: 'a' })).toEqual({ units: 9 });
    expect(requests).toBe(1);
  });

  it('http - the HTTP client types it never (a call does not compile), the in-process client calls it, and a loosely typed or explicitly typed one keeps its method', () => {
    expectTypeOf(stock.operations.reserve.internal).toEqualTypeOf<true>();
    expectTypeOf(stock.operations.level.internal).toEqualTypeOf<boolean>();
    expectTypeOf<HttpClient<typeof stock>['reserve']>().toBeNever();
    expectTypeOf<HttpClient<typeof stock>['level']>().toExtend<Client<typeof stock>['level']>();
    // Generic code that takes a Client<C> still takes an HTTP client, internal operations and all.
    expectTypeOf<HttpClient<typeof stock>>().toExtend<Client<typeof stock>>();
    expectTypeOf<keyof Client<typeof stock>>().toEqualTypeOf<'level' | 'reserve'>();
    const loose = (internal: boolean) =>
      defineContract({ name: 'loose', version: '1.0.0', operations: { maybe: operation({ input: z.object({}), output: z.object({}), internal }) } });
    expectTypeOf<HttpClient<ReturnType<typeof loose>>['maybe']>().not.toBeNever();
    const In = z.object({});
    const explicit = operation<typeof In, typeof In>({ input: In, output: In, internal: true });
    expectTypeOf(explicit.internal).toEqualTypeOf<boolean>();
    expect(stock.operations.reserve.internal).toBe(true);
    expect(stock.operations.level.internal).toBe(false);
  });

  it('kernel - a contract refuses internal that is not true or false', () => {
    expect(() => operation({ input: z.object({}), output: z.object({}), internal: 'yes' as never })).toThrow('internal must be true or false, got "yes".');
  });
});

describe('nats - an internal operation', () => {
  let server: NatsServer;
  beforeAll(async () => {
    server = await startNatsServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('nats - is called by a module in another process as any other operation', async () => {
    const transports: Transport[] = [];
    const kernels: Kernel[] = [];
    try {
      for (const host of [['stock'], ['till']]) {
        const transport = await createNatsTransport({ servers: server.url, prefix: 'internal', logger: silentLogger });
        transports.push(transport);
        const kernel = createKernel({ modules, topology: { host, transport }, logger: silentLogger });
        kernels.push(kernel);
        await kernel.start();
      }
      expect(await kernels[1]!.client(till).sell({ sku: 'a' })).toEqual({ reserved: 1 });
      expect(await kernels[1]!.client(stock).reserve({ sku: 'b', units: 3 })).toEqual({ reserved: 3 });
    } finally {
      for (const kernel of kernels.reverse()) await kernel.stop();
      for (const transport of transports) await transport.close();
    }
  });
});
