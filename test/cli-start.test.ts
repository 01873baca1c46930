import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it, vi } from 'vitest';
import { main, runCli } from 'keel/cli';
import { refusedPorts } from './support/refused-ports.js';
import { SHOP_TEST_SECRET, bearer } from './support/shop-auth.js';
import { READY, collector, failureRecord, gatewayUrl, logMessages, logRecords } from './support/cli.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));

function start(...argv: string[]) {
  return startWith({}, ...argv);
}

/**
 * Runs `keel start` in the repository (the shop) with `env` as its whole environment. The shop's
 * modules own data: each run keeps it in memory (KEEL_DATA_DIR=memory), so that runs neither
 * contend for the repository's .keel/data/app (held by one process) nor keep data between runs.
 */
function startWith(env: Record<string, string>, ...argv: string[]) {
  const stdout = collector();
  const stderr = collector();
  const controller = new AbortController();
  const exit = runCli(main, ['start', ...argv], {
    cwd: repository,
    env: { KEEL_LOG_LEVEL: 'info', KEEL_DATA_DIR: 'memory', ...env },
    stdout,
    stderr,
    signal: controller.signal,
  });
  return { stdout, stderr, exit, stop: () => controller.abort('SIGTERM') };
}

describe('cli - keel start', () => {
  it('cli - runs the shop in process with the HTTP gateway, and drains when signalled', async () => {
    const running = start('--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    const url = gatewayUrl(running.stdout.text);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    try {
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const response = await fetch(`${url}/catalog/getProduct`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'KB-001' }),
      });
      expect(await response.json()).toMatchObject({ sku: 'KB-001', name: 'Mechanical keyboard' });
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
    const messages = logMessages(running.stdout.text);
    expect(messages).toContain('hosting catalog, inventory, payments, orders, notifications');
    expect(messages).toContain('data of catalog, inventory, payments, orders, notifications: pglite in memory');
    expect(messages).toContain('opening the embedded database (PGlite) in memory for catalog, inventory, payments, orders, notifications');
    expect(messages.indexOf('stopping: finishing work in flight')).toBeGreaterThan(messages.indexOf('ready'));
    expect(messages.at(-1)).toBe('stopped');
  });

  it('cli - with KEEL_LOG_FORMAT=json every stdout line, from start to stop, is one JSON record, the ready record among them', async () => {
    const running = startWith({ KEEL_LOG_FORMAT: 'json' }, '--http', '0');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    try {
      // A call, so that the kernel and the gateway write lines of their own among the start-up lines.
      await fetch(`${gatewayUrl(running.stdout.text)}/catalog/getProduct`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"sku":"KB-001"}' });
    } finally {
      running.stop();
    }
    expect(await running.exit, running.stderr.text).toBe(0);
    const lines = running.stdout.text.split('\n').filter((line) => line !== '');
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records.find((record) => record['msg'] === 'ready')).toMatchObject({ level: 30, name: 'keel', modules: expect.arrayContaining(['catalog']) });
    expect(records.at(-1)).toMatchObject({ msg: 'stopped' });
    expect(running.stderr.text).toBe('');
  });

  it('cli - with KEEL_LOG_FORMAT=pretty it writes human lines, not JSON, ending its start-up with "ready (Ctrl-C to stop)"', async () => {
    const running = startWith({ KEEL_LOG_FORMAT: 'pretty' }, '--modules', 'catalog');
    await Promise.race([running.stdout.waitFor('ready (Ctrl-C to stop)'), running.exit.then(() => expect.fail(running.stderr.text))]);
    running.stop();
    expect(await running.exit, running.stderr.text).toBe(0);
    const lines = running.stdout.text.split('\n').filter((line) => line !== '');
    expect(lines.find((line) => line.includes('hosting catalog'))).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(keel\): hosting catalog \{"modules":\["catalog"\]\}$/);
    expect(lines.filter((line) => line.startsWith('{'))).toEqual([]);
  });

  it('cli - refuses a KEEL_LOG_FORMAT other than json or pretty, naming the variable, before it starts anything', async () => {
    const running = startWith({ KEEL_LOG_FORMAT: 'xml' }, '--modules', 'catalog');
    expect(await running.exit).toBe(1);
    expect(running.stderr.text).toContain('error INVALID_CONFIG: KEEL_LOG_FORMAT "xml" is not a log format: set it to json');
    expect(running.stdout.text).toBe('');
  });

  it('cli - in JSON format a failure once the format is known (NATS not answering) is one error record on stderr naming its process, and every stdout line is a JSON object', async () => {
    const nats = `nats://127.0.0.1:${(await refusedPorts(1))[0]}`;
    // Its output is no terminal: JSON. The NATS server it is given does not answer.
    const json = startWith({ KEEL_PROCESS_NAME: 'orders' }, '--modules', 'orders', '--nats', nats, '--http', 'off');
    expect(await json.exit).toBe(1);
    expect(logRecords(json.stdout.text).length, json.stdout.text).toBeGreaterThan(0);
    expect(failureRecord(json.stderr.text, { name: 'keel' })).toMatchObject({ code: 'UNAVAILABLE', process: 'orders', msg: expect.stringContaining(`Could not connect to NATS at ${nats}`) });
  });

  it('cli - refuses a NATS URL it cannot use before opening anything, naming --nats (E_USAGE) or KEEL_NATS_URL (INVALID_CONFIG)', async () => {
    const flag = start('--modules', 'orders', '--nats', 'foo://x', '--http', 'off');
    expect(await flag.exit).toBe(2);
    expect(failureRecord(flag.stderr.text, { name: 'keel' })).toMatchObject({
      code: 'E_USAGE',
      msg: '--nats "foo://x" uses foo:; keel connects with nats:// or tls:// URLs.',
      hint: expect.stringContaining('nats://host:4222'),
    });
    // The process has exited, and no database was opened on the way.
    expect(flag.stdout.text).not.toContain('opening the embedded database');
    const blank = start('--modules', 'orders', '--nats', ' ', '--http', 'off');
    expect(await blank.exit).toBe(2);
    expect(failureRecord(blank.stderr.text, { name: 'keel' })).toMatchObject({ code: 'E_USAGE', msg: '--nats is empty: give the URL of a NATS server, or leave the option out.' });
    const variable = startWith({ KEEL_NATS_URL: 'foo://x' }, '--modules', 'orders', '--http', 'off');
    expect(await variable.exit).toBe(1);
    expect(failureRecord(variable.stderr.text, { name: 'keel' })).toMatchObject({ code: 'INVALID_CONFIG', msg: 'KEEL_NATS_URL "foo://x" uses foo:; keel connects with nats:// or tls:// URLs.' });
    expect(variable.stdout.text).not.toContain('opening the embedded database');
  });

  it('cli - a failure before the configuration is read is an error record with its hint when KEEL_LOG_FORMAT=json says so from the start, else error CODE text', async () => {
    const early = startWith({ KEEL_LOG_FORMAT: 'json', KEEL_RELEASE_STARTUP_MEMORY: 'later' });
    expect(await early.exit).toBe(2);
    expect(early.stdout.text).toBe('');
    expect(failureRecord(early.stderr.text, { name: 'keel' })).toMatchObject({
      code: 'E_USAGE',
      msg: 'KEEL_RELEASE_STARTUP_MEMORY "later" is not on or off.',
      hint: expect.stringContaining('KEEL_RELEASE_STARTUP_MEMORY=off'),
    });
    const plain = startWith({ KEEL_RELEASE_STARTUP_MEMORY: 'later' });
    expect(await plain.exit).toBe(2);
    expect(plain.stderr.text).toMatch(/^error E_USAGE: KEEL_RELEASE_STARTUP_MEMORY "later" is not on or off\.\n {2}Leave it unset/);
  });

  it('cli - in pretty format a failure is one line, error CODE: message, on stderr', async () => {
    const nats = `nats://127.0.0.1:${(await refusedPorts(1))[0]}`;
    const pretty = startWith({ KEEL_LOG_FORMAT: 'pretty' }, '--modules', 'orders', '--nats', nats, '--http', 'off');
    expect(await pretty.exit).toBe(1);
    expect(pretty.stderr.text.startsWith(`error UNAVAILABLE: Could not connect to NATS at ${nats}: connection refused`), pretty.stderr.text).toBe(true);
    expect(pretty.stderr.text.trimEnd().split('\n')).toHaveLength(1);
  });

  it("cli - keeps the shop's data in KEEL_DATA_DIR across a restart, and lets go of the folder when it stops", async () => {
    const folder = mkdtempSync(join(tmpdir(), 'keel-start-data-'));
    const post = async (url: string | undefined, path: string, input: unknown) =>
      fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(await bearer()) }, body: JSON.stringify(input) });
    // addProduct is for admins: the shop's keel.config.ts, loaded in this process, reads its
    // process.env (not the env keel start is given) for the secret its gateway verifies tokens with.
    vi.stubEnv('SHOP_AUTH_SECRET', SHOP_TEST_SECRET);
    try {
      const first = startWith({ KEEL_DATA_DIR: folder }, '--http', '0');
      await Promise.race([first.stdout.waitFor(READY), first.exit.then(() => expect.fail(first.stderr.text))]);
      try {
        const messages = logMessages(first.stdout.text);
        expect(messages).toContain(`data of catalog, inventory, payments, orders, notifications: pglite in ${folder}`);
        // Said before the seconds PGlite takes, so that a start that seems to hang says why.
        const creating = `creating the embedded database (PGlite) in ${folder} for catalog, inventory, payments, orders, notifications: a first start takes longer`;
        expect(messages).toContain(creating);
        expect(messages.indexOf(creating)).toBeLessThan(messages.findIndex((message) => message === 'migrations applied'));
        const added = await post(gatewayUrl(first.stdout.text), '/catalog/addProduct', {
          sku: 'CLI-RESTART-1',
          name: 'Mug that outlives a restart',
          priceCents: 1200,
        });
        expect(added.status, await added.clone().text()).toBe(200);
      } finally {
        first.stop();
      }
      expect(await first.exit, first.stderr.text).toBe(0);
      expect(existsSync(join(folder, 'keel.lock')), 'the lock goes with the process').toBe(false);

      const second = startWith({ KEEL_DATA_DIR: folder }, '--http', '0');
      await Promise.race([second.stdout.waitFor(READY), second.exit.then(() => expect.fail(second.stderr.text))]);
      try {
        expect(logMessages(second.stdout.text)).toContain(`opening the embedded database (PGlite) in ${folder} for catalog, inventory, payments, orders, notifications`);
        const read = await post(gatewayUrl(second.stdout.text), '/catalog/getProduct', { sku: 'CLI-RESTART-1' });
        expect(await read.json()).toMatchObject({ sku: 'CLI-RESTART-1', name: 'Mug that outlives a restart', priceCents: 1200 });
      } finally {
        second.stop();
      }
      expect(await second.exit, second.stderr.text).toBe(0);
    } finally {
      vi.unstubAllEnvs();
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('cli - serves HTTP on port 3000 when hosting every module and no port is given (shown by 3000 being taken)', async () => {
    // Hold 3000 (or find it held already): the gateway must then fail on exactly that port.
    const blocker = createServer();
    await new Promise<void>((resolve) => {
      blocker.once('error', () => resolve());
      blocker.listen(3000, '127.0.0.1', () => resolve());
    });
    try {
      const running = startWith({ PORT: '', KEEL_HTTP_PORT: '' });
      expect(await running.exit).toBe(1);
      expect(failureRecord(running.stderr.text, { name: 'keel' })).toMatchObject({ code: 'E_HTTP_LISTEN', msg: expect.stringContaining('The HTTP gateway cannot listen on 127.0.0.1:3000') });
    } finally {
      blocker.close();
    }
  });

  it('cli - a process hosting some modules serves no HTTP unless given a port, and warns that with no NATS nothing outside can call them', async () => {
    const running = start('--modules', 'catalog');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    running.stop();
    expect(await running.exit).toBe(0);
    expect(logMessages(running.stdout.text)).toContain('hosting catalog');
    expect(running.stdout.text).not.toContain('HTTP gateway on');
    const unreachable = logRecords(running.stdout.text).filter((record) => record.level === 40);
    expect(unreachable.map((record) => record.msg)).toEqual([
      'nothing outside this process can call catalog: no NATS server was given (--nats, KEEL_NATS_URL) and no HTTP gateway exposes an operation ' +
        '(--http, and --operations other than none). Give one of them if other processes or clients should reach these modules.',
    ]);
    // A gateway that exposes no operation is no way in either.
    const probed = start('--modules', 'catalog', '--http', '0', '--operations', 'none');
    await Promise.race([probed.stdout.waitFor(READY), probed.exit.then(() => expect.fail(probed.stderr.text))]);
    probed.stop();
    expect(await probed.exit).toBe(0);
    expect(logMessages(probed.stdout.text)).toContainEqual(expect.stringMatching(/^nothing outside this process can call catalog/));

    // With a gateway something can: no warning before the ready record, which comes after where it would be.
    const served = start('--modules', 'catalog', '--http', '0', '--operations', 'hosted');
    await Promise.race([served.stdout.waitFor(READY), served.exit.then(() => expect.fail(served.stderr.text))]);
    served.stop();
    expect(await served.exit).toBe(0);
    expect(logMessages(served.stdout.text)).toContain('ready');
    expect(served.stdout.text).not.toContain('nothing outside this process');
  });

  it('cli - refuses a module that is not in the manifest', async () => {
    const running = start('--modules', 'catalog,billing');
    expect(await running.exit).toBe(1);
    expect(failureRecord(running.stderr.text, { name: 'keel' })).toMatchObject({ code: 'E_UNKNOWN_MODULE', msg: expect.stringContaining('No module named "billing" in the manifest') });
  });

  it('cli - explains that a module whose dependencies run elsewhere needs NATS', async () => {
    const running = start('--modules', 'orders');
    expect(await running.exit).toBe(1);
    expect(failureRecord(running.stderr.text, { name: 'keel' })).toMatchObject({ code: 'INVALID_TOPOLOGY', msg: expect.stringMatching(/^Module "orders" needs .*KEEL_NATS_URL/) });
  });

  it('cli - refuses an HTTP port that is not a number, naming the option or variable it came from', async () => {
    const flag = start('--http', 'eighty');
    expect(await flag.exit).toBe(2);
    expect(flag.stderr.text).toContain('error E_USAGE: HTTP port "eighty" (from --http) is not a port number (0 to 65535), nor "off".');
    const variable = startWith({ PORT: 'eighty' });
    expect(await variable.exit).toBe(2);
    expect(variable.stderr.text).toContain('error E_USAGE: HTTP port "eighty" (from PORT) is not a port number');
  });

  /** Starts, returns the gateway URL it printed (or undefined) and what it hosts, then stops it. */
  async function startAndStop(env: Record<string, string>, ...argv: string[]): Promise<{ url: string | undefined; hosting: string | undefined }> {
    const running = startWith(env, ...argv);
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    const url = gatewayUrl(running.stdout.text);
    try {
      if (url !== undefined) expect((await fetch(`${url}/healthz`)).status).toBe(200);
    } finally {
      running.stop();
    }
    expect(await running.exit, running.stderr.text).toBe(0);
    return { url, hosting: /^hosting (.*)/.exec(logMessages(running.stdout.text).find((message) => message.startsWith('hosting ')) ?? '')?.[1] };
  }

  it('cli - serves the gateway on --host, else KEEL_HTTP_HOST', async () => {
    expect((await startAndStop({}, '--http', '0', '--host', '127.0.0.2')).url).toMatch(/^http:\/\/127\.0\.0\.2:\d+$/);
    expect((await startAndStop({ KEEL_HTTP_HOST: '127.0.0.3' }, '--http', '0')).url).toMatch(/^http:\/\/127\.0\.0\.3:\d+$/);
    expect((await startAndStop({ KEEL_HTTP_HOST: '127.0.0.3' }, '--http', '0', '--host', '127.0.0.2')).url).toMatch(
      /^http:\/\/127\.0\.0\.2:/,
    );
  });

  it('cli - takes the gateway port from --http, then KEEL_HTTP_PORT, then PORT, as npm start does; off serves none; a module process without any serves none', async () => {
    expect((await startAndStop({ PORT: '0' })).url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    // KEEL_HTTP_PORT wins over PORT (an unusable PORT is not even read).
    expect((await startAndStop({ KEEL_HTTP_PORT: '0', PORT: 'eighty' })).url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect((await startAndStop({ PORT: '0' }, '--http', 'off')).url).toBeUndefined();
    expect((await startAndStop({ PORT: 'off' })).url).toBeUndefined();
    expect((await startAndStop({}, '--modules', 'catalog')).url).toBeUndefined();
  });

  it('cli - hosts the modules of KEEL_MODULES when --modules is not given', async () => {
    expect((await startAndStop({ KEEL_MODULES: 'catalog' })).hosting).toBe('catalog');
    expect((await startAndStop({ KEEL_MODULES: 'catalog' }, '--modules', 'catalog,payments')).hosting).toBe('catalog, payments');
  });

  it('cli - says which address the gateway cannot listen on, when its port is taken', async () => {
    const holder = createServer();
    holder.listen(0, '127.0.0.1');
    await once(holder, 'listening');
    const port = (holder.address() as { port: number }).port;
    try {
      const running = start('--http', String(port));
      expect(await running.exit).toBe(1);
      expect(failureRecord(running.stderr.text, { name: 'keel' })).toMatchObject({
        code: 'E_HTTP_LISTEN',
        msg: `The HTTP gateway cannot listen on 127.0.0.1:${port}: another process listens there (EADDRINUSE).`,
      });
      expect(running.stderr.text).not.toContain('unexpected failure');
    } finally {
      holder.close();
    }
  });

  it('cli - says the gateway cannot listen on a host name that resolves to nothing (E_HTTP_LISTEN), not an unexpected failure', async () => {
    // An unknown --host once ended in "unexpected failure (a bug in keel or in the application)".
    const running = start('--http', '0', '--host', 'no-such-host.invalid');
    expect(await running.exit).toBe(1);
    expect(failureRecord(running.stderr.text, { name: 'keel' })).toMatchObject({
      code: 'E_HTTP_LISTEN',
      msg: 'The HTTP gateway cannot listen on no-such-host.invalid:0: no such host name (ENOTFOUND).',
    });
    expect(running.stderr.text).not.toContain('unexpected failure');
  });

  it('cli - --operations none serves health, readiness and metrics, and answers an operation with a 404 problem', async () => {
    const running = start('--http', '0', '--operations', 'none');
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    const url = gatewayUrl(running.stdout.text);
    try {
      expect(logMessages(running.stdout.text)).toContain(`HTTP gateway on ${url} (no operation: /healthz, /readyz and /metrics only)`);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const response = await fetch(`${url}/catalog/getProduct`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ sku: 'KB-001' }),
      });
      expect(response.status).toBe(404);
      expect(await response.json()).toMatchObject({
        code: 'ROUTE_NOT_FOUND',
        detail: expect.stringContaining('module "catalog" is not exposed by this gateway'),
      });
      expect(await (await fetch(`${url}/metrics`)).text()).toMatch(/^keel_http_requests_total\{method="GET",route="\/readyz",status="200"\} 1$/m);
    } finally {
      running.stop();
    }
    expect(await running.exit).toBe(0);
  });

  /** The status of POST /<module>/<operation> on a gateway started with these settings. */
  async function statusOf(env: Record<string, string>, argv: readonly string[], module: string, operation: string, input: unknown): Promise<number> {
    const running = startWith(env, '--http', '0', ...argv);
    await Promise.race([running.stdout.waitFor(READY), running.exit.then(() => expect.fail(running.stderr.text))]);
    const url = gatewayUrl(running.stdout.text);
    try {
      const response = await fetch(`${url}/${module}/${operation}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(input),
      });
      return response.status;
    } finally {
      running.stop();
      expect(await running.exit, running.stderr.text).toBe(0);
    }
  }

  it('cli - takes the operations from --operations, else KEEL_HTTP_OPERATIONS; hosted exposes the hosted modules only', async () => {
    const product = ['catalog', 'getProduct', { sku: 'KB-001' }] as const;
    const payments = ['payments', 'listPayments', { customerId: 'c-1' }] as const;
    expect(await statusOf({ KEEL_HTTP_OPERATIONS: 'none' }, [], ...product)).toBe(404);
    expect(await statusOf({ KEEL_HTTP_OPERATIONS: 'none' }, ['--operations', 'all'], ...product)).toBe(200);
    expect(await statusOf({}, ['--modules', 'catalog', '--operations', 'hosted'], ...product)).toBe(200);
    expect(await statusOf({ KEEL_HTTP_OPERATIONS: 'hosted' }, ['--modules', 'catalog'], ...payments)).toBe(404);
  });

  it('cli - refuses operations other than all, hosted or none, naming the flag or the variable', async () => {
    const flag = start('--http', '0', '--operations', 'some');
    expect(await flag.exit).toBe(2);
    expect(flag.stderr.text).toContain(
      'error E_USAGE: --operations "some" is not one of all (every operation), hosted (those of the modules hosted here) ' +
        'or none (no operation: only /healthz, /readyz and /metrics).',
    );
    const variable = startWith({ KEEL_HTTP_OPERATIONS: 'public' }, '--http', '0');
    expect(await variable.exit).toBe(2);
    expect(variable.stderr.text).toContain('error E_USAGE: KEEL_HTTP_OPERATIONS "public" is not one of all (every operation)');
  });

  it('cli - refuses --host or --operations without a gateway, and hosting none without NATS', async () => {
    const host = start('--host', '0.0.0.0', '--http', 'off');
    expect(await host.exit).toBe(2);
    expect(host.stderr.text).toContain('error E_USAGE: --host is the address of the HTTP gateway, and no gateway was asked for.');
    const operations = start('--modules', 'catalog', '--operations', 'none');
    expect(await operations.exit).toBe(2);
    expect(operations.stderr.text).toContain('error E_USAGE: --operations picks the operations of the HTTP gateway, and no gateway was asked for.');
    const empty = start('--modules', ' , ');
    expect(await empty.exit).toBe(2);
    expect(empty.stderr.text).toContain('error E_USAGE: --modules "," names no module; name at least one, "none" to host nothing, or leave it out to host every module.');
    const none = start('--modules', 'none');
    expect(await none.exit).toBe(2);
    expect(none.stderr.text).toContain('error E_USAGE: Hosting "none" makes a process that reaches every module over NATS');
  });

  it('cli - refuses a gateway of every operation in a process that hosts some modules and reaches no other, naming where "all" came from, --operations hosted and --nats', async () => {
    const refused = start('--modules', 'catalog', '--http', '0');
    expect(await refused.exit).toBe(2);
    expect(refused.stderr.text).toContain(
      "error E_USAGE: The HTTP gateway exposes every module's operations (all, the default), and this process hosts only catalog and reaches no other module: no NATS server was given.",
    );
    expect(refused.stderr.text).toContain(
      'Expose catalog alone with --operations hosted (or KEEL_HTTP_OPERATIONS=hosted), or give a NATS server (--nats <url>, or KEEL_NATS_URL) to reach inventory, payments, orders, notifications.',
    );
    const fromEnv = startWith({ KEEL_HTTP_OPERATIONS: 'all' }, '--modules', 'catalog', '--http', '0');
    expect(await fromEnv.exit).toBe(2);
    expect(fromEnv.stderr.text).toContain("every module's operations (KEEL_HTTP_OPERATIONS all)");
    // An unknown module is named as such, not as hosted.
    const unknown = start('--modules', 'catalog,billing', '--http', '0');
    expect(await unknown.exit).toBe(1);
    expect(failureRecord(unknown.stderr.text, { name: 'keel' })).toMatchObject({ code: 'E_UNKNOWN_MODULE' });
    // A hosted module that needs one not hosted: the kernel names that dependency, which no gateway option mends.
    const dependent = start('--modules', 'orders', '--http', '0');
    expect(await dependent.exit).toBe(1);
    expect(failureRecord(dependent.stderr.text, { name: 'keel' })).toMatchObject({ code: 'INVALID_TOPOLOGY', msg: expect.stringContaining('Module "orders" needs "catalog"') });
  });
});
