/**
 * Templates of a generated module: its contract, its implementation, its test, and the test
 * support file that runs an application in process or over NATS.
 */
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

/** What the module templates need. */
export interface ModuleTemplateInput {
  /** Module name, lower-kebab-case. */
  readonly name: string;
  readonly dependsOn: readonly DependencyImport[];
  /** Events the module publishes, camelCase. */
  readonly events: readonly string[];
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

const article = (word: string): string => (/^[aeiou]/i.test(word) ? 'an' : 'a');

/**
 * The module's `contract.ts`: one idempotent `hello` operation and the requested events.
 *
 * @example
 * ```ts
 * contractFile({ name: 'billing', dependsOn: [], events: ['invoiceSent'] });
 * ```
 */
export function contractFile(input: ModuleTemplateInput): string {
  const { contract } = moduleIdentifiers(input.name);
  const imports = input.events.length > 0 ? 'defineContract, event, operation' : 'defineContract, operation';
  const events =
    input.events.length === 0
      ? ''
      : `  events: {\n${input.events
          .map(
            (name) =>
              `    ${name}: event({\n` +
              `      payload: z.object({ name: z.string() }),\n` +
              `      description: 'Published by hello; replace with what really happened.',\n` +
              `    }),\n`,
          )
          .join('')}  },\n`;
  return `/**
 * The ${input.name} module's public door: the only file of the module that other modules may
 * import (from \`../${input.name}/contract.js\`). Everything else in the folder is private.
 *
 * @module
 */
import { z } from 'zod';
import { ${imports} } from 'keel';

/**
 * The ${input.name} contract: what the module offers, as plain data. Start by replacing
 * \`hello\` with the module's first real operation.
 *
 * @example
 * \`\`\`ts
 * const ${contract}Client = kernel.client(${contract});
 * const { message } = await ${contract}Client.hello({ name: 'Ada' });
 * \`\`\`
 */
export const ${contract} = defineContract({
  name: '${input.name}',
  version: '0.1.0',
  description: 'What the ${input.name} module does, in one sentence.',
  operations: {
    hello: operation({
      input: z.object({ name: z.string().min(1) }),
      output: z.object({ message: z.string() }),
      idempotent: true,
      description: 'Greets the caller; a starting point to replace.',
    }),
  },
${events}});
`;
}

/**
 * The module's `module.ts`: the implementation, with a client of every dependency resolved
 * once at start.
 *
 * @example
 * ```ts
 * moduleFile({ name: 'billing', dependsOn: [{ name: 'catalog', exportName: 'catalog', importPath: '../catalog/contract.js' }], events: [] });
 * ```
 */
export function moduleFile(input: ModuleTemplateInput): string {
  const ids = moduleIdentifiers(input.name);
  const hasEvents = input.events.length > 0;
  const dependencyImports = input.dependsOn
    .map((dependency) => `import { ${dependency.exportName} } from '${dependency.importPath}';\n`)
    .join('');
  const dependsOn =
    input.dependsOn.length > 0 ? `  dependsOn: [${input.dependsOn.map((dependency) => dependency.exportName).join(', ')}],\n` : '';
  const hasDependencies = input.dependsOn.length > 0;
  const tools = hasDependencies && hasEvents ? '{ get, emit }' : hasDependencies ? '{ get }' : hasEvents ? '{ emit }' : '';
  const clients = input.dependsOn
    .map((dependency) => `    const ${camelCase(dependency.name)}Client = get(${dependency.exportName});\n`)
    .join('');
  const clientsComment =
    input.dependsOn.length > 0
      ? `    // Clients of the contracts ${input.name} depends on, resolved once: call them from the handlers.\n`
      : '';
  const emits = input.events.map((name) => `          await emit('${name}', { name });\n`).join('');
  const handler = hasEvents
    ? `        hello: async ({ name }) => {\n${emits}          return { message: \`Hello, \${name}, from ${input.name}.\` };\n        },\n`
    : `        hello: ({ name }) => ({ message: \`Hello, \${name}, from ${input.name}.\` }),\n`;
  const example = [ids.module, ...input.dependsOn.map((dependency) => `${camelCase(dependency.name)}Module`)].join(', ');
  return `/**
 * The ${input.name} module: implements the {@link ${ids.contract}} contract.
 */
import { defineModule } from 'keel';
${dependencyImports}import { ${ids.contract} } from './contract.js';

/**
 * The ${input.name} module, listed in the application manifest.
 *
 * @example
 * \`\`\`ts
 * const kernel = createKernel({ modules: [${example}] });
 * await kernel.start();
 * await kernel.client(${ids.contract}).hello({ name: 'Ada' });
 * \`\`\`
 */
export const ${ids.module} = defineModule({
  contract: ${ids.contract},
${dependsOn}  create: (${tools}) => {
${clientsComment}${clients}    return {
      handlers: {
${handler}      },
    };
  },
});
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
 * `KEEL_NATS_URL` is set) and calls the module through its contract.
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
    await app.caller.client(${ids.contract}).hello({ name: 'Events' });
${input.events.map((name) => `    await expect(received.${name}).resolves.toEqual({ name: 'Events' });\n`).join('')}  });
`
    : '';
  return `/**
 * The ${input.name} module, tested through its contract: in one process by default, over NATS
 * when KEEL_NATS_URL is set (see ${input.supportImport.replace(/\.js$/, '.ts')}).
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

  it('${input.name} - answers hello', async () => {
    const client = app.caller.client(${ids.contract});
    await expect(client.hello({ name: 'Ada' })).resolves.toEqual({ message: 'Hello, Ada, from ${input.name}.' });
  });

  it('${input.name} - refuses input its contract does not allow', async () => {
    const error = await app.caller
      .client(${ids.contract})
      .hello({ name: '' })
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
 * `KEEL_NATS_URL` is set, served by one kernel and called from another over NATS.
 *
 * @example
 * ```ts
 * writeFileSync('test/support/application.ts', testSupportFile());
 * ```
 */
export function testSupportFile(): string {
  return `/**
 * Starts the application for tests. By default everything runs in this process. When
 * KEEL_NATS_URL is set (for example \`KEEL_NATS_URL=nats://127.0.0.1:4222 npm test\`), the modules
 * are served by one kernel and called from a second one, so every call and every event crosses
 * NATS. Each application gets its own subject prefix, so test files never answer each other.
 */
import { randomUUID } from 'node:crypto';
import { createKernel, silentLogger, type AnyModule, type Kernel, type Transport } from 'keel';

/** A running application under test. */
export interface TestApplication {
  /** The kernel to take clients from: \`app.caller.client(contract)\`. */
  readonly caller: Kernel;
  /** Stops both kernels and closes the NATS connections. */
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
  const serverTransport = await connect();
  const server = createKernel({ modules, logger: silentLogger, topology: { transport: serverTransport } });
  await server.start();
  const callerTransport = await connect();
  const caller =
    callerTransport === undefined
      ? server
      : createKernel({ modules, logger: silentLogger, topology: { host: [], transport: callerTransport } });
  if (caller !== server) await caller.start();
  return {
    caller,
    async stop() {
      await caller.stop();
      await server.stop();
      for (const transport of transports) await transport.close();
    },
  };
}
`;
}
