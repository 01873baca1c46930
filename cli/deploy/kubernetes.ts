/**
 * `k8s/`: per process group a Deployment, a Service when the group is the HTTP gateway, a
 * PodDisruptionBudget when it runs two or more replicas, and a `kustomization.yaml` listing
 * them. NATS and PostgreSQL are not among them: NATS runs from the official NATS Helm chart,
 * PostgreSQL wherever the operator runs it, and their URLs (with credentials) come from
 * Secrets the operator creates.
 */
import { stringify } from 'yaml';
import { needsNats, type ProcessGroup, type TopologyFile } from '../topology.js';
import { natsUserEnvironment, type NatsUser } from './nats-config.js';
import { tracingEnvironment } from './tracing.js';
import {
  DEFAULT_DEPLOY_OPTIONS,
  generatedHeader,
  groupEnvironment,
  hostsAnyData,
  hostsData,
  isGateway,
  objectName,
  type DeployFile,
  type ResolvedDeployOptions,
} from './plan.js';
import { STOP_GRACE, stopGraceSecondsOf } from './grace.js';

/** The uid of the `node` user of the official node images. */
const NODE_USER_ID = 1000;

/**
 * Resources of every keel container. Requests are what one idle process needs (the scheduler
 * places pods by them); the memory limit leaves room over that for bursts and a heap that V8
 * sizes from it. No CPU limit: CPU is throttled, not killed, and a limit would only add latency.
 *
 * @example
 * ```ts
 * DEFAULT_RESOURCES.limits.memory; // '256Mi'
 * ```
 */
export const DEFAULT_RESOURCES = {
  requests: { cpu: '50m', memory: '96Mi' },
  limits: { memory: '256Mi' },
} as const;

/**
 * The Secret holding `KEEL_NATS_URL` for every Deployment: `<app>-nats`. Its other keys (TLS
 * paths, ...) reach the containers as variables too; the NATS user of each group comes from its
 * own Secret (`<app>-<group>-nats`), so this one holds no credentials.
 *
 * @example
 * ```ts
 * natsSecretName({ app: 'my-shop' }); // 'my-shop-nats'
 * ```
 */
export function natsSecretName(options: Pick<ResolvedDeployOptions, 'app'>): string {
  return `${options.app}-nats`;
}

/**
 * The Secret holding `DATABASE_URL` for the Deployments of groups hosting a module that owns
 * data: `<app>-database`. Its other keys reach those containers as variables too, such as a
 * module's own database, `DATABASE_URL_ORDERS`.
 *
 * @example
 * ```ts
 * databaseSecretName({ app: 'my-shop' }); // 'my-shop-database'
 * ```
 */
export function databaseSecretName(options: Pick<ResolvedDeployOptions, 'app'>): string {
  return `${options.app}-database`;
}

/**
 * The Secret holding one group's NATS user, password and inbox prefix (the same as
 * `nats/<group>.env`): `<app>-<group>-nats`, written by `keel deploy` as
 * `k8s/nats-credentials/<group>.yaml`.
 *
 * @example
 * ```ts
 * natsCredentialsSecretName({ app: 'my-shop' }, 'storefront'); // 'my-shop-storefront-nats'
 * ```
 */
export function natsCredentialsSecretName(options: Pick<ResolvedDeployOptions, 'app'>, group: string): string {
  return `${objectName(options, group)}-nats`;
}

/**
 * The Secret of one group's NATS credentials.
 *
 * @example
 * ```ts
 * natsCredentialsSecretDocument('storefront', user, options).stringData.KEEL_NATS_USER; // 'storefront'
 * ```
 */
export function natsCredentialsSecretDocument(name: string, user: NatsUser, options: ResolvedDeployOptions) {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: natsCredentialsSecretName(options, name), labels: labelsOf(options, name) },
    type: 'Opaque',
    stringData: natsUserEnvironment(user),
  };
}

function labelsOf(options: ResolvedDeployOptions, name: string) {
  return {
    'app.kubernetes.io/name': options.app,
    'app.kubernetes.io/component': name,
    'app.kubernetes.io/part-of': options.app,
    'app.kubernetes.io/managed-by': 'keel',
  };
}

function selectorOf(options: ResolvedDeployOptions, name: string) {
  return { 'app.kubernetes.io/name': options.app, 'app.kubernetes.io/component': name };
}

const probe = (path: string, timing: { periodSeconds: number; failureThreshold: number }) => ({
  httpGet: { path, port: 'http' },
  periodSeconds: timing.periodSeconds,
  timeoutSeconds: 3,
  failureThreshold: timing.failureThreshold,
});

/**
 * One group's Deployment: its replicas and `KEEL_MODULES`, probes on `/healthz` (startup,
 * liveness) and `/readyz` (readiness), a grace period longer than keel's drain, resources, a
 * non-root read-only container with an `emptyDir` at `/tmp`, the NATS URL from its Secret and,
 * for a group hosting a module that owns data, the database URL from its own.
 *
 * @example
 * ```ts
 * deploymentDocument(topology, 'storefront', topology.processes['storefront']!, options).spec.replicas; // 1
 * ```
 */
export function deploymentDocument(topology: TopologyFile, name: string, group: ProcessGroup, options: ResolvedDeployOptions, locked = false) {
  const tracing = options.tracing ? tracingEnvironment(name, options.otlpEndpoint) : [];
  const env: Record<string, unknown>[] = groupEnvironment(topology, name, group, tracing).map(([key, value]) => ({ name: key, value }));
  const fromSecret = (key: string, secret: string) => ({ name: key, valueFrom: { secretKeyRef: { name: secret, key } } });
  const secrets = [
    ...(needsNats(topology) ? [natsSecretName(options)] : []),
    ...(locked ? [natsCredentialsSecretName(options, name)] : []),
    ...(hostsData(group, options) ? [databaseSecretName(options)] : []),
  ];
  env.splice(
    2,
    0,
    ...(needsNats(topology) ? [fromSecret('KEEL_NATS_URL', natsSecretName(options))] : []),
    ...(hostsData(group, options) ? [fromSecret('DATABASE_URL', databaseSecretName(options))] : []),
  );
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: objectName(options, name), labels: labelsOf(options, name) },
    spec: {
      replicas: group.replicas,
      selector: { matchLabels: selectorOf(options, name) },
      // A new pod is ready before an old one stops: no capacity lost during a rollout.
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } },
      template: {
        metadata: { labels: labelsOf(options, name) },
        spec: {
          // A gateway's pause before SIGTERM counts against the grace period too.
          terminationGracePeriodSeconds: stopGraceSecondsOf(group, options.modules, options.config) + (isGateway(group) ? STOP_GRACE.preStopSeconds : 0),
          automountServiceAccountToken: false,
          // No <SERVICE>_PORT=tcp://… variables for the namespace's Services: keel finds NATS and
          // the database by the URLs it is given, and a Service named keel-http would set KEEL_HTTP_PORT.
          enableServiceLinks: false,
          securityContext: { runAsNonRoot: true, runAsUser: NODE_USER_ID, runAsGroup: NODE_USER_ID, seccompProfile: { type: 'RuntimeDefault' } },
          containers: [
            {
              name,
              image: options.image,
              ports: [{ name: 'http', containerPort: DEFAULT_DEPLOY_OPTIONS.containerPort, protocol: 'TCP' }],
              env,
              // Every other key of the Secrets too: the group's KEEL_NATS_USER, KEEL_NATS_PASSWORD and inbox prefix, TLS paths; DATABASE_URL_<MODULE>.
              ...(secrets.length > 0 ? { envFrom: secrets.map((secret) => ({ secretRef: { name: secret } })) } : {}),
              startupProbe: probe('/healthz', { periodSeconds: 2, failureThreshold: 30 }),
              readinessProbe: probe('/readyz', { periodSeconds: 5, failureThreshold: 2 }),
              livenessProbe: probe('/healthz', { periodSeconds: 10, failureThreshold: 3 }),
              // The gateway keeps serving while its Service's endpoints drop it, before SIGTERM reaches keel
              // (an exec of the image's sleep: the lifecycle sleep action needs Kubernetes 1.30 or later).
              ...(isGateway(group) ? { lifecycle: { preStop: { exec: { command: ['sleep', String(STOP_GRACE.preStopSeconds)] } } } } : {}),
              resources: {
                requests: { ...DEFAULT_RESOURCES.requests },
                limits: { ...DEFAULT_RESOURCES.limits },
              },
              securityContext: {
                runAsNonRoot: true,
                runAsUser: NODE_USER_ID,
                readOnlyRootFilesystem: true,
                allowPrivilegeEscalation: false,
                capabilities: { drop: ['ALL'] },
              },
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: {} }],
        },
      },
    },
  };
}

/**
 * The gateway's Service: the topology's `http` port, sent to the container's PORT.
 *
 * @example
 * ```ts
 * serviceDocument('gateway', { modules: ['catalog'], replicas: 1, env: {}, http: 8080 }, options).spec.ports[0].port; // 8080
 * ```
 */
export function serviceDocument(name: string, group: ProcessGroup, options: ResolvedDeployOptions) {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: objectName(options, name), labels: labelsOf(options, name) },
    spec: {
      type: 'ClusterIP',
      selector: selectorOf(options, name),
      ports: [{ name: 'http', port: group.http || DEFAULT_DEPLOY_OPTIONS.containerPort, targetPort: 'http', protocol: 'TCP' }],
    },
  };
}

/**
 * A PodDisruptionBudget for a group of two or more replicas: a node drain takes one pod at a
 * time, so the group always keeps a responder.
 *
 * @example
 * ```ts
 * podDisruptionBudgetDocument('inventory', options).spec.maxUnavailable; // 1
 * ```
 */
export function podDisruptionBudgetDocument(name: string, options: ResolvedDeployOptions) {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: { name: objectName(options, name), labels: labelsOf(options, name) },
    spec: { maxUnavailable: 1, selector: { matchLabels: selectorOf(options, name) } },
  };
}

/** The folder under `k8s/` of the groups' NATS credentials Secrets, with their own kustomization. */
export const NATS_CREDENTIALS_FOLDER = 'nats-credentials';

/**
 * Every file under `k8s/`, in a stable order: per group its NATS credentials Secret (under
 * `nats-credentials/`), Deployment, Service and PodDisruptionBudget (as they apply), then
 * `kustomization.yaml` listing all but the credentials, and `nats-credentials/kustomization.yaml`
 * listing those.
 *
 * @example
 * ```ts
 * kubernetesFiles(topology, options).map((file) => file.path);
 * // ['k8s/storefront-deployment.yaml', ..., 'k8s/kustomization.yaml']
 * ```
 */
export function kubernetesFiles(topology: TopologyFile, options: ResolvedDeployOptions, users: readonly NatsUser[] = []): DeployFile[] {
  const header = `# ${generatedHeader(options)}\n`;
  const files: DeployFile[] = [];
  const add = (file: string, document: unknown, mode?: number) => {
    files.push({ path: `k8s/${file}`, contents: header + stringify(document, { lineWidth: 0 }), ...(mode === undefined ? {} : { mode }) });
  };
  for (const [name, group] of Object.entries(topology.processes)) {
    const user = users.find((candidate) => candidate.user === name);
    if (user !== undefined) add(`${NATS_CREDENTIALS_FOLDER}/${name}.yaml`, natsCredentialsSecretDocument(name, user, options), 0o600);
    add(`${name}-deployment.yaml`, deploymentDocument(topology, name, group, options, user !== undefined));
    if (isGateway(group)) add(`${name}-service.yaml`, serviceDocument(name, group, options));
    if (group.replicas >= 2) add(`${name}-pdb.yaml`, podDisruptionBudgetDocument(name, options));
  }
  // The credentials have a kustomization of their own: they are not committed (the generated
  // .gitignore), and a kustomization listing a missing file does not build, in a checkout.
  const credentials = files.filter((file) => file.path.startsWith(`k8s/${NATS_CREDENTIALS_FOLDER}/`));
  const resources = files.filter((file) => !credentials.includes(file)).map((file) => file.path.slice('k8s/'.length));
  const secretNote = [
    ...(needsNats(topology)
      ? [`# Before applying: kubectl create secret generic ${natsSecretName(options)} --from-literal=KEEL_NATS_URL=${DEFAULT_DEPLOY_OPTIONS.natsUrl}\n`]
      : []),
    ...(hostsAnyData(topology, options)
      ? [`# Before applying: kubectl create secret generic ${databaseSecretName(options)} --from-literal=DATABASE_URL=postgres://<user>:<password>@<host>:5432/${options.app}\n`]
      : []),
  ].join('');
  const credentialsNote =
    credentials.length > 0
      ? `# Before applying: kubectl apply -k ${NATS_CREDENTIALS_FOLDER} (each group's NATS user, generated and not committed; or the same Secrets from your own store)\n`
      : '';
  files.push({
    path: 'k8s/kustomization.yaml',
    contents:
      header + secretNote + credentialsNote + stringify({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources }, { lineWidth: 0 }),
  });
  if (credentials.length > 0) {
    files.push({
      path: `k8s/${NATS_CREDENTIALS_FOLDER}/kustomization.yaml`,
      contents:
        header +
        stringify(
          { apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization', resources: credentials.map((file) => file.path.slice(`k8s/${NATS_CREDENTIALS_FOLDER}/`.length)) },
          { lineWidth: 0 },
        ),
    });
  }
  return files;
}
