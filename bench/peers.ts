/**
 * keel against real peers, measured in the same run on the same payload (`QUOTE_INPUT`, the
 * `quote` work of bench/fixture.ts) and the same nats-server:
 * - over NATS, 64 calls in flight from this process, the callee in another process: a keel
 *   client kernel calling a kernel hosting `pricing` (bench/nats-peer.ts keel), a Moleculer broker
 *   calling a broker serving `pricing.quote` with Moleculer's NATS transporter
 *   (bench/moleculer-peer.ts nats), and a NestJS `ClientProxy.send` to a NestJS microservice
 *   over NATS (bench/nest-peer.ts); and, for scale, no framework at all: the hand-muxed nats.js
 *   request of bench/nats.ts to its raw responder (bench/nats-peer.ts raw), the same quote;
 * - in process, each configuration in processes of its own (bench/kernel-peer.ts in-process,
 *   bench/moleculer-peer.ts local): a keel call against Moleculer's local `broker.call`,
 *   sequential and 64 concurrent, sync and async handlers.
 * Interleaved rounds; a ratio is the median over rounds of that round's keel / peer.
 *
 * `KEEL_BENCH_PEERS_SCALE` (default 1) multiplies every call count and `KEEL_BENCH_PEERS_ROUNDS`
 * (default 5) sets the rounds, for a quick check that the section works.
 */
import 'reflect-metadata';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { firstValueFrom } from 'rxjs';
import { Logger } from '@nestjs/common';
import { ClientProxyFactory, Transport as NestTransport, type ClientProxy } from '@nestjs/microservices';
import moleculer from 'moleculer';
import { createKernel, silentLogger, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { connect, createInbox, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer } from '../test/support/nats-server.js';
import { QUOTE_INPUT, RAW_SUBJECTS, pricing, pricingModule, tallyModule, tickerModule } from './fixture.js';
import { HandMuxer } from './hand-muxer.js';
import { startPeer, startPeerGroup, type Peer, type PeerGroup } from './peer.js';
import { concurrent, interleavedSamples, medianOf, packageVersion, rate, roundRatio, versusTarget } from './support.js';

const SCALE = Number(process.env['KEEL_BENCH_PEERS_SCALE'] ?? '1');
const ROUNDS = Number(process.env['KEEL_BENCH_PEERS_ROUNDS'] ?? '5');
const count = (calls: number): number => Math.max(64, Math.round(calls * SCALE));

const NATS_CALLS = count(40_000);
const LOCAL_SEQUENTIAL = count(100_000);
const LOCAL_CONCURRENT = count(200_000);
const CONCURRENCY = 64;
/** Processes per in-process configuration (one process alone can be 20 % off another: bench/peer.ts). */
const PROCESSES = SCALE < 1 ? 1 : 3;

/** The markers around the section in docs/benchmarks.md: `npm run bench -- peers` replaces what is between them. */
export const PEERS_BEGIN = '<!-- peers: written by npm run bench -- peers -->';
export const PEERS_END = '<!-- /peers -->';

/** Whether the counts are the benchmark's own (no `KEEL_BENCH_PEERS_*` override): only such a run is written to the docs. */
export function peersAtFullScale(): boolean {
  return SCALE >= 1 && ROUNDS >= 5;
}

/** Over NATS, keel ≥ 1.4× Moleculer; in process on Node 24, ≥ 1.5× Moleculer's local call (issue 17). */
export const TARGETS = { nats: 1.4, inProcess: 1.5 } as const;

const times = (value: number): string => `${value.toFixed(2)}×`;
const verdict = (met: boolean): string => (met ? 'met' : 'NOT met');

/** What one run of the section measured (rates in calls per second; ratios keel / peer). */
export interface PeersResult {
  readonly node: string;
  readonly markdown: string;
  readonly summary: Record<string, number>;
}

async function overNats(): Promise<{
  rows: string[];
  ratios: { moleculer: number; nest: number; muxed: number; muxedVsMoleculer: number };
  summary: Record<string, number>;
}> {
  const server = await startNatsServer({ jetstream: false });
  const transports: Transport[] = [];
  const connections: NatsConnection[] = [];
  const stops: (() => Promise<unknown>)[] = [];
  const peers: Record<string, Peer> = {};
  try {
    const started = await Promise.all([
      startPeer('nats-peer.ts', ['keel', server.url]),
      startPeer('moleculer-peer.ts', ['nats', server.url]),
      startPeer('nest-peer.ts', [server.url]),
      startPeer('nats-peer.ts', ['raw', server.url]),
    ]);
    [peers['keel'], peers['moleculer'], peers['nest'], peers['muxed']] = started;

    // keel: a pure client kernel here; pricing runs in the keel peer.
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    transports.push(transport);
    const client: Kernel = createKernel({
      modules: [pricingModule, tallyModule, tickerModule().module],
      topology: { host: [], transport },
      logger: silentLogger,
    });
    await client.start();
    stops.push(() => client.stop());
    const pricingClient = client.client(pricing);

    // Moleculer: a broker with no services of its own, over the same nats-server.
    const broker = new moleculer.ServiceBroker({
      nodeID: `caller-${process.pid}`,
      logger: false,
      transporter: { type: 'NATS', options: { url: server.url } },
    });
    await broker.start();
    stops.push(() => broker.stop());
    await broker.waitForServices('pricing', 30_000);

    // NestJS: a ClientProxy over Nest's NATS transport.
    Logger.overrideLogger(false);
    const nest: ClientProxy = ClientProxyFactory.create({ transport: NestTransport.NATS, options: { servers: [server.url] } });
    await nest.connect();
    stops.push(() => nest.close());

    // No framework: bench/nats.ts's hand-muxed request (one reply subscription, no timer per request, no validation).
    const nc = await connect({ servers: server.url });
    connections.push(nc);
    const muxer = new HandMuxer(nc, createInbox());
    await nc.flush();

    const calls: Record<string, () => Promise<unknown>> = {
      keel: () => pricingClient.quote(QUOTE_INPUT),
      moleculer: () => broker.call('pricing.quote', QUOTE_INPUT),
      nest: () => firstValueFrom(nest.send('pricing.quote', QUOTE_INPUT)),
      muxed: () => muxer.request(RAW_SUBJECTS.quote, QUOTE_INPUT),
    };
    for (const [name, call] of Object.entries(calls)) {
      const answer = (await call()) as { totalCents?: number };
      if (answer.totalCents !== 500) throw new Error(`${name} over NATS quoted ${JSON.stringify(answer)}`);
    }

    const cpu: Record<string, { here: number[]; peer: number[] }> = {};
    const measured = (name: string) => async (): Promise<number> => {
      const peer = peers[name]!;
      const peerBefore = Number(await peer.ask('cpu'));
      const hereBefore = process.cpuUsage();
      const result = await concurrent(NATS_CALLS, CONCURRENCY, calls[name]!);
      const here = process.cpuUsage(hereBefore);
      const peerAfter = Number(await peer.ask('cpu'));
      cpu[name] ??= { here: [], peer: [] };
      cpu[name].here.push((here.user + here.system) / NATS_CALLS);
      cpu[name].peer.push((peerAfter - peerBefore) / NATS_CALLS);
      return result;
    };
    const samples = await interleavedSamples(ROUNDS, {
      keel: measured('keel'),
      moleculer: measured('moleculer'),
      nest: measured('nest'),
      muxed: measured('muxed'),
    });
    const ratios = {
      moleculer: roundRatio(samples, 'keel', 'moleculer'),
      nest: roundRatio(samples, 'keel', 'nest'),
      muxed: roundRatio(samples, 'keel', 'muxed'),
      muxedVsMoleculer: roundRatio(samples, 'muxed', 'moleculer'),
    };
    const micros = (name: string): string => `${medianOf(cpu[name]?.here ?? []).toFixed(1)} + ${medianOf(cpu[name]?.peer ?? []).toFixed(1)} µs`;
    const row = (name: string, label: string, ratio: string): string =>
      `| ${label} | ${rate(medianOf(samples[name]!))} | ${micros(name)} | ${ratio} |`;
    return {
      ratios,
      summary: {
        natsKeel: medianOf(samples['keel']!),
        natsMoleculer: medianOf(samples['moleculer']!),
        natsNest: medianOf(samples['nest']!),
        natsKeelVsMoleculer: ratios.moleculer,
        natsKeelVsNest: ratios.nest,
        natsMuxed: medianOf(samples['muxed']!),
        natsKeelVsMuxed: ratios.muxed,
        natsMuxedVsMoleculer: ratios.muxedVsMoleculer,
      },
      rows: [
        '| over NATS, 64 in flight | calls/s | CPU per call: caller + callee | keel / peer |',
        '|---|---|---|---|',
        row('keel', 'keel call (client kernel → kernel)', ''),
        row('moleculer', 'Moleculer `broker.call` (NATS transporter)', times(ratios.moleculer)),
        row('nest', 'NestJS `ClientProxy.send` (NATS transport)', times(ratios.nest)),
        row('muxed', 'no framework: hand-muxed nats.js request, raw responder (no validation)', times(ratios.muxed)),
      ],
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await Promise.allSettled(connections.map((connection) => connection.drain()));
    await Promise.allSettled(transports.map((transport) => transport.close()));
    await Promise.allSettled(Object.values(peers).map((peer) => peer.stop()));
    await server.stop();
  }
}

async function inProcess(): Promise<{ rows: string[]; worst: number; summary: Record<string, number> }> {
  const groups: Record<string, PeerGroup> = {};
  try {
    for (const [name, script, args] of [
      ['keelSync', 'kernel-peer.ts', ['in-process', '--handler', 'sync']],
      ['keelAsync', 'kernel-peer.ts', ['in-process', '--handler', 'async']],
      ['moleculerSync', 'moleculer-peer.ts', ['local', '--handler', 'sync']],
      ['moleculerAsync', 'moleculer-peer.ts', ['local', '--handler', 'async']],
    ] as const) {
      groups[name] = await startPeerGroup(PROCESSES, script, args);
    }
    const ask = (name: string, command: string) => (): Promise<number> => groups[name]!.mean(command);
    const cases = (command: string) => ({
      keelSync: ask('keelSync', command),
      moleculerSync: ask('moleculerSync', command),
      keelAsync: ask('keelAsync', command),
      moleculerAsync: ask('moleculerAsync', command),
    });
    const seq = await interleavedSamples(ROUNDS, cases(`run ${LOCAL_SEQUENTIAL}`));
    const conc = await interleavedSamples(ROUNDS, cases(`run-concurrent ${LOCAL_CONCURRENT}`));
    const ratios = {
      syncSeq: roundRatio(seq, 'keelSync', 'moleculerSync'),
      asyncSeq: roundRatio(seq, 'keelAsync', 'moleculerAsync'),
      syncConc: roundRatio(conc, 'keelSync', 'moleculerSync'),
      asyncConc: roundRatio(conc, 'keelAsync', 'moleculerAsync'),
    };
    const row = (label: string, samples: Record<string, number[]>, sync: number, async: number): string =>
      `| ${label} | ${rate(medianOf(samples['keelSync']!))} | ${rate(medianOf(samples['moleculerSync']!))} | ${times(sync)} | ` +
      `${rate(medianOf(samples['keelAsync']!))} | ${rate(medianOf(samples['moleculerAsync']!))} | ${times(async)} |`;
    return {
      worst: Math.min(...Object.values(ratios)),
      summary: {
        localKeelSyncSeq: medianOf(seq['keelSync']!),
        localMoleculerSyncSeq: medianOf(seq['moleculerSync']!),
        localKeelAsyncSeq: medianOf(seq['keelAsync']!),
        localMoleculerAsyncSeq: medianOf(seq['moleculerAsync']!),
        localKeelSyncConc: medianOf(conc['keelSync']!),
        localMoleculerSyncConc: medianOf(conc['moleculerSync']!),
        localKeelAsyncConc: medianOf(conc['keelAsync']!),
        localMoleculerAsyncConc: medianOf(conc['moleculerAsync']!),
        ...Object.fromEntries(Object.entries(ratios).map(([name, value]) => [`local${name[0]!.toUpperCase()}${name.slice(1)}`, value])),
      },
      rows: [
        '| in process | keel, sync handler | Moleculer, sync handler | keel / Moleculer | keel, async handler | Moleculer, async handler | keel / Moleculer |',
        '|---|---|---|---|---|---|---|',
        row('sequential', seq, ratios.syncSeq, ratios.asyncSeq),
        row('64 concurrent', conc, ratios.syncConc, ratios.asyncConc),
      ],
    };
  } finally {
    for (const group of Object.values(groups)) await group.stop();
  }
}

/** Runs the peers benchmark on this process's Node; returns the report section. */
export async function benchPeers(): Promise<PeersResult> {
  const node = process.version;
  const onNode24 = node.startsWith('v24.');
  const nats = await overNats();
  const local = await inProcess();
  const natsMet = nats.ratios.moleculer >= TARGETS.nats;
  const localMet = local.worst >= TARGETS.inProcess;
  const markdown = [
    `### keel vs Moleculer and NestJS (Node ${node})`,
    '',
    `Peers installed as devDependencies, measured in this run: Moleculer ${packageVersion('moleculer')} and NestJS microservices`,
    `${packageVersion('@nestjs/microservices')} (over \`@nats-io/transport-node\` ${packageVersion('@nats-io/transport-node')}), on the same \`quote\` payload as keel's`,
    '(`{ customerId, lines: [{ sku, quantity }] }`, the same work) and the same local nats-server. Over NATS: 64 calls in flight',
    'from this process, the callee in another process; keel validates input and output on both sides (zod), Moleculer',
    "validates the action's params with its default validator (fastest-validator, the same shape) and not its answer,",
    'NestJS validates nothing (it would take a pipe); the last row, for scale, is no framework at all: bench/nats.ts\'s hand-muxed',
    'nats.js request (one reply subscription, no timer per request) to a raw responder, neither validating. In process: each configuration in processes of its own',
    `(${PROCESSES} each, their mean), keel's in-process call against Moleculer's local \`broker.call\` (one broker, no`,
    'transporter, the same params validation). The ratio is the median over rounds of keel / peer within each round.',
    `${ROUNDS} interleaved rounds of ${NATS_CALLS} calls over NATS, ${LOCAL_SEQUENTIAL} sequential and ${LOCAL_CONCURRENT} at 64 concurrent in process.`,
    '',
    ...nats.rows,
    '',
    ...local.rows,
    '',
    `Target: over NATS ≥ ${TARGETS.nats}× Moleculer — ${verdict(natsMet)} (${versusTarget(nats.ratios.moleculer, TARGETS.nats)} on Node ${node}). ` +
      `For scale, in the same rounds: the hand-muxed nats.js request, with no framework, ran at ${times(nats.ratios.muxedVsMoleculer)} ` +
      `Moleculer's rate, so ${TARGETS.nats}× Moleculer asks keel for ${times(TARGETS.nats / nats.ratios.muxedVsMoleculer)} the raw client's.`,
    onNode24
      ? `Target: in process on Node 24 ≥ ${TARGETS.inProcess}× Moleculer's local call, async handlers included — ${verdict(localMet)} (worst case ${versusTarget(local.worst, TARGETS.inProcess)}).`
      : `Target: in process on Node 24 ≥ ${TARGETS.inProcess}× Moleculer's local call, async handlers included — judged on Node 24's run, not this one (here, Node ${node}: worst case ${times(local.worst)}).`,
    '',
  ].join('\n');
  return { node, markdown, summary: { ...nats.summary, ...local.summary, natsMet: Number(natsMet), localWorst: local.worst } };
}

const CHILD = '--peers-child';
const RESULT = 'peers-result ';

/**
 * Runs the section again under Node 24 (from `.ci/node 24`, which installs the pinned Node 24
 * into its cache if it is missing), in a child process whose peers run on Node 24 too; resolves
 * with its result, or `undefined` when this process already runs Node 24. Throws when Node 24
 * is not to be had or the child fails.
 */
export async function benchPeersOnNode24(): Promise<PeersResult | undefined> {
  if (process.version.startsWith('v24.')) return undefined;
  const root = fileURLToPath(new URL('..', import.meta.url));
  const bin = execFileSync(join(root, '.ci/node'), ['24'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 300_000 }).trim();
  const child = spawn(join(root, 'node_modules/.bin/tsx'), [fileURLToPath(import.meta.url), CHILD], {
    cwd: root,
    env: { ...process.env, PATH: `${bin}${delimiter}${process.env['PATH'] ?? ''}` },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let result: PeersResult | undefined;
  for await (const line of createInterface({ input: child.stdout })) {
    if (line.startsWith(RESULT)) result = JSON.parse(line.slice(RESULT.length)) as PeersResult;
    else console.log(line);
  }
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0 || result === undefined) throw new Error(`the peers benchmark on Node 24 failed (exit code ${code})`);
  return result;
}

if (process.argv[2] === CHILD && process.argv[1] === fileURLToPath(import.meta.url)) {
  const result = await benchPeers();
  process.stdout.write(`${RESULT}${JSON.stringify(result)}\n`);
}
