/**
 * A contract's schemas, compiled for the call path. `z.compile` (zod 4.6) generates a validator
 * for a schema and returns a clone that runs it first, falling back to zod's own parser when it
 * fails or cannot model a feature: the same outcomes, values and issues, several times faster on
 * the small objects calls carry. Compiling costs about a millisecond a schema, so it happens on
 * an operation's first call, not when the kernel starts (an application with hundreds of
 * operations would start that much later); one clone per schema, shared by clients and served modules.
 */
import { z } from 'zod';

const compiled = new WeakMap<z.ZodType, z.ZodType>();

/** `schema`, compiled (see the file's header); the same clone every time for the same schema. */
export function compiledSchema<T extends z.ZodType>(schema: T): T {
  let clone = compiled.get(schema);
  if (clone === undefined) {
    try {
      clone = z.compile(schema);
    } catch {
      // z.compile never throws by its contract; should it, the schema parses as it always did.
      clone = schema;
    }
    compiled.set(schema, clone);
  }
  return clone as T;
}

/**
 * A schema on the call path: `safeParse` is the schema's, compiled on the first call.
 *
 * @example
 * ```ts
 * const input = new CallSchema(definition.input);
 * const parsed = input.safeParse(value); // compiles now, once
 * ```
 */
export class CallSchema<T extends z.ZodType> {
  #schema: T | undefined;

  constructor(readonly source: T) {}

  safeParse(value: unknown): z.ZodSafeParseResult<z.output<T>> {
    const schema = (this.#schema ??= compiledSchema(this.source));
    return schema.safeParse(value) as z.ZodSafeParseResult<z.output<T>>;
  }
}
