/**
 * Options of the NATS transport: checked once by a strict zod schema (through keel's
 * `parseOptions`), defaults merged in one place, and the NATS client's (`@nats-io/transport-node`) connection options
 * built from them. The environment-variable reader is in `options-from-env.ts`.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { KeelError, KeelErrorCode, type Logger } from 'keel';
import { MAX_TIMEOUT_MS, describeValue, loggerOption, parseOptions } from 'keel/transport';
import { credsAuthenticator, type ConnectionOptions } from '@nats-io/transport-node';
import { z } from 'zod';
import { isValidPrefix } from './wire.js';

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

/** The factory every message of {@link resolveOptions} starts with. */
const FACTORY = 'createNatsTransport';

/**
 * An `INVALID_CONFIG` error with `message` as it stands; {@link resolveOptions} starts its
 * messages with the factory, the environment reader with the variable.
 */
export function configError(message: string): KeelError {
  return new KeelError(KeelErrorCode.INVALID_CONFIG, message);
}

const TIMEOUT = `must be a number of milliseconds above 0 and at most ${MAX_TIMEOUT_MS}`;

/** Milliseconds that end up in a timer, which `setTimeout` fires at once beyond `MAX_TIMEOUT_MS`. */
const timeout = () =>
  z.number({ error: TIMEOUT }).refine((value) => Number.isFinite(value) && value > 0 && value <= MAX_TIMEOUT_MS, TIMEOUT).optional();

const GRACE = `must be a number of milliseconds, 0 or more and at most ${MAX_TIMEOUT_MS}`;

/** Milliseconds of a wait that may be none. */
const grace = () =>
  z.number({ error: GRACE }).refine((value) => Number.isFinite(value) && value >= 0 && value <= MAX_TIMEOUT_MS, GRACE).optional();

const MAX_AGE = 'must be a number of milliseconds above 0';

/** A JetStream max_age in milliseconds. */
const maxAge = () => z.number({ error: MAX_AGE }).refine((value) => Number.isFinite(value) && value > 0, MAX_AGE).optional();

/** A JetStream limit: a whole number, 1 or more. */
const count = (what: string) => {
  const message = `must be a whole number of ${what}, 1 or more`;
  return z.number({ error: message }).refine((value) => Number.isSafeInteger(value) && value >= 1, message).optional();
};

const text = (what: string) => z.string({ error: `must be ${what}` }).optional();

/** The most replicas JetStream gives a stream. */
export const MAX_STREAM_REPLICAS = 5;

const REPLICAS = `must be a whole number of copies from 1 to ${MAX_STREAM_REPLICAS}`;
const replicas = () =>
  z.number({ error: REPLICAS }).refine((value) => Number.isSafeInteger(value) && value >= 1 && value <= MAX_STREAM_REPLICAS, REPLICAS).optional();

const STREAM_KEYS = ['replicas', 'maxAgeMs', 'maxMessages', 'maxBytes'] as const;
const STREAM = `must be an object of ${STREAM_KEYS.join(', ')}, each optional`;
const MODULE_NAME = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const STREAMS = 'must be an object of stream limits by module name, such as { orders: { replicas: 3 } }';
const STREAM_KEY = 'is not a module name: streams are keyed by the publishing module\'s name, in lower-kebab-case such as "orders"';

/** One module's stream limits. Loose, then refined, like `tls`: an unknown key is named with its path. */
const streamOptions = () =>
  z
    .looseObject({ replicas: replicas(), maxAgeMs: maxAge(), maxMessages: count('events'), maxBytes: count('bytes') }, { error: STREAM })
    .refine((limits) => Object.keys(limits).every((key) => (STREAM_KEYS as readonly string[]).includes(key)), STREAM);

/** Server URLs as given, one string (comma-separated) or a list, as a list without blanks. */
export function serverList(servers: string | readonly string[]): string[] {
  return (typeof servers === 'string' ? servers.split(',') : [...servers]).map((server) => server.trim()).filter((server) => server !== '');
}

const SERVERS = 'must be a NATS URL such as nats://127.0.0.1:4222, several separated by commas, or a list of them';
const PEM_FILE = 'the path of a PEM file';
const TLS_FILES = ['caFile', 'certFile', 'keyFile'] as const;
const TLS = 'must be an object of caFile, certFile and keyFile, each optional (an empty object requires TLS)';
const INBOX_PREFIX = 'must be subject tokens without wildcards, such as "_INBOX.keel.storefront"';
const PREFIX = 'must be a subject prefix: letters, digits, "-" and "_" in dot-separated tokens, such as "keel" or "acme.shop"';

/**
 * Types and ranges of every option. The server URLs themselves are checked by hand after it
 * (`checkServerUrl`): a message from here shows the value, and a URL may hold a password.
 */
const NatsTransportOptionsSchema = z
  .object({
    servers: z
      .union([z.string(), z.array(z.string())], { error: SERVERS })
      .refine((servers) => serverList(servers).length > 0, SERVERS)
      .optional(),
    prefix: z.string({ error: PREFIX }).refine(isValidPrefix, PREFIX).optional(),
    name: text('a connection name'),
    token: text('a string'),
    user: text('a user name'),
    password: text('a string'),
    credentialsFile: text('the path of a NATS credentials file'),
    // Loose, then refined: a strict nested object's unknown key would be reported without its
    // path, as if it were an unknown option of the transport.
    tls: z
      .looseObject({ caFile: text(PEM_FILE), certFile: text(PEM_FILE), keyFile: text(PEM_FILE) }, { error: TLS })
      .refine((tls) => Object.keys(tls).every((key) => (TLS_FILES as readonly string[]).includes(key)), TLS)
      .optional(),
    inboxPrefix: z.string({ error: INBOX_PREFIX }).refine(isValidPrefix, INBOX_PREFIX).optional(),
    connectTimeoutMs: timeout(),
    reconnectTimeWaitMs: timeout(),
    reconnectGraceMs: grace(),
    defaultTimeoutMs: timeout(),
    redeliveryDelayMs: timeout(),
    maxRedeliveryDelayMs: timeout(),
    ackWaitMs: timeout(),
    maxAckPending: z
      .number({ error: 'must be a whole number of events, 1 or more' })
      .refine((value) => Number.isSafeInteger(value) && value >= 1, 'must be a whole number of events, 1 or more')
      .optional(),
    // JetStream max_ages, never timers: they may exceed MAX_TIMEOUT_MS.
    eventMaxAgeMs: maxAge(),
    streamReplicas: replicas(),
    streams: z
      .record(z.string(), streamOptions(), { error: STREAMS })
      .superRefine((streams, context) => {
        for (const module of Object.keys(streams)) {
          if (!MODULE_NAME.test(module)) context.addIssue({ code: 'custom', path: [module], message: STREAM_KEY });
        }
      })
      .optional(),
    publishAttempts: z
      .number({ error: 'must be a whole number of attempts, 1 or more' })
      .refine((value) => Number.isSafeInteger(value) && value >= 1, 'must be a whole number of attempts, 1 or more')
      .optional(),
    publishRetryDelayMs: timeout(),
    deadLetterMaxAgeMs: maxAge(),
    deadLetterMaxMessages: count('dead letters'),
    deadLetterMaxBytes: count('bytes'),
    jetStreamTimeoutMs: timeout(),
    drainTimeoutMs: timeout(),
    logger: loggerOption().optional(),
  } satisfies Record<keyof NatsTransportOptions, z.ZodType>)
  .strict();

/** The options that hold a secret: a message about them never shows their value. */
const SECRET_OPTIONS = ['token', 'password'] as const;

/**
 * Checks every option once and merges the defaults; throws `INVALID_CONFIG` naming the field
 * (every wrong type or range at once, then the first of the checks zod cannot make: server
 * URLs, credentials given twice, files that cannot be read, a certificate without its key).
 */
export function resolveOptions(options: NatsTransportOptions): ResolvedNatsOptions {
  const merged = { ...DEFAULT_NATS_TRANSPORT_OPTIONS, ...parseOptions(FACTORY, NatsTransportOptionsSchema, options, SECRET_OPTIONS) };
  const servers = serverList(merged.servers);
  for (const server of servers) checkServerUrl(server, `${FACTORY}: servers`);
  const lifted = liftUrlCredentials(servers, merged);
  const resolved = { ...merged, ...lifted.credentials, servers: lifted.servers };
  if (resolved.token !== undefined && (resolved.user !== undefined || resolved.credentialsFile !== undefined)) {
    throw configError(`${FACTORY}: give either token, user and password, or credentialsFile, not several.`);
  }
  if (resolved.user !== undefined && resolved.credentialsFile !== undefined) {
    throw configError(`${FACTORY}: give either user and password or credentialsFile, not both.`);
  }
  if ((resolved.user === undefined) !== (resolved.password === undefined)) {
    throw configError(`${FACTORY}: user and password go together; set both or neither.`);
  }
  if (resolved.credentialsFile !== undefined) checkReadable(resolved.credentialsFile, `${FACTORY}: credentialsFile`);
  const tls = resolved.tls;
  if (tls !== undefined) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw configError(`${FACTORY}: tls.certFile and tls.keyFile go together (a client certificate needs its key); set both or neither.`);
    }
    for (const key of TLS_FILES) {
      const file = tls[key];
      if (file !== undefined) checkReadable(file, `${FACTORY}: tls.${key}`);
    }
  }
  return resolved as ResolvedNatsOptions;
}

/**
 * Credentials written into server URLs, as the NATS CLI and the Go client accept them
 * (`nats://user:password@host:4222`, `nats://token@host:4222`), lifted into `user`/`password` or
 * `token`: the NATS client for Node ignores them, and a silent "Authorization Violation" would
 * hide why. The URLs handed on carry no secret. Refused when URLs disagree, or when options
 * give credentials too.
 */
function liftUrlCredentials(
  servers: readonly string[],
  options: Pick<NatsTransportOptions, 'token' | 'user' | 'password' | 'credentialsFile'>,
): { servers: string[]; credentials: { user?: string; password?: string; token?: string } } {
  let found: { user?: string; password?: string; token?: string } | undefined;
  let foundKey: string | undefined;
  const stripped = servers.map((server) => {
    const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server);
    const url = new URL(hasScheme ? server : `nats://${server}`);
    if (url.username === '' && url.password === '') return server;
    const user = decodeURIComponent(url.username);
    const password = decodeURIComponent(url.password);
    const credentials = password === '' && !server.includes(':' + '@') ? { token: user } : { user, password };
    const key = JSON.stringify(credentials);
    if (foundKey !== undefined && key !== foundKey) {
      throw configError(
        `${FACTORY}: the servers carry different credentials; give one set, in every URL or in the user and password or token options.`,
      );
    }
    found = credentials;
    foundKey = key;
    return `${url.protocol}//${url.host}`;
  });
  if (found === undefined) return { servers: stripped, credentials: {} };
  if (options.token !== undefined || options.user !== undefined || options.password !== undefined || options.credentialsFile !== undefined) {
    throw configError(
      `${FACTORY}: credentials are given both in a server URL and as options (token, user, password or credentialsFile); keep one (the URL form is nats://user:password@host:4222).`,
    );
  }
  return { servers: stripped, credentials: found };
}

/**
 * Refuses a server URL that is not `nats://host:port` or `tls://host:port` (the scheme may be
 * left out). `label` starts the message: the factory and field, or the variable. The URL is
 * shown without its credentials.
 */
export function checkServerUrl(server: string, label: string): void {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `nats://${server}`;
  const shown = `${label} "${redactUrl(server)}"`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw configError(`${shown} is not a NATS URL; use nats://host:port (several separated by commas).`);
  }
  if (!['nats:', 'tls:'].includes(url.protocol)) throw configError(`${shown} uses ${url.protocol}; keel connects with nats:// or tls:// URLs.`);
  if (url.hostname === '') throw configError(`${shown} has no host; use nats://host:port.`);
  if (url.pathname !== '' && url.pathname !== '/') throw configError(`${shown} has a path; a NATS URL is only nats://host:port.`);
}

/** Refuses a file this process cannot read; `label` starts the message (the field, or the variable). */
export function checkReadable(file: string, label: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw configError(`${label} "${file}" does not exist or cannot be read.`);
  }
}

/** A server URL with any user name, password or token replaced by `***`, safe to log. */
export function redactUrl(server: string): string {
  return server.replace(/\/\/[^@/]*@/, '//***@');
}

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
