/**
 * Type-level tests: they pin what callers and handlers see. `npm test` runs `tsc` first, so a
 * `@ts-expect-error` that stops being an error fails the build.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  defineContract,
  defineError,
  defineModule,
  event,
  operation,
  type CallContext,
  type Client,
  type HandlerInput,
  type Principal,
  type HandlerOutput,
} from 'keel';
import type { ContractError } from 'keel/transport';

const UnknownSku = defineError({ code: 'UNKNOWN_SKU', kind: 'not-found', data: z.object({ sku: z.string() }) });

const catalog = defineContract({
  name: 'catalog',
  version: '1.0.0',
  operations: {
    get: operation({
      input: z.object({ sku: z.string(), locale: z.string().default('en') }),
      output: z.object({ sku: z.string(), priceCents: z.number().int(), tags: z.array(z.string()).default([]) }),
      errors: [UnknownSku],
    }),
  },
  events: { added: event({ payload: z.object({ sku: z.string() }) }) },
});

const billing = defineContract({
  name: 'billing',
  version: '1.0.0',
  operations: { charge: operation({ input: z.object({ cents: z.number() }), output: z.object({ id: z.string() }) }) },
});

const orders = defineContract({
  name: 'orders',
  version: '1.0.0',
  operations: { place: operation({ input: z.object({ sku: z.string() }), output: z.object({ orderId: z.string() }) }) },
});

type Get = (typeof catalog)['operations']['get'];

describe('kernel types - caller identity', () => {
  it("types context.principal and an auth predicate's arguments by the principal the application registered (the shop's, app/principal.ts)", () => {
    expectTypeOf<Principal>().toEqualTypeOf<{ sub: string; roles: string[] }>();
    expectTypeOf<CallContext['principal']>().toEqualTypeOf<{ sub: string; roles: string[] } | undefined>();
    operation({
      input: z.object({ shelf: z.string() }),
      output: z.object({}),
      auth: (principal, input) => {
        expectTypeOf(principal.roles).toEqualTypeOf<string[]>();
        expectTypeOf(input).toEqualTypeOf<{ shelf: string }>();
        return true;
      },
    });
    // @ts-expect-error auth is 'required' or a predicate (and defining the contract refuses it)
    expect(() => operation({ input: z.object({}), output: z.object({}), auth: 'optional' })).toThrow("auth must be 'required' or a function");
    // @ts-expect-error a predicate returns a boolean
    operation({ input: z.object({}), output: z.object({}), auth: () => 'yes' });
  });
});

describe('kernel types - inference', () => {
  it('types handlers by z.output of the input and z.input of the output', () => {
    expectTypeOf<HandlerInput<Get>>().toEqualTypeOf<{ sku: string; locale: string }>();
    expectTypeOf<HandlerOutput<Get>>().toEqualTypeOf<{ sku: string; priceCents: number; tags?: string[] | undefined }>();
  });

  it('types callers by z.input and results by z.output, as README tells an author to write them', () => {
    expectTypeOf<Parameters<Client<typeof catalog>['get']>[0]>().toEqualTypeOf<z.input<Get['input']>>();
    expectTypeOf<Client<typeof catalog>['get']>().returns.resolves.toEqualTypeOf<z.output<Get['output']>>();
    expectTypeOf<z.input<Get['input']>>().toEqualTypeOf<{ sku: string; locale?: string | undefined }>();
    expectTypeOf<z.output<Get['output']>>().toEqualTypeOf<{ sku: string; priceCents: number; tags: string[] }>();
  });

  it('generates a typed client from the contract, with no codegen', () => {
    type CatalogClient = Client<typeof catalog>;
    expectTypeOf<CatalogClient['get']>().parameter(0).toEqualTypeOf<{ sku: string; locale?: string | undefined }>();
    expectTypeOf<CatalogClient['get']>().returns.resolves.toEqualTypeOf<{ sku: string; priceCents: number; tags: string[] }>();
    const call = (client: CatalogClient) => {
      // @ts-expect-error sku must be a string
      void client.get({ sku: 42 });
      // @ts-expect-error sku is required
      void client.get({});
      // @ts-expect-error no such operation
      void client.remove({ sku: 'x' });
    };
    expectTypeOf(call).toBeFunction();
  });

  it('makes declared errors narrow with instanceof', () => {
    const error: unknown = new UnknownSku({ sku: 'x' });
    if (error instanceof UnknownSku) {
      expectTypeOf(error.data).toEqualTypeOf<{ sku: string }>();
      expectTypeOf(error.code).toEqualTypeOf<'UNKNOWN_SKU'>();
      expectTypeOf(error).toMatchTypeOf<ContractError<'UNKNOWN_SKU', { sku: string }>>();
    }
  });
});

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
const scratchFolders: string[] = [];
afterAll(() => {
  for (const folder of scratchFolders) rmSync(folder, { recursive: true, force: true });
});

/** Runs tsc on one file in a folder of this repository (so 'keel' resolves to its sources) and returns its output. */
function compile(source: string): { status: number | null; output: string } {
  mkdirSync(join(repository, '.scratch'), { recursive: true });
  const folder = mkdtempSync(join(repository, '.scratch', 'types-'));
  scratchFolders.push(folder);
  writeFileSync(join(folder, 'module.ts'), source);
  writeFileSync(
    join(folder, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        customConditions: ['keel-source'],
        strict: true,
        types: ['node'],
        experimentalDecorators: true,
        skipLibCheck: true,
        noEmit: true,
      },
      files: ['module.ts'],
    }),
  );
  const tsc = join(repository, 'node_modules', '.bin', 'tsc');
  const result = spawnSync(tsc, ['-p', folder, '--pretty', 'false'], { cwd: folder, encoding: 'utf8', timeout: 120_000 });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('kernel types - modules', () => {
  it('kernel types - get() of a contract missing from dependsOn names it and says where to declare it, in one error', { timeout: 130_000 }, () => {
    const { status, output } = compile(`import { z } from 'zod';
import { defineContract, defineModule, operation } from 'keel';

const books = defineContract({
  name: 'books',
  version: '1.0.0',
  operations: { getBook: operation({ input: z.object({ id: z.string() }), output: z.object({ title: z.string() }), idempotent: true }) },
});
const loans = defineContract({
  name: 'loans',
  version: '1.0.0',
  operations: { lend: operation({ input: z.object({ id: z.string() }), output: z.object({ title: z.string() }) }) },
});

export const loansModule = defineModule({
  contract: loans,
  create: ({ get }) => {
    const catalog = get(books);
    return { handlers: { lend: ({ id }) => catalog.getBook({ id }) } };
  },
});
`);
    expect(status, output).not.toBe(0);
    expect(output).toContain('module.ts(18,25): error TS2345:');
    expect(output).toContain(`parameter of type '"books is not in dependsOn: add it to defineModule({ dependsOn: [...] })"'`);
    // The client is still typed, so nothing else is reported (no 'Client<never>', no 'ServiceIdentifier<unknown>').
    expect(output.match(/error TS/g), output).toHaveLength(1);
    expect(output).not.toContain('ServiceIdentifier');
  });

  it('types handlers by the contract, and dependency clients by dependsOn', () => {
    defineModule({
      contract: orders,
      dependsOn: [catalog],
      subscribesTo: [catalog],
      create: ({ get, emit }) => {
        const catalogClient = get(catalog);
        expectTypeOf(catalogClient).toEqualTypeOf<Client<typeof catalog>>();
        // @ts-expect-error billing is not declared in dependsOn
        get(billing);
        // @ts-expect-error orders declares no events
        void emit('added', { sku: 'x' });
        return {
          handlers: {
            place: async ({ sku }) => {
              expectTypeOf(sku).toEqualTypeOf<string>();
              const product = await catalogClient.get({ sku });
              return { orderId: product.sku };
            },
          },
          events: {
            catalog: {
              added: (payload) => {
                expectTypeOf(payload).toEqualTypeOf<{ sku: string }>();
              },
            },
          },
        };
      },
    });
  });

  it('does not compile a module with a missing handler or a wrong output', () => {
    defineModule({
      contract: orders,
      // @ts-expect-error place is missing
      create: () => ({ handlers: {} }),
    });
    defineModule({
      contract: orders,
      create: () => ({
        handlers: {
          // @ts-expect-error orderId must be a string
          place: () => ({ orderId: 1 }),
        },
      }),
    });
  });

  it('does not compile a module with a handler its contract does not declare', () => {
    defineModule({
      contract: orders,
      create: () => ({
        handlers: {
          place: () => ({ orderId: 'o-1' }),
          // @ts-expect-error cancel is not an operation of orders
          cancel: () => ({}),
        },
      }),
    });
  });

  it('types emit by the module own events', () => {
    defineModule({
      contract: catalog,
      create: ({ emit }) => ({
        handlers: {
          get: async ({ sku }) => {
            await emit('added', { sku });
            // @ts-expect-error payload must match the event schema
            await emit('added', { id: sku });
            return { sku, priceCents: 1 };
          },
        },
      }),
    });
  });
});
