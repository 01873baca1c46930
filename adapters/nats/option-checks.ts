/**
 * The checks of the NATS transport's options: a strict zod schema run once (through keel's
 * `parseOptions`), the defaults merged in one place, and the checks zod cannot make (server
 * URLs, credentials given twice, unreadable files), each refusal an `INVALID_CONFIG` naming the
 * field. The environment-variable reader (`options-from-env.ts`) shares its URL and file checks.
 */
import { accessSync, constants } from 'node:fs';
import { KeelError, KeelErrorCode } from 'keel';
import { MAX_TIMEOUT_MS, loggerOption, parseOptions } from 'keel/transport';
import { z } from 'zod';
import { DEFAULT_NATS_TRANSPORT_OPTIONS, type NatsTransportOptions, type ResolvedNatsOptions } from './options.js';
import { isValidPrefix } from './wire.js';

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
    maxAckPending: count('events'),
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
    publishAttempts: count('attempts'),
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

/** The nats client's reply inbox prefix when `inboxPrefix` is not given. */
const NATS_INBOX_PREFIX = '_INBOX';

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
  // Unset, the nats client's own: `_INBOX`, inside a prefix "_INBOX".
  const inboxPrefix = resolved.inboxPrefix ?? NATS_INBOX_PREFIX;
  if (inboxPrefix === resolved.prefix || inboxPrefix.startsWith(`${resolved.prefix}.`)) {
    // Subjects.isNoInbox: no answer is ever sent into keel's own subject space.
    if (resolved.inboxPrefix === undefined) {
      throw configError(
        `${FACTORY}: prefix "${resolved.prefix}" holds the nats client's default reply inboxes ("${NATS_INBOX_PREFIX}.…"), where keel sends no reply; give another prefix, or an inboxPrefix outside it, such as "${NATS_INBOX_PREFIX}_${resolved.prefix.replaceAll('.', '_')}".`,
      );
    }
    throw configError(
      `${FACTORY}: inboxPrefix "${inboxPrefix}" is inside keel's subject space (prefix "${resolved.prefix}"), where no reply is ever sent; use one outside it, such as "_INBOX.${resolved.prefix}".`,
    );
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
