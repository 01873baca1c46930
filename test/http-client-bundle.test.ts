/**
 * A contract plus the typed HTTP client, bundled for the browser with esbuild (platform
 * browser): no Node.js built-in and no server library in the bundle, which then calls the shop
 * through a real gateway from a bare `vm` context (only web globals: no require, no process)
 * and from headless Chromium (`chromium` on PATH, as `apt-get install chromium` gives; CHROMIUM
 * names another binary; without one the test fails saying so).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createContext, runInContext } from 'node:vm';
import { build, type BuildOptions, type Metafile } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger } from 'keel';
import { createHttpGateway, type HttpGateway } from 'keel/http';
import { Principal } from '../app/principal.js';
import { modules } from '../modules/index.js';
import { pgliteUnderTest } from './support/databases.js';
import type { PageReport } from './support/browser-page.js';
import { shopAuthenticator, shopToken } from './support/shop-auth.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PAGE = fileURLToPath(new URL('./support/browser-page.ts', import.meta.url));

const BROWSER: BuildOptions = {
  bundle: true,
  platform: 'browser',
  write: false,
  metafile: true,
  logLevel: 'silent',
  absWorkingDir: ROOT,
  conditions: ['keel-source'],
};

/** The kernel files a browser bundle of a contract and the client takes: zod and these, nothing else. */
const BROWSER_SAFE_KERNEL_FILES = [
  'kernel/call-ids.ts',
  'kernel/call-policy.ts',
  'kernel/contract-checks.ts',
  'kernel/contract-entry.ts',
  'kernel/contract.ts',
  'kernel/declared-errors.ts',
  'kernel/envelope.ts',
  'kernel/errors.ts',
  'kernel/http-client-answers.ts',
  'kernel/http-client-entry.ts',
  'kernel/http-client-options.ts',
  'kernel/http-client.ts',
  'kernel/nearest-name.ts',
  'kernel/options.ts',
  'kernel/principal.ts',
  'kernel/schema-walk.ts',
  'kernel/text-schema.ts',
  'kernel/timeouts.ts',
  'kernel/transport.ts',
];

/** The package (or `project`) of each input of a bundle. */
function packagesOf(metafile: Metafile): string[] {
  const names = Object.keys(metafile.inputs).map((input) => {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(input);
    return match?.[1] ?? 'project';
  });
  return [...new Set(names)].sort();
}

/** The entry of the page: everything the browser doors offer, plus the page itself. */
const PAGE_ENTRY = `
export { runPage } from ${JSON.stringify(PAGE)};
export * as contract from 'keel/contract';
export * as httpClient from 'keel/http-client';
`;

function chromiumPath(): string | undefined {
  const candidate = process.env['CHROMIUM'] ?? 'chromium';
  const found = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
  return found.status === 0 ? candidate : undefined;
}

describe('http client - a browser bundle', () => {
  const databases = pgliteUnderTest();
  let gateway: HttpGateway;
  let gatewayUrl: string;
  let pageServer: Server;
  let pageUrl: string;
  let esm: { code: string; metafile: Metafile };
  /** An admin's bearer token, signed here and handed to the page (which adds a product: admins only). */
  let token: string;
  const reports = new Map<string, (report: unknown) => void>();

  beforeAll(async () => {
    const built = await build({ ...BROWSER, format: 'esm', stdin: { contents: PAGE_ENTRY, resolveDir: ROOT, loader: 'ts' } });
    esm = { code: built.outputFiles?.[0]?.text ?? '', metafile: built.metafile ?? { inputs: {}, outputs: {} } };

    // The page is served from an origin of its own, as a static site would be: the gateway allows it by CORS.
    pageServer = createServer((request, response) => {
      if (request.method === 'POST' && request.url?.startsWith('/report/')) {
        let body = '';
        request.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
        request.on('end', () => {
          reports.get(request.url?.slice('/report/'.length) ?? '')?.(JSON.parse(body));
          response.end();
        });
        return;
      }
      if (request.url === '/page.js') {
        response.writeHead(200, { 'content-type': 'text/javascript' }).end(esm.code);
        return;
      }
      const sku = new URL(request.url ?? '/', 'http://page').searchParams.get('sku') ?? '';
      response.writeHead(200, { 'content-type': 'text/html' }).end(`<!doctype html>
<script type="module">
  import { runPage } from '/page.js';
  const report = await runPage(${JSON.stringify(gatewayUrl)}, ${JSON.stringify(sku)}, ${JSON.stringify(token)}).catch((error) => ({ failed: String(error && error.stack || error) }));
  await fetch('/report/${sku}', { method: 'POST', body: JSON.stringify(report) });
</script>`);
    });
    await new Promise<void>((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
    pageUrl = `http://127.0.0.1:${(pageServer.address() as { port: number }).port}`;

    token = await shopToken();
    const kernel = createKernel({ modules, principal: Principal, logger: silentLogger, database: await databases.fresh() });
    await kernel.start();
    gateway = await createHttpGateway({ kernel, port: 0, logger: silentLogger, metrics: false, cors: { origins: [pageUrl] }, authenticate: shopAuthenticator() });
    gatewayUrl = await gateway.listen();
  });
  afterAll(async () => {
    await gateway?.close();
    pageServer?.closeAllConnections();
    await new Promise((resolve) => pageServer?.close(resolve));
    await databases.cleanup();
  });

  it('http client - a contract and the client bundle for the browser with zod and browser-safe kernel files only', () => {
    expect(esm.code.length).toBeGreaterThan(0);
    const inputs = Object.keys(esm.metafile.inputs);
    expect(inputs.filter((input) => input.startsWith('node:') || !/^(kernel|modules|test|node_modules|<stdin>)|\/node_modules\//.test(input))).toEqual([]);
    expect(packagesOf(esm.metafile)).toEqual(['project', 'zod']);
    expect(inputs.filter((input) => input.startsWith('kernel/')).sort()).toEqual(BROWSER_SAFE_KERNEL_FILES);
    expect(inputs.filter((input) => input.startsWith('modules/'))).toEqual(['modules/catalog/contract.ts']);
    for (const banned of ['node:', 'AsyncLocalStorage', 'reflect-metadata', 'inversify', 'pino']) {
      expect(esm.code.includes(`from "${banned}`) || esm.code.includes(`require("${banned}`), banned).toBe(false);
    }
  });

  it("http client - the test has teeth: 'keel' itself does not bundle for the browser", async () => {
    const failed = await build({ ...BROWSER, format: 'esm', stdin: { contents: "export * from 'keel';", resolveDir: ROOT, loader: 'ts' } }).then(
      () => undefined,
      (error: { errors?: { text: string }[] }) => error.errors?.map((message) => message.text) ?? [],
    );
    expect(failed?.some((text) => /node:|Node\.js|built-in/i.test(text))).toBe(true);
  });

  const expectReport = (report: unknown, sku: string) => {
    expect(report).toEqual({
      added: { sku, name: 'Browser mug', priceCents: 1_250 },
      got: { sku, priceCents: 1_250 },
      listed: expect.arrayContaining([sku]),
      unknown: { instanceOfItsClass: true, code: 'UNKNOWN_PRODUCT', data: { sku: 'NO-SUCH-SKU' }, correlationId: `page-${sku}` },
      invalid: { keelError: true, code: 'INVALID_INPUT' },
      givenFetch: sku,
      nodeGlobals: { process: 'undefined', require: 'undefined' },
    } satisfies PageReport);
  };

  it('http client - the bundle calls the shop from a bare vm context: web globals only, no require, no process', async () => {
    const iife = await build({ ...BROWSER, format: 'iife', globalName: 'page', stdin: { contents: PAGE_ENTRY, resolveDir: ROOT, loader: 'ts' } });
    const sandbox = createContext({ fetch, URL, URLSearchParams, AbortController, AbortSignal, Headers, Request, Response, TextEncoder, TextDecoder, console, setTimeout, clearTimeout, crypto });
    runInContext(iife.outputFiles?.[0]?.text ?? '', sandbox);
    expect(runInContext('typeof require + " " + typeof process', sandbox)).toBe('undefined undefined');
    const page = (sandbox as { page: { runPage(baseUrl: string, sku: string, token: string): Promise<unknown> } }).page;
    expectReport(await page.runPage(gatewayUrl, 'VM-1', token), 'VM-1');
  });

  it('http client - the bundle calls the shop from a page in headless Chromium, across origins', async () => {
    const chromium = chromiumPath();
    if (chromium === undefined) {
      throw new Error(
        `No Chromium to run the browser test: "${process.env['CHROMIUM'] ?? 'chromium'} --version" failed. ` +
          'Install it (Debian/Ubuntu: apt-get install chromium), or name another binary with CHROMIUM=/path/to/chrome. .ci/run installs it.',
      );
    }
    const sku = 'CHROMIUM-1';
    const reported = new Promise<unknown>((resolve) => reports.set(sku, resolve));
    const profile = mkdtempSync(join(tmpdir(), 'keel-chromium-'));
    const browser = spawn(
      chromium ?? 'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-extensions', `--user-data-dir=${profile}`, `${pageUrl}/?sku=${sku}`],
      { stdio: 'ignore', detached: true },
    );
    try {
      const exited = new Promise<never>((_, reject) => browser.once('exit', (code) => reject(new Error(`chromium exited with ${code} before the page reported`))));
      expectReport(await Promise.race([reported, exited]), sku);
    } finally {
      if (browser.pid !== undefined && browser.exitCode === null) process.kill(-browser.pid, 'SIGKILL');
      rmSync(profile, { recursive: true, force: true });
    }
  }, 60_000);
});
