import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { KeelError, createKernel, defineContract, defineError, defineModule, event, isKeelError, operation, silentLogger, text } from 'keel';

function refusal(define: () => unknown): KeelError {
  try {
    define();
  } catch (error) {
    expect(isKeelError(error, 'INVALID_CONTRACT')).toBe(true);
    return error as KeelError;
  }
  throw new Error('expected the contract to be refused');
}

const ok = z.object({ ok: z.boolean() });

describe('kernel contracts - definition', () => {
  it('keeps a contract as plain, frozen data with a DI token', () => {
    const catalog = defineContract({
      name: 'catalog',
      version: '1.0.0',
      operations: { get: operation({ input: z.object({ sku: z.string() }), output: ok, idempotent: true }) },
      events: { added: event({ payload: z.object({ sku: z.string() }), delivery: 'durable' }) },
    });
    expect(catalog.name).toBe('catalog');
    expect(catalog.operations.get.idempotent).toBe(true);
    expect(catalog.operations.get.errors).toEqual([]);
    expect(catalog.events.added.delivery).toBe('durable');
    expect(typeof catalog.token).toBe('symbol');
    expect(Object.isFrozen(catalog)).toBe(true);
  });

  it.each([
    ['bigint', z.object({ amount: z.bigint() }), 'input.amount', 'bigint'],
    ['Date', z.object({ at: z.date() }), 'input.at', 'z.iso.datetime()'],
    ['Map', z.object({ index: z.map(z.string(), z.string()) }), 'input.index', 'Map'],
    ['Set', z.object({ tags: z.set(z.string()) }), 'input.tags', 'Set'],
    ['symbol', z.object({ key: z.symbol() }), 'input.key', 'symbol'],
    ['function', z.object({ callback: z.function() }), 'input.callback', 'function'],
    ['class instance', z.object({ buffer: z.instanceof(Buffer) }), 'input.buffer', 'instance'],
    ['undefined', z.object({ nothing: z.undefined() }), 'input.nothing', 'undefined'],
    ['any', z.object({ blob: z.any() }), 'input.blob', 'z.json()'],
    ['transform', z.object({ name: z.string().transform((s) => s.length) }), 'input.name', 'transform'],
    ['nested in array', z.object({ lines: z.array(z.object({ at: z.date() })) }), 'input.lines[].at', 'Date'],
    ['nested in union', z.object({ v: z.union([z.string(), z.bigint()]) }), 'input.v', 'bigint'],
  ])('refuses %s at definition, naming the field', (_label, input, field, hint) => {
    const error = refusal(() =>
      defineContract({ name: 'shop', version: '1.0.0', operations: { place: operation({ input, output: ok }) } }),
    );
    expect(error.message).toContain(`shop.place ${field}`);
    expect(error.message).toContain(hint);
  });

  it('refuses a loose object, whose unknown keys would cross uncopied and unchecked', () => {
    const error = refusal(() =>
      defineContract({
        name: 'shop',
        version: '1.0.0',
        operations: { place: operation({ input: z.looseObject({ id: z.string() }), output: ok }) },
      }),
    );
    expect(error.message).toContain('shop.place input');
    expect(error.message).toContain('loose object');
    expect(() =>
      defineContract({
        name: 'shop',
        version: '1.0.0',
        operations: { place: operation({ input: z.object({ id: z.string() }).passthrough(), output: ok }) },
      }),
    ).toThrow(/loose object/);
  });

  it('refuses a literal default whose nested objects every call would share, and accepts a function default', () => {
    const error = refusal(() =>
      defineContract({
        name: 'shop',
        version: '1.0.0',
        operations: {
          place: operation({ input: z.object({ options: z.object({ tags: z.array(z.string()) }).default({ tags: [] }) }), output: ok }),
        },
      }),
    );
    expect(error.message).toContain('shop.place input.options');
    expect(error.message).toContain('.default(() =>');
    expect(() =>
      defineContract({
        name: 'shop',
        version: '1.0.0',
        operations: {
          place: operation({
            input: z.object({
              options: z.object({ tags: z.array(z.string()) }).default(() => ({ tags: [] })),
              tags: z.array(z.string()).default([]),
            }),
            output: ok,
          }),
        },
      }),
    ).not.toThrow();
  });

  it('refuses unsafe event payloads and error data, naming them', () => {
    expect(
      refusal(() =>
        defineContract({
          name: 'shop',
          version: '1.0.0',
          operations: {},
          events: { placed: event({ payload: z.object({ at: z.date() }) }) },
        }),
      ).message,
    ).toContain('shop event placed payload.at');
    const Bad = defineError({ code: 'BAD', data: z.object({ when: z.date() }) });
    expect(
      refusal(() =>
        defineContract({ name: 'shop', version: '1.0.0', operations: { place: operation({ input: ok, output: ok, errors: [Bad] }) } }),
      ).message,
    ).toContain('error BAD data.when');
  });

  it('accepts JSON-safe schemas, including z.json(), recursion, enums, records and ISO dates', () => {
    type Node = { name: string; children: Node[] };
    const Tree: z.ZodType<Node> = z.lazy(() => z.object({ name: z.string(), children: z.array(Tree) }));
    const contract = defineContract({
      name: 'docs',
      version: '0.1.0',
      operations: {
        save: operation({
          input: z.object({
            meta: z.json(),
            tree: Tree,
            at: z.iso.datetime(),
            kind: z.enum(['a', 'b']),
            counts: z.record(z.string(), z.number()),
            note: z.string().optional().nullable(),
            pair: z.tuple([z.string(), z.number()]),
            mode: z.literal('fast').default('fast'),
          }),
          output: ok,
        }),
      },
    });
    expect(contract.name).toBe('docs');
  });

  it.each([
    ['a bad name', { name: 'Shop', version: '1.0.0' }, 'lower-kebab-case'],
    ['a bad version', { name: 'shop', version: '1' }, 'semver'],
  ])('refuses %s', (_label, spec, message) => {
    expect(refusal(() => defineContract({ ...spec, operations: {} })).message).toContain(message);
  });

  it('refuses the same error declared twice on one operation', () => {
    const Gone = defineError({ code: 'GONE', data: z.object({}) });
    expect(
      refusal(() =>
        defineContract({ name: 'shop', version: '1.0.0', operations: { x: operation({ input: ok, output: ok, errors: [Gone, Gone] }) } }),
      ).message,
    ).toContain('GONE twice');
  });

  it('refuses an error code that is not SCREAMING_SNAKE_CASE', () => {
    expect(refusal(() => defineError({ code: 'outOfStock', data: z.object({}) })).message).toContain('SCREAMING_SNAKE_CASE');
  });

  it('refuses a wrongly typed timeoutMs, idempotent, event delivery or error kind, naming the field and what it takes', () => {
    const loose = (spec: unknown): never => spec as never;
    // A string timeout once made a string deadline (no deadline at all); a misspelt delivery a notification, lost when nobody listens.
    expect(refusal(() => operation(loose({ input: ok, output: ok, timeoutMs: '50' }))).message).toBe(
      'timeoutMs must be a number of milliseconds above 0 and at most 2147483647, got "50".',
    );
    expect(refusal(() => operation(loose({ input: ok, output: ok, idempotent: 'yes' }))).message).toBe('idempotent must be true or false, got "yes".');
    expect(refusal(() => event(loose({ payload: ok, delivery: 'Durable' }))).message).toBe(
      'delivery must be "notification" or "durable", got "Durable".',
    );
    expect(refusal(() => defineError(loose({ code: 'GONE', kind: 'missing', data: z.object({}) }))).message).toBe(
      'Error GONE: kind must be one of not-found, conflict, invalid, unprocessable, forbidden, unauthenticated, rate-limited, unavailable, got "missing".',
    );
    for (const define of [() => operation(loose(undefined)), () => event(loose(undefined)), () => defineError(loose(undefined)), () => defineContract(loose(undefined))]) {
      expect(refusal(define).message).toMatch(/ takes an object /);
    }
  });
});

describe('kernel contracts - declared errors', () => {
  const OutOfStock = defineError({
    code: 'OUT_OF_STOCK',
    kind: 'conflict',
    data: z.object({ sku: z.string(), available: z.number().int() }),
    message: (data) => `only ${data.available} of ${data.sku} left`,
  });

  it('is a class: constructed with data, matched with instanceof and is()', () => {
    const error = new OutOfStock({ sku: 'KB-1', available: 2 });
    expect(error).toBeInstanceOf(OutOfStock);
    expect(error).toBeInstanceOf(Error);
    expect(OutOfStock.is(error)).toBe(true);
    expect(error.code).toBe('OUT_OF_STOCK');
    expect(error.kind).toBe('conflict');
    expect(error.data).toEqual({ sku: 'KB-1', available: 2 });
    expect(error.message).toBe('only 2 of KB-1 left');
  });

  it('refuses data that does not match its schema', () => {
    expect(() => new OutOfStock({ sku: 'KB-1', available: 'many' } as never)).toThrow(/OUT_OF_STOCK/);
  });
});

describe('kernel contracts - text()', () => {
  const notes = defineContract({
    name: 'notes',
    version: '1.0.0',
    operations: { addNote: operation({ input: z.object({ note: text().max(20) }), output: z.object({ note: z.string() }) }) },
  });

  it.each([
    ['plain text', 'a note'],
    ['accents and an emoji (a surrogate pair)', 'café ☕ 😀'],
    ['the empty string', ''],
  ])('passes %s', (_what, value) => {
    expect(text().safeParse(value).success).toBe(true);
  });

  it.each([
    ['a NUL character', 'a\u0000b'],
    ['a lone high surrogate', 'c-\ud800'],
    ['a lone low surrogate', '\udc00x'],
    ['a pair split by a high surrogate', '\ud83d\ud83d\ude00'],
  ])('refuses %s, saying what to remove', (_what, value) => {
    const result = text().safeParse(value);
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toContain('remove NUL characters');
  });

  it('carries its rule as a JSON Schema pattern that refuses the same strings with and without the u flag', () => {
    const schema = z.toJSONSchema(text()) as { pattern?: string };
    expect(schema.pattern).toBeDefined();
    for (const flags of ['', 'u']) {
      const pattern = new RegExp(schema.pattern as string, flags);
      expect(['a note', 'café ☕ 😀'].map((value) => pattern.test(value))).toEqual([true, true]);
      expect(['a\u0000b', 'c-\ud800', '\udc00x'].map((value) => pattern.test(value))).toEqual([false, false, false]);
    }
  });

  it('refuses a call whose text field holds a NUL character with INVALID_INPUT naming the field, before the handler runs', async () => {
    let ran = 0;
    const kernel = createKernel({
      logger: silentLogger,
      modules: [defineModule({ contract: notes, create: () => ({ handlers: { addNote: ({ note }) => ((ran += 1), { note }) } }) })],
    });
    await kernel.start();
    try {
      const error = await kernel.client(notes).addNote({ note: 'a\u0000b' }).catch((failure: unknown) => failure);
      expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
      expect((error as Error).message).toContain('note');
      expect(ran).toBe(0);
      expect(await kernel.client(notes).addNote({ note: '😀' })).toEqual({ note: '😀' });
    } finally {
      await kernel.stop();
    }
  });
});

describe('kernel contracts - kernel.client', () => {
  const echo = z.object({ text: z.string() });
  const greeter = defineContract({ name: 'greeter', version: '1.0.0', operations: { hello: operation({ input: echo, output: echo }) } });
  const greeterModule = defineModule({ contract: greeter, create: () => ({ handlers: { hello: ({ text }) => ({ text: `hello ${text}` }) } }) });
  // The same contract as another caller's copy declares it: one more operation, a deadline of its own.
  const greeterNext = defineContract({
    name: 'greeter',
    version: '1.1.0',
    operations: { hello: operation({ input: echo, output: echo, timeoutMs: 1_234 }), wave: operation({ input: echo, output: echo }) },
  });

  it('refuses a client of something that is no contract (an import cycle leaves one undefined), saying so rather than naming a module "undefined"', () => {
    const kernel = createKernel({ modules: [greeterModule], logger: silentLogger });
    for (const [given, got] of [[undefined, 'undefined'], [{}, 'an object'], [greeterModule, 'an object']] as const) {
      let caught: unknown;
      try {
        kernel.client(given as never);
      } catch (error) {
        caught = error;
      }
      expect(isKeelError(caught, 'INVALID_TOPOLOGY'), String(caught)).toBe(true);
      expect((caught as Error).message).toBe(
        `kernel.client takes a contract made with defineContract(), such as kernel.client(orders), got ${got}; an import cycle can leave an imported contract undefined.`,
      );
    }
  });

  it('makes one client per contract object and caller: the same contract gives the same client, another contract of the same name a client of its own, whose new operation reaches the callee', async () => {
    const kernel = createKernel({ modules: [greeterModule], logger: silentLogger });
    await kernel.start();
    try {
      const first = kernel.client(greeter);
      expect(kernel.client(greeter)).toBe(first);
      expect(kernel.client(greeter, { caller: 'report' })).not.toBe(first);
      const next = kernel.client(greeterNext);
      expect(next).not.toBe(first);
      // Before, the first client came back for greeterNext: it had no `wave` at all.
      expect(typeof next.wave).toBe('function');
      const refused = await next.wave({ text: 'x' }).then(
        () => undefined,
        (error: unknown) => error,
      );
      // The callee (greeter 1.0.0) answers for itself: it has no such operation.
      expect(isKeelError(refused, 'UNKNOWN_OPERATION')).toBe(true);
      expect(await next.hello({ text: 'again' })).toEqual({ text: 'hello again' });
    } finally {
      await kernel.stop();
    }
  });
});
