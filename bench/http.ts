/**
 * HTTP throughput: one operation through the keel HTTP gateway (fastify, the contract's schemas,
 * a kernel call, problem+json errors, metrics) against a bare fastify route returning the same
 * JSON, in the same run. Each server runs in its own process (bench/http-peer.ts); autocannon
 * loads them from yet another.
 */
import { spawn } from 'node:child_process';
import { QUOTE_INPUT } from './fixture.js';
import { startPeer, type Peer } from './peer.js';
import { interleavedSamples, medianOf, rate, roundRatio, roundRatios, versusTarget } from './support.js';

const AUTOCANNON = new URL('../node_modules/autocannon/autocannon.js', import.meta.url).pathname;
const CONNECTIONS = 64;
const SECONDS = 3;

/** The markers around the section in docs/benchmarks.md: `npm run bench -- http` replaces what is between them. */
export const HTTP_BEGIN = '<!-- http: written by npm run bench -- http -->';
export const HTTP_END = '<!-- /http -->';
const ROUNDS = 5;
const BODY = JSON.stringify(QUOTE_INPUT);

/** What one autocannon run reports (the fields used here). */
interface LoadResult {
  readonly requests: { readonly average: number; readonly total: number };
  readonly latency: { readonly p50: number; readonly p99: number };
  readonly non2xx: number;
  readonly errors: number;
  readonly timeouts: number;
}

/** Loads `url` with POSTs of the quote input from an autocannon process; resolves with its JSON report. */
function load(url: string, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const args = [AUTOCANNON, '-j', '-n', '-c', String(CONNECTIONS), '-d', String(seconds), '-m', 'POST'];
    args.push('-H', 'content-type=application/json', '-b', BODY, url);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      output += chunk;
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), (seconds + 30) * 1000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(killer);
      try {
        if (code !== 0) throw new Error(`autocannon exited with ${code}`);
        const result = JSON.parse(output) as LoadResult;
        if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
          throw new Error(`${url}: ${result.non2xx} non-2xx answers, ${result.errors} errors, ${result.timeouts} timeouts`);
        }
        resolve(result);
      } catch (error) {
        reject(error);
      }
    });
  });
}

type Server = 'bare' | 'bareAls' | 'gateway' | 'gatewayNoMetrics' | 'gatewayNoSecurityHeaders';

/** Runs the HTTP benchmark; returns the report section. */
export async function benchHttp(): Promise<{ markdown: string; summary: Record<string, number> }> {
  const peers: Partial<Record<Server, Peer>> = {};
  try {
    peers.bare = await startPeer('http-peer.ts', ['bare']);
    peers.bareAls = await startPeer('http-peer.ts', ['bare-als']);
    peers.gateway = await startPeer('http-peer.ts', ['gateway']);
    peers.gatewayNoMetrics = await startPeer('http-peer.ts', ['gateway-no-metrics']);
    peers.gatewayNoSecurityHeaders = await startPeer('http-peer.ts', ['gateway-no-security-headers']);
    const servers = peers as Record<Server, Peer>;
    const names = Object.keys(servers) as Server[];
    for (const name of names) {
      const url = servers[name].greeting;
      const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY });
      const answer = await response.text();
      if (response.status !== 200 || answer !== '{"totalCents":500,"currency":"EUR"}') {
        throw new Error(`${url} answered ${response.status} ${answer}`);
      }
    }
    // One round loads every server once, in an order that rotates from round to round and puts the
    // gateway right after the bare route in all rounds but one: the target is the median of each
    // round's own ratio, so a neighbour slowing the machine for a while slows both sides alike.
    type Sample = { result: LoadResult; cpuMicros: number };
    const measure = async (name: Server): Promise<Sample> => {
      const peer = servers[name];
      const before = Number(await peer.ask('cpu'));
      const result = await load(peer.greeting, SECONDS);
      const cpu = Number(await peer.ask('cpu')) - before;
      return { result, cpuMicros: cpu / Math.max(1, result.requests.total) };
    };
    const order: Server[] = ['bare', 'gateway', 'bareAls', 'gatewayNoMetrics', 'gatewayNoSecurityHeaders'];
    const results = await interleavedSamples(
      ROUNDS,
      Object.fromEntries(order.map((name) => [name, () => measure(name)])) as Record<Server, () => Promise<Sample>>,
    );
    const median = (name: Server, pick: (sample: Sample) => number): number => medianOf(results[name]!.map(pick));
    const throughput = (name: Server): number => median(name, (sample) => sample.result.requests.average);
    const rates = Object.fromEntries(order.map((name) => [name, results[name]!.map((sample) => sample.result.requests.average)]));
    const versus = (name: Server): number => roundRatio(rates, name, 'bare');
    const perRound = roundRatios(rates, 'gateway', 'bare').map((value) => value.toFixed(2)).join(', ');
    const row = (name: Server, label: string): string =>
      `| ${label} | ${rate(throughput(name))} | ${median(name, (sample) => sample.result.latency.p50)} / ${median(name, (sample) => sample.result.latency.p99)} ms | ` +
      `${median(name, (sample) => sample.cpuMicros).toFixed(0)} µs | ${versus(name).toFixed(2)}× |`;
    const ratio = versus('gateway');
    const markdown = [
      HTTP_BEGIN,
      '### HTTP gateway vs a bare fastify route',
      '',
      '`POST /pricing/quote` with the same small JSON body (`{ customerId, lines: [{ sku, quantity }] }`), answered with',
      'the same JSON. Gateway: `createHttpGateway` with its defaults but the rate limit (correlation id, deadline and traceparent headers,',
      'Prometheus metrics, problem+json errors, cancellation on disconnect, security headers) over a kernel hosting the `pricing` module',
      'in the same process (input and output validated, call context). Bare: a route of the same fastify that parses the',
      'body and returns the quote, in a process running no keel code; and the same bare route in a process where a keel',
      "handler ran, so Node 20's AsyncLocalStorage (keel's call context) taxes every promise, as in any keel process.",
      `Each server runs in its own process; load: autocannon in another process, ${CONNECTIONS} connections, ${SECONDS} s per`,
      `round; ${ROUNDS} rounds in rotating order after a warm-up round, the gateway loaded right after the bare route in all`,
      'rounds but one; rates, latencies and CPU are medians over rounds, "vs bare" is the median of each round\'s own ratio to the bare',
      "route (the two gateway variants never run right after it, so their ratios carry more of the machine's drift within a round).",
      "Server CPU per request: user + system time of the server's process over a round, divided by its requests.",
      '',
      '| server | requests/s | p50 / p99 latency | server CPU per request | vs bare |',
      '|---|---|---|---|---|',
      row('bare', 'bare fastify route'),
      row('bareAls', 'bare fastify route, AsyncLocalStorage on'),
      row('gateway', 'keel HTTP gateway (defaults)'),
      row('gatewayNoMetrics', 'keel HTTP gateway, `metrics: false`'),
      row('gatewayNoSecurityHeaders', 'keel HTTP gateway, `securityHeaders: false`'),
      '',
      `Target: the gateway serves ≥ 0.85× the bare route's throughput — ${ratio >= 0.85 ? 'met' : 'NOT met'} (${versusTarget(ratio, 0.85)} with its defaults; ` +
        `${versus('gatewayNoMetrics').toFixed(2)}× without metrics, ${versus('gatewayNoSecurityHeaders').toFixed(2)}× without security ` +
        `headers; by server CPU per request, bare / gateway, ${(median('bare', (sample) => sample.cpuMicros) / median('gateway', (sample) => sample.cpuMicros)).toFixed(2)}×). ` +
        'Where the rest goes: [performance.md](performance.md), "Why the unmet targets are unmet", "Gateway, sixth round", "Gateway, twelfth round" and "Gateway, thirteenth round"; two runs minutes apart differ by more than the rows here (performance.md, "Gateway, thirteenth round").',
      '',
      `Each round's gateway / bare, in the order run: ${perRound}; the bare route's rates: ${(rates['bare'] ?? []).map(rate).join(', ')}.`,
      HTTP_END,
      '',
    ].join('\n');
    return {
      markdown,
      summary: {
        bare: throughput('bare'),
        bareAls: throughput('bareAls'),
        gateway: throughput('gateway'),
        gatewayNoMetrics: throughput('gatewayNoMetrics'),
        gatewayNoSecurityHeaders: throughput('gatewayNoSecurityHeaders'),
        ratio, // the median of the rounds' own gateway / bare ratios, not gateway / bare of these medians
      },
    };
  } finally {
    await Promise.allSettled(Object.values(peers).map((peer) => peer.stop()));
  }
}
