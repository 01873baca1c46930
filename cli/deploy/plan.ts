/**
 * What every deployment file shares: the options of `keel deploy`, checked once, and the facts
 * derived from a topology that the Dockerfile, compose and Kubernetes generators all use (the
 * container port, the health command, each group's environment), so that they cannot disagree.
 */
import type { AnyModule } from 'keel';
import { CLIError, CliErrorCode } from '../errors.js';
import { needsNats, type ProcessGroup, type TopologyFile } from '../topology.js';
import { isImageReference } from './image.js';
import type { StopGraceConfig } from './grace.js';

/**
 * One file `keel deploy` writes: a path relative to `--out` (with `/`) and its contents.
 *
 * @example
 * ```ts
 * const file: DeployFile = { path: 'k8s/kustomization.yaml', contents: 'resources: []\n' };
 * ```
 */
export interface DeployFile {
  readonly path: string;
  readonly contents: string;
  /** File mode, such as `0o600` for a file holding secrets (default: the process's umask). */
  readonly mode?: number;
}

/**
 * Options of {@link planDeployment}.
 *
 * @example
 * ```ts
 * const options: DeployOptions = { app: 'my-shop', image: 'my-shop:0.1.0', source: 'topologies/split.ts' };
 * ```
 */
export interface DeployOptions {
  /** Application name: the compose project, and the prefix and `part-of` label of every Kubernetes object. A DNS label. */
  readonly app: string;
  /** The one image every group runs, such as `registry.example.com/my-shop:0.1.0`. */
  readonly image: string;
  /** Major version of the official `node` image (default 24). */
  readonly nodeMajor?: number;
  /** The topology file, as the header of every generated file names it. */
  readonly source?: string;
  /** Where `keel build` writes, relative to the application folder (default `dist`, or `keel.outDir` of package.json). */
  readonly buildDir?: string;
  /**
   * The modules that own data (declare `data` in defineModule; default none): every group
   * hosting one gets `DATABASE_URL`, from compose's PostgreSQL service or a Kubernetes Secret.
   */
  readonly dataModules?: readonly string[];
  /**
   * The application's modules (the manifest): with them, a topology that needs NATS gets one NATS
   * user per process group, allowed only what its modules need (`nats/`, docs/security.md).
   * Without them (default none), no NATS credentials are written.
   */
  readonly modules?: readonly AnyModule[];
  /** NATS passwords to keep, by user (default none: each user gets a new random one). */
  readonly natsPasswords?: Readonly<Record<string, string>>;
  /**
   * Send every process's traces somewhere (`--tracing`; default false): compose gets an
   * OpenTelemetry Collector and Jaeger, and every group, in compose and in Kubernetes, the
   * OTEL_* variables of the OpenTelemetry SDK (docs/deploy.md, "Tracing").
   */
  readonly tracing?: boolean;
  /**
   * With `tracing`, the OTLP/HTTP base URL the Kubernetes Deployments send to (`--otlp-endpoint`;
   * default `http://otel-collector:4318`, a Service named `otel-collector` in their namespace).
   * compose always sends to its own collector.
   */
  readonly otlpEndpoint?: string;
  /**
   * The application's configuration (`keel.config.ts`, as `loadAppConfig` read it; default none):
   * a gateway's `maxTimeoutMs` there lengthens its group's grace period (cli/deploy/grace.ts,
   * `stopGraceSecondsOf`).
   */
  readonly config?: StopGraceConfig;
}

/**
 * Defaults of {@link DeployOptions}, and the fixed facts of the generated files.
 *
 * @example
 * ```ts
 * DEFAULT_DEPLOY_OPTIONS.containerPort; // 3000: PORT in the image, where every process serves /healthz, /readyz and /metrics
 * ```
 */
export const DEFAULT_DEPLOY_OPTIONS = {
  nodeMajor: 24,
  /** Where `keel build` writes unless package.json says otherwise. */
  buildDir: 'dist',
  /** The oldest Node line keel supports. */
  minimumNodeMajor: 20,
  /** PORT inside every container. */
  containerPort: 3000,
  natsImage: 'nats:2.10-alpine',
  /** The service name the official NATS Helm chart creates (release `nats`), and compose's NATS service. */
  natsUrl: 'nats://nats:4222',
  /** compose's PostgreSQL, for the groups hosting modules that own data (its data folder is `/var/lib/postgresql/data` up to 17). */
  postgresImage: 'postgres:17-alpine',
  /** With `tracing`: the collector the Kubernetes Deployments send to, a Service in their namespace. */
  otlpEndpoint: 'http://otel-collector:4318',
} as const;

/** {@link DeployOptions} with every default filled in. */
export type ResolvedDeployOptions = Required<DeployOptions>;

/** A relative folder path written with `/`. */
const BUILD_DIR = /^[\w.-]+(\/[\w.-]+)*$/;
/** A DNS-1035 label: Kubernetes Service names, compose project names. */
const DNS_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
/** An http(s) URL with a host, and no `/v1/traces` (the SDK appends it to OTEL_EXPORTER_OTLP_ENDPOINT). */
const OTLP_ENDPOINT = /^https?:\/\/[^/\s?#]+(\/(?!v1\/traces)[^\s?#]*)?$/;
/**
 * A container variable's name as every Kubernetes API server takes it (`C_IDENTIFIER` plus `-` and
 * `.`; servers since 1.32 also take other printable characters, older ones refuse them), and with
 * no `=`, which compose would read as the end of the name.
 */
const ENV_NAME = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
/** Variables keel sets itself in every container; a group's `env` may not set them. */
const RESERVED_ENV = [
  'KEEL_MODULES',
  'KEEL_NATS_URL',
  'KEEL_NATS_USER',
  'KEEL_NATS_PASSWORD',
  'KEEL_NATS_INBOX_PREFIX',
  'DATABASE_URL',
  'PORT',
  'KEEL_HTTP_PORT',
  'KEEL_HTTP_HOST',
] as const;

/** Where each reserved variable comes from instead, for the error that refuses it in a group's `env`. */
const RESERVED_ENV_SOURCE: Partial<Record<(typeof RESERVED_ENV)[number], string>> = {
  KEEL_NATS_URL: "The NATS URL comes from compose's NATS service, and in Kubernetes from a Secret.",
  KEEL_NATS_USER: 'Each group gets its own NATS user from nats/<group>.env (docs/security.md).',
  KEEL_NATS_PASSWORD: 'Each group gets its own NATS password from nats/<group>.env (docs/security.md).',
  KEEL_NATS_INBOX_PREFIX: 'Each group gets its own inbox prefix from nats/<group>.env (docs/security.md).',
  DATABASE_URL: "The database URL comes from compose's PostgreSQL service, and in Kubernetes from a Secret (docs/deploy.md, \"Data\").",
};



/**
 * An application name for deployment files from an npm package name: the scope dropped,
 * lower-case, anything else than letters, digits and `-` turned into `-`.
 *
 * @example
 * ```ts
 * appNameOf('@acme/My_Shop'); // 'my-shop'
 * ```
 */
export function appNameOf(packageName: string): string {
  return packageName
    .replace(/^@[^/]+\//, '')
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+|-+$/g, '');
}

/**
 * Checks {@link DeployOptions} once, up front, and fills in the defaults. Throws `E_USAGE`
 * naming the flag that is wrong (`--name`, `--image`, `--node`).
 *
 * @example
 * ```ts
 * resolveDeployOptions({ app: 'my-shop', image: 'my-shop:0.1.0' }).nodeMajor; // 24
 * ```
 */
export function resolveDeployOptions(options: DeployOptions): ResolvedDeployOptions {
  const resolved = {
    nodeMajor: DEFAULT_DEPLOY_OPTIONS.nodeMajor,
    source: 'the topology',
    buildDir: DEFAULT_DEPLOY_OPTIONS.buildDir,
    dataModules: [],
    modules: [],
    natsPasswords: {},
    config: {},
    ...options,
    // Given as undefined (an option left out on the command line) is the default, not undefined.
    tracing: options.tracing ?? false,
    otlpEndpoint: options.otlpEndpoint ?? DEFAULT_DEPLOY_OPTIONS.otlpEndpoint,
  };
  if (!BUILD_DIR.test(resolved.buildDir) || resolved.buildDir.split('/').includes('..')) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `The build folder "${resolved.buildDir}" ("keel.outDir" of package.json) must be a relative path inside the application, such as dist.`,
    );
  }
  if (!DNS_LABEL.test(resolved.app) || resolved.app.length > 40) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `--name "${resolved.app}" is not usable as a Kubernetes name: lower-case letters, digits and "-", starting with a letter, at most 40 characters.`,
      { hint: 'Pass --name my-shop.' },
    );
  }
  if (!isImageReference(resolved.image)) {
    throw new CLIError(CliErrorCode.E_USAGE, `--image "${resolved.image}" is not an image reference such as my-shop:0.1.0 or registry.example.com/team/my-shop:0.1.0.`);
  }
  const node = resolved.nodeMajor;
  if (!Number.isInteger(node) || node < DEFAULT_DEPLOY_OPTIONS.minimumNodeMajor || node % 2 !== 0) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `--node "${node}" is not a Node.js LTS major keel supports: an even number from ${DEFAULT_DEPLOY_OPTIONS.minimumNodeMajor} up, such as 24.`,
    );
  }
  if (options.otlpEndpoint !== undefined && !resolved.tracing) {
    throw new CLIError(CliErrorCode.E_USAGE, `--otlp-endpoint ${options.otlpEndpoint} is used only with --tracing.`, {
      hint: 'Add --tracing, or leave --otlp-endpoint out.',
    });
  }
  if (!OTLP_ENDPOINT.test(resolved.otlpEndpoint)) {
    throw new CLIError(
      CliErrorCode.E_USAGE,
      `--otlp-endpoint "${resolved.otlpEndpoint}" is not the base URL of an OTLP/HTTP receiver, such as http://otel-collector.observability:4318 (without /v1/traces: the exporter adds it).`,
    );
  }
  return resolved;
}

/**
 * Checks what the generators need of a topology beyond its schema: names short enough for
 * Kubernetes objects, no group named like a service compose adds (`nats`, `postgres`), no group
 * `env` variable whose name a Kubernetes Deployment refuses, and none that keel sets itself. Throws `E_TOPOLOGY` naming the field.
 *
 * @example
 * ```ts
 * assertDeployable(topology, resolveDeployOptions({ app: 'my-shop', image: 'my-shop:0.1.0' }));
 * ```
 */
export function assertDeployable(topology: TopologyFile, options: ResolvedDeployOptions): void {
  const services = [
    ...(needsNats(topology) ? ['nats'] : []),
    ...(hostsAnyData(topology, options) ? ['postgres'] : []),
    // compose's tracing services (cli/deploy/tracing.ts).
    ...(options.tracing ? ['otel-collector', 'jaeger'] : []),
  ];
  for (const [name, group] of Object.entries(topology.processes)) {
    if (services.includes(name)) {
      throw new CLIError(CliErrorCode.E_TOPOLOGY, `${options.source}: processes.${name}: compose.yaml runs a "${name}" service of its own; rename the process.`);
    }
    if (objectName(options, name).length > 63) {
      throw new CLIError(
        CliErrorCode.E_TOPOLOGY,
        `${options.source}: processes.${name}: "${objectName(options, name)}" is longer than the 63 characters of a Kubernetes name; shorten the process name or --name.`,
      );
    }
    for (const key of Object.keys(group.env)) {
      if (!ENV_NAME.test(key)) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `${options.source}: processes.${name}.env.${JSON.stringify(key)} is not a variable name a Kubernetes Deployment takes; ` +
            'use letters, digits, "_", "-" and ".", not starting with a digit.',
        );
      }
      if ((RESERVED_ENV as readonly string[]).includes(key)) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `${options.source}: processes.${name}.env.${key} is set by keel deploy itself (${RESERVED_ENV.join(', ')}); remove it from the topology.`,
          { hint: RESERVED_ENV_SOURCE[key as (typeof RESERVED_ENV)[number]] },
        );
      }
    }
  }
}

/**
 * The name of a group's Kubernetes objects: `<app>-<group>`.
 *
 * @example
 * ```ts
 * objectName({ app: 'my-shop' }, 'storefront'); // 'my-shop-storefront'
 * ```
 */
export function objectName(options: Pick<DeployOptions, 'app'>, group: string): string {
  return `${options.app}-${group}`;
}

/**
 * True when a group hosts a module that owns data: it gets `DATABASE_URL`.
 *
 * @example
 * ```ts
 * hostsData({ modules: ['orders'], replicas: 1, env: {} }, { dataModules: ['orders'] }); // true
 * ```
 */
export function hostsData(group: ProcessGroup, options: Pick<ResolvedDeployOptions, 'dataModules'>): boolean {
  return group.modules.some((module) => options.dataModules.includes(module));
}

/**
 * True when any group of the topology hosts a module that owns data: compose runs PostgreSQL.
 *
 * @example
 * ```ts
 * hostsAnyData(topology, options); // false for an application whose modules own no data
 * ```
 */
export function hostsAnyData(topology: TopologyFile, options: Pick<ResolvedDeployOptions, 'dataModules'>): boolean {
  return Object.values(topology.processes).some((group) => hostsData(group, options));
}

/**
 * True when a group serves the application's operations over HTTP (its topology entry sets
 * `http`): the gateway, published by compose and given a Kubernetes Service.
 *
 * @example
 * ```ts
 * isGateway({ modules: ['catalog'], replicas: 1, env: {}, http: 8080 }); // true
 * ```
 */
export function isGateway(group: ProcessGroup): boolean {
  return group.http !== undefined;
}

/**
 * A group's environment, in a stable order, except the NATS URL (compose writes it inline,
 * Kubernetes takes it from a Secret): the modules it hosts, its name, the NATS subject prefix
 * when the topology sets one, the operations its HTTP port exposes, then `extra` (the OTEL_*
 * variables of `--tracing`), then the group's own `env`, which may override the others (the
 * topology refuses `KEEL_NATS_PREFIX` and `KEEL_PROCESS_NAME` in it, and keel deploy the
 * variables it sets itself).
 *
 * @example
 * ```ts
 * groupEnvironment(topology, 'storefront', topology.processes['storefront']!);
 * // [['KEEL_MODULES', 'catalog,orders'], ['KEEL_PROCESS_NAME', 'storefront'], ['KEEL_HTTP_OPERATIONS', 'all']]
 * ```
 */
export function groupEnvironment(topology: TopologyFile, name: string, group: ProcessGroup, extra: readonly [string, string][] = []): [string, string][] {
  const environment: [string, string][] = [
    ['KEEL_MODULES', group.modules.join(',')],
    ['KEEL_PROCESS_NAME', name],
  ];
  if (topology.nats.prefix !== undefined) environment.push(['KEEL_NATS_PREFIX', topology.nats.prefix]);
  // Every process keeps PORT for /healthz, /readyz and /metrics; only the gateway exposes operations.
  environment.push(['KEEL_HTTP_OPERATIONS', isGateway(group) ? 'all' : 'none'], ...extra);
  for (const [key, value] of Object.entries(group.env)) {
    const index = environment.findIndex(([existing]) => existing === key);
    if (index >= 0) environment[index] = [key, value];
    else environment.push([key, value]);
  }
  return environment;
}

/**
 * True when the deployment locks NATS down: the topology needs NATS and the modules are known,
 * so each group gets its own NATS user (`nats/`).
 *
 * @example
 * ```ts
 * locksNats(topology, resolveDeployOptions({ app: 'my-shop', image: 'my-shop:0.1.0', modules }));
 * ```
 */
export function locksNats(topology: TopologyFile, options: Pick<ResolvedDeployOptions, 'modules'>): boolean {
  return needsNats(topology) && options.modules.length > 0;
}

/**
 * The health check command every container runs: node's own `fetch` of `/healthz` on PORT
 * (the slim image has neither curl nor wget), exiting 0 when it answers 2xx.
 *
 * @example
 * ```ts
 * ['CMD', ...healthCommand()]; // a compose healthcheck test
 * ```
 */
export function healthCommand(): string[] {
  return [
    'node',
    '-e',
    `fetch('http://127.0.0.1:'+(process.env.PORT||${DEFAULT_DEPLOY_OPTIONS.containerPort})+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))`,
  ];
}

/**
 * The comment heading every generated file.
 *
 * @example
 * ```ts
 * generatedHeader({ source: 'topologies/split.ts' }); // 'Generated by keel deploy from topologies/split.ts. ...'
 * ```
 */
export function generatedHeader(options: Pick<ResolvedDeployOptions, 'source'>): string {
  return `${GENERATED_MARK} from ${options.source}. Change the topology and run keel deploy again rather than editing this file.`;
}

/**
 * How every generated file begins (after `# `), so that `keel deploy --force` knows which
 * files it wrote before.
 *
 * @example
 * ```ts
 * readFileSync(path, 'utf8').startsWith(`# ${GENERATED_MARK}`);
 * ```
 */
export const GENERATED_MARK = 'Generated by keel deploy';
