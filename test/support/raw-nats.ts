/**
 * A real nats-server with a nats client that receives, and a raw TCP socket that publishes by
 * writing the protocol by hand: for the tests of keel's header readers, which send blocks the nats
 * client would never write (`HPUB` with any bytes) and read what a client receives.
 */
import { connect as connectTcp, type Socket } from 'node:net';
import { once } from 'node:events';
import { connect, type Msg, type NatsConnection } from '@nats-io/transport-node';
import { startNatsServer } from './nats-server.js';

/** See {@link startRawNats}. */
export interface RawNats {
  /** The receiving client (also for publishing the way keel does). */
  readonly nc: NatsConnection;
  /** The next message the client receives on `subject` (a wildcard allowed), after `send()` ran. */
  receiveOn(subject: string, send: () => void): Promise<Msg>;
  /** The message the client receives on a fresh subject, after `send(subject)` published it. */
  received(send: (subject: string) => void): Promise<Msg>;
  /** Publishes `body` on `subject` with `block` as its header block exactly, as a raw `HPUB`. */
  hpub(subject: string, block: string | Uint8Array, body?: string): void;
  /** Publishes `body` on `subject` without headers, as a raw `PUB`. */
  pub(subject: string, body: string): void;
  close(): Promise<void>;
}

/**
 * Starts a nats-server on a free port, a client and a raw socket on it; fresh subjects start
 * with `prefix`.
 *
 * @example
 * ```ts
 * const nats = await startRawNats('raw.headers');
 * const msg = await nats.received((subject) => nats.hpub(subject, 'NATS/1.0\r\nKey: value\r\n\r\n'));
 * ```
 */
export async function startRawNats(prefix: string): Promise<RawNats> {
  const server = await startNatsServer();
  const nc = await connect({ servers: server.url });
  const raw: Socket = connectTcp(server.port, '127.0.0.1');
  await once(raw, 'connect');
  raw.write('CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\n');
  let sequence = 0;
  const receiveOn = async (subject: string, send: () => void): Promise<Msg> => {
    const arrived = new Promise<Msg>((resolve) => nc.subscribe(subject, { max: 1, callback: (_error, msg) => resolve(msg) }));
    await nc.flush();
    send();
    return arrived;
  };
  return {
    nc,
    receiveOn,
    received: (send) => {
      const subject = `${prefix}.${(sequence += 1)}`;
      return receiveOn(subject, () => send(subject));
    },
    hpub: (subject, block, body = '{}') => {
      const header = typeof block === 'string' ? Buffer.from(block, 'latin1') : Buffer.from(block);
      const payload = Buffer.from(body);
      raw.write(Buffer.concat([Buffer.from(`HPUB ${subject} ${header.length} ${header.length + payload.length}\r\n`), header, payload, Buffer.from('\r\n')]));
    },
    pub: (subject, body) => {
      raw.write(`PUB ${subject} ${Buffer.byteLength(body)}\r\n${body}\r\n`);
    },
    close: async () => {
      raw.destroy();
      await nc.close();
    },
  };
}
