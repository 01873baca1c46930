/**
 * createHttpGateway's options are checked once: an explicit `undefined` means the default, and a
 * wrong value, an unknown key or a clash with the exposed contracts is INVALID_CONFIG naming the
 * field and what it takes.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger, type Kernel } from 'keel';
import { DEFAULT_HTTP_GATEWAY_OPTIONS, createHttpGateway, createKernelMetrics, type HttpGateway, type HttpGatewayOptions } from 'keel/http';
import { fixtureModules, probe, store } from './support/http-fixture.js';

function fixtureKernel(): Kernel {
  return createKernel({ modules: fixtureModules, logger: silentLogger });
}

/** The message of the INVALID_CONFIG that createHttpGateway refuses `options` with. */
async function refusal(options: Partial<HttpGatewayOptions> & Record<string, unknown>): Promise<string> {
  const refused: unknown = await createHttpGateway({ kernel: fixtureKernel(), logger: silentLogger, metrics: false, ...options } as HttpGatewayOptions).then(
    async (gateway) => {
      await gateway.close();
      throw new Error(`createHttpGateway accepted ${Object.keys(options).join(', ')}`);
    },
    (error: unknown) => error,
  );
  expect(isKeelError(refused, 'INVALID_CONFIG'), String(refused)).toBe(true);
  return (refused as Error).message;
}

describe('http - gateway options', () => {
  it('http - options given as undefined take their defaults, on a gateway answering real HTTP', async () => {
    const kernel = fixtureKernel();
    await kernel.start();
    const gateway = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      contracts: undefined,
      host: undefined,
      bodyLimit: undefined,
      requestTimeoutMs: undefined,
      headersTimeoutMs: undefined,
      keepAliveTimeoutMs: undefined,
      maxConnections: undefined,
      cors: undefined,
      rateLimit: undefined,
      securityHeaders: undefined,
      trustProxy: undefined,
      development: undefined,
      maxTimeoutMs: undefined,
      timeoutHeader: undefined,
      correlationHeader: undefined,
      getOperations: undefined,
      docsPath: undefined,
      openapi: undefined,
      metrics: undefined,
      caller: undefined,
      stopKernelOnClose: undefined,
      configure: undefined,
    });
    try {
      const url = await gateway.listen();
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

      const context = await fetch(`${url}/probe/context`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-correlation-id': 'options-default' },
        body: '{}',
      });
      expect(context.status).toBe(200);
      expect(context.headers.get('x-correlation-id')).toBe('options-default');
      expect(await context.json()).toMatchObject({ correlationId: 'options-default', caller: 'http' });

      const badTimeout = await fetch(`${url}/store/greeting`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-keel-timeout-ms': 'soon' },
        body: JSON.stringify({ name: 'Ada' }),
      });
      expect(badTimeout.status).toBe(400);
      expect(((await badTimeout.json()) as { detail: string }).detail).toContain('Header x-keel-timeout-ms must be a positive whole number');

      const tooLarge = await fetch(`${url}/store/put`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ key: 'big', value: 'x'.repeat(DEFAULT_HTTP_GATEWAY_OPTIONS.bodyLimit) }),
      });
      expect(tooLarge.status).toBe(413);
      expect(((await tooLarge.json()) as { detail: string }).detail).toContain(`larger than ${DEFAULT_HTTP_GATEWAY_OPTIONS.bodyLimit} bytes`);

      expect((await fetch(`${url}/store/get?input=${encodeURIComponent('{"key":"a"}')}`)).status).toBe(405); // no getOperations
      expect((await fetch(`${url}/docs`)).status).toBe(200);
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
      expect(Object.keys(gateway.openapi.paths)).toContain('/probe/context'); // every contract of the kernel
      expect(JSON.stringify(gateway.openapi)).toContain(`(${kernel.defaultTimeoutMs} ms for operations that declare none)`);
    } finally {
      await gateway.close();
    }
    expect(kernel.status().state).toBe('stopped'); // stopKernelOnClose
  });

  it("http - the timeout header is capped by the kernel's defaultTimeoutMs when maxTimeoutMs is not given, and by maxTimeoutMs when it is; the document names a custom correlation header", async () => {
    const clock = defineContract({
      name: 'clock',
      version: '1.0.0',
      operations: { remaining: operation({ input: z.object({}), output: z.object({ remainingMs: z.number() }), idempotent: true }) },
    });
    const clockModule = defineModule({ contract: clock, create: () => ({ handlers: { remaining: (_input, context) => ({ remainingMs: context.deadline - Date.now() }) } }) });
    const remaining = async (gateway: HttpGateway, header: string): Promise<number> => {
      const response = await fetch(`${await gateway.listen()}/clock/remaining`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-keel-timeout-ms': header },
        body: '{}',
      });
      return ((await response.json()) as { remainingMs: number }).remainingMs;
    };
    const kernel = createKernel({ modules: [clockModule], logger: silentLogger, defaultTimeoutMs: 300 });
    await kernel.start();
    try {
      expect(kernel.defaultTimeoutMs).toBe(300);
      const byKernel = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, stopKernelOnClose: false });
      try {
        expect(JSON.stringify(byKernel.openapi)).toContain('(300 ms for operations that declare none)');
        // A client may shorten the kernel's deadline, never lengthen it.
        expect(await remaining(byKernel, '60000')).toBeLessThanOrEqual(300);
        expect(await remaining(byKernel, '100')).toBeLessThanOrEqual(100);
      } finally {
        await byKernel.close();
      }
      const byOption = await createHttpGateway({
        kernel,
        port: 0,
        logger: silentLogger,
        metrics: false,
        stopKernelOnClose: false,
        maxTimeoutMs: 2_000,
        correlationHeader: 'X-Request-Id',
      });
      try {
        const given = await remaining(byOption, '60000');
        expect(given).toBeGreaterThan(300);
        expect(given).toBeLessThanOrEqual(2_000);
        // The document names the correlation header this gateway reads, and the gateway echoes it.
        const parameters = JSON.stringify(byOption.openapi.components['parameters']);
        expect(parameters).toContain('"name":"X-Request-Id"');
        expect(parameters).not.toContain('x-correlation-id');
        const echoed = await fetch(`${await byOption.listen()}/clock/remaining`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-request-id': 'req-7' },
          body: '{}',
        });
        expect(echoed.headers.get('x-request-id')).toBe('req-7');
      } finally {
        await byOption.close();
      }
    } finally {
      await kernel.stop();
    }
  });

  it('http - refuses an unknown option (a misspelt one) and names what it takes', async () => {
    expect(await refusal({ port: 0, prot: 8080 })).toBe(
      'createHttpGateway: unknown option "prot" (did you mean port? it takes kernel, contracts, port, host, bodyLimit, requestTimeoutMs, headersTimeoutMs, ' +
        'keepAliveTimeoutMs, maxConnections, cors, rateLimit, securityHeaders, trustProxy, development, maxTimeoutMs, ' +
        'timeoutHeader, correlationHeader, getOperations, docsPath, openapi, metrics, readyNeedsDatabases, caller, stopKernelOnClose, logger, configure, ' +
        'authenticate, challenge).',
    );
  });

  it('http - refuses an authenticate that is not a function and a challenge that is not a WWW-Authenticate value', async () => {
    expect(await refusal({ authenticate: 'jwt' as never })).toBe(
      'createHttpGateway: authenticate must be a function of the request returning the principal, such as createJwtAuthenticator({ ... }), got "jwt".',
    );
    expect(await refusal({ challenge: 'Bearer realm="a"\r\nX-Injected: 1' })).toContain('createHttpGateway: challenge must be a WWW-Authenticate challenge');
  });

  it('http - refuses an option of the wrong type, naming the field, what it takes and what it got', async () => {
    expect(await refusal({ port: '8080' as never })).toBe(
      'createHttpGateway: port must be a whole number from 0 (any free port) to 65535, got "8080".',
    );
    const message = await refusal({
      development: 'yes' as never,
      getOperations: 'store.get' as never,
      docsPath: true as never,
      metrics: 'on' as never,
      openapi: { title: 3 } as never,
      configure: {} as never,
    });
    expect(message).toContain('development must be true or false, got "yes"');
    expect(message).toContain('getOperations must be an array of "module.operation" names, got "store.get"');
    expect(message).toContain('docsPath must be false (no page) or a path like "/docs", got true');
    expect(message).toContain('metrics must be true, false, an object of registry (a prom-client Registry)');
    expect(message).toContain('openapi must be an object of title, version and description, each a string, got an object');
    expect(message).toContain('configure must be a function of the fastify instance, got an object');
    expect(await refusal({ contracts: [store, { name: 'orders' }] as never })).toBe(
      'createHttpGateway: contracts.1 must be a contract made with defineContract(), got an object.',
    );
    expect(await refusal({ kernel: undefined })).toBe('createHttpGateway: kernel must be a Kernel made with createKernel(), got undefined.');
  });

  it('http - refuses a number out of range, naming the field and the value', async () => {
    expect(await refusal({ port: 70_000 })).toBe('createHttpGateway: port must be a whole number from 0 (any free port) to 65535, got 70000.');
    expect(await refusal({ port: 80.5 })).toContain('port must be a whole number from 0 (any free port) to 65535, got 80.5');
    expect(await refusal({ bodyLimit: 0 })).toBe('createHttpGateway: bodyLimit must be a whole number of bytes above 0, got 0.');
    expect(await refusal({ maxTimeoutMs: -5 })).toBe(
      'createHttpGateway: maxTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got -5.',
    );
    expect(await refusal({ maxTimeoutMs: 2 ** 31 })).toContain('maxTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got 2147483648');
    expect(await refusal({ maxTimeoutMs: Number.NaN })).toContain('maxTimeoutMs must be a number of milliseconds above 0');
  });

  it('http - refuses a wrong defence option (timeouts, connections, CORS, rate limit, trustProxy), naming the field', async () => {
    expect(await refusal({ requestTimeoutMs: 0 })).toBe(
      'createHttpGateway: requestTimeoutMs must be a whole number of milliseconds above 0 and at most 2147483647, got 0.',
    );
    expect(await refusal({ headersTimeoutMs: 40_000 })).toBe(
      'createHttpGateway: headersTimeoutMs must be at most requestTimeoutMs (30000), which includes the headers (lower it, or raise requestTimeoutMs), got 40000.',
    );
    expect(await refusal({ requestTimeoutMs: 5_000 })).toBe(
      'createHttpGateway: requestTimeoutMs must be at least headersTimeoutMs (10000, its default), since it includes the headers (raise it, or lower headersTimeoutMs), got 5000.',
    );
    expect(await refusal({ maxConnections: 1.5 })).toBe('createHttpGateway: maxConnections must be a whole number of connections above 0, got 1.5.');
    expect(await refusal({ cors: true as never })).toBe(
      'createHttpGateway: cors must be false or an object of origins, credentials and maxAgeSeconds, got true.',
    );
    expect(await refusal({ cors: { origins: ['https://shop.example.com/app'] } })).toBe(
      'createHttpGateway: cors.origins.0 must be an origin such as "https://shop.example.com" (scheme, host and port; no path) or "*", got "https://shop.example.com/app".',
    );
    expect(await refusal({ cors: { origins: ['*'], credentials: true } })).toBe(
      'createHttpGateway: cors.origins cannot allow any origin ("*") with credentials: name the origins, got an array.',
    );
    expect(await refusal({ rateLimit: { max: 0 } })).toBe('createHttpGateway: rateLimit.max must be a whole number of requests above 0, got 0.');
    expect(await refusal({ rateLimit: { limit: 5 } as never })).toBe('createHttpGateway: unknown option "rateLimit.limit".');
    // A field of the wrong type inside a `false | { ... }` option was once "rateLimit must be false or an object ..., got an object".
    expect(await refusal({ rateLimit: { max: '10' } as never })).toBe(
      'createHttpGateway: rateLimit.max must be a whole number of requests above 0, got "10".',
    );
    expect(await refusal({ cors: { origins: '*' } as never })).toBe(
      'createHttpGateway: cors.origins must be an array of origins, such as ["https://shop.example.com"], got "*".',
    );
    expect(await refusal({ trustProxy: '10.0.0.0/33' })).toBe(
      'createHttpGateway: trustProxy must be true, false, a number of proxy hops, or the proxies\' addresses or CIDR ranges ' +
        '(a string or an array of strings, such as "10.0.0.0/8"), got "10.0.0.0/33".',
    );
  });

  it('http - refuses a header name an HTTP header cannot have', async () => {
    expect(await refusal({ correlationHeader: 'x correlation' })).toBe(
      'createHttpGateway: correlationHeader must be an HTTP header name, such as x-correlation-id, got "x correlation".',
    );
    expect(await refusal({ timeoutHeader: '' })).toContain('timeoutHeader must be an HTTP header name');
  });

  it('http - names every clash with the exposed contracts in one INVALID_CONFIG, each by its field', async () => {
    const message = await refusal({ contracts: [store, store], getOperations: ['store.put', 'ghost.read', 'store'] });
    expect(message).toBe(
      'createHttpGateway: contracts has "store" listed twice (list each contract once); ' +
        'getOperations names "store.put", which its contract does not declare idempotent (GET is only for idempotent reads); ' +
        'getOperations names "ghost.read", which is no operation of the exposed contracts (write it as "module.operation"); ' +
        'getOperations names "store", which is no operation of the exposed contracts (write it as "module.operation").',
    );
    expect(await refusal({ contracts: [store, probe], docsPath: '/probe' })).toBe(
      'createHttpGateway: contracts has "probe", which would shadow the gateway\'s /probe path (choose another docsPath, or do not expose it).',
    );
  });

  it("http - one application-wide getOperations list: a gateway exposing some modules offers GET for theirs and passes over the kernel's other modules' names", async () => {
    const kernel = fixtureKernel();
    await kernel.start();
    const gateway = await createHttpGateway({
      kernel,
      logger: silentLogger,
      metrics: false,
      contracts: [store],
      getOperations: ['store.get', 'probe.context'],
    });
    const url = await gateway.listen();
    try {
      const read = await fetch(`${url}/store/get?input=${encodeURIComponent(JSON.stringify({ key: 'none' }))}`);
      // Routed to the operation: its declared error for a key that is not there, not 405 (no GET) or 404 (no route).
      expect(((await read.json()) as { code?: string }).code).toBe('NOT_THERE');
      const other = await fetch(`${url}/probe/context?input=${encodeURIComponent('{}')}`);
      expect(other.status).toBe(404);
      expect(((await other.json()) as { detail?: string }).detail).toContain('module "probe" is not exposed by this gateway');
    } finally {
      await gateway.close();
      await kernel.stop();
    }
  });

  it('http - a docsPath on one of the gateway\'s own paths is INVALID_CONFIG, not a plugin that never starts', async () => {
    expect(await refusal({ docsPath: '/healthz' })).toContain('docsPath is "/healthz", a path the gateway serves itself');
    expect(await refusal({ docsPath: '/metrics', metrics: true })).toContain('docsPath is "/metrics", a path the gateway serves itself');
  });

  it("http - metrics made by createKernelMetrics for another kernel are INVALID_CONFIG: they would not count this gateway's kernel", async () => {
    const metrics = createKernelMetrics(fixtureKernel(), { defaultMetrics: false });
    expect(await refusal({ metrics })).toBe(
      "createHttpGateway: metrics were made by createKernelMetrics for another kernel (make them with this gateway's kernel).",
    );
    metrics.close();
  });
});
