/**
 * Options of the NATS transport: what each one means ({@link NatsTransportOptions}), their
 * defaults, the options with every default filled in, and the limits of one module's event
 * stream drawn from them. They are checked in `option-checks.ts`, handed to the NATS client by
 * `connection-options.ts`, and read from environment variables by `options-from-env.ts`.
 */
import type { Logger } from 'keel';

/**
 * TLS files of a NATS connection.
 *
 * @example
 * ```ts
 * await createNatsTransport({ servers: 'tls://nats.internal:4222', tls: { caFile: '/etc/ssl/internal-ca.pem' } });
 * ```
 */
export interface NatsTlsOptions {
  /** CA certificate(s) that sign the server's certificate (PEM file). */
  readonly caFile?: string;
  /** Client certificate for mutual TLS (PEM file); needs `keyFile`. */
  readonly certFile?: string;
  /** Private key of `certFile` (PEM file). */
  readonly keyFile?: string;
}

/**
 * Limits of one module's durable-event stream (`{prefix}_{module}`), each overriding the
 * transport-wide option named beside it. Only a process that hosts the publishing module
 * applies them to the stream; a subscriber makes the stream with them when it is missing.
 *
 * @example
 * ```ts
 * await createNatsTransport({
 *   servers: ['nats://nats-1:4222', 'nats://nats-2:4222', 'nats://nats-3:4222'],
 *   streamReplicas: 3,
 *   streams: { notifications: { replicas: 1, maxAgeMs: 24 * 60 * 60 * 1000 }, orders: { maxBytes: 1024 ** 3 } },
 * });
 * ```
 */
export interface NatsStreamOptions {
  /** Copies of the stream in a NATS cluster (1 to 5, at most the cluster's size). Default: `streamReplicas`. */
  readonly replicas?: number;
  /** How long the stream keeps an event, in milliseconds. Default: `eventMaxAgeMs`. */
  readonly maxAgeMs?: number;
  /**
   * Most events the stream keeps; beyond it the oldest are discarded, handled or not. Default:
   * no limit (only the age counts).
   */
  readonly maxMessages?: number;
  /** Most bytes the stream keeps; beyond it the oldest events are discarded, handled or not. Default: no limit. */
  readonly maxBytes?: number;
}

/**
 * Options of {@link createNatsTransport}. Every field is optional; see
 * {@link DEFAULT_NATS_TRANSPORT_OPTIONS} for the defaults.
 *
 * @example
 * ```ts
 * const options: NatsTransportOptions = {
 *   servers: ['nats://nats-1:4222', 'nats://nats-2:4222'],
 *   prefix: 'acme.shop',
 *   credentialsFile: '/run/secrets/shop.creds',
 * };
 * const transport = await createNatsTransport(options);
 * ```
 */
export interface NatsTransportOptions {
  /**
   * One or more server URLs (`nats://host:4222`, `tls://host:4222`, `host:4222`). Default `nats://127.0.0.1:4222`.
   * Credentials in a URL (`nats://user:password@host:4222`, `nats://token@host:4222`) are used as
   * `user`/`password` or `token`, and never logged.
   */
  readonly servers?: string | readonly string[];
  /** First token(s) of every keel subject. Default `keel`. Processes that talk to each other share it. */
  readonly prefix?: string;
  /** Connection name shown by `nats-server` monitoring. Default `keel`. */
  readonly name?: string;
  /** Authentication token. */
  readonly token?: string;
  /** User name; needs `password`. */
  readonly user?: string;
  readonly password?: string;
  /** NATS credentials file (user JWT and nkey seed), as made by `nsc`. */
  readonly credentialsFile?: string;
  /** TLS: an object (even empty) requires TLS; files add a CA or a client certificate. */
  readonly tls?: NatsTlsOptions;
  /**
   * First token(s) of this process's reply subjects (default `_INBOX`): calls, JetStream
   * acknowledgements and `$SRV` questions are answered on `{inboxPrefix}.…`. A server that gives
   * each process its own prefix (as `keel deploy` and `keel up` configure it) keeps one process
   * from reading another's replies.
   */
  readonly inboxPrefix?: string;
  /** Milliseconds to wait for the first connection (default 5 000). */
  readonly connectTimeoutMs?: number;
  /** Milliseconds between reconnect attempts (default 1 000, plus up to 100 ms of jitter). Reconnects never give up. */
  readonly reconnectTimeWaitMs?: number;
  /**
   * How long a call made while the connection is down waits for it to come back before failing
   * with `UNAVAILABLE` (nothing was sent: safe to retry), never past the call's deadline
   * (default 1 000 ms; 0 fails at once). A cluster failover or a lame-duck move reconnects within
   * it; a longer outage fails fast instead of holding every call for its whole deadline.
   */
  readonly reconnectGraceMs?: number;
  /** Deadline given to a request that arrives without `Keel-Deadline` or `Keel-Timeout-Ms` (default 10 000). */
  readonly defaultTimeoutMs?: number;
  /** Delay before redelivering a failed durable event, multiplied by the attempt number (default 1 000 ms). */
  readonly redeliveryDelayMs?: number;
  /** Longest redelivery delay (default 60 000 ms). */
  readonly maxRedeliveryDelayMs?: number;
  /** JetStream ack wait of durable consumers (default 30 000 ms); long handlers extend it while they run. */
  readonly ackWaitMs?: number;
  /** Durable events handed to one subscribing module at once (default 256). */
  readonly maxAckPending?: number;
  /**
   * How long a module's stream keeps its durable events (default 7 days): a subscribing module
   * that is down longer than this misses the oldest ones. Streams use limits retention, not
   * interest retention (docs/wire-protocol.md says why).
   */
  readonly eventMaxAgeMs?: number;
  /**
   * Copies JetStream keeps of each stream keel makes (default 1): 3 in a three-node NATS
   * cluster keeps every confirmed event through the loss of one node (docs/nats-cluster.md).
   * At most 5, and at most the cluster's size. The dead-letter stream is made with it too.
   */
  readonly streamReplicas?: number;
  /**
   * Per publishing module, limits of its event stream that differ from the transport-wide ones
   * (`streamReplicas`, `eventMaxAgeMs`), such as `{ orders: { replicas: 3 } }`. A module
   * not named here takes those.
   */
  readonly streams?: Readonly<Record<string, NatsStreamOptions>>;
  /**
   * Times a durable event is sent to JetStream before its publish fails (default 10): an
   * attempt that gets no acknowledgement in time (`jetStreamTimeoutMs`) or no responder (a
   * stream leader being elected) is sent again with the same `Nats-Msg-Id`, so that JetStream
   * stores it once. Every attempt starts within the stream's duplicate window. With the
   * defaults, attempts refused at once (no responder) span 9 to 19 s: longer than a stream
   * leader election on nats-server 2.9 (5 to 8 s in docs/nats-cluster.md).
   */
  readonly publishAttempts?: number;
  /**
   * Delay before the second attempt of a durable event's publish (default 250 ms), doubled
   * for each further attempt up to 3 s, each with random jitter (half to all of it).
   */
  readonly publishRetryDelayMs?: number;
  /** How long dead letters stay in the dead-letter stream (default 7 days). */
  readonly deadLetterMaxAgeMs?: number;
  /**
   * Most dead letters the dead-letter stream keeps (default 10 000); beyond it the oldest are
   * discarded, so a flood of invalid events cannot grow it without bound.
   */
  readonly deadLetterMaxMessages?: number;
  /**
   * Most bytes the dead-letter stream keeps (default 64 MiB); beyond it the oldest letters are
   * discarded. JetStream reserves this much of its storage for the stream when it is made.
   */
  readonly deadLetterMaxBytes?: number;
  /** Milliseconds to wait for a JetStream publish acknowledgement or API answer (default 5 000). */
  readonly jetStreamTimeoutMs?: number;
  /** Longest `close()` waits for calls in flight before abandoning them (default 30 000 ms). */
  readonly drainTimeoutMs?: number;
  /** Where the transport logs. Default: keel's pino logger. Secrets are never logged. */
  readonly logger?: Logger;
}

/**
 * Defaults of {@link NatsTransportOptions}, merged once when the transport is created.
 *
 * @example
 * ```ts
 * const quickRetries = { redeliveryDelayMs: DEFAULT_NATS_TRANSPORT_OPTIONS.redeliveryDelayMs / 10 };
 * ```
 */
export const DEFAULT_NATS_TRANSPORT_OPTIONS = {
  servers: 'nats://127.0.0.1:4222',
  prefix: 'keel',
  name: 'keel',
  connectTimeoutMs: 5_000,
  reconnectTimeWaitMs: 1_000,
  reconnectGraceMs: 1_000,
  defaultTimeoutMs: 10_000,
  redeliveryDelayMs: 1_000,
  maxRedeliveryDelayMs: 60_000,
  ackWaitMs: 30_000,
  maxAckPending: 256,
  eventMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  streamReplicas: 1,
  publishAttempts: 10,
  publishRetryDelayMs: 250,
  deadLetterMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  deadLetterMaxMessages: 10_000,
  deadLetterMaxBytes: 64 * 1024 * 1024,
  jetStreamTimeoutMs: 5_000,
  drainTimeoutMs: 30_000,
} as const satisfies NatsTransportOptions;

/** Options with every default filled in. */
export type ResolvedNatsOptions = Omit<NatsTransportOptions, keyof typeof DEFAULT_NATS_TRANSPORT_OPTIONS> & {
  readonly servers: readonly string[];
  readonly prefix: string;
  readonly name: string;
} & { readonly [K in Exclude<keyof typeof DEFAULT_NATS_TRANSPORT_OPTIONS, 'servers' | 'prefix' | 'name'>]: number };

/** The limits of one module's event stream, resolved from {@link NatsStreamOptions} and the transport-wide options. */
export interface StreamLimits {
  readonly replicas: number;
  /** The option `replicas` came from, for a message about it. */
  readonly replicasOption: string;
  readonly maxAgeMs: number;
  /** -1: no limit. */
  readonly maxMessages: number;
  readonly maxBytes: number;
}

/**
 * The limits of `module`'s event stream: its entry in `streams`, else the transport-wide
 * options.
 */
export function streamLimits(options: ResolvedNatsOptions, module: string): StreamLimits {
  const own = Object.hasOwn(options.streams ?? {}, module) ? options.streams?.[module] : undefined;
  return {
    replicas: own?.replicas ?? options.streamReplicas,
    replicasOption: own?.replicas === undefined ? 'streamReplicas (KEEL_NATS_STREAM_REPLICAS)' : `streams.${module}.replicas`,
    maxAgeMs: own?.maxAgeMs ?? options.eventMaxAgeMs,
    maxMessages: own?.maxMessages ?? -1,
    maxBytes: own?.maxBytes ?? -1,
  };
}
