/**
 * Templates of a generated module: its contract, its implementation, its first migration when
 * it owns data, its test, and the test support file that runs an application in process or
 * over NATS.
 */
import { schemaOf } from 'keel/transport';
import { camelCase } from '../names.js';

/** A contract the new module depends on, as its source imports it. */
export interface DependencyImport {
  /** Module name, such as `catalog`. */
  readonly name: string;
  /** The contract's export in its contract file, such as `catalog`. */
  readonly exportName: string;
  /** Import path from the new module's folder, such as `../catalog/contract.js`. */
  readonly importPath: string;
}

/** A contract whose events the new module subscribes to, with the events it publishes. */
export interface SubscriptionImport extends DependencyImport {
  /** The contract's event names, in its declared order. */
  readonly events: readonly string[];
}

/** What the module templates need. */
export interface ModuleTemplateInput {
  /** Module name, lower-kebab-case. */
  readonly name: string;
  readonly dependsOn: readonly DependencyImport[];
  /** Events the module publishes, camelCase. */
  readonly events: readonly string[];
  /**
   * The module's operations, camelCase (default: the placeholder `hello`). The first one
   * publishes the events and, with `data`, counts greetings through `db`.
   */
  readonly operations?: readonly string[];
  /** Contracts whose events the module handles (`--subscribes-to`): one handler stub per event. */
  readonly subscribesTo?: readonly SubscriptionImport[];
  /**
   * Whether the module owns data (`--data`): a migration making its `greetings` table, and a
   * `hello` that records each greeting through `db` and says how many a name has had.
   */
  readonly data?: boolean;
}

/** Identifiers derived from a module name. */
export interface ModuleIdentifiers {
  /** `billing` → `billing`, `order-history` → `orderHistory`. */
  readonly contract: string;
  /** `billingModule`. */
  readonly module: string;
}

/**
 * The identifiers the generator writes for a module.
 *
 * @example
 * ```ts
 * moduleIdentifiers('order-history'); // { contract: 'orderHistory', module: 'orderHistoryModule' }
 * ```
 */
export function moduleIdentifiers(name: string): ModuleIdentifiers {
  const contract = camelCase(name);
  return { contract, module: `${contract}Module` };
}

/** The operations a template writes: `--operations`, or the placeholder `hello`. */
function operationsOf(input: ModuleTemplateInput): readonly [string, ...string[]] {
  const [first = 'hello', ...rest] = input.operations ?? [];
  return [first, ...rest];
}

/**
 * What an operation's generated handler answers: `Hello, Ada, from billing.` for the placeholder
 * `hello`, `sendInvoice: Ada, from billing.` for another name.
 */
function messageOf(module: string, operation: string, name: string): string {
  return operation === 'hello' ? `Hello, ${name}, from ${module}.` : `${operation}: ${name}, from ${module}.`;
}

/**
 * The module's `contract.ts`: its operations (the placeholder `hello` unless `--operations`
 * names them) and the requested events.
 *
 * @example
 * ```ts
 * contractFile({ name: 'billing', dependsOn: [], events: ['invoiceSent'], operations: ['sendInvoice'] });
 * ```
 */
export function contractFile(input: ModuleTemplateInput): string {
  const { contract } = moduleIdentifiers(input.name);
  const imports = ['defineContract', ...(input.events.length > 0 ? ['event'] : []), 'operation', ...(input.data ? ['text'] : [])].join(', ');
  const operations = operationsOf(input);
  const [first] = operations;
  const placeholder = input.operations === undefined || input.operations.length === 0;
  const what = placeholder ? 'a starting point to replace' : 'replace with what it really does';
  // An operation that records each greeting is not idempotent: a retry would count twice.
  // Its name is stored: text() refuses what the database cannot store (a NUL, a lone surrogate) as INVALID_INPUT.
  const counting = (name: string) => `    ${name}: operation({
      input: z.object({ name: text().min(1) }),
      output: z.object({ message: z.string(), greetings: z.number().int() }),
      description: 'Greets the caller and counts the greetings of each name in its own table; ${what}.',
    }),
`;
  const plain = (name: string) => `    ${name}: operation({
      input: z.object({ name: z.string().min(1) }),
      output: z.object({ message: z.string() }),
      idempotent: true,
      description: '${name === 'hello' ? 'Greets the caller' : 'Answers the caller'}; ${what}.',
    }),
`;
  const declared = operations.map((name) => (input.data && name === first ? counting(name) : plain(name))).join('');
  const example = input.data ? 'const { message, greetings } =' : 'const { message } =';
  const events =
    input.events.length === 0
      ? ''
      : `  events: {\n${input.events
          .map(
            (name) =>
              `    ${name}: event({\n` +
              `      payload: z.object({ name: z.string() }),\n` +
              `      description: 'Published by ${first}; replace with what really happened.',\n` +
              (input.data
                ? // It records a change to the module's data: written to the outbox in the transaction that makes
                  // the change, so a crash between the commit and the publish loses nothing.
                  `      // Durable: written in the transaction that records the greeting, kept until each subscribing module handled it.\n` +
                  `      delivery: 'durable',\n`
                : `      // A notification (at most once); delivery: 'durable' keeps it until each subscribing module handled it.\n`) +
              `    }),\n`,
          )
          .join('')}  },\n`;
  const start = placeholder
    ? `Start by replacing\n * \`hello\` with the module's first real operation.`
    : `Give each operation\n * the input and output it really takes.`;
  return `/**
 * The ${input.name} module's public door: the only file of the module that other modules may
 * import (from \`../${input.name}/contract.js\`). Everything else in the folder is private.
 *
 * @module
 */
import { z } from 'zod';
import { ${imports} } from 'keel/contract';

/**
 * The ${input.name} contract: what the module offers, as plain data. ${start}
 *
 * @example
 * \`\`\`ts
 * const ${contract}Client = kernel.client(${contract});
 * ${example} await ${contract}Client.${first}({ name: 'Ada' });
 * \`\`\`
 */
export const ${contract} = defineContract({
  name: '${input.name}',
  version: '0.1.0',
  description: 'What the ${input.name} module does, in one sentence.',
  operations: {
${declared}  },
${events}});
`;
}

/**
 * The module's `module.ts`: the implementation, with a client of every dependency resolved
 * once at start and a handler stub for every event it subscribes to; when it owns data, its
 * first operation records each greeting through `db`.
 *
 * @example
 * ```ts
 * moduleFile({ name: 'billing', dependsOn: [{ name: 'catalog', exportName: 'catalog', importPath: '../catalog/contract.js' }], events: [], data: true });
 * ```
 */
export function moduleFile(input: ModuleTemplateInput): string {
  const ids = moduleIdentifiers(input.name);
  const subscribesTo = input.subscribesTo ?? [];
  const hasEvents = input.events.length > 0;
  const hasDependencies = input.dependsOn.length > 0;
  const hasSubscriptions = subscribesTo.length > 0;
  const imported = new Map<string, DependencyImport>();
  for (const contract of [...input.dependsOn, ...subscribesTo]) if (!imported.has(contract.name)) imported.set(contract.name, contract);
  const dependencyImports = [...imported.values()]
    .map((dependency) => `import { ${dependency.exportName} } from '${dependency.importPath}';\n`)
    .join('');
  const dependsOn = hasDependencies ? `  dependsOn: [${input.dependsOn.map((dependency) => dependency.exportName).join(', ')}],\n` : '';
  const subscribes = hasSubscriptions ? `  subscribesTo: [${subscribesTo.map((source) => source.exportName).join(', ')}],\n` : '';
  const tools = [
    ...(input.data ? ['db'] : []),
    ...(hasDependencies ? ['get'] : []),
    ...(hasEvents ? ['emit'] : []),
    ...(hasSubscriptions ? ['logger'] : []),
  ];
  const clientNames = input.dependsOn.map((dependency) => `${camelCase(dependency.name)}Client`);
  const clients =
    input.dependsOn.map((dependency, index) => `    const ${clientNames[index]} = get(${dependency.exportName});\n`).join('') +
    // Read once, so that a project with noUnusedLocals (keel's own) typechecks before a handler calls them.
    (hasDependencies ? `    void [${clientNames.join(', ')}]; // delete once the handlers call them\n` : '');
  const clientsComment = hasDependencies
    ? `    // Clients of the contracts ${input.name} depends on, resolved once: call them from the handlers.\n`
    : '';
  const example = [ids.module, ...input.dependsOn.map((dependency) => `${camelCase(dependency.name)}Module`)].join(', ');
  const [first] = operationsOf(input);
  const schema = schemaOf(input.name);
  const eventHandlers = hasSubscriptions
    ? `      // The events ${input.name} subscribes to: each handler runs once per event, in one of its instances.\n` +
      '      events: {\n' +
      subscribesTo
        .map(
          (source) =>
            `        ${quoteKey(source.name)}: {\n` +
            source.events
              .map(
                (event) =>
                  `          ${event}: (payload) => {\n` +
                  `            // Replace with what ${input.name} does when ${source.name} publishes ${event}.\n` +
                  `            logger.info({ event: '${source.name}.${event}', payload }, 'received');\n` +
                  '          },\n',
              )
              .join('') +
            '        },\n',
        )
        .join('') +
      '      },\n'
    : '';
  return `/**
 * The ${input.name} module: implements the {@link ${ids.contract}} contract${
    input.data ? `, keeping its data in its own\n * schema (${schema}), which the migrations in ./migrations/ make` : ''
  }.
 */
import { defineModule } from 'keel';
${dependencyImports}import { ${ids.contract} } from './contract.js';
${
  input.data
    ? `
/** Counts one more greeting of a name (the first one makes its row) and returns the count. */
const GREET = \`insert into greetings (name) values ($1)
  on conflict (name) do update set times = greetings.times + 1
  returning times\`;
`
    : ''
}
/**
 * The ${input.name} module, listed in the application manifest.
 *
 * @example
 * \`\`\`ts
 * const kernel = createKernel({ modules: [${example}]${input.data ? ', database: await createPGliteDatabase()' : ''} });
 * await kernel.start();
 * await kernel.client(${ids.contract}).${first}({ name: 'Ada' });
 * \`\`\`
 */
export const ${ids.module} = defineModule({
  contract: ${ids.contract},
${dependsOn}${subscribes}${
    input.data
      ? `  // ${input.name} owns data: its own schema, where keel applies the .sql files of migrations/ at start,\n` +
        '  // in name order, each once. Reach it through db only.\n' +
        "  data: { migrations: new URL('./migrations/', import.meta.url) },\n"
      : ''
  }  create: (${tools.length > 0 ? `{ ${tools.join(', ')} }` : ''}) => {
${clientsComment}${clients}    return {
      handlers: {
${operationHandlers(input)}      },
${eventHandlers}    };
  },
});
`;
}

/** The generated operation handlers, indented for the handlers object. */
function operationHandlers(input: ModuleTemplateInput): string {
  const [first, ...rest] = operationsOf(input);
  const message = (operation: string) => `\`${messageOf(input.name, operation, '${name}')}\``;
  const others = rest.map((operation) => `        ${operation}: ({ name }) => ({ message: ${message(operation)} }),\n`).join('');
  return firstHandler(input, first, message(first)) + others;
}

/** The handler of the first operation: it publishes the events and, with data, counts greetings. */
function firstHandler(input: ModuleTemplateInput, operation: string, message: string): string {
  const emits = (indent: string) => input.events.map((name) => `${indent}await emit('${name}', { name });\n`).join('');
  if (!input.data) {
    return input.events.length > 0
      ? `        ${operation}: async ({ name }) => {\n${emits('          ')}          return { message: ${message} };\n        },\n`
      : `        ${operation}: ({ name }) => ({ message: ${message} }),\n`;
  }
  // The insert returns its row; 1 is what the first greeting counts.
  const count = "const { rows } = await db.query<{ times: number }>(GREET, [name]);\n";
  const answer = `return { message: ${message}, greetings: rows[0]?.times ?? 1 };\n`;
  if (input.events.length === 0) {
    return `        ${operation}: async ({ name }) => {\n          ${count}          ${answer}        },\n`;
  }
  return (
    `        ${operation}: ({ name }) =>\n` +
    '          // One transaction: the count and the events (durable, so written to its outbox) commit together; keel publishes them once it commits.\n' +
    '          db.transaction(async () => {\n' +
    `            ${count}${emits('            ')}            ${answer}` +
    '          }),\n'
  );
}

/**
 * The first migration of a module that owns data, `migrations/001_<name>.sql`: the table its
 * generated `hello` counts greetings in.
 *
 * @example
 * ```ts
 * writeFileSync('modules/billing/migrations/001_billing.sql', migrationFile({ name: 'billing', dependsOn: [], events: [], data: true }));
 * ```
 */
export function migrationFile(input: ModuleTemplateInput): string {
  return `-- The ${input.name} module's first migration, in its own schema (${schemaOf(input.name)}): how many times each name was greeted.
-- keel applies the .sql files of this folder at start, in name order, each once, and records them.
-- Once applied, a file is history: change the schema in a new one (002_...), never here.
create table greetings (
  name text primary key,
  times integer not null default 1 check (times > 0)
);
`;
}

/** What {@link moduleTestFile} needs besides the module. */
export interface ModuleTestInput extends ModuleTemplateInput {
  /** Import path of the manifest from the test folder, such as `../modules/index.js`. */
  readonly manifestImport: string;
  /** Import path of the module's contract from the test folder. */
  readonly contractImport: string;
  /** Import path of the test support file from the test folder. */
  readonly supportImport: string;
}

/**
 * The module's test: starts the whole application (in process, or over NATS when
 * `KEEL_NATS_URL` is set) and calls each operation through the contract's typed client, so
 * renaming or reshaping an operation in contract.ts fails `tsc` on this file too.
 *
 * @example
 * ```ts
 * moduleTestFile({ name: 'billing', dependsOn: [], events: [], manifestImport: '../modules/index.js',
 *   contractImport: '../modules/billing/contract.js', supportImport: './support/application.js' });
 * ```
 */
export function moduleTestFile(input: ModuleTestInput): string {
  const ids = moduleIdentifiers(input.name);
  const hasEvents = input.events.length > 0;
  const probeName = `${input.name}-probe`;
  const keelImports = hasEvents ? 'defineContract, defineModule, isKeelError' : 'isKeelError';
  const [first, ...rest] = operationsOf(input);
  const probe = hasEvents
    ? `
// A module that subscribes to ${input.name}'s events, so the test sees what other modules would.
const published: Record<string, (payload: unknown) => void> = {};
const received = {
${input.events.map((name) => `  ${name}: new Promise<unknown>((resolve) => (published['${name}'] = resolve)),\n`).join('')}};
const probeModule = defineModule({
  contract: defineContract({ name: '${probeName}', version: '1.0.0', operations: {} }),
  subscribesTo: [${ids.contract}],
  create: () => ({
    handlers: {},
    events: {
      ${quoteKey(input.name)}: {
${input.events
  .map((name) => `        ${name}: (payload) => {\n          if (payload.name === 'Events') published['${name}']?.(payload);\n        },\n`)
  .join('')}      },
    },
  }),
});
`
    : '';
  const eventsTest = hasEvents
    ? `
  it('${input.name} - publishes its events', async () => {
    await app.caller.client(${ids.contract}).${first}({ name: 'Events' });
${input.events.map((name) => `    await expect(received.${name}).resolves.toEqual({ name: 'Events' });\n`).join('')}  });
`
    : '';
  const dataTest = input.data
    ? `
  it('${input.name} - counts the greetings of each name in its own data', async () => {
    const client = app.caller.client(${ids.contract});
    await client.${first}({ name: 'Grace' });
    await expect(client.${first}({ name: 'Grace' })).resolves.toEqual({ message: '${messageOf(input.name, first, 'Grace')}', greetings: 2 });
    await expect(client.${first}({ name: 'Linus' })).resolves.toMatchObject({ greetings: 1 });
  });
`
    : '';
  const answers = (operation: string, counted: boolean) => `
  it('${input.name} - answers ${operation}', async () => {
    const client = app.caller.client(${ids.contract});
    await expect(client.${operation}({ name: 'Ada' })).resolves.toEqual({ message: '${messageOf(input.name, operation, 'Ada')}'${counted ? ', greetings: 1' : ''} });
  });
`;
  return `/**
 * The ${input.name} module, tested through its contract: in one process by default, over NATS
 * when KEEL_NATS_URL is set (see ${input.supportImport.replace(/\.js$/, '.ts')}). The client is typed by the
 * contract: when an operation changes there, \`npm test\` (which typechecks first) points here.${
    input.data ? '\n * Its data starts empty: the application of this file has a database in memory of its own.' : ''
  }
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ${keelImports} } from 'keel';
import { modules } from '${input.manifestImport}';
import { ${ids.contract} } from '${input.contractImport}';
import { startApplication, type TestApplication } from '${input.supportImport}';
${probe}
describe('${input.name} - through its contract', () => {
  let app: TestApplication;

  beforeAll(async () => {
    app = await startApplication(${hasEvents ? '[...modules, probeModule]' : 'modules'});
  });

  afterAll(async () => {
    await app?.stop();
  });
${answers(first, input.data === true)}${rest.map((operation) => answers(operation, false)).join('')}${dataTest}
  it('${input.name} - refuses input its contract does not allow', async () => {
    const error = await app.caller
      .client(${ids.contract})
      .${first}({ name: '' })
      .catch((caught: unknown) => caught);
    expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
  });
${eventsTest}});
`;
}

function quoteKey(name: string): string {
  return /^[a-z][a-z0-9]*$/.test(name) ? name : `'${name}'`;
}

/**
 * `test/support/application.ts`: starts an application for tests, in one process or, when
 * `KEEL_NATS_URL` is set, served by one kernel and called from another over NATS. When a module
 * owns data, the kernel serving the modules gets a PGlite database in memory of its own, made
 * for that application and closed when it stops; an application whose modules own none never
 * loads PGlite. The file decides when it runs, so it stays right when `keel generate module
 * --data` adds the first module that owns data.
 *
 * `configPath` is the application's `keel.config.ts` relative to the support file.
 *
 * @example
 * ```ts
 * writeFileSync('test/support/application.ts', testSupportFile('../../keel.config.ts'));
 * ```
 */
export function testSupportFile(configPath = '../../keel.config.ts'): string {
  return `/**
 * Starts the application for tests. By default everything runs in this process. When
 * KEEL_NATS_URL is set (for example \`KEEL_NATS_URL=nats://127.0.0.1:4222 npm test\`), the modules
 * are served by one kernel and called from a second one, so every call and every event crosses
 * NATS. Each application gets its own subject prefix, so test files never answer each other, and
 * its JetStream streams and consumers are removed when it stops.
 * When a module owns data, the serving kernel keeps it in a PGlite database in memory made for
 * this application alone: every test file starts from empty tables, and nothing is left behind.
 * Both kernels get what keel.config.ts gives every process's kernel under keel start: its
 * principal schema (so a test may call with \`{ principal }\`), its resilience and data options.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createKernel, silentLogger, type AnyModule, type DatabaseEngine, type Kernel, type KernelOptions, type Transport } from 'keel';
import type { KeelConfig } from 'keel/config';

/** A running application under test. */
export interface TestApplication {
  /** The kernel to take clients from: \`app.caller.client(contract)\`. */
  readonly caller: Kernel;
  /** Stops both kernels, closes the NATS connections, removes this application's JetStream streams, closes the database. */
  stop(): Promise<void>;
}

/**
 * Starts \`modules\` in process, or over NATS when KEEL_NATS_URL is set.
 *
 * @example
 * \`\`\`ts
 * const app = await startApplication(modules);
 * await app.caller.client(greeter).hello({ name: 'Ada' });
 * await app.stop();
 * \`\`\`
 */
export async function startApplication(modules: readonly AnyModule[]): Promise<TestApplication> {
  const transports: Transport[] = [];
  const prefix = \`test-\${randomUUID().slice(0, 8)}\`;
  const connect = async (): Promise<Transport | undefined> => {
    if (!process.env['KEEL_NATS_URL']) return undefined;
    const { createNatsTransport, natsOptionsFromEnv } = await import('keel/nats');
    const transport = await createNatsTransport({ ...natsOptionsFromEnv(process.env), prefix, logger: silentLogger });
    transports.push(transport);
    return transport;
  };
  const configured = await configuredOptions();
  const database = await openDatabase(modules);
  const serverTransport = await connect();
  const server = createKernel({ ...configured, modules, logger: silentLogger, database, topology: { transport: serverTransport } });
  await server.start();
  const callerTransport = await connect();
  const caller =
    callerTransport === undefined
      ? server
      : createKernel({ ...configured, modules, logger: silentLogger, topology: { host: [], transport: callerTransport } });
  if (caller !== server) await caller.start();
  return {
    caller,
    async stop() {
      try {
        await caller.stop();
        await server.stop();
        for (const transport of transports) await transport.close();
        if (transports.length > 0) {
          // The streams and consumers made for this prefix outlive the connections: remove them, so a run leaves nothing behind.
          const { natsOptionsFromEnv, removeEventStreams } = await import('keel/nats');
          await removeEventStreams({ ...natsOptionsFromEnv(process.env), prefix });
        }
      } finally {
        // Closed even when a step above failed (NATS gone, say), so the database never outlives the test.
        await database?.close();
      }
    },
  };
}

/** What keel.config.ts, when the application has one, gives every kernel: as keel start passes it. */
async function configuredOptions(): Promise<Partial<KernelOptions>> {
  const file = new URL('${configPath}', import.meta.url);
  if (!existsSync(file)) return {};
  const { default: config } = (await import(file.href)) as { default: KeelConfig };
  return { ...(config.principal ? { principal: config.principal } : {}), ...config.resilience, ...config.data };
}

/** A PGlite database in memory when a module owns data (\`data: { migrations }\`), else none. */
async function openDatabase(modules: readonly AnyModule[]): Promise<DatabaseEngine | undefined> {
  if (!modules.some((module) => module.data !== undefined)) return undefined;
  const { createPGliteDatabase } = await import('keel/pglite');
  return createPGliteDatabase();
}
`;
}
