/**
 * The NATS client's (`@nats-io/transport-node`) connection options built from the transport's
 * resolved options: reconnecting for ever, with the authentication and TLS part that `keel
 * status` shares.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import type { NatsTransportOptions, ResolvedNatsOptions } from './options.js';

/** Builds the NATS client's (`@nats-io/transport-node`) connection options of the transport: reconnecting for ever. */
export function connectionOptions(options: ResolvedNatsOptions): ConnectionOptions {
  return {
    servers: [...options.servers],
    name: options.name,
    timeout: options.connectTimeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    // Keep reconnecting after repeated authentication errors too: credentials rotated on the
    // server come back, and a process that gave up would need a restart.
    ignoreAuthErrorAbort: true,
    reconnectTimeWait: options.reconnectTimeWaitMs,
    reconnectJitter: 100,
    reconnectJitterTLS: 100,
    waitOnFirstConnect: false,
    ignoreClusterUpdates: false,
    noAsyncTraces: true,
    ...(options.inboxPrefix === undefined ? {} : { inboxPrefix: options.inboxPrefix }),
    ...natsAuthOptions(options),
  };
}

/** What authenticates a NATS connection and secures it: the fields {@link natsAuthOptions} reads. */
export type NatsAuthOptions = Pick<NatsTransportOptions, 'token' | 'user' | 'password' | 'credentialsFile' | 'tls'>;

/**
 * The authentication and TLS part of the NATS client's connection options, the same for
 * the transport and for `keel status`. A credentials file is read on every connect and
 * reconnect, not once, so credentials rotated on disk are used without a restart. Checks
 * nothing: give it options {@link createNatsTransport} would accept.
 *
 * @example
 * ```ts
 * import { connect } from '@nats-io/transport-node';
 *
 * const connection = await connect({ servers: 'nats://127.0.0.1:4222', reconnect: false, ...natsAuthOptions({ credentialsFile: '/run/secrets/shop.creds' }) });
 * ```
 */
export function natsAuthOptions(options: NatsAuthOptions): Pick<ConnectionOptions, 'token' | 'user' | 'pass' | 'authenticator' | 'tls'> {
  const { token, user, password, credentialsFile, tls } = options;
  return {
    ...(token === undefined ? {} : { token }),
    ...(user === undefined ? {} : { user, pass: password }),
    ...(credentialsFile === undefined ? {} : { authenticator: credsAuthenticator(() => readFileSync(credentialsFile)) }),
    ...(tls === undefined
      ? {}
      : {
          tls: {
            ...(tls.caFile === undefined ? {} : { caFile: tls.caFile }),
            ...(tls.certFile === undefined ? {} : { certFile: tls.certFile }),
            ...(tls.keyFile === undefined ? {} : { keyFile: tls.keyFile }),
          },
        }),
  };
}
