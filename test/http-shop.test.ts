/**
 * The example shop behind the HTTP gateway: the shop's whole end-to-end suite, driven through
 * HTTP only with the typed HTTP client ('keel/http-client'), in one process and with the gateway in a process hosting no module (over NATS);
 * then the shop's HTTP surface itself: placing an order, its errors, who may add products and
 * restock, and its OpenAPI document. Every gateway authenticates with the shop's own hook
 * (app/principal.ts), verifying the bearer tokens the tests sign (test/support/shop-auth.ts).
 */
import { randomUUID } from 'node:crypto';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger, type AnyContract, type Client, type Kernel, type Principal, type Transport } from 'keel';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { createHttpClient, type HttpCallOptions } from 'keel/http-client';
import { createNatsTransport } from 'keel/nats';
import { Principal as PrincipalSchema } from '../app/principal.js';
import { catalog } from '../modules/catalog/contract.js';
import { modules } from '../modules/index.js';
import { inventory } from '../modules/inventory/contract.js';
import { TestCard } from '../modules/payments/contract.js';
import { pgliteUnderTest } from './support/databases.js';
import { startNatsServer } from './support/nats-server.js';
import { ADMIN, CUSTOMER, bearer, shopAuthenticator } from './support/shop-auth.js';
import { describeShopSuite, type ShopHarness } from './support/shop-suite.js';

const JSON_HEADERS = { 'content-type': 'application/json' };

// Each kernel hosting the shop's modules keeps their data in a PGlite of its own, in memory.
const databases = pgliteUnderTest();
afterAll(() => databases.cleanup());

type HttpMethod = (input: unknown, options?: HttpCallOptions) => Promise<unknown>;

function harness(baseUrl: string, kernel: Kernel, stop: () => Promise<void>): ShopHarness {
  // The typed HTTP client: every call an HTTP request, every problem rebuilt as the error a
  // kernel client throws, so the shop suite runs unchanged. A call the suite makes as a
  // principal (an admin adding a product) sends a bearer token for it instead, as a browser
  // would: the HTTP client refuses a principal option. An internal operation (the saga's
  // steps) has no route: it is called as orders calls it, through the gateway process's kernel.
  return {
    client: <C extends AnyContract>(contract: C): Client<C> => {
      const http = createHttpClient(contract, { baseUrl }) as unknown as Record<string, HttpMethod>;
      const direct = kernel.client(contract) as unknown as Record<string, unknown>;
      const operations = contract.operations as Record<string, { readonly internal: boolean }>;
      const overHttp =
        (name: string): HttpMethod =>
        async (input, options = {}) => {
          const { principal, ...rest } = options as HttpCallOptions & { readonly principal?: Principal };
          const call = http[name] as HttpMethod;
          return call(input, principal === undefined ? rest : { ...rest, headers: { ...rest.headers, ...(await bearer(principal)) } });
        };
      return Object.fromEntries(Object.keys(operations).map((name) => [name, operations[name]?.internal ? direct[name] : overHttp(name)])) as Client<C>;
    },
    stop,
  };
}

describeShopSuite('through the HTTP gateway, one process', async () => {
  const kernel = createKernel({ modules, principal: PrincipalSchema, logger: silentLogger, database: await databases.fresh() });
  await kernel.start();
  const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: { defaultMetrics: false }, authenticate: shopAuthenticator() });
  return harness(await gateway.listen(), kernel, () => gateway.close());
});

describeShopSuite('through the HTTP gateway hosting no module, over NATS', async () => {
  const server = await startNatsServer();
  const prefix = `keel.shop-http-${randomUUID().slice(0, 8)}`;
  const connect = (): Promise<Transport> => createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
  const servicesTransport = await connect();
  const services = createKernel({ modules, topology: { transport: servicesTransport }, principal: PrincipalSchema, logger: silentLogger, database: await databases.fresh() });
  await services.start();
  const edgeTransport = await connect();
  const edge = createKernel({ modules, topology: { host: [], transport: edgeTransport }, principal: PrincipalSchema, logger: silentLogger });
  await edge.start();
  const gateway = await createHttpGateway({ kernel: edge, port: 0, logger: silentLogger, metrics: { defaultMetrics: false }, authenticate: shopAuthenticator() });
  return harness(await gateway.listen(), edge, async () => {
    await gateway.close();
    await edgeTransport.close();
    await services.stop();
    await servicesTransport.close();
    await server.stop();
  });
});

describe('http - the shop over HTTP', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let url: string;

  /** POSTs `body`, as `principal` when given (a bearer token for it), else anonymously. */
  const post = async (
    path: string,
    body: unknown,
    principal?: Principal,
  ): Promise<{ status: number; body: any; contentType: string | null; challenge: string | null }> => {
    const headers = { ...JSON_HEADERS, ...(principal === undefined ? {} : await bearer(principal)) };
    const response = await fetch(`${url}${path}`, { method: 'POST', headers, body: JSON.stringify(body) });
    return {
      status: response.status,
      body: await response.json(),
      contentType: response.headers.get('content-type'),
      challenge: response.headers.get('www-authenticate'),
    };
  };
  const newProduct = async (priceCents: number, onHand: number): Promise<string> => {
    const sku = `HTTP-${randomUUID().slice(0, 8)}`;
    expect((await post('/catalog/addProduct', { sku, name: `Product ${sku}`, priceCents }, ADMIN)).status).toBe(200);
    if (onHand > 0) expect((await post('/inventory/restock', { sku, quantity: onHand }, ADMIN)).status).toBe(200);
    return sku;
  };

  beforeAll(async () => {
    kernel = createKernel({ modules, principal: PrincipalSchema, logger: silentLogger, database: await databases.fresh() });
    await kernel.start();
    gateway = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      metrics: { defaultMetrics: false },
      getOperations: ['catalog.getProduct', 'orders.getOrder'],
      authenticate: shopAuthenticator(),
    });
    url = await gateway.listen();
  });
  afterAll(async () => {
    await gateway.close();
  });

  it('http - POST /orders/placeOrder places an order', async () => {
    const sku = await newProduct(1250, 5);
    const placed = await post('/orders/placeOrder', { customerId: 'c-http', lines: [{ sku, quantity: 2 }], card: { token: TestCard.VISA } });
    expect(placed.status).toBe(200);
    expect(placed.body).toMatchObject({ customerId: 'c-http', status: 'placed', totalCents: 2500, lines: [{ sku, quantity: 2 }] });
    // The customer reads its order back (GET), with its token; without one, a 401.
    const readUrl = `${url}/orders/getOrder?input=${encodeURIComponent(JSON.stringify({ orderId: placed.body.orderId }))}`;
    const read = await fetch(readUrl, { headers: await bearer({ sub: 'c-http', roles: ['customer'] }) });
    expect(await read.json()).toEqual(placed.body);
    expect((await fetch(readUrl)).status).toBe(401);
  });

  it('http - out of stock is a 409 problem with the declared data', async () => {
    const sku = await newProduct(900, 1);
    const failed = await post('/orders/placeOrder', { customerId: 'c-http', lines: [{ sku, quantity: 3 }], card: { token: TestCard.VISA } });
    expect(failed.status).toBe(409);
    expect(failed.contentType).toBe('application/problem+json; charset=utf-8');
    expect(failed.body).toMatchObject({
      type: 'urn:keel:error:OUT_OF_STOCK',
      status: 409,
      code: 'OUT_OF_STOCK',
      data: { sku, requested: 3, available: 1 },
    });
    expect(typeof failed.body.correlationId).toBe('string');
    expect((await post('/inventory/getStock', { sku })).body).toMatchObject({ sku, available: 1 });
  });

  it('http - addProduct and restock are for admins: 401 without a token, 403 for a customer, nothing changed; an admin is served', async () => {
    const sku = `HTTP-${randomUUID().slice(0, 8)}`;
    const product = { sku, name: `Product ${sku}`, priceCents: 700 };

    const anonymous = await post('/catalog/addProduct', product);
    expect(anonymous).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel"' });
    expect(anonymous.body.detail).toContain('catalog.addProduct needs a caller identity');
    expect(await post('/catalog/addProduct', product, CUSTOMER)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect(await post('/catalog/getProduct', { sku })).toMatchObject({ status: 404, body: { code: 'UNKNOWN_PRODUCT' } });
    expect(await post('/catalog/addProduct', product, ADMIN)).toMatchObject({ status: 200, body: product });

    const restocked = await post('/inventory/restock', { sku, quantity: 5 });
    expect(restocked).toMatchObject({ status: 401, body: { code: 'UNAUTHENTICATED' }, challenge: 'Bearer realm="keel"' });
    expect(restocked.body.detail).toContain('inventory.restock needs a caller identity');
    expect(await post('/inventory/restock', { sku, quantity: 5 }, CUSTOMER)).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect((await post('/inventory/getStock', { sku })).body).toEqual({ sku, onHand: 0, reserved: 0, available: 0 });
    expect(await post('/inventory/restock', { sku, quantity: 5 }, ADMIN)).toMatchObject({ status: 200, body: { sku, onHand: 5, available: 5 } });
  });

  it("http - a signed-in customer placing an order for another customerId is a 403 ORDER_FOR_ANOTHER_CUSTOMER problem naming both", async () => {
    const order = { customerId: 'c-http', lines: [{ sku: 'NO-SUCH-SKU', quantity: 1 }], card: { token: TestCard.VISA } };
    const refused = await post('/orders/placeOrder', order, CUSTOMER);
    expect(refused).toMatchObject({ status: 403, body: { code: 'ORDER_FOR_ANOTHER_CUSTOMER', data: { customerId: 'c-http', caller: CUSTOMER.sub } } });
    // Refused before anything is read: as the customer itself, the same body reaches the catalog.
    expect(await post('/orders/placeOrder', { ...order, customerId: CUSTOMER.sub }, CUSTOMER)).toMatchObject({ status: 404, body: { code: 'UNKNOWN_PRODUCT' } });
  });

  it('http - an unknown product is a 404 problem', async () => {
    const failed = await post('/orders/placeOrder', { customerId: 'c-http', lines: [{ sku: 'NO-SUCH-SKU', quantity: 1 }], card: { token: TestCard.VISA } });
    expect(failed.status).toBe(404);
    expect(failed.body).toMatchObject({ code: 'UNKNOWN_PRODUCT', data: { sku: 'NO-SUCH-SKU' } });
    const direct = await fetch(`${url}/catalog/getProduct?input=${encodeURIComponent('{"sku":"NO-SUCH-SKU"}')}`);
    expect(direct.status).toBe(404);
  });

  it("http - /openapi.json documents every shop operation and placeOrder's declared errors, its 403 among them", async () => {
    const document = (await (await fetch(`${url}/openapi.json`)).json()) as any;
    const expected = modules.flatMap((module) =>
      Object.entries(module.contract.operations as Record<string, { readonly internal: boolean }>)
        .filter(([, operation]) => !operation.internal)
        .map(([name]) => `/${module.name}/${name}`),
    );
    // The saga's steps and its recovery's read are internal: no path.
    expect(Object.keys(document.paths)).not.toContain('/payments/getPaymentForOrder');
    expect(expected).not.toContain('/payments/charge');
    expect(Object.keys(document.paths)).not.toContain('/inventory/reserve');
    expect(Object.keys(document.paths).sort()).toEqual(expected.sort());
    const responses = document.paths['/orders/placeOrder'].post.responses;
    expect(responses['404'].content['application/problem+json'].schema).toEqual({ $ref: '#/components/schemas/orders.UNKNOWN_PRODUCT' });
    // placeOrder is not idempotent: an Idempotency-Key's 409 and 422 join the declared errors of those statuses, and 429 is documented.
    expect(responses['409'].content['application/problem+json'].schema).toEqual({
      anyOf: [
        { $ref: '#/components/schemas/orders.OUT_OF_STOCK' },
        { $ref: '#/components/schemas/orders.ORDER_FAILED' },
        { $ref: '#/components/schemas/orders.ORDER_NOT_PLACED' },
        { $ref: '#/components/schemas/Problem' },
      ],
    });
    expect(responses['409'].description).toContain('IDEMPOTENCY_KEY_IN_USE');
    expect(responses['422'].content['application/problem+json'].schema).toEqual({
      anyOf: [{ $ref: '#/components/schemas/orders.PAYMENT_DECLINED' }, { $ref: '#/components/schemas/Problem' }],
    });
    expect(responses['422'].description).toContain('IDEMPOTENCY_KEY_REUSED');
    expect(responses['429']).toEqual({ $ref: '#/components/responses/TooManyRequests' });
    // A signed-in customer placing for another is the contract's own 403 (no auth predicate lists it otherwise).
    expect(responses['403'].content['application/problem+json'].schema).toEqual({ $ref: '#/components/schemas/orders.ORDER_FOR_ANOTHER_CUSTOMER' });
    expect(document.paths['/orders/placeOrder'].post.parameters).toContainEqual({ $ref: '#/components/parameters/IdempotencyKey' });
    expect(document.components.parameters.IdempotencyKey).toMatchObject({ name: 'Idempotency-Key', in: 'header', required: false });
    // An idempotent read takes no key.
    expect(document.paths['/catalog/getProduct'].post.parameters).not.toContainEqual({ $ref: '#/components/parameters/IdempotencyKey' });
    expect(document.paths['/catalog/getProduct'].post.responses['422']).toBeUndefined();
    const SwaggerParser = (await import('@apidevtools/swagger-parser')).default;
    await SwaggerParser.validate(structuredClone(document));
    expect(document.components.schemas['orders.OUT_OF_STOCK.data'].required).toEqual(expect.arrayContaining(['sku', 'requested', 'available']));
    expect(document.tags.map((tag: { name: string }) => tag.name)).toEqual(modules.map((module) => module.name));
    expect([catalog.name, inventory.name].every((name) => document.tags.some((tag: { name: string }) => tag.name === name))).toBe(true);
  });

  it("http - real 409 OUT_OF_STOCK, 422 PAYMENT_DECLINED and 422 IDEMPOTENCY_KEY_REUSED bodies are valid against /openapi.json's schema for their status (anyOf: the generic Problem matches them too)", async () => {
    const document = (await (await fetch(`${url}/openapi.json`)).json()) as any;
    // The document as a JSON Schema 2020-12 resource (OpenAPI 3.1's dialect): its #/components refs resolve within it.
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addSchema({ ...document, $id: 'https://keel.invalid/openapi.json' });
    const validatorOf = (status: number) => {
      const pointer = `#/paths/~1orders~1placeOrder/post/responses/${status}/content/application~1problem+json/schema`;
      return ajv.getSchema(`https://keel.invalid/openapi.json${pointer}`) as ValidateFunction;
    };
    const sku = await newProduct(900, 1);
    const order = { customerId: 'c-http', lines: [{ sku, quantity: 3 }], card: { token: TestCard.VISA } };
    const outOfStock = await post('/orders/placeOrder', order);
    expect(outOfStock.body).toMatchObject({ status: 409, code: 'OUT_OF_STOCK' });
    const declined = await post('/orders/placeOrder', { ...order, lines: [{ sku, quantity: 1 }], card: { token: TestCard.DECLINED } });
    expect(declined.body).toMatchObject({ status: 422, code: 'PAYMENT_DECLINED' });
    const key = { ...JSON_HEADERS, 'idempotency-key': randomUUID() };
    await fetch(`${url}/orders/placeOrder`, { method: 'POST', headers: key, body: JSON.stringify(order) });
    const reused = await fetch(`${url}/orders/placeOrder`, { method: 'POST', headers: key, body: JSON.stringify({ ...order, customerId: 'c-other' }) });
    const reusedBody = await reused.json();
    expect(reusedBody).toMatchObject({ status: 422, code: 'IDEMPOTENCY_KEY_REUSED' });
    for (const body of [outOfStock.body, declined.body, reusedBody]) {
      const validate = validatorOf(body.status);
      expect(validate(body), `${body.code}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
    // The declared branch alone holds the body too: the data is checked against its declared schema.
    const declaredOnly = ajv.compile({ $ref: 'https://keel.invalid/openapi.json#/components/schemas/orders.OUT_OF_STOCK' });
    expect(declaredOnly(outOfStock.body)).toBe(true);
    expect(declaredOnly({ ...outOfStock.body, data: { sku } })).toBe(false);
  });
});
