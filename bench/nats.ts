/**
 * Remote calls and events over NATS, each against raw NATS client (`@nats-io/transport-node`, the one keel uses) baselines measured in the same run,
 * with the callee in another process: a keel call through the NATS transport (a pure client
 * kernel here, the module hosted by a kernel in a peer process) against `nc.request` and a
 * hand-muxed request (one reply subscription, a map of pending requests, no per-request timer)
 * to a raw responder; keel notification events against raw publish/subscribe.
 */
import { createKernel, silentLogger, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { connect, createInbox, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer } from '../test/support/nats-server.js';
import { QUOTE_INPUT, RAW_SUBJECTS, TICK_PAYLOAD, pricing, pricingModule, tally, tallyModule, tickerModule } from './fixture.js';
import { CpuMeter, HandMuxer } from './hand-muxer.js';
import { startPeer, type Peer } from './peer.js';
import { concurrent, interleaved, interleavedSamples, latencies, mediansOf, rate, roundRatio, sequential, versusTarget } from './support.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const SEQUENTIAL_CALLS = 4_000;
const CONCURRENT_CALLS = 40_000;
const CONCURRENCY = 64;
const LATENCY_SAMPLES = 4_000;
const EVENTS = 40_000;
/** Event rounds are short (a fraction of a second each), so more of them. */
const EVENT_ROUNDS = 7;
const ROUNDS = 5;

function ratio(value: number, baseline: number): string {
  return `${(value / baseline).toFixed(2)}×`;
}

function verdict(met: boolean): string {
  return met ? 'met' : 'NOT met';
}

/** Runs the NATS benchmark; returns the report section. */
export async function benchNats(): Promise<{ markdown: string; summary: Record<string, number> }> {
  const server = await startNatsServer({ jetstream: false });
  const transports: Transport[] = [];
  const connections: NatsConnection[] = [];
  const peers = await Promise.all([startPeer('nats-peer.ts', ['keel', server.url]), startPeer('nats-peer.ts', ['raw', server.url])]);
  const [keelPeer, rawPeer] = peers as [Peer, Peer];
  const cpu = new CpuMeter();
  try {
    // keel: this process is a pure client kernel; pricing and tally run in the keel peer.
    const ticker = tickerModule();
    const manifest = [pricingModule, tallyModule, ticker.module];
    const clientTransport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    transports.push(clientTransport);
    const client = createKernel({ modules: manifest, topology: { host: [], transport: clientTransport }, logger: silentLogger });
    await client.start();
    const publisherTransport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    transports.push(publisherTransport);
    const publisher = createKernel({ modules: manifest, topology: { host: ['ticker'], transport: publisherTransport }, logger: silentLogger });
    await publisher.start();
    const pricingClient = client.client(pricing);
    const tallyClient = client.client(tally);
    const emit = ticker.emit();

    // raw: a plain nats client against the raw peer.
    const nc = await connect({ servers: server.url });
    connections.push(nc);
    const muxer = new HandMuxer(nc, createInbox());
    await nc.flush();
    const rawRequest = async (): Promise<unknown> => {
      const reply = await nc.request(RAW_SUBJECTS.quote, encoder.encode(JSON.stringify(QUOTE_INPUT)), { timeout: 10_000 });
      return JSON.parse(decoder.decode(reply.data));
    };
    const handMuxed = (): Promise<unknown> => muxer.request(RAW_SUBJECTS.quote, QUOTE_INPUT);
    const keelCall = (): Promise<unknown> => pricingClient.quote(QUOTE_INPUT);

    const check = (await keelCall()) as { totalCents: number };
    const rawCheck = (await rawRequest()) as { totalCents: number };
    if (check.totalCents !== 500 || rawCheck.totalCents !== 500 || ((await handMuxed()) as { totalCents: number }).totalCents !== 500) {
      throw new Error('the keel and raw responders disagree on the quote');
    }

    const seq = await interleaved(ROUNDS, {
      raw: () => sequential(SEQUENTIAL_CALLS, rawRequest),
      muxed: () => sequential(SEQUENTIAL_CALLS, handMuxed),
      keel: () => sequential(SEQUENTIAL_CALLS, keelCall),
    });
    const concSamples = await interleavedSamples(ROUNDS, {
      raw: () => cpu.measure('raw', rawPeer, CONCURRENT_CALLS, () => concurrent(CONCURRENT_CALLS, CONCURRENCY, rawRequest)),
      muxed: () => cpu.measure('muxed', rawPeer, CONCURRENT_CALLS, () => concurrent(CONCURRENT_CALLS, CONCURRENCY, handMuxed)),
      keel: () => cpu.measure('keel', keelPeer, CONCURRENT_CALLS, () => concurrent(CONCURRENT_CALLS, CONCURRENCY, keelCall)),
    });
    const conc = mediansOf(concSamples);
    const p50: Record<string, number> = {};
    const p99: Record<string, number> = {};
    const latencyCases = { raw: rawRequest, muxed: handMuxed, keel: keelCall };
    const latencyRounds: Record<string, { p50: number; p99: number }[]> = { raw: [], muxed: [], keel: [] };
    for (let round = 0; round < 3; round += 1) {
      for (const [name, fn] of Object.entries(latencyCases)) latencyRounds[name]!.push(await latencies(LATENCY_SAMPLES, fn));
    }
    for (const [name, results] of Object.entries(latencyRounds)) {
      const sortedP50 = results.map((result) => result.p50).sort((a, b) => a - b);
      const sortedP99 = results.map((result) => result.p99).sort((a, b) => a - b);
      p50[name] = sortedP50[1] ?? 0;
      p99[name] = sortedP99[1] ?? 0;
    }

    // Events: publish EVENTS as fast as the publisher can, time until the subscriber counted them all.
    // "batched": every publish in one go, as a raw client does, so the nats client writes them in
    // large chunks; "one at a time": the publisher awaits each (keel: each emit; raw: a microtask),
    // so the nats client flushes each message on its own, as a handler emitting one event does.
    const lost: Record<string, number> = {};
    const timed = (name: string, expect: () => Promise<unknown>, publishAll: () => Promise<void>, waitFor: () => Promise<number>) =>
      cpu.measure(`events:${name}`, name.startsWith('keel') ? keelPeer : rawPeer, EVENTS, async () => {
        await expect();
        const started = process.hrtime.bigint();
        await publishAll();
        const received = await waitFor();
        const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
        lost[name] = Math.max(lost[name] ?? 0, EVENTS - received);
        return received / elapsed;
      });
    const keelExpect = () => tallyClient.expect({ count: EVENTS });
    const keelWait = async () => (await tallyClient.waitFor({ waitMs: 30_000 }, { timeoutMs: 40_000 })).received;
    const rawExpect = () => nc.request(RAW_SUBJECTS.expect, encoder.encode(JSON.stringify({ count: EVENTS })), { timeout: 10_000 });
    const rawWait = async () => {
      const reply = await nc.request(RAW_SUBJECTS.waitFor, encoder.encode(JSON.stringify({ waitMs: 30_000 })), { timeout: 40_000 });
      return (JSON.parse(decoder.decode(reply.data)) as { received: number }).received;
    };
    const rawPublish = (): void => nc.publish(RAW_SUBJECTS.event, encoder.encode(JSON.stringify(TICK_PAYLOAD)));
    const eventSamples = await interleavedSamples(EVENT_ROUNDS, {
      rawBatched: () =>
        timed('rawBatched', rawExpect, async () => {
          for (let index = 0; index < EVENTS; index += 1) rawPublish();
        }, rawWait),
      keelBatched: () =>
        timed('keelBatched', keelExpect, async () => {
          const emitted: Promise<void>[] = [];
          for (let index = 0; index < EVENTS; index += 1) emitted.push(emit('ticked', TICK_PAYLOAD));
          await Promise.all(emitted);
        }, keelWait),
      rawEach: () =>
        timed('rawEach', rawExpect, async () => {
          for (let index = 0; index < EVENTS; index += 1) {
            rawPublish();
            await Promise.resolve();
          }
        }, rawWait),
      keelEach: () =>
        timed('keelEach', keelExpect, async () => {
          for (let index = 0; index < EVENTS; index += 1) await emit('ticked', TICK_PAYLOAD);
        }, keelWait),
    });

    const events = mediansOf(eventSamples);
    // keel against raw: the median of each round's own ratio (keel's case runs right after raw's in
    // most rounds), so a neighbour slowing the machine for a while slows both sides alike.
    const eventRatio = (keel: string, raw: string): number => roundRatio(eventSamples, keel, raw);
    await publisher.stop();
    await client.stop();

    const keelConc = conc['keel']!;
    const muxedConc = conc['muxed']!;
    const versusMuxed = roundRatio(concSamples, 'keel', 'muxed');
    const targetMuxed = versusMuxed >= 0.9;
    const targetLatency = p50['keel']! <= 1.1 * p50['raw']!;
    // The callee's CPU against the raw responder's, both answering hand-muxed-sized load at 64 in flight.
    const keelCallee = cpu.perOperation('keel').peer;
    const rawCallee = cpu.perOperation('muxed').peer;
    const targetCallee = keelCallee <= 1.5 * rawCallee;
    const eventsBatched = eventRatio('keelBatched', 'rawBatched');
    const micros = (value: number): string => value.toFixed(1);
    const row = (name: string, label: string): string => {
      const { here, peer } = cpu.perOperation(name);
      return `| ${label} | ${rate(seq[name]!)} | ${p50[name]!.toFixed(0)} / ${p99[name]!.toFixed(0)} µs | ${rate(conc[name]!)} | ${micros(here)} + ${micros(peer)} µs |`;
    };
    const eventCpu = (name: string): string => {
      const { here, peer } = cpu.perOperation(`events:${name}`);
      return `${micros(here)} + ${micros(peer)} µs`;
    };
    const markdown = [
      '### Remote call over NATS vs raw nats (callee in another process)',
      '',
      'A `quote` operation with a small JSON input (`{ customerId, lines: [{ sku, quantity }] }`, ~60 bytes),',
      'answered by a kernel in a second process (`tsx`, `createNatsTransport`); this process is a pure',
      'client kernel (`topology: { host: [], transport }`): input validated here, input validated and',
      'output validated there, output validated here, call context in headers, one deadline timer for',
      'all calls. The baselines send the same JSON to a raw `nats` responder in a third process that',
      "parses it, computes the same quote and answers JSON: `nc.request` (the client's own muxed",
      'request with a timer per request), and a hand-written muxed request (one reply subscription,',
      'a map of pending requests, no timer). A local nats-server on loopback carries everything.',
      `Medians of ${ROUNDS} interleaved rounds (${SEQUENTIAL_CALLS} sequential / ${CONCURRENT_CALLS} calls at ${CONCURRENCY} in flight);`,
      `latency: the median round of 3 × ${LATENCY_SAMPLES} sequential calls. CPU per call: user + system time of the calling`,
      'process and of the answering process over a 64-concurrent round, divided by the calls (nats-server not included);',
      'on a shared 2-core machine the CPU the two ends spend per call is what bounds throughput.',
      '',
      '| case | sequential | p50 / p99 latency | 64 concurrent | CPU per call at 64 concurrent: caller + callee |',
      '|---|---|---|---|---|',
      row('raw', 'raw `nc.request`'),
      row('muxed', 'hand-muxed raw publish'),
      row('keel', 'keel call'),
      '',
      `keel vs hand-muxed: ${ratio(seq['keel']!, seq['muxed']!)} sequential, ${versusMuxed.toFixed(2)}× at 64 concurrent (each round's own ratio, median); ` +
        `keel vs \`nc.request\`: ${ratio(seq['keel']!, seq['raw']!)} sequential, ${roundRatio(concSamples, 'keel', 'raw').toFixed(2)}× at 64 concurrent.`,
      '',
      `Target: ≥ 0.9× the hand-muxed path at 64 concurrent — ${verdict(targetMuxed)} (${versusTarget(versusMuxed, 0.9)} by each round's own ratio; ` +
        `${ratio(keelConc, muxedConc)} by the median rates).`,
      `Target: sequential p50 latency ≤ 1.1× raw \`nc.request\`'s — ${verdict(targetLatency)} (${versusTarget(p50['keel']! / p50['raw']!, 1.1)}: ` +
        `${p50['keel']!.toFixed(0)} µs vs ${p50['raw']!.toFixed(0)} µs).`,
      `Target: CPU per call at the callee ≤ 1.5× the raw responder's — ${verdict(targetCallee)} ` +
        `(${versusTarget(keelCallee / rawCallee, 1.5)}: ${micros(keelCallee)} µs vs ${micros(rawCallee)} µs).`,
      'Against Moleculer and NestJS over NATS, measured in the same run on the same payload and nats-server:',
      'see "keel vs Moleculer and NestJS" (`npm run bench -- peers`).',
      '',
      '### Notification events over NATS vs raw publish/subscribe',
      '',
      `${EVENTS} events (\`{ sku, quantity }\`) published as fast as one publisher can, counted by a subscriber in another`,
      'process; the rate is events received per second, from the first publish to the last receipt. keel: a module',
      "`emit`s (payload validated, event headers) and the subscribing module's handler runs (payload validated, context);",
      `raw: \`nc.publish\` of the same JSON and a queue subscription that parses it. "Batched": every publish in one go`,
      '(keel: every `emit` started, then awaited together), so the nats client writes many per socket write;',
      '"one at a time": each publish awaited (keel: `await emit`; raw: a microtask), so each is flushed on its own,',
      `as when a handler emits one event. Rates and CPU: medians of ${EVENT_ROUNDS} interleaved rounds; "keel vs raw": the median of`,
      "each round's own ratio.",
      '',
      '| publishing | raw publish/subscribe | keel notification events | keel vs raw | CPU per event, publisher + subscriber: raw / keel |',
      '|---|---|---|---|---|',
      `| batched (all publishes in one go) | ${rate(events['rawBatched']!)} | ${rate(events['keelBatched']!)} | ${eventRatio('keelBatched', 'rawBatched').toFixed(2)}× | ${eventCpu('rawBatched')} / ${eventCpu('keelBatched')} |`,
      `| one at a time (each awaited) | ${rate(events['rawEach']!)} | ${rate(events['keelEach']!)} | ${eventRatio('keelEach', 'rawEach').toFixed(2)}× | ${eventCpu('rawEach')} / ${eventCpu('keelEach')} |`,
      '',
      `Events lost (core NATS is at-most-once): ${Object.values(lost).reduce((a, b) => a + b, 0)} of ${EVENTS} per round at most.`,
      '',
      `Target: notification events, batched, ≥ 0.6× raw publish/subscribe — ${verdict(eventsBatched >= 0.6)} (${versusTarget(eventsBatched, 0.6)}).`,
      '',
    ].join('\n');
    return {
      markdown,
      summary: {
        rawSeq: seq['raw']!,
        muxedSeq: seq['muxed']!,
        keelSeq: seq['keel']!,
        rawConc: conc['raw']!,
        muxedConc,
        keelConc,
        // The targets' ratios, each the median of the rounds' own ratios (as printed).
        keelVsMuxedConc: versusMuxed,
        keelVsRawEventsBatched: eventsBatched,
        keelVsRawEventsEach: eventRatio('keelEach', 'rawEach'),
        rawP50: p50['raw']!,
        muxedP50: p50['muxed']!,
        keelP50: p50['keel']!,
        rawEventsBatched: events['rawBatched']!,
        keelEventsBatched: events['keelBatched']!,
        rawEventsEach: events['rawEach']!,
        keelEventsEach: events['keelEach']!,
      },
    };
  } finally {
    await Promise.allSettled(transports.map((transport) => transport.close()));
    await Promise.allSettled(connections.map((connection) => connection.drain()));
    await Promise.allSettled(peers.map((peer) => peer.stop()));
    await server.stop();
  }
}
