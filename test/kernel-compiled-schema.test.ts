import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CallSchema, compiledSchema } from '../kernel/compiled-schema.js';

const Line = z.object({ sku: z.string().min(1), quantity: z.number().int().positive() });
const schemas = {
  object: z.object({ customerId: z.string(), lines: z.array(Line), note: z.string().optional() }),
  refined: z.object({ from: z.number(), to: z.number() }).refine((range) => range.from <= range.to, 'from after to'),
  transformed: z.object({ at: z.string().transform((text) => text.length) }),
  strict: z.strictObject({ id: z.uuid() }),
  union: z.discriminatedUnion('kind', [z.object({ kind: z.literal('a'), a: z.number() }), z.object({ kind: z.literal('b'), b: z.string() })]),
};
const values: unknown[] = [
  { customerId: 'c-1', lines: [{ sku: 'KB-1', quantity: 2 }] },
  { customerId: 'c-1', lines: [{ sku: '', quantity: -1 }], extra: true },
  { customerId: 1, lines: 'no' },
  { from: 1, to: 2 },
  { from: 3, to: 2 },
  { at: 'abc' },
  { at: 3 },
  { id: '1f0c7b8e-2f43-4b8a-9a3e-7c1d2e3f4a5b' },
  { id: 'not a uuid', more: 1 },
  { kind: 'a', a: 1 },
  { kind: 'b', b: 1 },
  { kind: 'c' },
  null,
  'text',
];

describe('compiled schemas', () => {
  it('parse every value as zod does: the same success, data and issues', () => {
    for (const [name, schema] of Object.entries(schemas)) {
      const call = new CallSchema(schema);
      for (const value of values) {
        const expected = schema.safeParse(value);
        const got = call.safeParse(value);
        expect({ name, value, success: got.success }).toEqual({ name, value, success: expected.success });
        if (expected.success) expect(got.data).toEqual(expected.data);
        else expect(got.error?.issues).toEqual(expected.error.issues);
      }
    }
  });

  it('compile each schema once, shared by every caller, and leave the schema itself as it was', () => {
    const schema = schemas.object;
    expect(compiledSchema(schema)).toBe(compiledSchema(schema));
    expect(compiledSchema(schema)).not.toBe(schema);
    expect(schema.safeParse({ customerId: 'c', lines: [] }).success).toBe(true);
  });
});
