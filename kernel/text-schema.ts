/**
 * `text()`: the zod string of a contract field that a database will store. JSON carries any
 * UTF-16 string, PostgreSQL's text and jsonb do not: a NUL character fails the row ("invalid
 * byte sequence for encoding UTF8: 0x00"), a lone surrogate becomes U+FFFD in a text column and
 * fails a jsonb one. Refused at the boundary, such a string is an INVALID_INPUT naming the
 * field, before a handler wrote anything.
 */
import { z } from 'zod';

/**
 * Any number of characters but NUL, where a surrogate comes only as a high-low pair. The same
 * with and without the `u` flag (JSON Schema validators such as Ajv add it), so the pattern in
 * OpenAPI and `$SRV.INFO` refuses what zod refuses. Its two branches cannot both match at one
 * position, so it runs in linear time.
 */
const STORABLE_TEXT = /^(?:[^\u0000\uD800-\uDFFF]|[\uD800-\uDBFF][\uDC00-\uDFFF])*$/;

/** What a refused string's issue says: what is wrong and what to do. */
const STORABLE_TEXT_MESSAGE =
  'must be text a database can store: remove NUL characters (\\u0000) and unpaired UTF-16 surrogates (\\uD800-\\uDFFF); ' +
  'send binary data as base64';

/**
 * A zod string that refuses what PostgreSQL cannot store: a NUL character (`\u0000`) and a lone
 * UTF-16 surrogate. Every other character passes, emoji included. Chain length rules as on any
 * `z.string()`; the rule is a `regex`, so the field's JSON Schema (OpenAPI, `$SRV.INFO`)
 * carries it as a `pattern`.
 *
 * @example
 * ```ts
 * import { z } from 'zod';
 * import { operation, text } from 'keel/contract';
 *
 * const addNote = operation({ input: z.object({ note: text().min(1).max(500) }), output: z.object({ noteId: z.string() }) });
 * text().parse('café ☕ 😀'); // passes
 * text().safeParse('a\u0000b').success; // false
 * ```
 */
export function text(): z.ZodString {
  return z.string().regex(STORABLE_TEXT, STORABLE_TEXT_MESSAGE);
}
