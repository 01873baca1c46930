/**
 * The NATS transport's options read from environment variables ({@link NATS_ENV}), used by
 * `app/` and the CLI. Checked at once, each message naming the variable, never a secret value.
 */
import { MAX_TIMEOUT_MS } from 'keel/transport';
import { MAX_STREAM_REPLICAS, checkReadable, checkServerUrl, configError, serverList } from './option-checks.js';
import type { NatsTransportOptions } from './options.js';
import { isValidPrefix } from './wire.js';

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
  INBOX_PREFIX: 'KEEL_NATS_INBOX_PREFIX',
  RECONNECT_GRACE_MS: 'KEEL_NATS_RECONNECT_GRACE_MS',
  STREAM_REPLICAS: 'KEEL_NATS_STREAM_REPLICAS',
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
 * | `KEEL_NATS_INBOX_PREFIX` | this process's reply subject prefix (default `_INBOX`) |
 * | `KEEL_NATS_RECONNECT_GRACE_MS` | how long a call waits for a lost connection to come back (default 1000) |
 * | `KEEL_NATS_STREAM_REPLICAS` | replicas of the streams this process makes and of its modules' event streams (`streamReplicas`, default 1; 3 in a three-node cluster) |
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
  const servers = serverList(url);
  if (servers.length === 0) throw configError(`${NATS_ENV.URL} holds no URL; use nats://host:port, several separated by commas.`);
  for (const server of servers) checkServerUrl(server, NATS_ENV.URL);

  const prefix = read(NATS_ENV.PREFIX);
  if (prefix !== undefined && !isValidPrefix(prefix)) {
    throw configError(
      `${NATS_ENV.PREFIX}="${prefix}" is not a valid subject prefix; use letters, digits, "-" and "_" in dot-separated tokens, such as "keel" or "acme.shop".`,
    );
  }
  const inboxPrefix = read(NATS_ENV.INBOX_PREFIX);
  if (inboxPrefix !== undefined && !isValidPrefix(inboxPrefix)) {
    throw configError(
      `${NATS_ENV.INBOX_PREFIX}="${inboxPrefix}" is not a reply subject prefix; use subject tokens without wildcards, such as "_INBOX.keel.storefront".`,
    );
  }
  const grace = read(NATS_ENV.RECONNECT_GRACE_MS);
  if (grace !== undefined && !(/^\d+$/.test(grace) && Number(grace) <= MAX_TIMEOUT_MS)) {
    throw configError(`${NATS_ENV.RECONNECT_GRACE_MS}="${grace}" is not a number of milliseconds; use a whole number from 0 to ${MAX_TIMEOUT_MS}, such as 1000.`);
  }
  const replicasText = read(NATS_ENV.STREAM_REPLICAS);
  const streamReplicas = replicasText === undefined ? undefined : Number(replicasText);
  if (streamReplicas !== undefined && !(/^\d+$/.test(replicasText ?? '') && streamReplicas >= 1 && streamReplicas <= MAX_STREAM_REPLICAS)) {
    throw configError(
      `${NATS_ENV.STREAM_REPLICAS}="${replicasText}" is not a number of stream replicas; use a whole number from 1 to ${MAX_STREAM_REPLICAS} (3 in a three-node cluster), at most the number of servers in the NATS cluster.`,
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
  if (creds !== undefined) checkReadable(creds, NATS_ENV.CREDS);
  const ca = read(NATS_ENV.TLS_CA);
  const cert = read(NATS_ENV.TLS_CERT);
  const key = read(NATS_ENV.TLS_KEY);
  if ((cert === undefined) !== (key === undefined)) {
    throw configError(`${NATS_ENV.TLS_CERT} and ${NATS_ENV.TLS_KEY} go together (a client certificate and its key); set both or neither.`);
  }
  if (ca !== undefined) checkReadable(ca, NATS_ENV.TLS_CA);
  if (cert !== undefined) checkReadable(cert, NATS_ENV.TLS_CERT);
  if (key !== undefined) checkReadable(key, NATS_ENV.TLS_KEY);
  const useTls = ca !== undefined || cert !== undefined || servers.some((server) => server.startsWith('tls://'));

  return {
    servers,
    ...(prefix === undefined ? {} : { prefix }),
    ...(inboxPrefix === undefined ? {} : { inboxPrefix }),
    ...(grace === undefined ? {} : { reconnectGraceMs: Number(grace) }),
    ...(streamReplicas === undefined ? {} : { streamReplicas }),
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
