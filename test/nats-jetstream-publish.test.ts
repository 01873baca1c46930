/**
 * Publishing durable events to JetStream: an attempt left unacknowledged is sent again with the
 * same `Nats-Msg-Id` and stored once; the publish gives up after `publishAttempts`; each
 * module's stream gets its limits and replicas from the options, applied by its publisher.
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, operation, silentLogger, type Kernel, type Logger, type Transport } from 'keel';
import type { PublishedEvent } from 'keel/transport';
import { createNatsTransport, type NatsTransportOptions } from 'keel/nats';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: { record: operation({ input: z.object({ tag: z.string() }), output: z.object({}) }) },
  events: { recorded: event({ payload: z.object({ tag: z.string() }), delivery: 'durable' }) },
});

const auditor = defineContract({
  name: 'auditor',
  version: '1.0.0',
  operations: { noop: operation({ input: z.object({}), output: z.object({}) }) },
});

const ledgerModule = defineModule({
  contract: ledger,
  create: ({ emit }) => ({
    handlers: {
      record: async ({ tag }) => {
        await emit('recorded', { tag });
        return {};
      },
    },
  }),
});

const auditorModule = defineModule({
  contract: auditor,
  subscribesTo: [ledger],
  create: () => ({ handlers: { noop: () => ({}) }, events: { ledger: { recorded: () => undefined } } }),
});

/** A log line: its level, message and fields. */
interface Line {
  readonly level: string;
  readonly message: string;
  readonly record: Record<string, unknown>;
}

function recordingLogger(lines: Line[]): Logger {
  const logger: Logger = {
    debug: (record, message) => void lines.push({ level: 'debug', message, record }),
    info: (record, message) => void lines.push({ level: 'info', message, record }),
    warn: (record, message) => void lines.push({ level: 'warn', message, record }),
    error: (record, message) => void lines.push({ level: 'error', message, record }),
    child: () => logger,
  };
  return logger;
}

/**
 * A TCP relay in front of nats-server whose server-to-client direction can be held: bytes the
 * server sends (a PubAck) wait in the socket buffers until released, arriving after the client
 * stopped waiting for them, as an acknowledgement lost in a network blip would.
 */
class HoldingRelay {
  readonly #upstreams = new Set<Socket>();
  readonly #sockets = new Set<Socket>();
  #held = false;

  private constructor(
    readonly server: Server,
    readonly port: number,
  ) {}

  static async start(target: number): Promise<HoldingRelay> {
    let relay: HoldingRelay | undefined;
    const server = createServer((client) => {
      const upstream = tcpConnect({ host: '127.0.0.1', port: target });
      relay?.track(client, upstream);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (typeof address !== 'object' || address === null) throw new Error('the relay has no port');
    relay = new HoldingRelay(server, address.port);
    return relay;
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  track(client: Socket, upstream: Socket): void {
    this.#upstreams.add(upstream);
    this.#sockets.add(client).add(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    if (this.#held) upstream.pause();
    const close = (): void => {
      client.destroy();
      upstream.destroy();
      this.#upstreams.delete(upstream);
    };
    client.on('close', close).on('error', close);
    upstream.on('close', close).on('error', close);
  }

  hold(): void {
    this.#held = true;
    for (const upstream of this.#upstreams) upstream.pause();
  }

  release(): void {
    this.#held = false;
    for (const upstream of this.#upstreams) upstream.resume();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

function recorded(tag: string, id: string): PublishedEvent {
  return {
    contract: 'ledger',
    version: '1.0.0',
    event: 'recorded',
    delivery: 'durable',
    payload: { tag },
    metadata: { id, correlationId: `correlation-${id}`, traceparent: undefined, publisher: 'ledger', publishedAt: Date.now() },
  };
}

describe('nats - publishing durable events to JetStream', () => {
  let server: NatsServer;
  let raw: NatsConnection;
  const closing: Array<() => Promise<void>> = [];

  const transportOf = async (options: NatsTransportOptions): Promise<Transport> => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger, ...options });
    closing.push(() => transport.close());
    return transport;
  };

  /** The payload tags stored in stream `name`, in order. */
  const storedTags = async (name: string): Promise<string[]> => {
    const jsm = await jetstreamManager(raw);
    const { first_seq: first, last_seq: last, messages } = (await jsm.streams.info(name)).state;
    const tags: string[] = [];
    if (messages === 0) return tags;
    for (let seq = first; seq <= last; seq++) tags.push((await jsm.streams.getMessage(name, { seq }))!.json<{ tag: string }>().tag);
    return tags;
  };

  beforeAll(async () => {
    server = await startNatsServer();
    raw = await connect({ servers: server.url });
  });

  afterAll(async () => {
    for (const close of closing.reverse()) await close();
    await raw?.close();
  });

  it('nats - stores an event once when its publish is sent again with the same id: the second PubAck says duplicate', async () => {
    const js = jetstream(raw);
    const jsm = await jetstreamManager(raw);
    await jsm.streams.add({ name: 'plain', subjects: ['plain.>'] });
    const first = await js.publish('plain.event', new TextEncoder().encode('{}'), { msgID: 'same-id' });
    const again = await js.publish('plain.event', new TextEncoder().encode('{}'), { msgID: 'same-id' });
    expect({ first: first.duplicate, again: again.duplicate, seq: again.seq }).toEqual({ first: false, again: true, seq: first.seq });
    expect((await jsm.streams.info('plain')).state.messages).toBe(1);

    // The same through keel: a relay that publishes a row again (it crashed before marking it sent).
    const transport = await transportOf({ prefix: 'again' });
    await transport.publish(recorded('twice', 'event-twice'));
    await transport.publish(recorded('twice', 'event-twice'));
    expect(await storedTags('again_ledger')).toEqual(['twice']);
  });

  it('nats - sends an event again with the same id when its PubAck is lost, and JetStream stores it once', async () => {
    const relay = await HoldingRelay.start(server.port);
    closing.push(() => relay.close());
    const lines: Line[] = [];
    const transport = await createNatsTransport({
      servers: relay.url,
      prefix: 'lost',
      logger: recordingLogger(lines),
      jetStreamTimeoutMs: 500,
      publishRetryDelayMs: 50,
    });
    closing.push(() => transport.close());
    const kernel: Kernel = createKernel({ modules: [ledgerModule], topology: { host: ['ledger'], transport }, logger: silentLogger });
    await kernel.start();
    closing.push(() => kernel.stop());
    await kernel.client(ledger).record({ tag: 'before' });

    // The server stores the event and acknowledges it, but the PubAck is held until the first attempt timed out.
    relay.hold();
    const call = kernel.client(ledger).record({ tag: 'lost-ack' });
    await vi.waitFor(() => expect(lines.some((line) => line.message.includes('sending it again'))).toBe(true), { timeout: 10_000, interval: 20 });
    expect(await storedTags('lost_ledger')).toEqual(['before', 'lost-ack']);
    relay.release();
    await call;

    expect(await storedTags('lost_ledger')).toEqual(['before', 'lost-ack']);
    const confirmed = lines.find((line) => line.message.includes('JetStream confirmed a durable event sent again'));
    expect(confirmed?.record).toMatchObject({ event: 'ledger.recorded', attempt: 2, duplicate: true });
  });

  it('nats - gives up with UNAVAILABLE after publishAttempts when no stream takes the event, and makes the stream again for the next one', async () => {
    const transport = await transportOf({ prefix: 'gone', publishAttempts: 3, publishRetryDelayMs: 20 });
    await transport.publish(recorded('made', 'gone-1'));
    const jsm = await jetstreamManager(raw);
    await jsm.streams.delete('gone_ledger');

    const failure = await transport.publish(recorded('lost', 'gone-2')).then(() => undefined, (error: unknown) => error);
    expect(isKeelError(failure, 'UNAVAILABLE'), String(failure)).toBe(true);
    expect(failure).toMatchObject({ details: { attempts: 3 }, message: expect.stringMatching(/was not stored: no JetStream stream took it \(3 attempts/) });

    await transport.publish(recorded('again', 'gone-3'));
    expect(await storedTags('gone_ledger')).toEqual(['again']);
  });

  it("nats - gives each module's stream its limits from streams, applied by its publisher, and the transport-wide ones to the others", async () => {
    const jsm = await jetstreamManager(raw);
    const limited = await transportOf({
      prefix: 'limits',
      eventMaxAgeMs: 3_600_000,
      streams: { ledger: { maxAgeMs: 60_000, maxMessages: 1_000, maxBytes: 1_000_000 } },
    });
    await limited.publish(recorded('limited', 'limits-1'));
    expect((await jsm.streams.info('limits_ledger')).config).toMatchObject({
      max_age: nanos(60_000),
      max_msgs: 1_000,
      max_bytes: 1_000_000,
      duplicate_window: nanos(60_000),
      num_replicas: 1,
    });
    await limited.publish({ ...recorded('other', 'limits-2'), contract: 'auditor', metadata: { ...recorded('other', 'limits-2').metadata, publisher: 'auditor' } });
    expect((await jsm.streams.info('limits_auditor')).config).toMatchObject({ max_age: nanos(3_600_000), max_msgs: -1, max_bytes: -1 });

    // Another publisher without the entry brings the stream back to the transport-wide limits.
    const plain = await transportOf({ prefix: 'limits' });
    await plain.publish(recorded('plain', 'limits-3'));
    expect((await jsm.streams.info('limits_ledger')).config).toMatchObject({
      max_age: nanos(7 * 24 * 60 * 60 * 1000),
      max_msgs: -1,
      max_bytes: -1,
      duplicate_window: nanos(2 * 60 * 1000),
    });
  });

  it('nats - refuses replicas a single server cannot keep with INVALID_CONFIG naming the option, at subscribe and at publish', async () => {
    const subscriberTransport = await transportOf({ prefix: 'wide', streamReplicas: 3 });
    const subscriber = createKernel({ modules: [ledgerModule, auditorModule], topology: { host: ['auditor'], transport: subscriberTransport }, logger: silentLogger });
    try {
      await expect(subscriber.start()).rejects.toMatchObject({
        code: 'INVALID_CONFIG',
        message: expect.stringMatching(/JetStream cannot keep 3 replicas .*streamReplicas \(KEEL_NATS_STREAM_REPLICAS\) asks for 3/),
      });
    } finally {
      await subscriber.stop();
    }
    const publisher = await transportOf({ prefix: 'wide', streams: { ledger: { replicas: 3 } } });
    await expect(publisher.publish(recorded('wide', 'wide-1'))).rejects.toMatchObject({
      code: 'INVALID_CONFIG',
      message: expect.stringContaining('streams.ledger.replicas asks for 3'),
    });
  });
});
