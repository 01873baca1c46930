/**
 * `compose.yaml`: NATS with JetStream (when the topology needs it) and one service per
 * process group, all running the one image.
 */
import { stringify } from 'yaml';
import { needsNats, type TopologyFile } from '../topology.js';
import { DEFAULT_DEPLOY_OPTIONS, generatedHeader, groupEnvironment, healthCommand, isGateway, type ResolvedDeployOptions } from './plan.js';

/** The NATS monitoring port, which serves `/healthz`. */
const NATS_MONITOR_PORT = 8222;
const NATS_VOLUME = 'nats-data';

/**
 * The compose file as a plain object (keys in the order they are written).
 *
 * The NATS service uses the official image's `-alpine` variant: the default `nats` image is
 * built from scratch and has no program to run a health check with; the alpine one has
 * busybox `wget`, which asks the monitoring port's `/healthz`. Each group waits for NATS to be
 * healthy, runs `deploy.replicas` copies and gets a stop grace period longer than keel's
 * drain timeout (Docker's default of 10 s would kill a draining process).
 *
 * @example
 * ```ts
 * composeDocument(topology, options).services['storefront'].deploy.replicas; // 1
 * ```
 */
export function composeDocument(topology: TopologyFile, options: ResolvedDeployOptions): Record<string, unknown> {
  const nats = needsNats(topology);
  const services: Record<string, unknown> = {};
  if (nats) {
    services['nats'] = {
      image: DEFAULT_DEPLOY_OPTIONS.natsImage,
      command: ['-js', '-sd', '/data', '-m', String(NATS_MONITOR_PORT)],
      volumes: [`${NATS_VOLUME}:/data`],
      healthcheck: {
        test: ['CMD', 'wget', '-q', '--spider', `http://127.0.0.1:${NATS_MONITOR_PORT}/healthz`],
        interval: '5s',
        timeout: '3s',
        retries: 10,
        start_period: '5s',
      },
      restart: 'unless-stopped',
    };
  }
  for (const [name, group] of Object.entries(topology.processes)) {
    const pairs = groupEnvironment(topology, name, group);
    if (nats) pairs.splice(2, 0, ['KEEL_NATS_URL', DEFAULT_DEPLOY_OPTIONS.natsUrl]);
    const environment = Object.fromEntries(pairs);
    services[name] = {
      image: options.image,
      environment,
      // http: 0 (any free port, for keel up) publishes the container port on a port Docker picks.
      ...(isGateway(group) ? { ports: [group.http ? `${group.http}:${DEFAULT_DEPLOY_OPTIONS.containerPort}` : `${DEFAULT_DEPLOY_OPTIONS.containerPort}`] } : {}),
      ...(nats ? { depends_on: { nats: { condition: 'service_healthy' } } } : {}),
      deploy: { replicas: group.replicas },
      healthcheck: { test: ['CMD', ...healthCommand()], interval: '10s', timeout: '3s', retries: 3, start_period: '15s' },
      stop_grace_period: `${DEFAULT_DEPLOY_OPTIONS.stopGraceSeconds}s`,
      restart: 'unless-stopped',
    };
  }
  return { name: options.app, services, ...(nats ? { volumes: { [NATS_VOLUME]: {} } } : {}) };
}

/**
 * `compose.yaml`'s text: {@link composeDocument} as YAML under the generated-file header.
 *
 * @example
 * ```ts
 * writeFileSync('deploy/compose.yaml', composeFile(topology, options));
 * ```
 */
export function composeFile(topology: TopologyFile, options: ResolvedDeployOptions): string {
  const header = [
    `# ${generatedHeader(options)}`,
    `# Build the image first (docker build -t ${options.image} -f <out>/Dockerfile .), then: docker compose -f <out>/compose.yaml up`,
  ].join('\n');
  return `${header}\n${stringify(composeDocument(topology, options), { lineWidth: 0 })}`;
}
