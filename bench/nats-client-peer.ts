/**
 * The callee of the NATS client comparison (bench/nats-client.ts), one process per client:
 * `tsx bench/nats-client-peer.ts v2|v3 <url>` connects with `nats` v2 or with the modular v3
 * client (`@nats-io/transport-node`, `@nats-io/services`) and, on subjects of its own
 * (`clientSubjects`, bench/fixture.ts), answers the `quote` with a plain queue subscription and
 * through the service API (one service, a group, one endpoint, a queue group, as
 * adapters/nats/responder.ts serves an operation), and counts the events published to it.
 * Prints `ready` once serving, answers `cpu` on stdin with its CPU time, and exits when its stdin closes.
 */
import { connect as connectV2, type Msg as MsgV2, type NatsError } from 'nats';
import { connect as connectV3, type Msg as MsgV3 } from '@nats-io/transport-node';
import { Svcm } from '@nats-io/services';
import { Counter, clientSubjects, quote } from './fixture.js';
import { servePeer } from './peer.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const answer = (data: Uint8Array): Uint8Array => encoder.encode(JSON.stringify(quote(JSON.parse(decoder.decode(data)))));

async function serveV2(url: string): Promise<() => Promise<void>> {
  const subjects = clientSubjects('v2');
  const nc = await connectV2({ servers: url });
  const counter = new Counter();
  const fail = (error: NatsError | null): boolean => {
    if (error !== null) console.error(error);
    return error !== null;
  };
  nc.subscribe(subjects.quote, {
    queue: 'pricing',
    callback: (error, msg) => {
      if (!fail(error)) msg.respond(answer(msg.data));
    },
  });
  const service = await nc.services.add({ name: 'pricing', version: '1.0.0', description: 'bench', queue: 'pricing' });
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

async function serveV3(url: string): Promise<() => Promise<void>> {
  const subjects = clientSubjects('v3');
  const nc = await connectV3({ servers: url });
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
  // `@nats-io/services` is published only as 3.0.0-25, built on its own nats-core 3.0.0-50: its
  // `NatsConnection` type differs from transport-node 3.4.0's in details (header match modes) that
  // the service API does not use here, so the connection is passed as the type it declares.
  const service = await new Svcm(nc as unknown as ConstructorParameters<typeof Svcm>[0]).add({ name: 'pricing', version: '1.0.0', description: 'bench', queue: 'pricing' });
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

/** Counts events on `subjects.event`; `expect` resets the count, `waitFor` answers once they all arrived. */
function serveCounter(
  counter: Counter,
  subjects: ReturnType<typeof clientSubjects>,
  subscribe: (subject: string, callback: (msg: MsgV2 | MsgV3) => void) => void,
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
