/**
 * OpenAPI 3.1 from contracts alone: one path per operation, schemas from zod 4's
 * `z.toJSONSchema`, declared errors as documented responses.
 */
import { z } from 'zod';
import type { AnyContract } from 'keel';
import type { AnyOperation } from 'keel/transport';
import {
  AUTH_RESPONSES,
  BEARER_SCHEME,
  IDEMPOTENCY_KEY_PARAMETER,
  KEYED_RESPONSES,
  PROBLEM_SCHEMA,
  SCHEMA_REF,
  STANDARD_RESPONSES,
  declaredProblemSchema,
  genericResponse,
  problemContent,
  type GenericResponse,
} from './openapi-problems.js';
import { titleOfCode } from './problem.js';
import { HTTP_STATUS_BY_CODE, HTTP_STATUS_BY_KIND } from './status.js';

/** A JSON object; the OpenAPI document is plain JSON. */
export type JsonObject = { [key: string]: unknown };

/**
 * An OpenAPI 3.1 document, as {@link createOpenApiDocument} builds it: plain JSON.
 *
 * @example
 * ```ts
 * const document: OpenApiDocument = createOpenApiDocument({ contracts: [orders] });
 * console.log(Object.keys(document.paths)); // ['/orders/placeOrder', ...]
 * ```
 */
export interface OpenApiDocument extends JsonObject {
  readonly openapi: string;
  readonly info: { readonly title: string; readonly version: string; readonly description?: string };
  readonly paths: Record<string, JsonObject>;
  readonly components: { readonly schemas: Record<string, JsonObject> } & JsonObject;
}

/**
 * What {@link createOpenApiDocument} takes.
 *
 * @example
 * ```ts
 * const options: OpenApiOptions = { contracts: [catalog, orders], title: 'Shop API', getOperations: ['catalog.getProduct'] };
 * const document = createOpenApiDocument(options);
 * ```
 */
export interface OpenApiOptions {
  /** The contracts whose operations are documented. */
  readonly contracts: readonly AnyContract[];
  /** `info.title` (default `keel API`). */
  readonly title?: string;
  /** `info.version` (default: the contracts' versions, such as `catalog 1.0.0, orders 1.2.0`). */
  readonly version?: string;
  /** `info.description`. */
  readonly description?: string;
  /** Operations (`module.operation`) also documented as `GET /<module>/<operation>?input=<json>`. */
  readonly getOperations?: readonly string[];
  /** Header read for the call's deadline (default `x-keel-timeout-ms`). */
  readonly timeoutHeader?: string;
  /** Header read and echoed for the correlation id (default `x-correlation-id`). */
  readonly correlationHeader?: string;
  /** Largest deadline the header may ask for on operations without their own `timeoutMs`; documented on the header. */
  readonly maxTimeoutMs?: number;
  /**
   * The gateway reads credentials (it has an `authenticate` hook): every operation may then be
   * called with a bearer token, and answers 401 when the token does not hold (default false).
   */
  readonly authenticates?: boolean;
}

/**
 * The HTTP path of an operation: `/<module>/<operation>`.
 *
 * @example
 * ```ts
 * operationPath('orders', 'placeOrder'); // '/orders/placeOrder'
 * ```
 */
export function operationPath(contract: string, operation: string): string {
  return `/${contract}/${operation}`;
}

/**
 * The operations of `contract` a gateway serves, by name: all but those its contract declares
 * `internal` (called by other modules only). The one rule for the routes, the OpenAPI paths and
 * the not-found answer, and for an application that says what its gateway serves.
 *
 * @example
 * ```ts
 * servedOperations(inventory).map(([name]) => name); // ['restock', 'getStock']: reserve and release are internal
 * ```
 */
export function servedOperations(contract: AnyContract): [string, AnyOperation][] {
  return Object.entries(contract.operations as Record<string, AnyOperation>).filter(([, operation]) => !operation.internal);
}

/**
 * Whether a GET of the operation needs its `?input=`: unless its input schema takes no input at
 * all (accepts `undefined` and refuses `{}`). An optional object does need it: `?page=2` without
 * `input` is a misspelt input, not an empty call. A schema that throws when tried needs it.
 *
 * @example
 * ```ts
 * getNeedsInput(z.object({ page: z.number() }).optional()); // true
 * ```
 */
export function getNeedsInput(schema: z.ZodType): boolean {
  try {
    return !(acceptsUndefined(schema) && !schema.safeParse({}).success);
  } catch {
    return true;
  }
}

/** Whether `schema` takes no value (a call without input); false when trying throws. */
function acceptsUndefined(schema: z.ZodType): boolean {
  try {
    return schema.safeParse(undefined).success;
  } catch {
    return false;
  }
}

const RESPONSE_REF = '#/components/responses/';
const PARAMETER_REF = '#/components/parameters/';

/** Collects component schemas, hoisting zod's `$defs` and rewriting their references. */
class SchemaCollector {
  readonly schemas: Record<string, JsonObject> = {};

  /** Adds `schema` as component `name` and returns a `$ref` to it. */
  add(name: string, schema: z.ZodType, io: 'input' | 'output'): JsonObject {
    const generated = z.toJSONSchema(schema, { io, unrepresentable: 'any', cycles: 'ref', reused: 'inline' }) as JsonObject;
    this.put(name, this.#hoist(name, generated, io));
    return { $ref: `${SCHEMA_REF}${name}` };
  }

  /** Adds a ready JSON Schema as component `name`; the first definition of a name wins. */
  put(name: string, schema: JsonObject): void {
    if (!(name in this.schemas)) this.schemas[name] = schema;
  }

  #hoist(owner: string, generated: JsonObject, io: 'input' | 'output'): JsonObject {
    const { $schema: _schema, $defs, ...root } = generated;
    const names = new Map<string, string>();
    const definitions = ($defs ?? {}) as Record<string, JsonObject>;
    for (const key of Object.keys(definitions)) {
      // zod names anonymous shared or recursive schemas `__schemaN`; a schema with a global
      // `.meta({ id })` keeps its id and is shared by every operation that uses it.
      names.set(key, key.startsWith('__') ? `${owner}.${key.replace(/^_+/, '')}` : key);
    }
    const rewrite = (node: unknown): unknown => {
      if (Array.isArray(node)) return node.map(rewrite);
      if (typeof node !== 'object' || node === null) return node;
      const out: JsonObject = {};
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') out[key] = this.#target(value, owner, names);
        else out[key] = rewrite(value);
      }
      return out;
    };
    for (const [key, definition] of Object.entries(definitions)) {
      let name = names.get(key) as string;
      const body = rewrite(definition) as JsonObject;
      const existing = this.schemas[name];
      if (existing !== undefined && JSON.stringify(existing) !== JSON.stringify(body)) {
        // The same id read as input (defaults optional) and as output differs: keep both.
        name = `${name}.${io}`;
        names.set(key, name);
      }
      this.put(name, rewrite(definition) as JsonObject);
    }
    return rewrite(root) as JsonObject;
  }

  #target(reference: string, owner: string, names: ReadonlyMap<string, string>): string {
    if (reference === '#') return `${SCHEMA_REF}${owner}`;
    const match = /^#\/\$defs\/([^/]+)(.*)$/.exec(reference);
    if (match === null) return reference;
    const name = names.get(match[1] as string) ?? match[1];
    return `${SCHEMA_REF}${name}${match[2] ?? ''}`;
  }
}

function operationDescription(contract: AnyContract, name: string, operation: AnyOperation): string {
  const lines = [operation.description ?? `${contract.name}.${name}`];
  lines.push('');
  lines.push(
    operation.idempotent
      ? 'Idempotent: safe to retry, also after a timeout.'
      : 'Not idempotent: after a timeout (504) the outcome is unknown; retry only after a 503.',
  );
  if (operation.timeoutMs !== undefined) lines.push(`Deadline: ${operation.timeoutMs} ms unless the caller asks for less.`);
  if (operation.errors.length > 0) {
    lines.push('', 'Declared errors:');
    for (const error of operation.errors) {
      lines.push(`- \`${error.code}\` (${HTTP_STATUS_BY_KIND[error.kind]}, ${error.kind})${error.description ? `: ${error.description}` : ''}`);
    }
  }
  return lines.join('\n');
}

/**
 * Builds the OpenAPI 3.1 document of the given contracts' operations. The gateway serves it at
 * `/openapi.json`; call it yourself to write the document to a file or feed a client generator.
 *
 * @example
 * ```ts
 * import { writeFile } from 'node:fs/promises';
 * import { createOpenApiDocument } from 'keel/http';
 * import { catalog } from './modules/catalog/contract.js';
 *
 * const document = createOpenApiDocument({ contracts: [catalog], title: 'Shop API' });
 * await writeFile('openapi.json', JSON.stringify(document, null, 2));
 * ```
 */
export function createOpenApiDocument(options: OpenApiOptions): OpenApiDocument {
  const getOperations = new Set(options.getOperations ?? []);
  const timeoutHeader = options.timeoutHeader ?? 'x-keel-timeout-ms';
  const collector = new SchemaCollector();
  collector.put('Problem', PROBLEM_SCHEMA);

  const responses: Record<string, JsonObject> = {};
  let keyed = false;
  /** The generic responses some operation gives. */
  const used = new Set<GenericResponse>();
  for (const [status, standard] of [...Object.entries(STANDARD_RESPONSES), ...Object.entries(KEYED_RESPONSES)]) {
    for (const code of standard.codes) {
      if (String(HTTP_STATUS_BY_CODE[code as keyof typeof HTTP_STATUS_BY_CODE]) !== status) {
        throw new Error(`OpenAPI standard response ${status} lists ${code}, which the status table maps elsewhere.`);
      }
    }
    if (KEYED_RESPONSES[status] === standard) continue;
    responses[standard.name] = genericResponse(standard);
  }

  const parameters: Record<string, JsonObject> = {
    CorrelationId: {
      name: options.correlationHeader ?? 'x-correlation-id',
      in: 'header',
      required: false,
      description: 'Correlation id to carry through every call and event of this request (generated when absent; echoed in the response).',
      schema: { type: 'string', maxLength: 128 },
    },
    Traceparent: {
      name: 'traceparent',
      in: 'header',
      required: false,
      description: 'W3C trace context, propagated unchanged to every module.',
      schema: { type: 'string', pattern: '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$' },
    },
    Timeout: {
      name: timeoutHeader,
      in: 'header',
      required: false,
      description:
        "Deadline of the call in milliseconds. It can only shorten the operation's own deadline" +
        (options.maxTimeoutMs === undefined ? '.' : ` (${options.maxTimeoutMs} ms for operations that declare none).`),
      schema: { type: 'integer', minimum: 1 },
    },
  };
  const headerRefs = ['CorrelationId', 'Traceparent', 'Timeout'].map((name) => ({ $ref: `${PARAMETER_REF}${name}` }));
  const keyRef = { $ref: `${PARAMETER_REF}IdempotencyKey` };

  const paths: Record<string, JsonObject> = {};
  const tags: JsonObject[] = [];
  let authenticated = options.authenticates === true;
  for (const contract of options.contracts) {
    const served = servedOperations(contract);
    // A module whose operations are all internal serves nothing here: no tag without a path.
    if (served.length === 0) continue;
    tags.push({ name: contract.name, description: contract.description ?? `The ${contract.name} module (contract ${contract.version}).` });
    for (const [name, operation] of served) {
      const base = `${contract.name}.${name}`;
      const input = collector.add(`${base}.input`, operation.input, 'input');
      const output = collector.add(`${base}.output`, operation.output, 'output');

      const operationResponses: Record<string, JsonObject> = {
        '200': { description: `The output of ${base}.`, content: { 'application/json': { schema: output } } },
      };
      const declaredByStatus = new Map<number, { schemas: JsonObject[]; lines: string[] }>();
      for (const error of operation.errors) {
        const status = HTTP_STATUS_BY_KIND[error.kind];
        const component = `${contract.name}.${error.code}`;
        const data = collector.add(`${component}.data`, error.dataSchema, 'output');
        collector.put(component, declaredProblemSchema(error, data));
        const entry = declaredByStatus.get(status) ?? { schemas: [], lines: [] };
        entry.schemas.push({ $ref: `${SCHEMA_REF}${component}` });
        entry.lines.push(`\`${error.code}\`${error.description ? `: ${error.description}` : ` (${titleOfCode(error.code)})`}`);
        declaredByStatus.set(status, entry);
      }
      // A key runs a non-idempotent operation once (the module keeps the keys when it owns data); an idempotent one ignores it.
      const generic: Record<string, GenericResponse> = operation.idempotent ? { ...STANDARD_RESPONSES } : { ...STANDARD_RESPONSES, ...KEYED_RESPONSES };
      if (!operation.idempotent) keyed = true;
      if (operation.auth !== undefined) {
        // The contract's auth: a principal is required (401 without one), and a predicate may refuse it (403).
        generic['401'] = AUTH_RESPONSES.unauthenticated;
        if (typeof operation.auth === 'function') generic['403'] = AUTH_RESPONSES.forbidden;
      } else if (options.authenticates === true) {
        // No principal needed, but a token sent is checked: one that does not hold is 401 (error="invalid_token").
        generic['401'] = AUTH_RESPONSES.credentialsRefused;
      }
      for (const response of Object.values(generic)) used.add(response);
      for (const [status, standard] of Object.entries(generic)) {
        if (!declaredByStatus.has(Number(status))) operationResponses[status] = { $ref: `${RESPONSE_REF}${standard.name}` };
      }
      for (const [status, entry] of [...declaredByStatus].sort(([a], [b]) => a - b)) {
        const standard = generic[String(status)];
        const schemas = standard === undefined ? entry.schemas : [...entry.schemas, { $ref: `${SCHEMA_REF}Problem` }];
        const description = [...entry.lines, ...(standard === undefined ? [] : [standard.description])].join(' Or: ');
        operationResponses[String(status)] = {
          description,
          // The generic response's headers (Retry-After, WWW-Authenticate) hold for the declared errors of its status too.
          ...(standard?.headers === undefined ? {} : { headers: standard.headers }),
          // anyOf, not oneOf: the generic Problem matches every declared error's body too, so a body matches two branches.
          content: problemContent(schemas.length === 1 ? (schemas[0] as JsonObject) : { anyOf: schemas }),
        };
      }
      if (operation.auth !== undefined) authenticated = true;
      const security =
        operation.auth !== undefined ? [{ [BEARER_SCHEME]: [] }] : options.authenticates === true ? [{ [BEARER_SCHEME]: [] }, {}] : undefined;
      const common = {
        tags: [contract.name],
        summary: operation.description?.split('\n')[0] ?? base,
        description: operationDescription(contract, name, operation),
        responses: operationResponses,
        ...(security === undefined ? {} : { security }),
      };
      const item: JsonObject = {
        post: {
          ...common,
          operationId: base,
          parameters: operation.idempotent ? headerRefs : [...headerRefs, keyRef],
          requestBody: { required: true, content: { 'application/json': { schema: input } } },
        },
      };
      if (getOperations.has(base)) {
        item['get'] = {
          ...common,
          operationId: `${base}.get`,
          parameters: [
            {
              name: 'input',
              in: 'query',
              required: !acceptsUndefined(operation.input),
              description: 'The input as JSON (URL-encoded).',
              content: { 'application/json': { schema: input } },
            },
            ...headerRefs,
          ],
        };
      }
      paths[operationPath(contract.name, name)] = item;
    }
  }

  const version =
    options.version ?? (options.contracts.map((contract) => `${contract.name} ${contract.version}`).join(', ') || '0.0.0');
  return {
    openapi: '3.1.0',
    info: {
      title: options.title ?? 'keel API',
      version,
      ...(options.description === undefined ? {} : { description: options.description }),
    },
    tags,
    paths,
    components: {
      schemas: collector.schemas,
      responses: {
        ...responses,
        // Those that only some operations give, when one does.
        ...Object.fromEntries(
          [...Object.values(KEYED_RESPONSES), ...Object.values(AUTH_RESPONSES)]
            .filter((response) => used.has(response))
            .map((response) => [response.name, genericResponse(response)]),
        ),
      },
      parameters: keyed ? { ...parameters, IdempotencyKey: IDEMPOTENCY_KEY_PARAMETER } : parameters,
      ...(authenticated ? { securitySchemes: { [BEARER_SCHEME]: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } } } : {}),
    },
  };
}
