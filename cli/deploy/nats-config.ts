/**
 * The NATS server configuration and the per-group credentials that `keel deploy` and `keel up`
 * write from {@link natsPermissions}: one plain user per process group (and the
 * {@link NATS_CLIENT_USER}) in the server's one account, each with a generated password and only
 * its permissions; no anonymous access. The configuration `keel deploy` writes holds bcrypt
 * hashes of the passwords, not the passwords: only each process's own credentials do.
 */
import { Buffer } from 'node:buffer';
import { createHmac, randomBytes } from 'node:crypto';
import { encodeBase64, hashSync } from 'bcryptjs';
import type { AnyModule } from 'keel';
import { NATS_ENV } from 'keel/nats';
import { CLIError, CliErrorCode } from '../errors.js';
import type { TopologyFile } from '../topology.js';
import { NATS_CLIENT_USER, natsClientPermissions, natsPermissions, type NatsUserPermissions } from './nats-permissions.js';

/**
 * One NATS user with its password: what the server configuration lists and what its process
 * gets as `KEEL_NATS_*` variables.
 *
 * @example
 * ```ts
 * const [storefront] = natsUsers(topology, modules);
 * storefront.password; // 32 random characters
 * ```
 */
export interface NatsUser extends NatsUserPermissions {
  readonly password: string;
}

/**
 * A new random password: 24 bytes from the system's CSPRNG, base64url.
 *
 * @example
 * ```ts
 * natsPassword().length; // 32
 * ```
 */
export function natsPassword(): string {
  return randomBytes(24).toString('base64url');
}

/** bcrypt's cost for the hashes nats-server checks: `nats server passwd`'s (about 0.1-0.2 s a hash). */
const BCRYPT_COST = 11;

/**
 * The bcrypt hash of `password` that nats-server checks a connecting `user`'s password against
 * (a `password` starting with `$2` in its configuration). Its salt comes from the user and the
 * password, so the same password gives the same configuration, byte for byte; the passwords
 * are 24 random bytes, which a salt of its own would add nothing to. Refuses a password longer
 * than bcrypt reads (72 bytes), which a hash would check only in part.
 *
 * @example
 * ```ts
 * natsPasswordHash('storefront', storefront.password); // '$2b$11$...'
 * ```
 */
export function natsPasswordHash(user: string, password: string): string {
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes > 72) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `The NATS password of user "${user}" is ${bytes} bytes, and nats-server's bcrypt reads 72 at most. ` +
        'Give it a shorter one (keel deploy makes 32 characters: delete its line from the env file and deploy again).',
    );
  }
  const salt = createHmac('sha256', password).update(`keel nats-server salt for ${user}`).digest().subarray(0, 16);
  return hashSync(password, `$2b$${BCRYPT_COST}$${encodeBase64([...salt], 16)}`);
}

/** Options of {@link natsAuthorization}. */
export interface NatsAuthorizationOptions {
  /**
   * Writes each password's bcrypt hash ({@link natsPasswordHash}) rather than the password, so
   * that the file does not give access by itself (default false: a server `keel up` starts
   * for as long as it runs, whose file is removed when it stops).
   */
  readonly hashPasswords?: boolean | undefined;
}

/**
 * Every process group's user and the client user, each with a password: the one in `passwords`
 * (kept from an earlier run) or a new random one.
 *
 * @example
 * ```ts
 * const users = natsUsers(topology, modules, { storefront: previous });
 * ```
 */
export function natsUsers(
  topology: TopologyFile,
  modules: readonly AnyModule[],
  passwords: Readonly<Record<string, string>> = {},
): NatsUser[] {
  return [...natsPermissions(topology, modules), natsClientPermissions(topology, modules)].map((user) => ({
    ...user,
    password: passwords[user.user] ?? natsPassword(),
  }));
}

/** Where a nats-server configured by {@link natsServerConfig} listens and stores. */
export interface NatsServerConfigOptions {
  /** A comment put first (without `# `), such as the generated-file header. */
  readonly header?: string;
  /** `host:port` clients connect to, such as `0.0.0.0:4222`. */
  readonly listen: string;
  /** JetStream's store folder. */
  readonly storeDir: string;
  /** The monitoring port (`/healthz`), if any. */
  readonly monitorPort?: number;
}

const quote = (value: string): string => JSON.stringify(value);
const list = (subjects: readonly string[], indent: string): string =>
  subjects.length === 0 ? '[]' : `[\n${subjects.map((subject) => `${indent}  ${quote(subject)}`).join(',\n')}\n${indent}]`;

/**
 * The `authorization` block of a nats-server configuration: one user per entry of `users`,
 * each allowed only its permissions and the replies to the requests it receives. A server with
 * users refuses anonymous connections. With `hashPasswords`, it holds bcrypt hashes.
 *
 * @example
 * ```ts
 * const block = natsAuthorization(natsUsers(topology, modules));
 * ```
 */
export function natsAuthorization(users: readonly NatsUser[], options: NatsAuthorizationOptions = {}): string {
  const entries = users.map((user) =>
    [
      '    {',
      `      user: ${quote(user.user)}`,
      `      password: ${quote(options.hashPasswords === true ? natsPasswordHash(user.user, user.password) : user.password)}`,
      '      permissions: {',
      `        publish: { allow: ${list(user.publish, '        ')} }`,
      `        subscribe: { allow: ${list(user.subscribe, '        ')} }`,
      // One reply per hosted module: each of its services answers a `$SRV` question to all on this one connection.
      `        allow_responses: { max: ${user.responses} }`,
      '      }',
      '    }',
    ].join('\n'),
  );
  return ['authorization {', '  users: [', ...entries, '  ]', '}'].join('\n');
}

/**
 * A whole nats-server configuration: where it listens, JetStream on, and
 * {@link natsAuthorization} of `users`, with bcrypt hashes of their passwords.
 *
 * @example
 * ```ts
 * writeFileSync('nats-server.conf', natsServerConfig(natsUsers(topology, modules), { listen: '0.0.0.0:4222', storeDir: '/data', monitorPort: 8222 }));
 * ```
 */
export function natsServerConfig(users: readonly NatsUser[], options: NatsServerConfigOptions): string {
  const lines = [
    ...(options.header === undefined ? [] : options.header.split('\n').map((line) => `# ${line}`)),
    '# One user per process group, allowed what its modules need (docs/security.md). Holds bcrypt hashes of their passwords,',
    "# not the passwords (each process's own env file or Secret has its own): keep it private all the same.",
    `listen: ${quote(options.listen)}`,
    ...(options.monitorPort === undefined ? [] : [`http_port: ${options.monitorPort}`]),
    `jetstream { store_dir: ${quote(options.storeDir)} }`,
    natsAuthorization(users, { hashPasswords: true }),
  ];
  return `${lines.join('\n')}\n`;
}

/**
 * The `KEEL_NATS_*` variables of one user: user, password and inbox prefix.
 *
 * @example
 * ```ts
 * natsUserEnvironment(user); // { KEEL_NATS_USER: 'storefront', KEEL_NATS_PASSWORD: '…', KEEL_NATS_INBOX_PREFIX: '_INBOX_keel.storefront' }
 * ```
 */
export function natsUserEnvironment(user: NatsUser): Record<string, string> {
  return { [NATS_ENV.USER]: user.user, [NATS_ENV.PASSWORD]: user.password, [NATS_ENV.INBOX_PREFIX]: user.inboxPrefix };
}

/**
 * One user's `.env` file: a comment, then `KEY=value` lines, as compose's `env_file` and
 * `kubectl create secret --from-env-file` read them: the user's variables, then `extra` (such as
 * the server's `KEEL_NATS_URL`, where the file is all a script needs).
 *
 * @example
 * ```ts
 * writeFileSync('nats/storefront.env', natsEnvFile(user, 'Generated by keel deploy'), { mode: 0o600 });
 * ```
 */
export function natsEnvFile(user: NatsUser, header: string, extra: Readonly<Record<string, string>> = {}): string {
  const who = user.user === NATS_CLIENT_USER ? 'a client of every operation (keel status, scripts)' : `process group ${user.user}`;
  const lines = Object.entries({ ...natsUserEnvironment(user), ...extra }).map(([key, value]) => `${key}=${value}`);
  return `# ${header}\n# NATS credentials of ${who}. Secret: never commit it.\n${lines.join('\n')}\n`;
}

/**
 * Reads the passwords out of `.env` files {@link natsEnvFile} wrote, by user, so that running
 * `keel deploy` again keeps them.
 *
 * @example
 * ```ts
 * passwordsFromEnvFiles([readFileSync('deploy/nats/storefront.env', 'utf8')]); // { storefront: '…' }
 * ```
 */
export function passwordsFromEnvFiles(texts: readonly string[]): Record<string, string> {
  const passwords: Record<string, string> = {};
  for (const text of texts) {
    const values = Object.fromEntries(
      text
        .split('\n')
        .filter((line) => /^[A-Z_]+=/.test(line))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    const user = values[NATS_ENV.USER];
    const password = values[NATS_ENV.PASSWORD];
    if (user !== undefined && password !== undefined && password !== '') passwords[user] = password;
  }
  return passwords;
}
