/**
 * Options of the NATS transport: defaults merged in one place, connection options built once,
 * and the environment-variable reader used by `app/` and the CLI.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { KeelError, KeelErrorCode, type Logger } from 'keel';
import { credsAuthenticator, type ConnectionOptions } from 'nats';
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
  /** Milliseconds to wait for the first connection (default 5 000). */
  readonly connectTimeoutMs?: number;
  /** Milliseconds between reconnect attempts (default 1 000, plus up to 100 ms of jitter). Reconnects never give up. */
  readonly reconnectTimeWaitMs?: number;
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
  /** How long dead letters stay in the dead-letter stream (default 7 days). */
  readonly deadLetterMaxAgeMs?: number;
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
  defaultTimeoutMs: 10_000,
  redeliveryDelayMs: 1_000,
  maxRedeliveryDelayMs: 60_000,
  ackWaitMs: 30_000,
  maxAckPending: 256,
  deadLetterMaxAgeMs: 7 * 24 * 60 * 60 * 1000,
  jetStreamTimeoutMs: 5_000,
  drainTimeoutMs: 30_000,
} as const satisfies NatsTransportOptions;

/** Options with every default filled in. */
export type ResolvedNatsOptions = Omit<NatsTransportOptions, keyof typeof DEFAULT_NATS_TRANSPORT_OPTIONS> & {
  readonly servers: readonly string[];
  readonly prefix: string;
  readonly name: string;
} & { readonly [K in Exclude<keyof typeof DEFAULT_NATS_TRANSPORT_OPTIONS, 'servers' | 'prefix' | 'name'>]: number };

function configError(message: string): KeelError {
  return new KeelError(KeelErrorCode.INVALID_CONFIG, message);
}

const NUMERIC_OPTIONS = [
  'connectTimeoutMs',
  'reconnectTimeWaitMs',
  'defaultTimeoutMs',
  'redeliveryDelayMs',
  'maxRedeliveryDelayMs',
  'ackWaitMs',
  'maxAckPending',
  'deadLetterMaxAgeMs',
  'jetStreamTimeoutMs',
  'drainTimeoutMs',
] as const;

/** Merges defaults and checks every option; throws `INVALID_CONFIG` naming the option. */
export function resolveOptions(options: NatsTransportOptions): ResolvedNatsOptions {
  let merged = { ...DEFAULT_NATS_TRANSPORT_OPTIONS, ...stripUndefined(options) };
  const servers = (typeof merged.servers === 'string' ? merged.servers.split(',') : [...merged.servers])
    .map((server) => server.trim())
    .filter((server) => server !== '');
  if (servers.length === 0) throw configError('NATS transport: `servers` is empty; give at least one URL such as nats://127.0.0.1:4222.');
  for (const server of servers) checkServerUrl(server, '`servers`');
  const lifted = liftUrlCredentials(servers, merged);
  if (!isValidPrefix(merged.prefix)) {
    throw configError(
      `NATS transport: prefix "${merged.prefix}" is not a valid subject prefix; use letters, digits, "-" and "_" in dot-separated tokens, such as "keel" or "acme.shop".`,
    );
  }
  for (const key of NUMERIC_OPTIONS) {
    const value = merged[key];
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw configError(`NATS transport: \`${key}\` must be a positive number, got ${String(value)}.`);
    }
  }
  merged = { ...merged, ...lifted.credentials };
  if (merged.token !== undefined && (merged.user !== undefined || merged.credentialsFile !== undefined)) {
    throw configError('NATS transport: give either a token, a user and password, or a credentials file, not several.');
  }
  if (merged.user !== undefined && merged.credentialsFile !== undefined) {
    throw configError('NATS transport: give either a user and password or a credentials file, not both.');
  }
  if ((merged.user === undefined) !== (merged.password === undefined)) {
    throw configError('NATS transport: `user` and `password` go together; set both or neither.');
  }
  if (merged.credentialsFile !== undefined) checkReadable(merged.credentialsFile, 'credentials file');
  const tls = merged.tls;
  if (tls !== undefined) {
    if ((tls.certFile === undefined) !== (tls.keyFile === undefined)) {
      throw configError('NATS transport: a TLS client certificate needs its key: set both certFile and keyFile, or neither.');
    }
    for (const [what, file] of [
      ['TLS CA file', tls.caFile],
      ['TLS certificate file', tls.certFile],
      ['TLS key file', tls.keyFile],
    ] as const) {
      if (file !== undefined) checkReadable(file, what);
    }
  }
  return { ...merged, servers: lifted.servers } as ResolvedNatsOptions;
}

/**
 * Credentials written into server URLs, as the NATS CLI and the Go client accept them
 * (`nats://user:password@host:4222`, `nats://token@host:4222`), lifted into `user`/`password` or
 * `token`: the `nats` client for Node ignores them, and a silent "Authorization Violation" would
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
        'NATS transport: the server URLs carry different credentials; give one set, in every URL or in the user/password or token options.',
      );
    }
    found = credentials;
    foundKey = key;
    return `${url.protocol}//${url.host}`;
  });
  if (found === undefined) return { servers: stripped, credentials: {} };
  if (options.token !== undefined || options.user !== undefined || options.password !== undefined || options.credentialsFile !== undefined) {
    throw configError(
      'NATS transport: credentials are given both in a server URL and as options; keep one (the URL form is nats://user:password@host:4222).',
    );
  }
  return { servers: stripped, credentials: found };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}

function checkServerUrl(server: string, source: string): void {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(server) ? server : `nats://${server}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw configError(`${source}: "${redactUrl(server)}" is not a NATS URL; use nats://host:port (several separated by commas).`);
  }
  if (!['nats:', 'tls:'].includes(url.protocol)) {
    throw configError(`${source}: "${redactUrl(server)}" uses ${url.protocol}; keel connects with nats:// or tls:// URLs.`);
  }
  if (url.hostname === '') throw configError(`${source}: "${redactUrl(server)}" has no host; use nats://host:port.`);
  if (url.pathname !== '' && url.pathname !== '/') {
    throw configError(`${source}: "${redactUrl(server)}" has a path; a NATS URL is only nats://host:port.`);
  }
}

function checkReadable(file: string, what: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw configError(`NATS transport: the ${what} "${file}" does not exist or cannot be read.`);
  }
}

/** A server URL with any user name, password or token replaced by `***`, safe to log. */
export function redactUrl(server: string): string {
  return server.replace(/\/\/[^@/]*@/, '//***@');
}

/** Builds the `nats` client's connection options. Reads credential files now. */
export function connectionOptions(options: ResolvedNatsOptions): ConnectionOptions {
  const connection: ConnectionOptions = {
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
  };
  if (options.token !== undefined) connection.token = options.token;
  if (options.user !== undefined) {
    connection.user = options.user;
    connection.pass = options.password;
  }
  if (options.credentialsFile !== undefined) {
    const file = options.credentialsFile;
    connection.authenticator = credsAuthenticator(() => readFileSync(file));
  }
  if (options.tls !== undefined) {
    connection.tls = {
      ...(options.tls.caFile === undefined ? {} : { caFile: options.tls.caFile }),
      ...(options.tls.certFile === undefined ? {} : { certFile: options.tls.certFile }),
      ...(options.tls.keyFile === undefined ? {} : { keyFile: options.tls.keyFile }),
    };
  }
  return connection;
}

/**
 * Environment variables {@link natsOptionsFromEnv} reads.
 *
 * @example
 * ```ts
 * if (process.env[NATS_ENV.URL] === undefined) console.log('running every module in this process');
 * ```
 */
export const NATS_ENV = {
  URL: 'KEEL_NATS_URL',
  PREFIX: 'KEEL_NATS_PREFIX',
  TOKEN: 'KEEL_NATS_TOKEN',
  USER: 'KEEL_NATS_USER',
  PASSWORD: 'KEEL_NATS_PASSWORD',
  CREDS: 'KEEL_NATS_CREDS',
  TLS_CA: 'KEEL_NATS_TLS_CA',
  TLS_CERT: 'KEEL_NATS_TLS_CERT',
  TLS_KEY: 'KEEL_NATS_TLS_KEY',
} as const;

/**
 * Reads NATS transport options from environment variables, or `undefined` when `KEEL_NATS_URL`
 * is not set (then everything runs in one process). Checks them at once and throws a
 * `KeelError` `INVALID_CONFIG` naming the variable; secret values are never put in messages.
 *
 * | variable | meaning |
 * |---|---|
 * | `KEEL_NATS_URL` | server URLs, comma-separated (`nats://a:4222,nats://b:4222`) |
 * | `KEEL_NATS_PREFIX` | subject prefix (default `keel`) |
 * | `KEEL_NATS_TOKEN` | token authentication |
 * | `KEEL_NATS_USER`, `KEEL_NATS_PASSWORD` | user and password authentication |
 * | `KEEL_NATS_CREDS` | credentials file (JWT + nkey seed) |
 * | `KEEL_NATS_TLS_CA`, `KEEL_NATS_TLS_CERT`, `KEEL_NATS_TLS_KEY` | TLS files (PEM) |
 *
 * @example
 * ```ts
 * const options = natsOptionsFromEnv(process.env);
 * const transport = options === undefined ? undefined : await createNatsTransport(options);
 * ```
 */
export function natsOptionsFromEnv(env: Readonly<Record<string, string | undefined>>): NatsTransportOptions | undefined {
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  const url = read(NATS_ENV.URL);
  const others = Object.values(NATS_ENV).filter((name) => name !== NATS_ENV.URL && read(name) !== undefined);
  if (url === undefined) {
    if (others.length > 0) {
      throw configError(`${others.join(', ')} ${others.length === 1 ? 'is' : 'are'} set but ${NATS_ENV.URL} is not; set ${NATS_ENV.URL} to the NATS server URL(s), or unset the others.`);
    }
    return undefined;
  }
  const servers = url.split(',').map((server) => server.trim()).filter((server) => server !== '');
  if (servers.length === 0) throw configError(`${NATS_ENV.URL} holds no URL; use nats://host:port, several separated by commas.`);
  for (const server of servers) checkServerUrl(server, NATS_ENV.URL);

  const prefix = read(NATS_ENV.PREFIX);
  if (prefix !== undefined && !isValidPrefix(prefix)) {
    throw configError(
      `${NATS_ENV.PREFIX}="${prefix}" is not a valid subject prefix; use letters, digits, "-" and "_" in dot-separated tokens, such as "keel" or "acme.shop".`,
    );
  }
  const token = read(NATS_ENV.TOKEN);
  const user = read(NATS_ENV.USER);
  const password = read(NATS_ENV.PASSWORD);
  const creds = read(NATS_ENV.CREDS);
  const methods = [token && NATS_ENV.TOKEN, user && NATS_ENV.USER, creds && NATS_ENV.CREDS].filter(Boolean);
  if (methods.length > 1) {
    throw configError(`${methods.join(' and ')} are both set; choose one way to authenticate to NATS.`);
  }
  if ((user === undefined) !== (password === undefined)) {
    throw configError(`${NATS_ENV.USER} and ${NATS_ENV.PASSWORD} go together; set both or neither.`);
  }
  if (creds !== undefined) checkEnvFile(creds, NATS_ENV.CREDS);
  const ca = read(NATS_ENV.TLS_CA);
  const cert = read(NATS_ENV.TLS_CERT);
  const key = read(NATS_ENV.TLS_KEY);
  if ((cert === undefined) !== (key === undefined)) {
    throw configError(`${NATS_ENV.TLS_CERT} and ${NATS_ENV.TLS_KEY} go together (a client certificate and its key); set both or neither.`);
  }
  if (ca !== undefined) checkEnvFile(ca, NATS_ENV.TLS_CA);
  if (cert !== undefined) checkEnvFile(cert, NATS_ENV.TLS_CERT);
  if (key !== undefined) checkEnvFile(key, NATS_ENV.TLS_KEY);
  const useTls = ca !== undefined || cert !== undefined || servers.some((server) => server.startsWith('tls://'));

  return {
    servers,
    ...(prefix === undefined ? {} : { prefix }),
    ...(token === undefined ? {} : { token }),
    ...(user === undefined ? {} : { user, password }),
    ...(creds === undefined ? {} : { credentialsFile: creds }),
    ...(useTls
      ? {
          tls: {
            ...(ca === undefined ? {} : { caFile: ca }),
            ...(cert === undefined ? {} : { certFile: cert }),
            ...(key === undefined ? {} : { keyFile: key }),
          },
        }
      : {}),
  };
}

function checkEnvFile(file: string, variable: string): void {
  try {
    accessSync(file, constants.R_OK);
  } catch {
    throw configError(`${variable}="${file}": the file does not exist or cannot be read.`);
  }
}
