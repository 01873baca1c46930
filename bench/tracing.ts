/**
 * What tracing costs: the same calls with keel's tracing off and on (every span sampled and
 * exported over OTLP/HTTP protobuf, in batches, to a collector stand-in in another process:
 * bench/otlp-sink.ts), against the code before tracing existed (the commit before issue 15,
 * checked out in a temporary git worktree and run in a peer process of its own). In process
 * (a synchronous handler, the most sensitive path) and over NATS (caller and callee both
 * tracing), in interleaved rounds of one run.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKernel, silentLogger, type Kernel } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { disableTracing, enableTracing } from 'keel/transport';
import { startNatsServer } from '../test/support/nats-server.js';
import { QUOTE_INPUT, pricing, pricingModule } from './fixture.js';
import { startPeer, startPeerGroup, type PeerGroup } from './peer.js';
import { buildCheckout, concurrent, interleavedSamples, medianOf, rate } from './support.js';

/** The last commit before tracing: what "before" runs (`KEEL_BENCH_BEFORE` names another). */
const BEFORE = process.env['KEEL_BENCH_BEFORE'] ?? '0095a616267518706633c963303c0dd4d40f688f';
const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** The median, over rounds, of each round's own cost of `b` against `a` (a slow spell slows both and cancels out). */
const cost = (a: readonly number[], b: readonly number[]): number => medianOf(a.map((value, round) => (value - (b[round] ?? 0)) / value));
const percent = (value: number): string => `${(value * 100).toFixed(1)} %`;

/** A checkout of `commit` sharing this tree's node_modules, with this tree's peer scripts copied in; undefined when git cannot make one. */
function checkoutBefore(): { folder: string; remove(): void } | undefined {
  const folder = mkdtempSync(join(tmpdir(), 'keel-bench-before-'));
  try {
    execFileSync('git', ['worktree', 'add', '--detach', '--force', folder, BEFORE], { cwd: ROOT, stdio: 'ignore' });
  } catch {
    rmSync(folder, { recursive: true, force: true });
    return undefined;
  }
  symlinkSync(join(ROOT, 'node_modules'), join(folder, 'node_modules'));
  for (const file of ['kernel-peer.ts', 'peer.ts', 'support.ts']) copyFileSync(join(ROOT, 'bench', file), join(folder, 'bench', file));
  const remove = () => {
    try {
      execFileSync('git', ['worktree', 'remove', '--force', folder], { cwd: ROOT, stdio: 'ignore' });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  };
  try {
    buildCheckout(folder);
  } catch (error) {
    // As when git cannot make the checkout: the column reads n/a, and the rest of the run goes on.
    console.error(`tracing bench: the checkout of ${BEFORE.slice(0, 7)} did not build, so it is left out: ${String(error)}`);
    remove();
    return undefined;
  }
  return { folder, remove };
}

async function inProcess(rounds: number): Promise<string[]> {
  const before = checkoutBefore();
  const groups: PeerGroup[] = [];
  try {
    // Three processes each: one process alone can be 20 % off another of the same code.
    const current = await startPeerGroup(3, 'kernel-peer.ts', ['in-process']);
    groups.push(current);
    const old = before === undefined ? undefined : await startPeerGroup(3, join(before.folder, 'bench', 'kernel-peer.ts'), ['in-process']);
    if (old !== undefined) groups.push(old);
    const cases: Record<string, () => Promise<number>> = {
      off: () => current.mean('run'),
      on: async () => {
        await current.tell('trace on');
        const value = await current.mean('run');
        await current.tell('trace off');
        return value;
      },
    };
    if (old !== undefined) cases['before'] = () => old.mean('run');
    const samples = await interleavedSamples(rounds, cases);
    const before_ = samples['before'];
    return [
      `| in process, sync handler, sequential | ${before_ === undefined ? 'n/a' : rate(medianOf(before_))} | ${rate(medianOf(samples['off']!))} | ${rate(medianOf(samples['on']!))} | ${
        before_ === undefined ? 'n/a' : percent(cost(before_, samples['off']!))
      } | ${percent(cost(samples['off']!, samples['on']!))} |`,
    ];
  } finally {
    for (const group of groups) await group.stop();
    before?.remove();
  }
}

async function overNats(rounds: number): Promise<string[]> {
  const server = await startNatsServer({ jetstream: false });
  const callee = await startPeer('kernel-peer.ts', ['nats', server.url]);
  const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
  const kernel: Kernel = createKernel({ modules: [pricingModule], topology: { host: [], transport }, logger: silentLogger });
  try {
    await kernel.start();
    const client = kernel.client(pricing);
    // This process's SDK, exporting to the same collector; then keel's spans toggled per round.
    const { startTracing } = await import('keel/otel');
    const tracing = startTracing({ serviceName: 'bench-caller' });
    disableTracing();
    const N = 20_000;
    const samples = await interleavedSamples(rounds, {
      off: () => concurrent(N, 64, () => client.quote(QUOTE_INPUT)),
      on: async () => {
        await callee.ask('trace on');
        enableTracing();
        const value = await concurrent(N, 64, () => client.quote(QUOTE_INPUT));
        disableTracing();
        await callee.ask('trace off');
        return value;
      },
    });
    await tracing.shutdown();
    return [
      `| NATS, 64 concurrent, caller and callee tracing | — | ${rate(medianOf(samples['off']!))} | ${rate(medianOf(samples['on']!))} | — | ${percent(cost(samples['off']!, samples['on']!))} |`,
    ];
  } finally {
    await kernel.stop();
    await transport.close();
    await callee.stop();
    await server.stop();
  }
}

/** Runs the tracing benchmark; returns the report section. */
export async function benchTracing(): Promise<{ markdown: string }> {
  const ROUNDS = 9;
  const sink = await startPeer('otlp-sink.ts', []);
  const { url } = JSON.parse(sink.greeting) as { url: string };
  // Every process started from here on exports to the sink (the peers inherit the environment).
  process.env['OTEL_EXPORTER_OTLP_ENDPOINT'] = url;
  process.env['OTEL_EXPORTER_OTLP_PROTOCOL'] = 'http/protobuf';
  let rows: string[];
  let counts: string;
  try {
    rows = [...(await inProcess(ROUNDS)), ...(await overNats(ROUNDS))];
    counts = await sink.ask('counts');
  } finally {
    delete process.env['OTEL_EXPORTER_OTLP_ENDPOINT'];
    delete process.env['OTEL_EXPORTER_OTLP_PROTOCOL'];
    await sink.stop();
  }
  const { protobufRequests, protobufBytes } = JSON.parse(counts) as { protobufRequests: number; protobufBytes: number };
  const markdown = [
    '### Tracing',
    '',
    'The same `quote` calls with keel\'s tracing off and on (every span sampled, exported over OTLP/HTTP',
    'protobuf in batches to a collector stand-in in another process, bench/otlp-sink.ts), and, in process,',
    `through the code before tracing existed (commit ${BEFORE.slice(0, 7)}, run from a temporary git worktree), each in`,
    `three processes of its own (a sample is their mean). Rates are medians of ${ROUNDS} interleaved rounds; each cost is the median of the rounds' own ratios.`,
    '',
    '| case | before tracing | tracing off | tracing on | off vs before | on vs off |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    `The collector received ${protobufRequests} export requests (${(protobufBytes / 2 ** 20).toFixed(1)} MiB). In process, tracing on makes`,
    'two spans per call (client and server; `KEEL_TRACE_IN_PROCESS=false` leaves them out); over NATS one per side.',
    '',
  ].join('\n');
  return { markdown };
}
