/**
 * `nats` v2 against the maintained modular client, v3 (`@nats-io/transport-node`, with
 * `@nats-io/services` for the service API), on one nats-server, the callee in another process
 * (bench/nats-client-peer.ts, one per client): each case runs v2 at both ends, then v3 at both
 * ends, as keel would after a move. Cases: `nc.request`; the hand-muxed request (one reply
 * subscription, a map of pending requests, no timer per request, as bench/nats.ts); the same
 * hand-muxed request answered through the service API (`nc.services.add` against `Svcm`), the
 * way keel serves (adapters/nats/responder.ts); publish/subscribe, batched and one at a time.
 * The payload is bench/fixture.ts's `QUOTE_INPUT` (JSON). Interleaved rounds; a ratio is the
 * median over rounds of that round's v3 / v2.
 *
 * `KEEL_BENCH_NATS_CLIENT_SCALE` (default 1) multiplies every count and
 * `KEEL_BENCH_NATS_CLIENT_ROUNDS` (default 5) sets the rounds, for a quick check that the
 * section works; only a run at the default counts is written to docs/benchmarks.md.
 */
import { connect as connectV2, createInbox as createInboxV2 } from 'nats';
import { connect as connectV3, createInbox as createInboxV3 } from '@nats-io/transport-node';
import { startNatsServer } from '../test/support/nats-server.js';
import { QUOTE_INPUT, TICK_PAYLOAD, clientSubjects } from './fixture.js';
import { CpuMeter, HandMuxer } from './hand-muxer.js';
import { startPeer, type Peer } from './peer.js';
import { concurrent, interleavedSamples, medianOf, packageVersion, rate, roundRatio, sequential } from './support.js';

const SCALE = Number(process.env['KEEL_BENCH_NATS_CLIENT_SCALE'] ?? '1');
const ROUNDS = Number(process.env['KEEL_BENCH_NATS_CLIENT_ROUNDS'] ?? '5');
const count = (value: number): number => Math.max(64, Math.round(value * SCALE));

const SEQUENTIAL_CALLS = count(4_000);
const CONCURRENT_CALLS = count(40_000);
const CONCURRENCY = 64;
const EVENTS = count(40_000);

/** The markers around the section in docs/benchmarks.md: `npm run bench -- nats-client` replaces what is between them. */
export const NATS_CLIENT_BEGIN = '<!-- nats-client: written by npm run bench -- nats-client -->';
export const NATS_CLIENT_END = '<!-- /nats-client -->';

/** Whether the counts are the benchmark's own (no `KEEL_BENCH_NATS_CLIENT_*` override): only such a run is written to the docs. */
export function natsClientAtFullScale(): boolean {
  return SCALE >= 1 && ROUNDS >= 5;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Version = 'v2' | 'v3';
const VERSIONS: readonly Version[] = ['v2', 'v3'];

/** What the two clients have in common that the hand-muxed request and the events use. */
interface Connection {
  subscribe(subject: string, options: { callback: (error: Error | null, msg: { subject: string; data: Uint8Array }) => void }): unknown;
  publish(subject: string, data: Uint8Array, options?: { reply: string }): void;
  request(subject: string, data: Uint8Array, options: { timeout: number }): Promise<{ data: Uint8Array }>;
  flush(): Promise<void>;
  drain(): Promise<void>;
}

/** One client at both ends: its connection here, its peer there, and the calls each case makes. */
interface Side {
  readonly nc: Connection;
  readonly peer: Peer;
  readonly subjects: ReturnType<typeof clientSubjects>;
  readonly calls: Record<CallCase, () => Promise<unknown>>;
}

type CallCase = 'request' | 'muxed' | 'service';
const CALL_CASES: readonly CallCase[] = ['request', 'muxed', 'service'];

async function side(version: Version, url: string, peer: Peer): Promise<Side> {
  const nc: Connection = version === 'v2' ? await connectV2({ servers: url }) : await connectV3({ servers: url });
  const subjects = clientSubjects(version);
  const muxer = new HandMuxer(nc, version === 'v2' ? createInboxV2() : createInboxV3());
  await nc.flush();
  const input = QUOTE_INPUT;
  return {
    nc,
    peer,
    subjects,
    calls: {
      request: async () => JSON.parse(decoder.decode((await nc.request(subjects.quote, encoder.encode(JSON.stringify(input)), { timeout: 10_000 })).data)),
      muxed: () => muxer.request(subjects.quote, input),
      service: () => muxer.request(subjects.service, input),
    },
  };
}

const times = (value: number): string => `${value.toFixed(2)}×`;

/** Runs the v2 / v3 comparison; returns the report section (with its markers) and the figures. */
export async function benchNatsClient(): Promise<{ markdown: string; summary: Record<string, number> }> {
  const server = await startNatsServer({ jetstream: false });
  const peers: Peer[] = [];
  const sides: Partial<Record<Version, Side>> = {};
  try {
    peers.push(...(await Promise.all(VERSIONS.map((version) => startPeer('nats-client-peer.ts', [version, server.url])))));
    for (const [index, version] of VERSIONS.entries()) sides[version] = await side(version, server.url, peers[index]!);
    const both = sides as Record<Version, Side>;
    for (const version of VERSIONS) {
      for (const name of CALL_CASES) {
        const answer = (await both[version].calls[name]()) as { totalCents?: number };
        if (answer.totalCents !== 500) throw new Error(`${version} ${name} quoted ${JSON.stringify(answer)}`);
      }
    }

    const cpu = new CpuMeter();
    const callCases = (mode: 'seq' | 'conc') => {
      const cases: Record<string, () => Promise<number>> = {};
      for (const name of CALL_CASES) {
        for (const version of VERSIONS) {
          const { peer, calls } = both[version];
          const operations = mode === 'seq' ? SEQUENTIAL_CALLS : CONCURRENT_CALLS;
          cases[`${name}:${version}`] = () =>
            cpu.measure(`${mode}:${name}:${version}`, peer, operations, () =>
              mode === 'seq' ? sequential(operations, calls[name]) : concurrent(operations, CONCURRENCY, calls[name]),
            );
        }
      }
      return cases;
    };
    const seq = await interleavedSamples(ROUNDS, callCases('seq'));
    const conc = await interleavedSamples(ROUNDS, callCases('conc'));

    // Events: EVENTS published as fast as the publisher can, rate until the peer counted them all.
    const lost: Record<string, number> = {};
    const eventCase = (version: Version, mode: 'batched' | 'each') => async (): Promise<number> => {
      const { nc, peer, subjects } = both[version];
      return cpu.measure(`events:${mode}:${version}`, peer, EVENTS, async () => {
        await nc.request(subjects.expect, encoder.encode(JSON.stringify({ count: EVENTS })), { timeout: 10_000 });
        const data = (): Uint8Array => encoder.encode(JSON.stringify(TICK_PAYLOAD));
        const started = process.hrtime.bigint();
        if (mode === 'batched') {
          for (let index = 0; index < EVENTS; index += 1) nc.publish(subjects.event, data());
        } else {
          for (let index = 0; index < EVENTS; index += 1) {
            nc.publish(subjects.event, data());
            await Promise.resolve();
          }
        }
        const reply = await nc.request(subjects.waitFor, encoder.encode(JSON.stringify({ waitMs: 30_000 })), { timeout: 40_000 });
        const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
        const { received } = JSON.parse(decoder.decode(reply.data)) as { received: number };
        const key = `${mode}:${version}`;
        lost[key] = Math.max(lost[key] ?? 0, EVENTS - received);
        return received / elapsed;
      });
    };
    const events = await interleavedSamples(ROUNDS, {
      'batched:v2': eventCase('v2', 'batched'),
      'batched:v3': eventCase('v3', 'batched'),
      'each:v2': eventCase('v2', 'each'),
      'each:v3': eventCase('v3', 'each'),
    });

    const summary: Record<string, number> = {};
    const row = (label: string, samples: Record<string, number[]>, key: string, cpuKey: string): string => {
      const v2 = medianOf(samples[`${key}:v2`]!);
      const v3 = medianOf(samples[`${key}:v3`]!);
      const ratio = roundRatio(samples, `${key}:v3`, `${key}:v2`);
      summary[`${cpuKey}:v2`] = v2;
      summary[`${cpuKey}:v3`] = v3;
      summary[`${cpuKey}:ratio`] = ratio;
      return `| ${label} | ${rate(v2)} | ${rate(v3)} | ${times(ratio)} | ${cpu.describe(`${cpuKey}:v2`)} | ${cpu.describe(`${cpuKey}:v3`)} |`;
    };
    const lostMost = Object.values(lost).reduce((a, b) => Math.max(a, b), 0);
    const services = packageVersion('@nats-io/services');
    const servicesCore = packageVersion('@nats-io/services/node_modules/@nats-io/nats-core');
    const v2 = `\`nats\` ${packageVersion('nats')}`;
    const v3 = `\`@nats-io/transport-node\` ${packageVersion('@nats-io/transport-node')}`;
    const markdown = [
      NATS_CLIENT_BEGIN,
      '### NATS client: `nats` v2 vs the modular v3 client',
      '',
      `v2: ${v2} (its \`nc.services\` for the service API); v3: ${v3} with \`@nats-io/services\``,
      `${services} (\`Svcm\`). One local nats-server on loopback; the callee runs in another process, one per`,
      'client, and each case runs one client at both ends (what keel would do after moving). The payload is the `quote`',
      "input of the other NATS sections (`{ customerId, lines: [{ sku, quantity }] }`, JSON), answered with the same work.",
      "Cases: `nc.request` (the client's own muxed request, a timer per request); the hand-muxed request of the NATS",
      'section (one reply subscription, a map of pending requests, no timer) to a plain queue subscription; the same',
      'hand-muxed request answered by a service endpoint (a service, a group, an endpoint in a queue group, as keel',
      'serves an operation); and publish/subscribe of the event payload, batched (every publish in one go) and one at a',
      `time (each publish followed by a microtask). ${ROUNDS} interleaved rounds of ${SEQUENTIAL_CALLS} sequential calls, ${CONCURRENT_CALLS} calls at`,
      `${CONCURRENCY} in flight and ${EVENTS} events; rates are medians over rounds, v3 / v2 is the median of each round's own ratio.`,
      'CPU per call (or per event): user + system time of the calling (publishing) process + of the answering (subscribing)',
      'process, divided by the operations, medians over rounds (nats-server not included).',
      '',
      '| case | v2 | v3 | v3 / v2 | CPU per op, v2: caller + callee | CPU per op, v3: caller + callee |',
      '|---|---|---|---|---|---|',
      row('`nc.request`, sequential', seq, 'request', 'seq:request'),
      row(`\`nc.request\`, ${CONCURRENCY} in flight`, conc, 'request', 'conc:request'),
      row('hand-muxed, sequential', seq, 'muxed', 'seq:muxed'),
      row(`hand-muxed, ${CONCURRENCY} in flight`, conc, 'muxed', 'conc:muxed'),
      row('hand-muxed to a service endpoint, sequential', seq, 'service', 'seq:service'),
      row(`hand-muxed to a service endpoint, ${CONCURRENCY} in flight`, conc, 'service', 'conc:service'),
      row('publish/subscribe, batched', events, 'batched', 'events:batched'),
      row('publish/subscribe, one at a time', events, 'each', 'events:each'),
      '',
      `Events lost (core NATS is at-most-once): ${lostMost} of ${EVENTS} in a round at most.`,
      '',
      ...(services.includes('-')
        ? [
            `\`@nats-io/services\` ${services} is a prerelease, the npm registry's latest (it has no release of it), built on its own`,
            `\`@nats-io/nats-core\` ${servicesCore} rather than the ${packageVersion('@nats-io/nats-core')} of the transport: its connection type differs`,
            "from the transport's in details the service API does not use here, so the v3 callee passes its connection to",
            '`Svcm` cast to the type `Svcm` declares. Moving the service API to v3 means depending on that prerelease.',
            '',
          ]
        : []),
      'How to read it: a v3 / v2 above 1.00× means the v3 client is faster in that case, below 1.00× slower; the CPU',
      "columns say at which end the difference is spent. keel's remote calls are the hand-muxed rows (its client muxes",
      'its own requests) answered by a plain queue subscription (keel no longer serves through a service framework: it',
      'answers `$SRV` itself), and its events the publish/subscribe rows; `nc.request` and the service rows are shown for',
      'reference. keel moved to the v3 client (issue 17): the rule was to move unless v3 is slower on those rows, and a quiet',
      "run found them level within this machine's noise (the table above); docs/design-notes.md records the move.",
      NATS_CLIENT_END,
      '',
    ].join('\n');
    return { markdown, summary };
  } finally {
    await Promise.allSettled(Object.values(sides).map((entry) => entry.nc.drain()));
    await Promise.allSettled(peers.map((peer) => peer.stop()));
    await server.stop();
  }
}
