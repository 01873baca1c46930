/**
 * `nats/`: the NATS server configuration with one user per process group, and each group's
 * credentials, for a deployment that locks NATS down ({@link locksNats}); and the `.gitignore`
 * that keeps those secrets out of version control.
 */
import { NATS_ENV } from 'keel/nats';
import type { TopologyFile } from '../topology.js';
import { natsEnvFile, natsServerConfig, natsUsers, type NatsUser } from './nats-config.js';
import { NATS_CLIENT_USER } from './nats-permissions.js';
import { DEFAULT_DEPLOY_OPTIONS, generatedHeader, locksNats, type DeployFile, type ResolvedDeployOptions } from './plan.js';

/** Where the NATS container reads the generated configuration. */
export const NATS_CONFIG_PATH = '/etc/nats/nats-server.conf';
/** The NATS monitoring port, which serves `/healthz`. */
export const NATS_MONITOR_PORT = 8222;
/** Mode of every file holding a secret. */
const SECRET_MODE = 0o600;

/**
 * The NATS users of a deployment, with the passwords given in `natsPasswords` or new ones;
 * none when it does not lock NATS down.
 *
 * @example
 * ```ts
 * deploymentNatsUsers(topology, options).map((user) => user.user); // ['storefront', 'back-office', 'notifications', '_client']
 * ```
 */
export function deploymentNatsUsers(topology: TopologyFile, options: ResolvedDeployOptions): NatsUser[] {
  return locksNats(topology, options) ? natsUsers(topology, options.modules, options.natsPasswords) : [];
}

/**
 * The path of a user's credentials: `nats/<user>.env`.
 *
 * @example
 * ```ts
 * natsEnvPath('storefront'); // 'nats/storefront.env'
 * ```
 */
export function natsEnvPath(user: string): string {
  return `nats/${user}.env`;
}

/**
 * `nats/nats-server.conf`, `nats/<user>.env` for every user (mode 0600), and `.gitignore`
 * naming them and the Kubernetes Secrets of the same credentials. The client user's file also
 * holds the subject `prefix` the processes serve under, so that a script sourcing it calls
 * under it whatever its shell says.
 *
 * @example
 * ```ts
 * natsFiles(options, deploymentNatsUsers(topology, options), topologyPrefix(topology)).map((file) => file.path);
 * // ['nats/nats-server.conf', 'nats/storefront.env', ..., '.gitignore']
 * ```
 */
export function natsFiles(options: ResolvedDeployOptions, users: readonly NatsUser[], prefix: string): DeployFile[] {
  if (users.length === 0) return [];
  const header = generatedHeader(options);
  const config = natsServerConfig(users, {
    header: `${header}\nThe NATS server of compose.yaml reads it; give its authorization block to any other NATS server.`,
    listen: `0.0.0.0:${new URL(DEFAULT_DEPLOY_OPTIONS.natsUrl).port}`,
    storeDir: '/data',
    monitorPort: NATS_MONITOR_PORT,
  });
  return [
    { path: 'nats/nats-server.conf', contents: config, mode: SECRET_MODE },
    ...users.map((user) => ({
      path: natsEnvPath(user.user),
      contents: natsEnvFile(user, header, user.user === NATS_CLIENT_USER ? { [NATS_ENV.PREFIX]: prefix } : {}),
      mode: SECRET_MODE,
    })),
    {
      path: '.gitignore',
      contents: `# ${header}\n# Generated NATS passwords: never commit them. Rotate: delete nats/, run keel deploy --force, restart.\nnats/\nk8s/nats-credentials/\n`,
    },
  ];
}
