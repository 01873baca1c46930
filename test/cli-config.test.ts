/**
 * The application's configuration file, keel.config.ts: `keel start` gives its `gateway` section
 * to the HTTP gateway (shown over real HTTP), and `keel start`, `keel up` and `keel deploy` refuse
 * a wrong one before starting or writing anything, naming the file and the field.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineContract, defineModule, operation, silentLogger } from 'keel';
import { main, runCli } from 'keel/cli';
import { startHost } from '../cli/host.js';
import { READY, collector, copyWhoamiApp, gatewayUrl, logMessages } from './support/cli.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
const temporary: string[] = [];
afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** A copy of the one-module fixture application (whoami), with `config` as its keel.config.ts. */
function appWith(config: string | undefined): string {
  const parent = mkdtempSync(join(tmpdir(), 'keel-config-'));
  temporary.push(parent);
  const root = copyWhoamiApp(parent);
  if (config !== undefined) writeFileSync(join(root, 'keel.config.ts'), config);
  return root;
}

function keel(cwd: string, ...argv: string[]) {
  const stdout = collector();
  const stderr = collector();
  const controller = new AbortController();
  const exit = runCli(main, argv, { cwd, env: { KEEL_LOG_LEVEL: 'info', KEEL_DATA_DIR: 'memory' }, stdout, stderr, signal: controller.signal });
  return { stdout, stderr, exit, stop: () => controller.abort('SIGTERM') };
}

/** `keel start` with `env` as its whole environment, and a supervisor channel that hears its `ready` (whatever it logs). */
function startWith(cwd: string, env: Record<string, string>) {
  const stdout = collector();
  const stderr = collector();
  const controller = new AbortController();
  let readySeen: () => void = () => {};
  const ready = new Promise<void>((resolve) => (readySeen = resolve));
  const supervisor = { send: (message: { type: string }) => message.type === 'ready' && readySeen() };
  const exit = runCli(main, ['start', '--http', 'off'], { cwd, env: { KEEL_DATA_DIR: 'memory', ...env }, stdout, stderr, signal: controller.signal, supervisor });
  return { stdout, stderr, exit, ready: Promise.race([ready, exit.then(() => expect.fail(stderr.text))]), stop: () => controller.abort('SIGTERM') };
}

const call = (url: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/whoami/whoami`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: '{}' });

describe('cli - keel.config.ts', () => {
  it("cli - keel start gives the gateway keel.config.ts's gateway section: its rate limit answers 429, its CORS origin gets a preflight", async () => {
    const root = appWith(
      [
        "import { defineConfig } from 'keel/config';",
        '',
        'export default defineConfig({',
        "  gateway: { rateLimit: { max: 2, windowMs: 60_000 }, cors: { origins: ['https://app.example.com'] } },",
        '});',
        '',
      ].join('\n'),
    );
    const running = keel(root, 'start', '--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    try {
      expect(logMessages(running.stdout.text)).toContain('configuration from keel.config.ts');
      const url = gatewayUrl(running.stdout.text) ?? '';
      const preflight = await fetch(`${url}/whoami/whoami`, {
        method: 'OPTIONS',
        headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
      });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe('https://app.example.com');
      expect((await call(url)).status).toBe(200);
      expect((await call(url)).status).toBe(200);
      const limited = await call(url);
      expect(limited.status).toBe(429);
      expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(await limited.json()).toMatchObject({ code: 'RATE_LIMITED' });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
  });

  it("cli - keel start offers keel.config.ts's getOperations as GET and titles the OpenAPI document with its openapi info", async () => {
    const root = appWith(
      [
        "import { defineConfig } from 'keel/config';",
        '',
        "export default defineConfig({ gateway: { getOperations: ['whoami.whoami'], openapi: { title: 'Who is it', version: '2.1.0' } } });",
        '',
      ].join('\n'),
    );
    const running = keel(root, 'start', '--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    try {
      const url = gatewayUrl(running.stdout.text) ?? '';
      const read = await fetch(`${url}/whoami/whoami?input=${encodeURIComponent('{}')}`);
      expect(read.status).toBe(200);
      expect(await read.json()).toMatchObject({ pid: expect.any(Number) });
      const document = (await (await fetch(`${url}/openapi.json`)).json()) as { info: { title: string; version: string } };
      expect(document.info).toMatchObject({ title: 'Who is it', version: '2.1.0' });
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
  });

  it("cli - keel start gives the kernel keel.config.ts's principal schema: a call the authenticate hook gives a principal is served with it; without the schema the start is refused, naming it", async () => {
    const configWith = (principal: boolean) =>
      [
        "import { z } from 'zod';",
        "import { defineConfig } from 'keel/config';",
        '',
        'export default defineConfig({',
        principal ? '  principal: z.object({ sub: z.string() }),' : '',
        "  gateway: { authenticate: (request) => (typeof request.headers['x-user'] === 'string' ? { sub: request.headers['x-user'] } : undefined) },",
        '});',
        '',
      ].join('\n');
    const running = keel(appWith(configWith(true)), 'start', '--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    try {
      const answer = await call(gatewayUrl(running.stdout.text) ?? '', { 'x-user': 'ada' });
      expect(answer.status, await answer.text()).toBe(200);
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
    // Without the schema every signed-in request was a 401 blaming the client's credentials: now the start stops.
    const refused = keel(appWith(configWith(false)), 'start', '--http', '0');
    expect(await refused.exit).toBe(1);
    // Said in the configuration's terms: a keel start user never calls createKernel, which createHttpGateway's own refusal names.
    expect(refused.stderr.text).toContain('keel.config.ts gives gateway.authenticate but no principal');
    expect(refused.stderr.text).toContain('Add principal, the zod schema of what the hook returns');
    expect(refused.stdout.text).not.toContain('ready');
  });

  it("cli - keel start gives the kernel keel.config.ts's resilience section: a retry policy or retry budget the kernel refuses stops the start naming the field", async () => {
    const root = appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ resilience: { retry: { maxAttempts: 0 } } });\n");
    const run = keel(root, 'start', '--http', 'off');
    expect(await run.exit).toBe(1);
    expect(run.stderr.text).toContain('retry.maxAttempts must be a whole number of attempts from 1 to 10');
    expect(run.stdout.text).not.toContain('ready');
    const budget = keel(appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ resilience: { retryBudget: { ratio: 2 } } });\n"), 'start', '--http', 'off');
    expect(await budget.exit).toBe(1);
    expect(budget.stderr.text).toContain('retryBudget.ratio must be a ratio from 0 to 1, got 2');
    const fine = keel(appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ resilience: { retry: { maxAttempts: 5 }, retryBudget: { ratio: 0.1 } } });\n"), 'start', '--http', 'off');
    await Promise.race([fine.stdout.waitFor(READY), fine.exit.then(() => expect.fail(fine.stderr.text))]);
    fine.stop();
    expect(await fine.exit).toBe(0);
  });

  it('cli - keel start, keel up and keel deploy refuse a wrong resilience section before starting or writing anything, naming the file and the field (E_CONFIG)', async () => {
    // It once reached createKernel only: `keel deploy` wrote its files, every process failed at start with "createKernel: retry ...".
    const root = appWith("export default { resilience: { retry: 5, bulkhead: { maxConcurrent: 0 } } };\n");
    for (const argv of [['start', '--http', 'off'], ['up'], ['deploy', 'topologies/replicas.json', '--out', 'deploy']]) {
      const run = keel(root, ...argv);
      expect(await run.exit, argv.join(' ')).toBe(1);
      expect(run.stderr.text, argv.join(' ')).toMatch(
        /error E_CONFIG: keel\.config\.ts: resilience\.retry must be a retry policy .*, got 5; resilience\.bulkhead\.maxConcurrent must be a whole number of handler runs, 1 or more, or Infinity \(no limit\), got 0\.\n/,
      );
      expect(run.stdout.text, argv.join(' ')).not.toContain('ready');
    }
    expect(existsSync(join(root, 'deploy'))).toBe(false);
  });

  it("cli - keel start's host gives its kernel keel.config.ts's data section: an outbox window or inbox batch the kernel refuses stops the start naming the field", async () => {
    const echo = defineContract({ name: 'echo', version: '1.0.0', operations: { ping: operation({ input: z.object({}), output: z.object({}) }) } });
    const module = defineModule({ contract: echo, create: () => ({ handlers: { ping: async () => ({}) } }) });
    // Past the file's own check (startHost is what keel start calls once the file was read): only the kernel can refuse it now.
    await expect(startHost({ modules: [module], env: {}, logger: silentLogger, data: { outboxWindow: 0 } })).rejects.toThrow(
      'createKernel: outboxWindow must be a whole number of events, 1 to 1000, got 0.',
    );
    await expect(startHost({ modules: [module], env: {}, logger: silentLogger, data: { inboxBatch: 1, inboxBatchMs: 0 } })).rejects.toThrow(
      'createKernel: inboxBatchMs must be a number of milliseconds above 0, at most 60000, got 0.',
    );
    await expect(startHost({ modules: [module], env: {}, logger: silentLogger, data: { databaseCheckMs: 50 } })).rejects.toThrow(
      'createKernel: databaseCheckMs must be a number of milliseconds, 100 to 600000, got 50.',
    );
    const started = await startHost({ modules: [module], env: {}, logger: silentLogger, data: { outboxWindow: 1 } });
    await started.stop();
  });

  it('cli - keel start refuses a wrong data section before starting, naming the file and the field (E_CONFIG)', async () => {
    const run = keel(appWith("export default { data: { outboxWindow: 0, inboxBatch: 0, inboxBatchMs: '20', window: 4 } };\n"), 'start', '--http', 'off');
    expect(await run.exit).toBe(1);
    expect(run.stderr.text).toContain('error E_CONFIG: keel.config.ts: data.outboxWindow must be a whole number of events, 1 to 1000, got 0');
    expect(run.stderr.text).toContain('data.inboxBatch must be a whole number of events, 1 to 64, got 0');
    expect(run.stderr.text).toContain('data.inboxBatchMs must be a number of milliseconds above 0, at most 60000, got "20"');
    expect(run.stderr.text).toContain('unknown option "data.window"');
    expect(run.stdout.text).not.toContain('ready');
  });

  it('cli - without keel.config.ts, keel start serves the safe defaults: 1000 requests a minute, no CORS', async () => {
    const root = appWith(undefined);
    const running = keel(root, 'start', '--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    try {
      expect(logMessages(running.stdout.text).filter((message) => message.startsWith('configuration from'))).toEqual([]);
      const url = gatewayUrl(running.stdout.text) ?? '';
      const response = await call(url, { origin: 'https://app.example.com' });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-ratelimit-limit')).toBe('1000');
      expect(response.headers.get('access-control-allow-origin')).toBeNull();
      expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
  });

  it("cli - keel start logs at the level and in the format of keel.config.ts's logging section, and KEEL_LOG_LEVEL and KEEL_LOG_FORMAT win over it", async () => {
    const root = appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ logging: { level: 'warn', format: 'pretty' } });\n");
    // At warn, none of the start-up records (all info) is written.
    const quiet = startWith(root, {});
    await quiet.ready;
    expect(quiet.stdout.text).toBe('');
    quiet.stop();
    expect(await quiet.exit).toBe(0);
    // The environment's level wins; the format is still the file's: pretty lines, not JSON.
    const info = startWith(root, { KEEL_LOG_LEVEL: 'info' });
    await info.ready;
    expect(info.stdout.text).toMatch(/INFO \(keel\): ready \(Ctrl-C to stop\)/);
    expect(info.stdout.text).not.toContain('{"level"');
    info.stop();
    expect(await info.exit).toBe(0);
    // Both from the environment.
    const json = startWith(root, { KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: 'json' });
    await json.ready;
    expect(logMessages(json.stdout.text)).toEqual(expect.arrayContaining(['configuration from keel.config.ts', 'ready']));
    json.stop();
    expect(await json.exit).toBe(0);
  });

  it("cli - keel up gives its processes keel.config.ts's log format when KEEL_LOG_FORMAT is unset", { timeout: 60_000 }, async () => {
    const root = appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ logging: { format: 'pretty' } });\n");
    const stdout = collector();
    const stderr = collector();
    const controller = new AbortController();
    // keel up starts its processes as this CLI again: from source, with tsx.
    const self = { command: process.execPath, args: ['--import', pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href, '--conditions=keel-source', join(repository, 'cli/bin.ts')] };
    const exit = runCli(main, ['up'], { cwd: root, env: { ...process.env, KEEL_LOG_LEVEL: 'info', KEEL_LOG_FORMAT: '', KEEL_DATA_DIR: 'memory' }, stdout, stderr, signal: controller.signal, self });
    await Promise.race([stdout.waitFor('keel up: ready: app'), exit.then(() => expect.fail(`${stdout.text}${stderr.text}`))]);
    await stdout.waitFor('ready (Ctrl-C to stop)');
    controller.abort('SIGTERM');
    expect(await exit, stderr.text).toBe(0);
    expect(stdout.text).toMatch(/^app \| \[[\d:.]+\] INFO \(keel\): ready \(Ctrl-C to stop\)/m);
    expect(stdout.text).not.toContain('{"level"');
  });

  it('cli - keel start, keel up and keel dev refuse a wrong logging section, naming the file and the field', async () => {
    const root = appWith("export default { logging: { level: 'loud', format: 'yaml' } };\n");
    for (const argv of [['start', '--http', 'off'], ['up'], ['dev']]) {
      const run = keel(root, ...argv);
      expect(await run.exit, argv.join(' ')).toBe(1);
      expect(run.stderr.text, argv.join(' ')).toMatch(/error E_CONFIG: keel\.config\.ts: logging\.level .*"loud"; logging\.format .*"yaml"/);
    }
    const unknown = keel(appWith("export default { logging: { colour: true } };\n"), 'start', '--http', 'off');
    expect(await unknown.exit).toBe(1);
    expect(unknown.stderr.text).toContain('error E_CONFIG: keel.config.ts: unknown option "logging.colour" (it takes level, format).\n');
  });

  it('cli - keel start, keel up and keel deploy refuse a wrong keel.config.ts before starting or writing anything, naming the file and the field', async () => {
    const root = appWith("import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ gateway: { rateLimit: { max: 0 } } });\n");
    const message =
      'error E_CONFIG: keel.config.ts: gateway.rateLimit.max must be a whole number of requests above 0, got 0.\n';
    for (const argv of [
      ['start', '--http', '0'],
      ['up'],
      ['deploy', 'topologies/replicas.json', '--out', 'deploy'],
    ]) {
      const run = keel(root, ...argv);
      expect(await run.exit, argv.join(' ')).toBe(1);
      expect(run.stderr.text, argv.join(' ')).toContain(message);
      expect(run.stdout.text, argv.join(' ')).not.toContain('ready');
    }
    expect(existsSync(join(root, 'deploy'))).toBe(false);
    // A process that serves no HTTP does not load the gateway to check options it does not use.
    const noGateway = keel(root, 'start', '--http', 'off');
    await Promise.race([noGateway.stdout.waitFor(READY), noGateway.exit.then(() => expect.fail(noGateway.stderr.text))]);
    noGateway.stop();
    expect(await noGateway.exit).toBe(0);

    const misspelt = appWith('export default { gatway: {} };\n');
    const start = keel(misspelt, 'start', '--http', '0');
    expect(await start.exit).toBe(1);
    expect(start.stderr.text).toContain('error E_CONFIG: keel.config.ts: unknown option "gatway" (did you mean gateway? it takes gateway, principal, resilience, data, logging).\n');

    const noDefault = appWith('export const gateway = {};\n');
    const up = keel(noDefault, 'up');
    expect(await up.exit).toBe(1);
    expect(up.stderr.text).toContain('error E_CONFIG: keel.config.ts must export its configuration as default: `export default defineConfig({ ... })`.\n');
  });
});
