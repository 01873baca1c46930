/**
 * The gateway's security headers (adapters/http/security-headers.ts), worked out once instead of
 * by `@fastify/helmet` per request: over real HTTP, an answer carries the same header lines, in
 * the same order and case, as the same route of a server with `@fastify/helmet` registered with
 * the same options (names in lower case); the route option `helmet` and the `reply.helmet()` decorator still work.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import fastifyHelmet from '@fastify/helmet';
import { fastify, type FastifyInstance } from 'fastify';
import { addSecurityHeaders } from '../adapters/http/security-headers.js';

const OPTIONS = { contentSecurityPolicy: { directives: { upgradeInsecureRequests: null } } };

const servers: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/**
 * The raw header block of `method path`, without its Date line (which differs by the second),
 * names in lower case (the gateway writes helmet's names in lower case, as fastify writes its own).
 */
async function headerBlock(server: FastifyInstance, method: string, path: string): Promise<string> {
  const url = new URL(await server.listen({ port: 0, host: '127.0.0.1' }));
  const socket = connect({ host: '127.0.0.1', port: Number(url.port) });
  let received = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (received += chunk));
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
  await new Promise((resolve) => socket.once('close', resolve));
  const head = received.slice(0, received.indexOf('\r\n\r\n'));
  const [status = '', ...lines] = head.split('\r\n');
  const named = lines.filter((line) => !line.toLowerCase().startsWith('date:')).map((line) => {
    const colon = line.indexOf(':');
    return `${line.slice(0, colon).toLowerCase()}${line.slice(colon)}`;
  });
  return [status, ...named].join('\n');
}

/**
 * A server with a JSON route, a text route, two routes without helmet (`false`, `{ skipRoute: true }`),
 * one with its own CSP, and two making such choices in `config.helmet`, headers by `setup`.
 */
async function serverWith(setup: (server: FastifyInstance) => Promise<void>): Promise<FastifyInstance> {
  const server = fastify({ logger: false });
  servers.push(server);
  await setup(server);
  server.get('/json', async (_request, reply) => reply.header('x-correlation-id', 'c-1').type('application/json; charset=utf-8').send('{"a":1}'));
  server.get('/text', async () => 'text');
  server.get('/off', { helmet: false } as never, async () => 'off');
  server.get('/skipped', { helmet: { skipRoute: true } } as never, async () => 'skipped');
  server.get('/own', { helmet: { contentSecurityPolicy: { directives: { defaultSrc: ["'none'"] } }, frameguard: false } } as never, async () => 'own');
  // The same choices given as the route's config.helmet, which @fastify/helmet reads as well.
  server.get('/config-skipped', { config: { helmet: { skipRoute: true } } } as never, async () => 'config-skipped');
  server.get('/config-own', { config: { helmet: { frameguard: false, referrerPolicy: { policy: 'same-origin' } } } } as never, async () => 'config-own');
  // config.helmet false is no object: the plugin applies its headers there, as the route option's `false` would not.
  server.get('/config-false', { config: { helmet: false } } as never, async () => 'config-false');
  // helmet removes X-Powered-By: set on the raw response before reply.helmet(), it must be gone.
  server.get('/powered', async (_request, reply) => {
    reply.raw.setHeader('X-Powered-By', 'me');
    (reply as unknown as { helmet(): void }).helmet();
    return 'powered';
  });
  server.get('/decorator', async (_request, reply) => {
    (reply as unknown as { helmet(options: object): void }).helmet({ referrerPolicy: { policy: 'same-origin' } });
    return 'decorated';
  });
  return server;
}

describe('security headers', () => {
  it.each(['/json', '/text', '/off', '/skipped', '/own', '/config-skipped', '/config-own', '/config-false', '/decorator', '/powered', '/missing'])('%s carries the header lines @fastify/helmet writes, in its order', async (path) => {
    const plugin = await serverWith(async (server) => {
      await server.register(fastifyHelmet, OPTIONS);
    });
    const once = await serverWith(async (server) => addSecurityHeaders(server, OPTIONS));
    const expected = await headerBlock(plugin, 'GET', path);
    const actual = await headerBlock(once, 'GET', path);
    // The comparison means something: helmet wrote its headers there (and none where it is off).
    if (path === '/powered') expect(actual).not.toContain('x-powered-by');
    if (path === '/off' || path === '/skipped' || path === '/config-skipped') expect(expected).not.toContain('content-security-policy');
    else expect(expected).toContain('content-security-policy');
    expect(actual).toBe(expected);
  });

  it('sets the headers helmet sets, with the gateway options', async () => {
    const once = await serverWith(async (server) => addSecurityHeaders(server, OPTIONS));
    const block = await headerBlock(once, 'GET', '/json');
    expect(block).toContain('x-frame-options: SAMEORIGIN');
    expect(block).toContain('x-content-type-options: nosniff');
    expect(block).toMatch(/content-security-policy: default-src 'self';/);
    expect(block).not.toContain('upgrade-insecure-requests');
  });
});
