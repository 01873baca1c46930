import { request } from 'node:http';
import SwaggerParser from '@apidevtools/swagger-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ErrorKind, createKernel, defineContract, defineError, operation, silentLogger, type Kernel } from 'keel';
import { createHttpGateway, createOpenApiDocument, type HttpGateway, type OpenApiDocument } from 'keel/http';
import { fixtureModules, gatewayForTest, probe, store } from './support/http-fixture.js';

type Json = Record<string, any>;

/** Every `$ref` in `node`. */
function references(node: unknown, found: string[] = []): string[] {
  if (Array.isArray(node)) node.forEach((item) => references(item, found));
  else if (typeof node === 'object' && node !== null) {
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') found.push(value);
      else references(value, found);
    }
  }
  return found;
}

function resolve(document: Json, reference: string): unknown {
  return reference
    .replace(/^#\//, '')
    .split('/')
    .reduce<unknown>((node, part) => (node as Json | undefined)?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], document);
}

describe('http - OpenAPI and the API reference', () => {
  let kernel: Kernel;
  let gateway: HttpGateway;
  let url: string;
  let document: Json;

  beforeAll(async () => {
    kernel = createKernel({ modules: fixtureModules, logger: silentLogger });
    await kernel.start();
    gateway = await createHttpGateway({
      kernel,
      port: 0,
      logger: silentLogger,
      metrics: false,
      getOperations: ['store.get'],
      openapi: { title: 'Fixture API', version: '2.0.0', description: 'Gateway test API.' },
    });
    url = await gateway.listen();
    const response = await fetch(`${url}/openapi.json`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    document = (await response.json()) as Json;
  });
  afterAll(async () => {
    await gateway.close();
  });

  it('http - /openapi.json is a valid OpenAPI 3.1 document', async () => {
    expect(document['openapi']).toBe('3.1.0');
    expect(document['info']).toEqual({ title: 'Fixture API', version: '2.0.0', description: 'Gateway test API.' });
    await SwaggerParser.validate(structuredClone(document) as never);
    for (const reference of references(document)) {
      expect(reference, reference).toMatch(/^#\/components\//);
      expect(resolve(document, reference), reference).toBeDefined();
    }
  });

  it('http - every operation is a POST path, those in getOperations also GET, with the contract as tag', () => {
    const paths = document['paths'] as Json;
    expect(Object.keys(paths).sort()).toEqual([
      '/probe/context',
      '/probe/fail',
      '/probe/wait',
      '/store/get',
      '/store/greeting',
      '/store/put',
    ]);
    expect(Object.keys(paths['/store/put']).sort()).toEqual(['post']);
    expect(Object.keys(paths['/store/get']).sort()).toEqual(['get', 'post']);
    expect(Object.keys(paths['/store/greeting']).sort()).toEqual(['post']);
    const put = paths['/store/put'].post as Json;
    expect(put['operationId']).toBe('store.put');
    expect(put['tags']).toEqual(['store']);
    expect(put['summary']).toBe('Stores a value under a new key.');
    expect(put['description']).toContain('Not idempotent');
    expect(put['description']).toContain('`TAKEN` (409, conflict): The key holds another value already.');
    expect(put['requestBody'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/store.put.input' });
    expect(put['responses']['200'].content['application/json'].schema).toEqual({ $ref: '#/components/schemas/store.put.output' });
    expect(paths['/store/get'].get.parameters[0]).toMatchObject({ name: 'input', in: 'query' });
    expect((document['tags'] as Json[]).map((tag) => tag['name'])).toEqual(['store', 'probe']);
  });

  it('http - schemas come from the contracts: input with defaults optional, output exact', () => {
    const schemas = document['components'].schemas as Json;
    const input = schemas['store.put.input'];
    expect(input.type).toBe('object');
    expect(input.required).toEqual(['key', 'value']);
    expect(input.properties.key).toMatchObject({ type: 'string', minLength: 1, maxLength: 64 });
    expect(input.properties.tags).toMatchObject({ type: 'array', default: [] });
    const output = schemas['store.get.output'];
    expect([...output.required].sort()).toEqual(['key', 'tags', 'value']);
    expect(schemas['store.greeting.output']).toEqual({ type: 'string' });
    // z.json() is recursive: its definition is hoisted to a component and referenced.
    expect(input.properties.value.$ref).toMatch(/^#\/components\/schemas\/store\.put\.input\./);
  });

  it('http - declared errors are documented responses: status from kind, problem schema with the data schema', () => {
    const paths = document['paths'] as Json;
    const schemas = document['components'].schemas as Json;
    const get = paths['/store/get'].post.responses as Json;
    expect(get['404'].description).toContain('`NOT_THERE`: No entry has this key.');
    expect(get['404'].content['application/problem+json'].schema).toEqual({ $ref: '#/components/schemas/store.NOT_THERE' });
    const problem = schemas['store.NOT_THERE'];
    expect(problem.allOf[0]).toEqual({ $ref: '#/components/schemas/Problem' });
    expect(problem.allOf[1].properties.code).toEqual({ const: 'NOT_THERE' });
    expect(problem.allOf[1].properties.data).toEqual({ $ref: '#/components/schemas/store.NOT_THERE.data' });
    expect(schemas['store.NOT_THERE.data']).toMatchObject({ type: 'object', required: ['key'] });
    expect(get['400']).toEqual({ $ref: '#/components/responses/BadRequest' });
    for (const status of ['413', '415', '500', '503', '504']) expect(get[status], status).toBeDefined();

    const fail = paths['/probe/fail'].post.responses as Json;
    expect(Object.keys(fail).sort()).toEqual(['200', '400', '401', '403', '404', '409', '413', '415', '422', '429', '500', '502', '503', '504']);
    // A declared 'invalid' error shares 400 with the gateway's own bad-request problems.
    expect(fail['400'].content['application/problem+json'].schema.anyOf).toEqual([
      { $ref: '#/components/schemas/probe.KIND_INVALID' },
      { $ref: '#/components/schemas/Problem' },
    ]);
    expect(schemas['Problem'].required).toEqual(['type', 'title', 'status', 'detail', 'code', 'correlationId']);
  });

  it('http - the document depends on the contracts alone', () => {
    const standalone = createOpenApiDocument({
      contracts: [store, probe],
      title: 'Fixture API',
      version: '2.0.0',
      description: 'Gateway test API.',
      maxTimeoutMs: 10_000,
      getOperations: ['store.get'],
    });
    expect(JSON.parse(JSON.stringify(standalone)) as OpenApiDocument).toEqual(document);
  });

  it("http - a declared error of a generic problem's status (429, 401) joins it, keeping its headers (Retry-After, WWW-Authenticate)", async () => {
    const Busy = defineError({ code: 'BUSY', kind: ErrorKind.RATE_LIMITED, data: z.object({}), message: () => 'busy' });
    const Expired = defineError({ code: 'SESSION_EXPIRED', kind: ErrorKind.UNAUTHENTICATED, data: z.object({}), message: () => 'expired' });
    const desk = defineContract({
      name: 'desk',
      version: '1.0.0',
      operations: {
        book: operation({ input: z.object({}), output: z.object({}), errors: [Busy, Expired], auth: 'required' }),
      },
    });
    const merged = createOpenApiDocument({ contracts: [desk], authenticates: true }) as Json;
    const responses = merged['paths']['/desk/book'].post.responses;
    expect(responses['429'].headers).toHaveProperty('Retry-After');
    expect(responses['429'].content['application/problem+json'].schema.anyOf).toEqual([{ $ref: '#/components/schemas/desk.BUSY' }, { $ref: '#/components/schemas/Problem' }]);
    expect(responses['401'].headers).toHaveProperty('WWW-Authenticate');
    expect(responses['401'].description).toMatch(/^`SESSION_EXPIRED`.* Or: No principal, or credentials that do not hold/);
    await SwaggerParser.validate(structuredClone(merged) as never);
  });

  it('http - a module whose operations are all internal gets no tag (it serves nothing); one with a served operation keeps its own', () => {
    const ledger = defineContract({
      name: 'ledger',
      version: '1.0.0',
      operations: { post: operation({ input: z.object({}), output: z.object({}), internal: true }) },
    });
    const merged = createOpenApiDocument({ contracts: [store, ledger] }) as Json;
    expect((merged['tags'] as Json[]).map((tag) => tag['name'])).toEqual(['store']);
    expect(Object.keys(merged['paths'] as Json).some((path) => path.startsWith('/ledger/'))).toBe(false);
  });

  it('http - the API reference page and every asset it loads are served by the gateway itself', async () => {
    const page = await fetch(`${url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toContain('<title>Fixture API</title>');
    const assets = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] as string);
    expect(assets.length).toBeGreaterThanOrEqual(5);
    for (const asset of assets) {
      const resolved = new URL(asset, `${url}/docs`);
      expect(resolved.origin, asset).toBe(new URL(url).origin);
      const response = await fetch(resolved);
      expect(response.status, asset).toBe(200);
      if (asset.endsWith('swagger-initializer.js')) {
        const script = await response.text();
        expect(script).toContain("url: resolveUrl('./json')");
        expect(script).toContain('validatorUrl: null');
      } else {
        await response.arrayBuffer();
      }
    }
    const spec = await fetch(`${url}/docs/json`);
    expect(await spec.json()).toEqual(document);
  });

  it('http - a path that climbs out of the reference page\'s static folder ("..", percent-encoded too) is a 403 FORBIDDEN saying so, not a 400 "malformed: Forbidden"', async () => {
    // node:http sends the path as it is (fetch would resolve the dots away): curl --path-as-is.
    const get = (path: string) =>
      new Promise<{ status: number; body: any }>((resolve, reject) => {
        const { hostname, port } = new URL(url);
        const sent = request({ hostname, port, path }, (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }));
        });
        sent.on('error', reject);
        sent.end();
      });
    for (const path of ['/docs/static/../../package.json', '/docs/static/%2e%2e/%2e%2e/package.json']) {
      const refused = await get(path);
      expect(refused, path).toMatchObject({
        status: 403,
        body: {
          status: 403,
          code: 'FORBIDDEN',
          detail: `GET ${path} is refused: the path climbs out of the folder it serves files from (a ".." segment). Ask for the file by its own path, without "..".`,
        },
      });
      expect(JSON.stringify(refused.body)).not.toContain('"name":"keel"');
    }
    // A file the reference page does not have: said so, not the operations' not-found answer.
    expect((await get('/docs/static/no-such-file.js')).body).toMatchObject({
      status: 404,
      code: 'ROUTE_NOT_FOUND',
      detail: 'No file GET /docs/static/no-such-file.js: the API reference page has no such file; the page is at /docs.',
    });
  });

  it("http - a plugin route's 403 and 404 keep their status (FORBIDDEN, ROUTE_NOT_FOUND) naming the request; its other 4xx stay MALFORMED_REQUEST", async () => {
    const answering = (statusCode: number, message: string) => () => {
      throw Object.assign(new Error(message), { statusCode });
    };
    const { url: plugin } = await gatewayForTest({
      metrics: false,
      docsPath: false,
      configure: (server) => {
        server.get('/files/secret', answering(403, 'Forbidden'));
        server.get('/files/gone', answering(404, 'Not Found'));
        server.get('/files/teapot', answering(418, "I'm a teapot"));
        // A route of the application's own, answering 403 for its own reason on a path with a ".." segment.
        server.get('/notes/:name', answering(403, 'Forbidden'));
        // A route that serves files (a wildcard, as the reference page's static files): its 404 is a missing file.
        server.get('/blobs/*', answering(404, 'Not Found'));
      },
    });
    const answers = await Promise.all(['secret', 'gone', 'teapot'].map(async (name) => {
      const response = await fetch(`${plugin}/files/${name}`);
      return { status: response.status, body: (await response.json()) as Json };
    }));
    expect(answers).toMatchObject([
      { status: 403, body: { code: 'FORBIDDEN', detail: 'GET /files/secret is refused (Forbidden): this route does not serve it.' } },
      { status: 404, body: { code: 'ROUTE_NOT_FOUND', detail: 'Nothing is served at GET /files/gone (Not Found); the list of operations is at /openapi.json.' } },
      { status: 400, body: { code: 'MALFORMED_REQUEST', detail: "The request is malformed: I'm a teapot" } },
    ]);
    // The wildcard route's 404 names no operations list; the application route's 403 is not told it climbed out of a folder.
    const blob = await fetch(`${plugin}/blobs/a/b.txt`);
    expect(await blob.json()).toMatchObject({ code: 'ROUTE_NOT_FOUND', detail: 'Nothing is served at GET /blobs/a/b.txt (Not Found): no such file.' });
    const note = await new Promise<Json>((resolve, reject) => {
      const { hostname, port } = new URL(plugin);
      const sent = request({ hostname, port, path: '/notes/%2e%2e' }, (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve(JSON.parse(text) as Json));
      });
      sent.on('error', reject);
      sent.end();
    });
    expect(note).toMatchObject({ code: 'FORBIDDEN', detail: 'GET /notes/%2e%2e is refused (Forbidden): this route does not serve it.' });
  });
});
