/**
 * `keel deploy`'s generators: pure functions from a validated topology and
 * {@link DeployOptions} to the files handed to Docker and Kubernetes. The command writes what
 * {@link planDeployment} returns; tests call the same functions.
 */
import type { TopologyFile } from '../topology.js';
import { composeFile } from './compose.js';
import { dockerfile, dockerignore } from './dockerfile.js';
import { kubernetesFiles } from './kubernetes.js';
import { deploymentNatsUsers, natsFiles } from './nats-files.js';
import { topologyPrefix } from './nats-permissions.js';
import { assertDeployable, resolveDeployOptions, type DeployFile, type DeployOptions } from './plan.js';
export { defaultImage, isImageReference } from './image.js';
import { TRACING_SERVICES, collectorConfigFile } from './tracing.js';

export { composeDatabaseUrl, composeDocument, composeFile } from './compose.js';
export { dockerfile, dockerignore } from './dockerfile.js';
export {
  DEFAULT_RESOURCES,
  databaseSecretName,
  deploymentDocument,
  kubernetesFiles,
  natsCredentialsSecretDocument,
  natsCredentialsSecretName,
  natsSecretName,
  podDisruptionBudgetDocument,
  serviceDocument,
} from './kubernetes.js';
export { deploymentNatsUsers, natsEnvPath, natsFiles } from './nats-files.js';
export {
  natsAuthorization,
  natsEnvFile,
  natsPassword,
  natsPasswordHash,
  type NatsAuthorizationOptions,
  natsServerConfig,
  natsUserEnvironment,
  natsUsers,
  passwordsFromEnvFiles,
  type NatsUser,
} from './nats-config.js';
export {
  COMPOSE_OTLP_ENDPOINT,
  TRACING_SERVICES,
  collectorConfigDocument,
  collectorConfigFile,
  tracingComposeServices,
  tracingEnvironment,
} from './tracing.js';
export { NATS_CLIENT_USER, natsClientPermissions, natsInboxPrefix, natsPermissions, type NatsUserPermissions } from './nats-permissions.js';
export {
  DEFAULT_DEPLOY_OPTIONS,
  GENERATED_MARK,
  appNameOf,
  assertDeployable,
  groupEnvironment,
  isGateway,
  healthCommand,
  hostsAnyData,
  hostsData,
  locksNats,
  objectName,
  resolveDeployOptions,
  type DeployFile,
  type DeployOptions,
  type ResolvedDeployOptions,
} from './plan.js';

/**
 * Every file of a deployment, in a stable order: `Dockerfile`, its ignore files,
 * `compose.yaml`, with `tracing` the collector's `otel-collector.yaml`, `k8s/`, then, when the topology needs NATS and `modules` are given, `nats/`
 * (the server configuration and each group's credentials) and `.gitignore`. Checks the options
 * and the topology first (`E_USAGE`, `E_TOPOLOGY`). Output is deterministic: the same input
 * gives the same bytes (give `natsPasswords` for every user to make the secrets so too).
 *
 * @example
 * ```ts
 * for (const file of planDeployment(topology, { app: 'my-shop', image: 'my-shop:0.1.0', source: 'topologies/split.ts' })) {
 *   writeFileSync(join('deploy', file.path), file.contents);
 * }
 * ```
 */
export function planDeployment(topology: TopologyFile, options: DeployOptions): DeployFile[] {
  const resolved = resolveDeployOptions(options);
  assertDeployable(topology, resolved);
  const users = deploymentNatsUsers(topology, resolved);
  return [
    { path: 'Dockerfile', contents: dockerfile(resolved) },
    // BuildKit reads <Dockerfile>.dockerignore beside a Dockerfile given with -f, before the context's .dockerignore.
    { path: 'Dockerfile.dockerignore', contents: dockerignore(resolved) },
    { path: '.dockerignore', contents: dockerignore(resolved) },
    { path: 'compose.yaml', contents: composeFile(topology, resolved) },
    ...(resolved.tracing ? [{ path: TRACING_SERVICES.collectorConfigPath, contents: collectorConfigFile(resolved) }] : []),
    ...kubernetesFiles(topology, resolved, users),
    ...natsFiles(resolved, users, topologyPrefix(topology)),
  ];
}
