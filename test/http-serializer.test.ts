/**
 * The gateway's compiled answer serializer (adapters/http/serializer.ts): for every shape it
 * compiles, its output is byte for byte JSON.stringify's of the value the zod schema parsed; for
 * every shape it cannot write faithfully it is JSON.stringify itself; and the gateway answers
 * with those bytes over real HTTP. The compiled cases run the fast-json-stringify the serializer
 * loads (fastify's own), so a fastify update that changes how it writes fails them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger } from 'keel';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { compileOutputSerializer } from '../adapters/http/serializer.js';

/** Parses `value` with `schema` (as the kernel does before the gateway sees it) and serializes it both ways. */
function both(schema: z.ZodType, value: unknown): { compiled: boolean; fast: string; reference: string } {
  const parsed = schema.parse(value);
  const serializer = compileOutputSerializer(schema);
  return { compiled: serializer.compiled, fast: serializer.serialize(parsed), reference: JSON.stringify(parsed) };
}

const Line = z.object({ sku: z.string(), quantity: z.number().int().positive(), note: z.string().optional() });

const COMPILED: readonly (readonly [string, z.ZodType, unknown])[] = [
  ['a flat object', z.object({ totalCents: z.number().int(), currency: z.string() }), { totalCents: 500, currency: 'EUR' }],
  [
    'nested objects and arrays',
    z.object({ id: z.string(), lines: z.array(Line), totals: z.object({ net: z.number(), gross: z.number() }) }),
    { id: 'o-1', lines: [{ sku: 'A', quantity: 2 }, { sku: 'B', quantity: 1, note: 'gift' }], totals: { net: 10.5, gross: 12.6 } },
  ],
  ['optional fields absent, present and undefined', z.object({ a: z.string().optional(), b: z.number().optional(), c: z.boolean().optional() }), { b: 0, c: undefined }],
  [
    'nullable primitives, objects and arrays',
    z.object({ s: z.string().nullable(), o: z.object({ x: z.number() }).nullable(), p: z.object({ x: z.number() }).nullable(), l: z.array(z.string()).nullable(), n: z.number().nullish() }),
    { s: null, o: { x: 1 }, p: null, l: null, n: null },
  ],
  ['dates as ISO strings', z.object({ at: z.iso.datetime(), on: z.iso.date() }), { at: '2026-12-01T10:00:00.000Z', on: '2026-12-01' }],
  [
    'unicode, escapes and lone surrogates',
    z.object({ texts: z.array(z.string()) }),
    { texts: ['', 'é', '日本語のテキスト', '😀 emoji', '\ud800', 'a\udc00b', 'quote " and \\ backslash', '\n\t\r\u0000\u001f', '\u2028\u2029', `${'long '.repeat(30)}"end"`] },
  ],
  ['keys that need escaping', z.object({ 'a"b': z.string(), 'é': z.number(), 'line\nbreak': z.boolean(), '': z.null() }), { 'a"b': 'x', 'é': 1, 'line\nbreak': false, '': null }],
  [
    'numbers JSON writes in exponent form, -0 and extremes',
    z.object({ values: z.array(z.number()), whole: z.number().int() }),
    { values: [1e21, -1e21, 1e-7, -0, 0.1 + 0.2, 5e-324, Number.MAX_VALUE, -1.5, 123456789012345680000], whole: -0 },
  ],
  ['enums and literals', z.object({ state: z.enum(['open', 'closed']), kind: z.literal('order'), version: z.literal(2), on: z.literal(true) }), { state: 'closed', kind: 'order', version: 2, on: true }],
  ['defaults filled in by the parse', z.object({ currency: z.string().default('EUR'), tags: z.array(z.string()).default([]) }), {}],
  ['keys in another order than the schema, and unknown keys (zod strips them)', z.object({ a: z.number(), b: z.string(), c: z.boolean().optional() }), { extra: 1, c: true, b: 'x', a: 1 }],
  ['an empty object', z.object({}), { dropped: true }],
  ['a string', z.string(), 'plain "text" é'],
  ['an array of numbers', z.array(z.number()), [1, 2.5, -0, 1e21]],
  ['a boolean', z.boolean(), false],
  ['null', z.null(), null],
  [
    'intersections (zod writes them as one object)',
    z.object({ i: z.intersection(z.object({ b: z.string(), a: z.number() }), z.object({ c: z.boolean(), a: z.number() })) }),
    { i: { c: true, a: 1, b: 'x' } },
  ],
  ['a strict object', z.strictObject({ a: z.string() }), { a: 'x' }],
  // fast-json-stringify writes the keys listed as required before the others: a required key
  // after an optional one must keep its place.
  ['an optional key before a required one', z.object({ a: z.string().optional(), b: z.number() }), { b: 1, a: 'x' }],
  ['an optional key set to undefined before a required one', z.object({ a: z.string().optional(), b: z.number() }), { a: undefined, b: 1 }],
  [
    'optional and required keys interleaved',
    z.object({ r1: z.string(), o1: z.number().optional(), r2: z.boolean(), o2: z.string().nullish(), r3: z.null() }),
    { r3: null, o2: null, r2: true, o1: 2, r1: 'x' },
  ],
  [
    'an optional key before a required one, nested and in arrays of objects',
    z.object({
      order: z.object({ note: z.string().optional(), id: z.string(), customer: z.object({ email: z.string().optional(), name: z.string() }) }),
      lines: z.array(z.object({ note: z.string().optional(), sku: z.string(), quantity: z.number().int() })),
      maybe: z.object({ hint: z.string().optional(), code: z.number() }).nullable(),
    }),
    {
      lines: [{ sku: 'A', quantity: 1, note: 'n' }, { sku: 'B', quantity: 2 }, { quantity: 3, sku: 'C', note: undefined }],
      order: { id: 'o-1', note: 'first', customer: { name: 'Ada', email: 'ada@example.com' } },
      maybe: { code: 7, hint: 'h' },
    },
  ],
  ['a readonly object', z.object({ a: z.string() }).readonly(), { a: 'x' }],
];

describe('compiled output serializer', () => {
  it.each(COMPILED)('writes %s exactly as JSON.stringify does', (_name, schema, value) => {
    const { compiled, fast, reference } = both(schema, value);
    expect(compiled).toBe(true);
    expect(fast).toBe(reference);
  });

  const FALLBACK: readonly (readonly [string, z.ZodType, unknown])[] = [
    ['a loose object (passthrough)', z.looseObject({ a: z.string() }), { a: 'x', extra: { kept: true } }],
    ['a catch-all object', z.object({ a: z.string() }).catchall(z.number()), { a: 'x', more: 2 }],
    ['a record', z.record(z.string(), z.number()), { b: 1, a: 2 }],
    ['a union', z.union([z.string(), z.number()]), 3],
    ['a union of objects', z.union([z.object({ a: z.string() }), z.object({ b: z.number() })]), { b: 1 }],
    [
      'a discriminated union',
      z.discriminatedUnion('kind', [z.object({ kind: z.literal('a'), x: z.number() }), z.object({ kind: z.literal('b'), y: z.string() })]),
      { kind: 'b', y: 'why' },
    ],
    ['an intersection with a loose side', z.intersection(z.object({ a: z.string() }), z.looseObject({ b: z.number() })), { a: 'x', b: 1, c: 2 }],
    ['a tuple', z.tuple([z.string(), z.number()]), ['x', 1]],
    ['a Date', z.object({ at: z.date() }), { at: new Date(0) }],
    ['a transform', z.object({ n: z.string().transform((text) => text.length) }), { n: 'abc' }],
    ['any value', z.object({ a: z.any() }), { a: { deep: [1, 'x'] } }],
    ['unknown value', z.unknown(), [1, { a: 2 }]],
    ['keys that are array indexes (JSON.stringify writes them first)', z.object({ b: z.string(), 1: z.string() }), { b: 'x', 1: 'y' }],
    ['an array of anything', z.array(z.any()), [1, 'x', null]],
    ['a "__proto__" key', z.object({ ['__proto__']: z.string().optional(), a: z.string() }), { a: 'x' }],
    ['void', z.void(), undefined],
  ];
  it.each(FALLBACK)('falls back to JSON.stringify for %s', (_name, schema, value) => {
    const serializer = compileOutputSerializer(schema);
    expect(serializer.compiled).toBe(false);
    expect(serializer.reason).toEqual(expect.any(String));
    const parsed = schema.parse(value);
    expect(serializer.serialize(parsed)).toBe(JSON.stringify(parsed));
  });

  it('falls back to JSON.stringify for a value the compiled serializer cannot write', () => {
    const serializer = compileOutputSerializer(z.object({ total: z.number() }));
    expect(serializer.compiled).toBe(true);
    // Never a parse of this schema; the fallback still writes what JSON.stringify would.
    expect(serializer.serialize({ total: 'not a number' })).toBe('{"total":"not a number"}');
  });
});

describe('gateway answers with the compiled serializer', () => {
  const gateways: HttpGateway[] = [];
  afterEach(async () => {
    await Promise.all(gateways.splice(0).map((gateway) => gateway.close()));
  });

  const Order = z.object({
    id: z.string(),
    placedAt: z.iso.datetime(),
    note: z.string().nullable(),
    lines: z.array(Line),
    total: z.number(),
  });
  const shop = defineContract({
    name: 'shop',
    version: '1.0.0',
    operations: {
      order: operation({ input: z.object({ id: z.string() }), output: Order }),
      loose: operation({ input: z.object({}), output: z.object({ a: z.string(), extra: z.record(z.string(), z.json()) }) }),
    },
  });
  const answers = {
    id: 'o-1',
    placedAt: '2026-12-01T10:00:00.000Z',
    note: 'ünïcödé "quoted" 😀',
    lines: [{ sku: 'A', quantity: 2, note: 'x' }, { sku: 'B', quantity: 1 }],
    total: 1e21,
    internal: 'stripped by the contract',
  };
  const shopModule = defineModule({
    contract: shop,
    create: () => ({ handlers: { order: () => answers, loose: () => ({ a: 'x', extra: { b: { deep: [1, -0] }, a: 'é' } }) } }),
  });

  it('answers with the bytes JSON.stringify would write of the parsed output, compiled or not', async () => {
    const kernel = createKernel({ modules: [shopModule], logger: silentLogger });
    await kernel.start();
    const gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, docsPath: false, rateLimit: false });
    gateways.push(gateway);
    const url = await gateway.listen();
    const post = async (name: string, body: unknown) => {
      const response = await fetch(`${url}/shop/${name}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      return { status: response.status, type: response.headers.get('content-type'), text: await response.text() };
    };
    expect(await post('order', { id: 'o-1' })).toEqual({
      status: 200,
      type: 'application/json; charset=utf-8',
      text: JSON.stringify(Order.parse(answers)),
    });
    expect(await post('loose', {})).toEqual({ status: 200, type: 'application/json; charset=utf-8', text: '{"a":"x","extra":{"b":{"deep":[1,0]},"a":"é"}}' });
  });

  it('writes with JSON.stringify when the kernel hosts the module under another contract object', async () => {
    // The gateway is given a narrower copy of the contract: the hosted module's schema parses the
    // output (keeping `total`), so the gateway must not drop what its own copy does not name.
    const narrower = defineContract({
      name: 'shop',
      version: '1.0.0',
      operations: { order: operation({ input: z.object({ id: z.string() }), output: Order.omit({ total: true }) }) },
    });
    const kernel = createKernel({ modules: [shopModule], logger: silentLogger });
    await kernel.start();
    const gateway = await createHttpGateway({ kernel, contracts: [narrower], port: 0, logger: silentLogger, metrics: false, docsPath: false, rateLimit: false });
    gateways.push(gateway);
    const url = await gateway.listen();
    const response = await fetch(`${url}/shop/order`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"id":"o-1"}' });
    expect(await response.text()).toBe(JSON.stringify(Order.parse(answers)));
  });
});
