import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { createRequire } from 'node:module';
import { afterAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger, type AnyContract } from 'keel';
import { findProject, importProjectFile, loadManifest } from 'keel/cli';
import { addToManifest } from '../cli/manifest.js';
import { assertGeneratedIdentifiers } from '../cli/names.js';
import { findCycle } from '../cli/project.js';
import { contractFile, moduleFile, moduleTestFile } from '../cli/templates/module.js';
import { logMessages, runKeel, startKeel, type CliRun } from './support/cli.js';

const repository = resolve(dirname(createRequire(import.meta.url).resolve('keel/package.json')));
const temporary: string[] = [];

afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

async function keel(cwd: string, ...argv: string[]): Promise<CliRun> {
  return runKeel(argv, { cwd });
}

/** Every file under `root` (except node_modules) with its content: what "nothing written" is checked against. */
function tree(root: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (folder: string): void => {
    for (const entry of readdirSync(folder)) {
      if (entry === 'node_modules') continue;
      const path = join(folder, entry);
      if (statSync(path).isDirectory()) walk(path);
      else files[relative(root, path)] = readFileSync(path, 'utf8');
    }
  };
  walk(root);
  return files;
}

/** A new application whose `keel` and `zod` resolve to this repository, without npm install. */
/**
 * A test file of a generated application: vitest, its manifest and `imports`, an application
 * started before its tests (`app`) and stopped after them, then `body`.
 */
function applicationTestFile(imports: readonly string[], body: readonly string[]): string {
  return [
    "import { afterAll, beforeAll, expect, it } from 'vitest';",
    "import { modules } from '../modules/index.js';",
    ...imports,
    "import { startApplication, type TestApplication } from './support/application.js';",
    '',
    'let app: TestApplication;',
    'beforeAll(async () => {',
    '  app = await startApplication(modules);',
    '});',
    'afterAll(async () => {',
    '  await app?.stop();',
    '});',
    '',
    ...body,
    '',
  ].join('\n');
}

async function newApp(): Promise<string> {
  const parent = mkdtempSync(join(tmpdir(), 'keel-cli-'));
  temporary.push(parent);
  const result = await keel(parent, 'new', 'shop-app');
  expect(result.code, result.stderr).toBe(0);
  const root = join(parent, 'shop-app');
  mkdirSync(join(root, 'node_modules'));
  symlinkSync(repository, join(root, 'node_modules', 'keel'), 'dir');
  symlinkSync(join(repository, 'node_modules', 'zod'), join(root, 'node_modules', 'zod'), 'dir');
  return root;
}

describe('cli - keel new', () => {
  it('cli - creates an application with a starter module and prints the next steps', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'keel-cli-'));
    temporary.push(parent);
    const { code, stdout } = await keel(parent, 'new', 'my-shop', '--keel', 'file:../keel.tgz');
    expect(code).toBe(0);
    expect(Object.keys(tree(join(parent, 'my-shop'))).sort()).toEqual([
      '.gitignore',
      'README.md',
      'keel.config.ts',
      'modules/greeter/contract.ts',
      'modules/greeter/module.ts',
      'modules/index.ts',
      'package.json',
      'test/greeter-contract.test.ts',
      'test/support/application.ts',
      'topologies/single.ts',
      'tsconfig.json',
      'vitest.config.ts',
    ]);
    const manifest = JSON.parse(readFileSync(join(parent, 'my-shop', 'package.json'), 'utf8'));
    expect(manifest.name).toBe('my-shop');
    expect(manifest.dependencies.keel).toBe('file:../keel.tgz');
    expect(manifest.scripts).toMatchObject({ start: 'keel start', test: 'npm run typecheck && vitest run' });
    expect(stdout).toContain('cd my-shop\n  npm install\n  npm test');
  });

  it('cli - refuses a folder that is not empty, writing nothing', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'keel-cli-'));
    temporary.push(parent);
    mkdirSync(join(parent, 'taken'));
    writeFileSync(join(parent, 'taken', 'notes.txt'), 'mine');
    const { code, stderr } = await keel(parent, 'new', 'taken');
    expect(code).toBe(1);
    expect(stderr).toContain('error E_TARGET_EXISTS:');
    expect(tree(join(parent, 'taken'))).toEqual({ 'notes.txt': 'mine' });
  });

  it('cli - refuses a folder name that is not a package name', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'keel-cli-'));
    temporary.push(parent);
    const { code, stderr } = await keel(parent, 'new', 'My Shop');
    expect(code).toBe(2);
    expect(stderr).toContain('error E_INVALID_NAME: "My Shop" is not a valid npm package name');
    expect(existsSync(join(parent, 'My Shop'))).toBe(false);
  });
});

describe('cli - keel generate module', () => {
  it('cli - generates two modules, one depending on the other, that start and answer', async () => {
    const root = await newApp();
    const billing = await keel(root, 'generate', 'module', 'billing', '--depends-on', 'greeter', '--events', 'invoiceSent');
    expect(billing.code, billing.stderr).toBe(0);
    expect(billing.stdout).toMatchInlineSnapshot(`
      "Generated module billing:
        created modules/billing/contract.ts
        created modules/billing/module.ts
        created test/billing-contract.test.ts
        updated modules/index.ts  (registers billingModule)

      Next: describe its operations in contract.ts, implement them in module.ts, then run them with \`npx vitest run test/billing-contract.test.ts\`. Once its contract is settled, record it with \`keel contracts snapshot\`: \`keel contracts diff\` guards only the contracts its lock holds.
      "
    `);
    // A module that owns no data publishes notifications, and says how to make one durable.
    expect(readFileSync(join(root, 'modules', 'billing', 'contract.ts'), 'utf8')).toContain(
      "      // A notification (at most once); delivery: 'durable' keeps it until each subscribing module handled it.\n    }),",
    );
    const shipping = await keel(join(root, 'modules'), 'g', 'module', 'order-shipping', '--depends-on', 'billing,greeter');
    expect(shipping.code, shipping.stderr).toBe(0);

    const manifestSource = readFileSync(join(root, 'modules', 'index.ts'), 'utf8');
    expect(manifestSource).toContain("import { orderShippingModule } from './order-shipping/module.js';");
    expect(manifestSource).toContain('[greeterModule, billingModule, orderShippingModule]');
    expect(readFileSync(join(root, 'modules', 'order-shipping', 'module.ts'), 'utf8')).toContain(
      "import { billing } from '../billing/contract.js';\nimport { greeter } from '../greeter/contract.js';",
    );

    const project = findProject(root);
    const modules = await loadManifest(project);
    expect(modules.map((module) => module.name)).toEqual(['greeter', 'billing', 'order-shipping']);
    const contract = (await importProjectFile(project, join(root, 'modules', 'order-shipping', 'contract.ts')))[
      'orderShipping'
    ] as AnyContract;
    const kernel = createKernel({ modules, logger: silentLogger });
    await kernel.start();
    try {
      expect(kernel.hosted).toEqual(['greeter', 'billing', 'order-shipping']);
      const client = kernel.client(contract) as unknown as { hello(input: { name: string }): Promise<unknown> };
      await expect(client.hello({ name: 'Ada' })).resolves.toEqual({ message: 'Hello, Ada, from order-shipping.' });
    } finally {
      await kernel.stop();
    }
  });

  it('cli - generates a module that owns data (--data): its migration, a hello counting greetings through db, and a test that passes in the application, given the principal keel.config.ts declares', { timeout: 120_000 }, async () => {
    const root = await newApp();
    const generated = await keel(root, 'generate', 'module', 'billing', '--depends-on', 'greeter', '--events', 'invoiceSent', '--data');
    expect(generated.code, generated.stderr).toBe(0);
    expect(generated.stdout).toMatchInlineSnapshot(`
      "Generated module billing:
        created modules/billing/contract.ts
        created modules/billing/module.ts
        created modules/billing/migrations/001_billing.sql  (its first table)
        created test/billing-contract.test.ts
        updated modules/index.ts  (registers billingModule)

      Next: describe its operations in contract.ts, its tables in migrations/ (a new file for each change), implement them in module.ts, then run them with \`npx vitest run test/billing-contract.test.ts\`. Once its contract is settled, record it with \`keel contracts snapshot\`: \`keel contracts diff\` guards only the contracts its lock holds.
      "
    `);
    expect(readFileSync(join(root, 'modules', 'billing', 'migrations', '001_billing.sql'), 'utf8')).toContain('create table greetings (');
    const moduleSource = readFileSync(join(root, 'modules', 'billing', 'module.ts'), 'utf8');
    expect(moduleSource).toContain("  data: { migrations: new URL('./migrations/', import.meta.url) },\n");
    expect(moduleSource).toContain('create: ({ db, get, emit }) => {');
    const billingContract = readFileSync(join(root, 'modules', 'billing', 'contract.ts'), 'utf8');
    expect(billingContract).not.toContain('idempotent');
    // Its events record a change to its data: durable, written in the transaction that makes it (the outbox).
    expect(billingContract).toContain("    invoiceSent: event({\n      payload: z.object({ name: z.string() }),");
    expect(billingContract).toContain("      delivery: 'durable',\n    }),");
    // The starter module owns no data, and is generated as before.
    expect(readFileSync(join(root, 'modules', 'greeter', 'module.ts'), 'utf8')).not.toContain('data:');

    // The application's own tests, run by vitest in its folder with its own vitest.config.ts, where
    // keel resolves to this repository's TypeScript sources (the keel-source condition) as in keel's tests.
    symlinkSync(join(repository, 'node_modules', 'vitest'), join(root, 'node_modules', 'vitest'), 'dir');
    writeFileSync(
      join(root, 'vitest.keel-source.config.mjs'),
      [
        "import { mergeConfig } from 'vitest/config';",
        "import config from './vitest.config.ts';",
        '',
        "export default mergeConfig(config, { resolve: { conditions: ['keel-source'] }, ssr: { resolve: { conditions: ['keel-source'] } } });",
        '',
      ].join('\n'),
    );
    // The application declares a principal in keel.config.ts: the generated harness gives it to its kernels, as keel start
    // does, so a test may call with one (a kernel without it refuses every call that carries a principal).
    const config = readFileSync(join(root, 'keel.config.ts'), 'utf8');
    writeFileSync(
      join(root, 'keel.config.ts'),
      config.replace("import { defineConfig } from 'keel/config';", "import { defineConfig } from 'keel/config';\nimport { z } from 'zod';").replace('  gateway: {', '  principal: z.object({ sub: z.string() }),\n  gateway: {'),
    );
    writeFileSync(
      join(root, 'test', 'billing-principal.test.ts'),
      applicationTestFile(
        ["import { billing } from '../modules/billing/contract.js';"],
        [
          "it('billing - a call carrying a principal of the schema keel.config.ts declares is served', async () => {",
          "  expect(await app.caller.client(billing).hello({ name: 'Ada' }, { principal: { sub: 'ada' } })).toMatchObject({ greetings: 1 });",
          '});',
        ],
      ),
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: process.env['HOME'], KEEL_LOG_LEVEL: 'silent', NO_COLOR: '1' };
    const vitestCli = join(repository, 'node_modules', 'vitest', 'vitest.mjs');
    const vitest = spawnSync(process.execPath, [vitestCli, 'run', '--config', 'vitest.keel-source.config.mjs'], {
      cwd: root,
      env,
      encoding: 'utf8',
      timeout: 100_000,
    });
    expect(vitest.status, `${vitest.stdout}\n${vitest.stderr}`).toBe(0);
    expect(vitest.stdout).toMatch(/✓ test\/billing-contract\.test\.ts \(4 tests\)/);
    expect(vitest.stdout).toMatch(/✓ test\/billing-principal\.test\.ts \(1 test\)/);
    expect(vitest.stdout).toMatch(/Tests\s+8 passed/);

    // keel start (npm start) keeps the module's data in .keel/data/app, across a restart.
    const hello = async (url: string | undefined): Promise<unknown> => {
      const response = await fetch(`${url}/billing/hello`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Ada' }),
      });
      return response.json();
    };
    for (const greetings of [1, 2]) {
      const running = await startKeel(['start', '--http', '0'], { cwd: root, env: { KEEL_LOG_LEVEL: 'info' } });
      try {
        expect(logMessages(running.stdout.text)).toContain('data of billing: pglite in .keel/data/app');
        expect(await hello(running.url)).toEqual({ message: 'Hello, Ada, from billing.', greetings });
      } finally {
        expect(await running.stop(), running.stderr.text).toBe(0);
      }
    }
  });

  it('cli - grows a new application with --depends-on, --operations, --events and --subscribes-to: it typechecks, passes its tests and keel check, and a renamed operation fails tsc on its test', { timeout: 240_000 }, async () => {
    const root = await newApp();
    for (const argv of [
      ['books', '--depends-on', 'greeter', '--operations', 'getBook,addBook', '--events', 'bookAdded'],
      ['loans', '--depends-on', 'books', '--operations', 'lend,giveBack', '--events', 'bookLent,bookReturned'],
      ['reminders', '--subscribes-to', 'loans,books'],
    ]) {
      const generated = await keel(root, 'generate', 'module', ...argv);
      expect(generated.code, generated.stderr).toBe(0);
    }
    const read = (path: string) => readFileSync(join(root, path), 'utf8');
    const edit = (path: string, ...replacements: Array<[string, string]>) => {
      let text = read(path);
      for (const [from, to] of replacements) {
        expect(text, `${path} has ${from}`).toContain(from);
        text = text.replace(from, to);
      }
      writeFileSync(join(root, path), text);
    };
    expect(read('modules/books/contract.ts')).toContain('    getBook: operation({\n');
    expect(read('modules/books/contract.ts')).not.toContain('hello');
    expect(read('test/loans-contract.test.ts')).toContain("await expect(client.giveBack({ name: 'Ada' })).resolves.toEqual({ message: 'giveBack: Ada, from loans.' });");
    const reminders = read('modules/reminders/module.ts');
    expect(reminders).toContain('  subscribesTo: [loans, books],\n');
    for (const event of ['bookLent', 'bookReturned', 'bookAdded']) expect(reminders).toContain(`          ${event}: (payload) => {\n`);

    // keel's sources stand in for the installed package (the keel-source condition), for tsc and vitest alike.
    for (const name of ['vitest', '@types']) symlinkSync(join(repository, 'node_modules', name), join(root, 'node_modules', name), 'dir');
    // With keel's own strictest flags too: the generated code must typecheck in a project that sets them (keel's repository does).
    writeFileSync(
      join(root, 'tsconfig.keel-source.json'),
      JSON.stringify({ extends: './tsconfig.json', compilerOptions: { customConditions: ['keel-source'], noUnusedLocals: true, noUnusedParameters: true } }),
    );
    writeFileSync(
      join(root, 'vitest.keel-source.config.mjs'),
      "import { mergeConfig } from 'vitest/config';\nimport config from './vitest.config.ts';\n\n" +
        "export default mergeConfig(config, { resolve: { conditions: ['keel-source'] }, ssr: { resolve: { conditions: ['keel-source'] } } });\n",
    );
    const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'], HOME: process.env['HOME'], KEEL_LOG_LEVEL: 'silent', NO_COLOR: '1' };
    const typecheck = () =>
      spawnSync(join(repository, 'node_modules', '.bin', 'tsc'), ['--noEmit', '-p', 'tsconfig.keel-source.json', '--pretty', 'false'], {
        cwd: root,
        env,
        encoding: 'utf8',
        timeout: 100_000,
      });
    // The application's npm test: the typecheck, then vitest.
    const npmTest = () => {
      const typed = typecheck();
      if (typed.status !== 0) return { status: typed.status, output: `${typed.stdout}${typed.stderr}` };
      const tested = spawnSync(process.execPath, [join(repository, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.keel-source.config.mjs'], {
        cwd: root,
        env,
        encoding: 'utf8',
        timeout: 100_000,
      });
      return { status: tested.status, output: `${tested.stdout}${tested.stderr}` };
    };
    expect(JSON.parse(read('package.json')).scripts.test).toBe('npm run typecheck && vitest run');
    // keel check in a process of its own, as a user runs it: this one has loaded the contracts as they were.
    const check = () => {
      const result = spawnSync(join(repository, 'node_modules', '.bin', 'tsx'), ['--conditions=keel-source', join(repository, 'cli', 'bin.ts'), 'check'], {
        cwd: root,
        env,
        encoding: 'utf8',
        timeout: 100_000,
      });
      return { code: result.status, stdout: result.stdout, stderr: result.stderr };
    };

    // As README says: loans rethrows books' declared error. keel check flags it until lend declares it.
    edit(
      'modules/books/contract.ts',
      ["import { defineContract, event, operation } from 'keel/contract';", "import { defineContract, defineError, event, operation } from 'keel/contract';\n\nexport const UnknownBook = defineError({\n  code: 'UNKNOWN_BOOK',\n  kind: 'not-found',\n  data: z.object({ name: z.string() }),\n});"],
      ["      idempotent: true,\n      description: 'Answers", "      idempotent: true,\n      errors: [UnknownBook],\n      description: 'Answers"],
    );
    edit(
      'modules/books/module.ts',
      ["import { books } from './contract.js';", "import { UnknownBook, books } from './contract.js';"],
      ['        getBook: async ({ name }) => {\n', "        getBook: async ({ name }) => {\n          if (name === 'Missing') throw new UnknownBook({ name });\n"],
    );
    edit(
      'modules/loans/module.ts',
      [
        "        giveBack: ({ name }) => ({ message: `giveBack: ${name}, from loans.` }),",
        "        giveBack: async ({ name }) => {\n          try {\n            await booksClient.getBook({ name });\n          } catch (error) {\n            throw error;\n          }\n          return { message: `giveBack: ${name}, from loans.` };\n        },",
      ],
    );
    const flagged = check();
    expect(flagged.code, flagged.stdout).toBe(1);
    expect(flagged.stdout).toContain('modules/loans/module.ts:');
    expect(flagged.stdout).toContain('loans.giveBack rethrows UnknownBook (UNKNOWN_BOOK, declared by books.getBook), which giveBack does not declare');
    edit(
      'modules/loans/contract.ts',
      ["import { defineContract, event, operation } from 'keel/contract';", "import { defineContract, event, operation } from 'keel/contract';\nimport { UnknownBook } from '../books/contract.js';"],
      ["    giveBack: operation({\n      input: z.object({ name: z.string().min(1) }),\n      output: z.object({ message: z.string() }),\n      idempotent: true,\n", "    giveBack: operation({\n      input: z.object({ name: z.string().min(1) }),\n      output: z.object({ message: z.string() }),\n      idempotent: true,\n      errors: [UnknownBook],\n"],
    );
    writeFileSync(
      join(root, 'test', 'loans-unknown-book.test.ts'),
      applicationTestFile(
        ["import { UnknownBook } from '../modules/books/contract.js';", "import { loans } from '../modules/loans/contract.js';"],
        [
          "it('loans - passes on books\\' UnknownBook, which giveBack declares', async () => {",
          "  await expect(app.caller.client(loans).giveBack({ name: 'Missing' })).rejects.toBeInstanceOf(UnknownBook);",
          '});',
        ],
      ),
    );

    const checked = check();
    expect(checked.code, `${checked.stdout}${checked.stderr}`).toBe(0);
    expect(checked.stdout).toMatch(/keel check: no problems \(4 modules, \d+ files, 4 contracts loaded\)/);
    const passed = npmTest();
    expect(passed.status, passed.output).toBe(0);
    // greeter 3; books and loans 4 each (two operations, a refusal, the events); reminders 2; loans-unknown-book 1.
    expect(passed.output).toMatch(/Tests\s+14 passed/);

    // A rename in the contract (and its handler), the test left as it was: tsc names the test, before any test runs.
    edit('modules/books/contract.ts', ['    getBook: operation({', '    findBook: operation({']);
    edit('modules/books/module.ts', ['        getBook: async ({ name }) => {', '        findBook: async ({ name }) => {']);
    const renamed = npmTest();
    expect(renamed.status).not.toBe(0);
    expect(renamed.output).toMatch(/test\/books-contract\.test\.ts\(\d+,\d+\): error TS2339: Property 'getBook' does not exist on type 'Client<Contract<"books"/);
    expect(renamed.output).toMatch(/modules\/loans\/module\.ts\(\d+,\d+\): error TS2339: Property 'getBook' does not exist/);
    expect(renamed.output, 'tsc stops npm test before vitest runs').not.toContain('Test Files');
  });

  it("cli - after generating, names the topologies that list their processes' modules (a new module has no process there), not one of modules: ['*']", async () => {
    const root = await newApp();
    writeFileSync(join(root, 'topologies', 'split.json'), JSON.stringify({ processes: { front: { modules: ['greeter'] } } }));
    const billing = await keel(root, 'generate', 'module', 'billing');
    expect(billing.code, billing.stderr).toBe(0);
    expect(billing.stdout).toContain(
      "Then give it a process in topologies/split.json, which name their processes' modules: keel up, keel dev and keel deploy refuse a module no process hosts (a process of modules: ['*'] takes every module the others do not name).",
    );
    expect(billing.stdout).not.toContain('topologies/single.ts');
  });

  it('cli - shows the files of a dry run and writes nothing', async () => {
    const root = await newApp();
    const before = tree(root);
    const { code, stdout } = await keel(root, 'generate', 'module', 'billing', '--events', 'invoiceSent', '--dry-run');
    expect(code).toBe(0);
    expect(stdout).toContain('Would generate module billing (dry run: nothing written):');
    expect(stdout).toContain('--- create modules/billing/contract.ts\n');
    expect(stdout).toContain("    invoiceSent: event({\n");
    expect(stdout).toContain(
      '--- update modules/index.ts (registers billingModule)\n' +
        "+ import { billingModule } from './billing/module.js';\n" +
        '+ export const modules: readonly AnyModule[] = [greeterModule, billingModule];\n',
    );
    expect(tree(root)).toEqual(before);
  });

  it.each([
    ['an invalid name', ['Billing'], 'E_INVALID_NAME', 'Module name "Billing" is not lower-kebab-case', 2],
    ['an invalid event name', ['billing', '--events', 'invoice-sent'], 'E_INVALID_NAME', 'Event name "invoice-sent"', 2],
    ['an invalid operation name', ['billing', '--operations', 'sendInvoice,send-invoice'], 'E_INVALID_NAME', 'Operation name "send-invoice"', 2],
    ['an operation name with a capital first letter', ['billing', '--operations', 'SendInvoice'], 'E_INVALID_NAME', 'Operation name "SendInvoice" must be camelCase: letters and digits, the first a lower-case letter', 2],
    ['an event name with a capital first letter', ['billing', '--events', 'InvoiceSent'], 'E_INVALID_NAME', 'Event name "InvoiceSent" must be camelCase: letters and digits, the first a lower-case letter', 2],
    ['an invalid subscribed module name', ['billing', '--subscribes-to', 'Greeter'], 'E_INVALID_NAME', 'Subscribed module "Greeter"', 2],
    ['an unknown subscribed module', ['billing', '--subscribes-to', 'greeter,ledger'], 'E_UNKNOWN_MODULE', 'cannot subscribe to "ledger": no such module', 1],
    ['an existing module', ['greeter'], 'E_MODULE_EXISTS', 'Module "greeter" is already in modules/index.ts', 1],
    ['an unknown dependency', ['billing', '--depends-on', 'greeter,ledger'], 'E_UNKNOWN_MODULE', 'no such module', 1],
    ['a dependency on itself', ['billing', '--depends-on', 'billing'], 'E_DEPENDENCY_CYCLE', 'billing → billing', 1],
  ])('cli - refuses %s with a clear message and writes nothing', async (_, argv, code, message, exitCode) => {
    const root = await newApp();
    const before = tree(root);
    const result = await keel(root, 'generate', 'module', ...argv);
    expect(result.code).toBe(exitCode);
    expect(result.stderr).toContain(`error ${code}: `);
    expect(result.stderr).toContain(message);
    expect(tree(root)).toEqual(before);
  });

  it('cli - refuses a module folder that exists outside the manifest', async () => {
    const root = await newApp();
    mkdirSync(join(root, 'modules', 'billing'));
    const before = tree(root);
    const result = await keel(root, 'generate', 'module', 'billing');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('error E_MODULE_EXISTS: modules/billing/ already exists');
    expect(tree(root)).toEqual(before);
  });

  it('cli - refuses a module name whose identifier the generated files already use (z, define-contract, it, app), writing nothing', async () => {
    const root = await newApp();
    const before = tree(root);
    // `keel generate module z` once wrote `export const z = defineContract(...)` beside `import { z } from 'zod'`:
    // the manifest no longer loaded, and every later command failed.
    for (const [name, identifier] of [['z', 'z'], ['define-contract', 'defineContract'], ['it', 'it'], ['app', 'app']]) {
      const result = await keel(root, 'generate', 'module', name!);
      expect(result.code, name).toBe(2);
      expect(result.stderr, name).toContain(
        `error E_INVALID_NAME: Module name "${name}" would be the identifier ${identifier}, which the generated files already use; choose another name.`,
      );
    }
    expect(tree(root)).toEqual(before);
  });

  it('cli - refuses a list option that names nothing (--depends-on ","), naming the option, writing nothing', async () => {
    const root = await newApp();
    const before = tree(root);
    // `--depends-on ,` once generated a module depending on nothing, as if the option were left out.
    for (const option of ['--depends-on', '--events', '--operations', '--subscribes-to']) {
      const result = await keel(root, 'generate', 'module', 'billing', option, ' , ');
      expect(result.code, option).toBe(2);
      expect(result.stderr, option).toContain(
        `error E_USAGE: ${option} " , " names nothing; give at least one name, comma-separated, or leave ${option} out.`,
      );
    }
    expect(tree(root)).toEqual(before);
  });

  it('cli - refuses every module name whose identifier a generated file imports or declares, with all options at once (text, of --data)', () => {
    // `keel generate module text --data` once wrote `export const text = defineContract(...)` beside
    // `import { ..., text } from 'keel/contract'`: the new module's contract.ts did not compile.
    const dependency = { name: 'greeter', exportName: 'greeter', importPath: '../greeter/contract.js' };
    const template = {
      name: 'billing',
      dependsOn: [dependency],
      events: ['invoiceSent'],
      operations: ['sendInvoice', 'getInvoice'],
      subscribesTo: [{ ...dependency, events: ['greeted'] }],
      data: true,
    };
    const test = moduleTestFile({
      ...template,
      manifestImport: '../modules/index.js',
      contractImport: '../modules/billing/contract.js',
      supportImport: './support/application.js',
    });
    const sources = [contractFile(template), moduleFile(template), test];
    // The module's own identifiers, and its dependency's (a module of that name exists). Locals of the
    // handlers (greeterClient, rows) only shadow a module's identifier in their own scope, which compiles.
    const own = new Set(['billing', 'billingModule', 'greeter']);
    const identifiers = new Set<string>();
    // What the files import, and declare at their top level.
    for (const source of sources) {
      for (const [, names] of source.matchAll(/^import \{ ([^}]+) \} from /gm)) {
        for (const name of names!.split(',')) identifiers.add(name.trim().replace(/^type /, ''));
      }
      for (const [, name] of source.matchAll(/^(?:export )?(?:const|let|function) (\w+)/gm)) identifiers.add(name!);
    }
    // The test refers to the contract inside its describe and its tests: their locals count too.
    for (const [, local, parameter] of test.matchAll(/^ +(?:const|let) (\w+)|\(\((\w+): unknown\)/gm)) identifiers.add((local ?? parameter)!);
    // A module name is lower-kebab-case: its identifier starts with a lower-case letter.
    const reachable = [...identifiers].filter((identifier) => /^[a-z]/.test(identifier) && !own.has(identifier));
    expect(reachable).toEqual(expect.arrayContaining(['z', 'text', 'defineModule', 'probeModule', 'app', 'caught']));
    const accepted = reachable.filter((identifier) => {
      const name = identifier.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
      try {
        assertGeneratedIdentifiers(name);
        return true;
      } catch (error) {
        expect(String(error), name).toContain(`Module name "${name}" would be the identifier ${identifier}, which the generated files already use`);
        return false;
      }
    });
    expect(accepted).toEqual([]);
  });

  it('cli - leaves no half-generated folder when a write fails', async () => {
    const root = await newApp();
    rmSync(join(root, 'test'), { recursive: true });
    writeFileSync(join(root, 'test'), 'a file where the test folder should be');
    const before = tree(root);
    const result = await keel(root, 'generate', 'module', 'billing');
    expect(result.code).toBe(1);
    expect(existsSync(join(root, 'modules', 'billing'))).toBe(false);
    expect(tree(root)).toEqual(before);
  });

  it('cli - refuses to run outside an application', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'keel-cli-'));
    temporary.push(folder);
    const result = await keel(folder, 'generate', 'module', 'billing');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('error E_NO_PROJECT:');
  });

  it('cli - plans a module in this repository against the shop manifest', async () => {
    const { code, stdout, stderr } = await keel(
      repository,
      'generate',
      'module',
      'billing',
      '--depends-on',
      'orders,catalog',
      '--events',
      'invoiceSent',
      '--dry-run',
    );
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("import { orders } from '../orders/contract.js';\nimport { catalog } from '../catalog/contract.js';");
    expect(stdout).toContain('--- create test/billing-contract.test.ts\n');
    expect(stdout).toContain("+ import { billingModule } from './billing/module.js';");
    expect(existsSync(join(repository, 'modules', 'billing'))).toBe(false);
  });
});

/**
 * The `npx keel generate ...` lines of a markdown file's shell blocks, as argument lists, in
 * order. Comments are dropped; quoting is not supported (the docs need none).
 */
function generateCommandsIn(file: string): string[][] {
  const commands: string[][] = [];
  let fence: string | undefined;
  for (const line of readFileSync(join(repository, file), 'utf8').split('\n')) {
    if (line.startsWith('```')) {
      fence = fence === undefined ? line.slice(3).trim() : undefined;
      continue;
    }
    if (fence === undefined || !['', 'sh', 'console'].includes(fence)) continue;
    const command = line.replace(/\s#.*$/, '').trim();
    if (!command.startsWith('npx keel generate ') && !command.startsWith('npx keel g ')) continue;
    expect(command, `${file}: quoting in "${command}"`).not.toMatch(/['"\\$]/);
    commands.push(command.split(/\s+/).slice(2));
  }
  return commands;
}

describe('cli - documented generate commands', () => {
  it.each(['README.md', 'docs/cli.md'])('cli - the generate commands of %s work as written in a new application', async (file) => {
    const commands = generateCommandsIn(file);
    expect(commands.length, `${file} shows no \`npx keel generate\` command`).toBeGreaterThan(0);
    const root = await newApp();
    for (const argv of commands) {
      const before = argv.includes('--dry-run') ? tree(root) : undefined;
      const result = await keel(root, ...argv);
      expect(result.code, `keel ${argv.join(' ')} (from ${file}):\n${result.stderr}`).toBe(0);
      if (before !== undefined) expect(tree(root)).toEqual(before);
    }
    const generated = commands.filter((argv) => !argv.includes('--dry-run')).map((argv) => argv[2] as string);
    const modules = (await loadManifest(findProject(root))).map((module) => module.name);
    expect(modules).toEqual(['greeter', ...generated]);
  });
});

describe('cli - manifest editing', () => {
  const entry = { identifier: 'billingModule', importPath: './billing/module.js' };

  it('cli - appends to a one-line array and keeps `as const`', () => {
    const source = "import { a } from './a/module.js';\n\nexport const modules = [aModule, bModule] as const;\n";
    expect(addToManifest(source, entry)).toBe(
      "import { a } from './a/module.js';\nimport { billingModule } from './billing/module.js';\n\n" +
        'export const modules = [aModule, bModule, billingModule] as const;\n',
    );
  });

  it('cli - appends to a multi-line array in its indentation', () => {
    const source = "import type { AnyModule } from 'keel';\nexport const modules: readonly AnyModule[] = [\n  aModule,\n  bModule, // the b\n];\n";
    expect(addToManifest(source, entry)).toBe(
      "import type { AnyModule } from 'keel';\nimport { billingModule } from './billing/module.js';\n" +
        'export const modules: readonly AnyModule[] = [\n  aModule,\n  bModule, // the b\n  billingModule,\n];\n',
    );
  });

  it('cli - refuses a manifest without an array literal', () => {
    expect(() => addToManifest('export const modules = build();\n', entry, 'modules/index.ts')).toThrow(
      /Cannot add billingModule to modules\/index.ts: it has no `export const modules = \[\.\.\.\]` array literal/,
    );
  });

  it('cli - names the chain of a dependency cycle', () => {
    expect(
      findCycle([
        { name: 'a', dependsOn: ['b'], subscribesTo: [] },
        { name: 'b', dependsOn: ['c'], subscribesTo: [] },
        { name: 'c', dependsOn: ['a'], subscribesTo: [] },
      ]),
    ).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle([{ name: 'a', dependsOn: [], subscribesTo: ['a'] }])).toBeUndefined();
  });
});
