/**
 * The callee of the NATS client comparison (bench/nats-client.ts), one process per client:
 * `tsx bench/nats-client-peer.ts v2|v3 <url>` connects with `nats` v2 or with the modular v3
 * client (`@nats-io/transport-node`, `@nats-io/services`) and, on subjects of its own
 * (`clientSubjects`, bench/fixture.ts), answers the `quote` with a plain queue subscription and
 * through the service API (one service, a group, one endpoint, a queue group, as
 * adapters/nats/responder.ts serves an operation), and counts the events published to it.
 * Prints `ready` once serving, answers `cpu` on stdin with its CPU time, and exits when its stdin closes.
 */
import { connect as connectV2 } from 'nats';
import { connect as connectV3 } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import { Counter, clientSubjects, quote } from './fixture.js';
import { servePeer } from './peer.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const answer = (data: Uint8Array): Uint8Array => encoder.encode(JSON.stringify(quote(JSON.parse(decoder.decode(data)))));

/** A message as both clients hand it to a callback. */
interface PeerMsg {
  readonly data: Uint8Array;
  respond(data: Uint8Array): boolean;
}

/** What serving needs of a connection: nats v2's and the v3 client's alike. */
interface PeerConnection {
  subscribe(subject: string, options: { queue?: string; callback: (error: Error | null, msg: PeerMsg) => void }): unknown;
  flush(): Promise<void>;
  drain(): Promise<void>;
}

/** What serving needs of a service: v2's `nc.services.add` and v3's `Svcm.add` alike. */
interface PeerService {
  addGroup(name: string, queue: string): {
    addEndpoint(name: string, options: { handler: (error: Error | null, msg: PeerMsg) => void; metadata: Record<string, string>; queue: string }): unknown;
  };
  stop(): Promise<unknown>;
}

const SERVICE = { name: 'pricing', version: '1.0.0', description: 'bench', queue: 'pricing' };

/** Answers the quote on a plain queue subscription and through a service endpoint, and counts events; returns its stop. */
async function serve(version: 'v2' | 'v3', nc: PeerConnection, service: PeerService): Promise<() => Promise<void>> {
  const subjects = clientSubjects(version);
  const counter = new Counter();
  const fail = (error: Error | null): boolean => {
    if (error !== null) console.error(error);
    return error !== null;
  };
  nc.subscribe(subjects.quote, {
    queue: 'pricing',
    callback: (error, msg) => {
      if (!fail(error)) msg.respond(answer(msg.data));
    },
  });
  service.addGroup(subjects.serviceGroup, 'pricing').addEndpoint('quote', {
    handler: (error, msg) => {
      if (!fail(error)) msg.respond(answer(msg.data));
    },
    metadata: { idempotent: 'true' },
    queue: 'pricing',
  });
  serveCounter(counter, subjects, (subject, callback) =>
    nc.subscribe(subject, {
      callback: (error, msg) => {
        if (!fail(error)) callback(msg);
      },
    }));
  await nc.flush();
  return async () => {
    await service.stop();
    await nc.drain();
  };
}

async function serveV2(url: string): Promise<() => Promise<void>> {
  const nc = await connectV2({ servers: url });
  return serve('v2', nc as unknown as PeerConnection, (await nc.services.add(SERVICE)) as unknown as PeerService);
}

async function serveV3(url: string): Promise<() => Promise<void>> {
  const nc = await connectV3({ servers: url });
  // `@nats-io/services` is published only as 3.0.0-25, built on its own nats-core 3.0.0-50: its
  // `NatsConnection` type differs from transport-node 3.4.0's in details (header match modes) that
  // the service API does not use here, so the connection is passed as the type it declares.
  const service = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).add(SERVICE);
  return serve('v3', nc as unknown as PeerConnection, service as unknown as PeerService);
}

/** Counts events on `subjects.event`; `expect` resets the count, `waitFor` answers once they all arrived. */
function serveCounter(
  counter: Counter,
  subjects: ReturnType<typeof clientSubjects>,
  subscribe: (subject: string, callback: (msg: PeerMsg) => void) => void,
): void {
  subscribe(subjects.event, (msg) => {
    JSON.parse(decoder.decode(msg.data));
    counter.add();
  });
  subscribe(subjects.expect, (msg) => {
    counter.expect((JSON.parse(decoder.decode(msg.data)) as { count: number }).count);
    msg.respond(encoder.encode('{}'));
  });
  subscribe(subjects.waitFor, (msg) => {
    const { waitMs } = JSON.parse(decoder.decode(msg.data)) as { waitMs: number };
    void counter.waitFor(waitMs).then((received) => msg.respond(encoder.encode(JSON.stringify({ received }))));
  });
}

const [version, url] = process.argv.slice(2);
if ((version !== 'v2' && version !== 'v3') || url === undefined) {
  console.error('usage: nats-client-peer.ts v2|v3 <nats url>');
  process.exit(2);
}
const stop = version === 'v2' ? await serveV2(url) : await serveV3(url);
servePeer('ready', stop);
