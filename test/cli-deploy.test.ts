import { compareSync } from 'bcryptjs';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, matchesGlob, relative } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { parse } from 'yaml';
import { z } from 'zod';
import { defineContract, defineModule, operation } from 'keel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultImage, isImageReference, planDeployment, type DeployFile } from '../cli/deploy/index.js';
import { projectSettings } from '../cli/project.js';
import { parseTopology } from '../cli/topology.js';
import { DEFAULT_NATS_TRANSPORT_OPTIONS } from 'keel/nats';
import { DEFAULT_KERNEL_OPTIONS, DEFAULT_TIMEOUT_MS, kernelStopBoundMs } from 'keel/transport';
import { KEEL_REPOSITORY_DEPLOY_WARNING, copyWhoamiApp, runKeel } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
/** The shop's modules, every one of which owns data: each group of every topology hosts some, so each gets PostgreSQL. */
const shopModules = ['catalog', 'inventory', 'payments', 'orders', 'notifications'];
const temporary: string[] = [];

function temporaryFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'keel-deploy-'));
  temporary.push(folder);
  return folder;
}

afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

/** A topology the shop files do not cover: replicas, an HTTP gateway with two, a group's env and a subject prefix. */
const replicated = {
  name: 'shop, replicated',
  nats: { prefix: 'shop' },
  processes: {
    gateway: { modules: ['catalog'], replicas: 2, http: 8080, env: { KEEL_LOG_LEVEL: 'info' } },
    orders: { modules: ['orders', 'payments'], replicas: 3, env: { ORDERS_FEATURE: 'on', KEEL_HTTP_OPERATIONS: 'hosted' } },
    warehouse: { modules: ['inventory', 'notifications'], replicas: 2 },
  },
};
let replicatedPath = '';

/** Files `keel deploy` wrote under `out`, as a map from relative path to text. */
function readTree(out: string, prefix = ''): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(join(out, prefix), { withFileTypes: true })) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory()) for (const [nested, text] of readTree(out, `${path}/`)) files.set(nested, text);
    else files.set(path, readFileSync(join(out, path), 'utf8'));
  }
  return files;
}

interface Deployed {
  readonly stdout: string;
  readonly out: string;
  readonly files: Map<string, string>;
}

async function deploy(topology: string, extra: readonly string[] = []): Promise<Deployed> {
  const out = join(temporaryFolder(), 'deploy');
  const run = await runKeel(['deploy', topology, '--out', out, ...extra], { cwd: repository });
  // Run in keel's own repository, whose package is keel: the Dockerfile's keel (node_modules/keel) is an application's.
  expect(run.stderr).toMatch(KEEL_REPOSITORY_DEPLOY_WARNING);
  expect(run.code).toBe(0);
  return { stdout: run.stdout, out, files: readTree(out) };
}

const yamlOf = (deployed: Deployed, path: string): any => parse(deployed.files.get(path) ?? '');
const kubernetesOf = (deployed: Deployed, suffix: string): [string, any][] =>
  [...deployed.files].filter(([path]) => path.startsWith('k8s/') && path.endsWith(suffix)).map(([path, text]) => [path, parse(text)]);

let validateCompose: ValidateFunction;
const topologies: Record<string, Deployed> = {};

beforeAll(async () => {
  replicatedPath = join(temporaryFolder(), 'replicated.json');
  writeFileSync(replicatedPath, JSON.stringify(replicated));
  const composeSchema = JSON.parse(readFileSync(join(repository, 'test/fixtures/schemas/compose-spec.json'), 'utf8'));
  const ajv = new Ajv({ allErrors: true, strict: false });
  // The schema names draft-07 by its https URI; ajv registers draft-07 as http://…#. Same meta-schema.
  ajv.addMetaSchema({ ...require('ajv/dist/refs/json-schema-draft-07.json'), $id: composeSchema.$schema });
  validateCompose = ajv.compile(composeSchema);
  for (const name of ['single', 'split', 'per-module']) topologies[name] = await deploy(`topologies/${name}.ts`);
  topologies['replicated'] = await deploy(replicatedPath);
});

describe('cli - deploy', () => {
  it('cli - deploy writes the Dockerfile, ignore files, compose.yaml and k8s/, printing one line per file, and in keel\'s own repository a warning that the image is an application\'s', () => {
    const { stdout, files } = topologies['split']!;
    expect([...files.keys()].sort()).toEqual([
      '.dockerignore',
      '.gitignore',
      'Dockerfile',
      'Dockerfile.dockerignore',
      'compose.yaml',
      'k8s/back-office-deployment.yaml',
      'k8s/kustomization.yaml',
      'k8s/nats-credentials/back-office.yaml',
      'k8s/nats-credentials/kustomization.yaml',
      'k8s/nats-credentials/notifications.yaml',
      'k8s/nats-credentials/storefront.yaml',
      'k8s/notifications-deployment.yaml',
      'k8s/storefront-deployment.yaml',
      'nats/_client.env',
      'nats/back-office.env',
      'nats/nats-server.conf',
      'nats/notifications.env',
      'nats/storefront.env',
    ]);
    const [checked, ...lines] = stdout.trimEnd().split('\n');
    // The shop's keel.config.ts is checked before anything is written.
    expect(checked).toBe('keel deploy: checked keel.config.ts; every process of the image reads it from the build');
    expect(lines).toHaveLength(files.size);
    for (const path of files.keys()) expect(lines.some((line) => line.startsWith('keel deploy: wrote ') && line.endsWith(join('deploy', path)))).toBe(true);
  });

  it('cli - deploy compose.yaml of every topology validates against the Compose specification schema', () => {
    for (const [name, deployed] of Object.entries(topologies)) {
      const valid = validateCompose(yamlOf(deployed, 'compose.yaml'));
      expect({ name, errors: validateCompose.errors ?? null }).toEqual({ name, errors: null });
      expect(valid).toBe(true);
    }
  });

  it('cli - deploy the compose schema check rejects a misspelt key (it is strict)', () => {
    const compose = yamlOf(topologies['split']!, 'compose.yaml');
    compose.services.storefront.replica = 2;
    expect(validateCompose(compose)).toBe(false);
  });

  it('cli - deploy k8s Deployments, Services and PodDisruptionBudgets validate against the Kubernetes schemas', () => {
    const models = { Deployment, Service, PodDisruptionBudget, Secret } as const;
    let checked = 0;
    for (const deployed of Object.values(topologies)) {
      for (const [path, document] of kubernetesOf(deployed, '.yaml').filter(([path]) => !path.endsWith('kustomization.yaml'))) {
        const Model = models[document.kind as keyof typeof models];
        expect(Model, `${path} has kind ${document.kind}`).toBeDefined();
        expect(() => new Model(document).validate(), path).not.toThrow();
        checked++;
      }
    }
    // single: a Deployment and its Service; split: 3 and their NATS credentials; per-module: 5 and theirs;
    // replicated: 3 Deployments and their credentials, a Service, 3 budgets.
    expect(checked).toBe(2 + 3 * 2 + 5 * 2 + 3 * 2 + 1 + 3);
    const broken = yamlOf(topologies['replicated']!, 'k8s/gateway-deployment.yaml');
    broken.spec.replicas = 'three';
    expect(() => new Deployment(broken).validate()).toThrow();
  });

  it('cli - deploy kustomization.yaml lists every manifest it sits beside, and nothing else; the NATS credentials (not committed) have a kustomization of their own, so a checkout builds without them', () => {
    for (const [name, deployed] of Object.entries(topologies)) {
      for (const folder of ['k8s/', 'k8s/nats-credentials/']) {
        const beside = [...deployed.files.keys()].filter((path) => path.startsWith(folder) && !path.slice(folder.length).includes('/') && !path.endsWith('/kustomization.yaml'));
        if (beside.length === 0) {
          expect(deployed.files.has(`${folder}kustomization.yaml`), `${name}: ${folder}`).toBe(false);
          continue;
        }
        const kustomization = yamlOf(deployed, `${folder}kustomization.yaml`);
        expect(kustomization.apiVersion).toBe('kustomize.config.k8s.io/v1beta1');
        expect(kustomization.kind).toBe('Kustomization');
        expect([...kustomization.resources].sort(), `${name}: ${folder}`).toEqual(beside.map((path) => path.slice(folder.length)).sort());
      }
    }
    // A topology over NATS has credentials, and the main kustomization says to apply them first.
    expect(topologies['split']!.files.get('k8s/kustomization.yaml')).toContain('# Before applying: kubectl apply -k nats-credentials ');
    expect(topologies['single']!.files.has('k8s/nats-credentials/kustomization.yaml')).toBe(false);
  });

  it('cli - deploy Dockerfile is multi-stage, installs production dependencies only at run time, runs as node with an exec-form CMD and a node HEALTHCHECK on /healthz', () => {
    const text = topologies['split']!.files.get('Dockerfile')!;
    const instructions = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
    const froms = instructions.filter((line) => line.startsWith('FROM '));
    expect(froms).toEqual(['FROM node:24-slim AS build', 'FROM node:24-slim AS runtime']);
    const runtime = instructions.slice(instructions.indexOf('FROM node:24-slim AS runtime'));
    const build = instructions.slice(0, instructions.indexOf('FROM node:24-slim AS runtime'));
    // RUN lines may carry BuildKit flags (such as a cache mount) before the command.
    expect(build.some((line) => /^RUN .*\bnpm ci\b/.test(line) && !line.includes('--omit=dev'))).toBe(true);
    expect(build).toContain('RUN npx keel build');
    expect(runtime).toContain('COPY package.json package-lock.json ./');
    expect(runtime.some((line) => /^RUN .*\bnpm ci --omit=dev\b/.test(line))).toBe(true);
    // The shop's build goes where package.json's keel.outDir says (keel's own dist/ is the library).
    const buildDir = projectSettings(repository)!.outDir;
    expect(runtime).toContain(`COPY --from=build /app/${buildDir} ./${buildDir}`);
    expect(runtime).toContain('ENV NODE_ENV=production PORT=3000 KEEL_HTTP_HOST=0.0.0.0');
    expect(runtime).toContain('USER node');
    const cmd = runtime.find((line) => line.startsWith('CMD '))!;
    expect(JSON.parse(cmd.slice(4))).toEqual(['node', 'node_modules/keel/dist/cli/bin.js', 'start']);
    const healthcheck = runtime.find((line) => line.startsWith('HEALTHCHECK '))!;
    const [, command] = healthcheck.split(' CMD ');
    const exec = JSON.parse(command!) as string[];
    expect(exec.slice(0, 2)).toEqual(['node', '-e']);
    expect(exec[2]).toContain("'/healthz'");
    expect(runtime.indexOf('USER node')).toBeLessThan(runtime.indexOf(cmd));
    // Node's compile cache, filled by `keel warm` as the image's user (Node keeps one per user), in a folder that user owns.
    for (const line of ['ENV NODE_COMPILE_CACHE=/app/.node-compile-cache', 'RUN mkdir .node-compile-cache && chown 1000:1000 .node-compile-cache']) expect(runtime).toContain(line);
    const warm = runtime.indexOf('RUN node node_modules/keel/dist/cli/bin.js warm');
    expect(warm).toBeGreaterThan(-1);
    expect(runtime.indexOf('ENV NODE_COMPILE_CACHE=/app/.node-compile-cache')).toBeLessThan(warm);
    expect(runtime.indexOf('RUN mkdir .node-compile-cache && chown 1000:1000 .node-compile-cache')).toBeGreaterThan(runtime.indexOf(`COPY --from=build /app/${buildDir} ./${buildDir}`));
    expect(runtime.indexOf('USER node')).toBeLessThan(warm);
    expect(warm).toBeGreaterThan(runtime.indexOf('RUN mkdir .node-compile-cache && chown 1000:1000 .node-compile-cache'));
    for (const ignore of ['.dockerignore', 'Dockerfile.dockerignore']) {
      expect(topologies['split']!.files.get(ignore)!.split('\n')).toEqual(expect.arrayContaining(['node_modules', 'dist', buildDir, '.git', '*.tgz']));
    }
  });

  it("cli - deploy's ignore files keep every file holding a NATS password out of the build context, wherever --out is, and a developer's .env files", () => {
    const { files } = topologies['split']!;
    const secrets = [...files.keys()].filter((path) => path.startsWith('nats/') || path.startsWith('k8s/nats-credentials/'));
    expect(secrets).toEqual(expect.arrayContaining(['nats/nats-server.conf', 'nats/storefront.env', 'k8s/nats-credentials/storefront.yaml']));
    for (const ignore of ['.dockerignore', 'Dockerfile.dockerignore']) {
      const patterns = files.get(ignore)!.split('\n').filter((line) => line !== '');
      // The build context is the application folder; the deployment may be written anywhere in it.
      const ignored = (path: string): boolean => patterns.some((pattern) => matchesGlob(path, pattern));
      for (const out of ['deploy', 'ops/deploy', '.']) {
        for (const secret of secrets) expect(ignored(join(out, secret)), `${ignore}: ${join(out, secret)}`).toBe(true);
        expect(ignored(join(out, 'compose.yaml'))).toBe(false);
      }
      for (const path of ['.env', '.env.production', 'app/.env']) expect(ignored(path), `${ignore}: ${path}`).toBe(true);
      expect(ignored('modules/orders/module.ts')).toBe(false);
    }
  });

  it('cli - deploy --node picks the base image of both stages; the compile cache is warmed from Node 22 on, not on Node 20, which has none', async () => {
    const { files } = await deploy('topologies/single.ts', ['--node', '22']);
    expect(files.get('Dockerfile')!.match(/^FROM .*$/gm)).toEqual(['FROM node:22-slim AS build', 'FROM node:22-slim AS runtime']);
    expect(files.get('Dockerfile')).toContain('RUN node node_modules/keel/dist/cli/bin.js warm');
    const node20 = (await deploy('topologies/single.ts', ['--node', '20'])).files.get('Dockerfile')!;
    expect(node20.match(/^FROM .*$/gm)).toEqual(['FROM node:20-slim AS build', 'FROM node:20-slim AS runtime']);
    expect(node20).not.toContain('warm');
    expect(node20).not.toContain('NODE_COMPILE_CACHE');
    expect(node20).toContain('USER node');
  });

  it('cli - deploy gives each group its replicas and KEEL_MODULES in compose and in its Deployment', () => {
    for (const [name, deployed] of Object.entries(topologies)) {
      const source = name === 'replicated' ? replicated : undefined;
      const compose = yamlOf(deployed, 'compose.yaml');
      const deployments = kubernetesOf(deployed, '-deployment.yaml');
      const groups = Object.keys(compose.services).filter((service) => service !== 'nats' && service !== 'postgres');
      expect(deployments.map(([path]) => path.slice(4, -'-deployment.yaml'.length)).sort()).toEqual([...groups].sort());
      for (const group of groups) {
        const service = compose.services[group];
        const deployment = deployments.find(([path]) => path === `k8s/${group}-deployment.yaml`)![1];
        const container = deployment.spec.template.spec.containers[0];
        const modules = container.env.find((variable: any) => variable.name === 'KEEL_MODULES').value;
        expect(service.environment.KEEL_MODULES).toBe(modules);
        expect(service.deploy.replicas).toBe(deployment.spec.replicas);
        if (source) {
          const group_ = source.processes[group as keyof typeof source.processes] as { modules: string[]; replicas?: number };
          expect(modules).toBe(group_.modules.join(','));
          expect(deployment.spec.replicas).toBe(group_.replicas ?? 1);
        }
      }
    }
    const perModule = yamlOf(topologies['per-module']!, 'compose.yaml');
    expect(Object.keys(perModule.services)).toEqual(['nats', 'postgres', 'catalog', 'inventory', 'payments', 'orders', 'notifications']);
  });

  it('cli - deploy compose runs NATS with JetStream on a named volume, with a health check, and every group waits for it to be healthy', () => {
    const compose = yamlOf(topologies['replicated']!, 'compose.yaml');
    const nats = compose.services.nats;
    expect(nats.image).toBe('nats:2.10-alpine');
    // Locked down: the generated configuration holds JetStream's store, the monitoring port and the users.
    expect(nats.command).toEqual(['-c', '/etc/nats/nats-server.conf']);
    expect(nats.volumes).toEqual(['nats-data:/data', './nats/nats-server.conf:/etc/nats/nats-server.conf:ro']);
    const config = topologies['replicated']!.files.get('nats/nats-server.conf')!;
    expect(config).toContain('listen: "0.0.0.0:4222"');
    expect(config).toContain('http_port: 8222');
    expect(config).toContain('jetstream { store_dir: "/data" }');
    expect(compose.volumes).toEqual({ 'nats-data': {}, 'postgres-data': {} });
    expect(nats.healthcheck.test).toEqual(['CMD', 'wget', '-q', '--spider', 'http://127.0.0.1:8222/healthz']);
    for (const group of ['gateway', 'orders', 'warehouse']) {
      const service = compose.services[group];
      // Every group hosts a module that owns data, so it waits for PostgreSQL as well.
      expect(service.depends_on).toEqual({ nats: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
      expect(service.environment.KEEL_NATS_URL).toBe('nats://nats:4222');
      expect(service.env_file).toEqual([`nats/${group}.env`]);
      expect(service.environment.KEEL_NATS_PASSWORD).toBeUndefined();
      expect(service.environment.KEEL_NATS_PREFIX).toBe('shop');
      expect(service.environment.KEEL_PROCESS_NAME).toBe(group);
      expect(service.healthcheck.test.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
      expect(service.healthcheck.test[3]).toContain('/healthz');
      // The gateway answers its requests in flight (10 s, their deadline, and 1 s of margin) before its kernel stops.
      expect(service.stop_grace_period).toBe(group === 'gateway' ? '86s' : '75s');
    }
    // A script that sources the client user's file calls under the processes' prefix.
    expect(topologies['replicated']!.files.get('nats/_client.env')!.split('\n')).toContain('KEEL_NATS_PREFIX=shop');
    expect(topologies['replicated']!.files.get('nats/gateway.env')).not.toContain('KEEL_NATS_PREFIX');
    // Without nats.prefix, the processes serve under keel, whatever the shell of a script says.
    expect(topologies['split']!.files.get('nats/_client.env')!.split('\n')).toContain('KEEL_NATS_PREFIX=keel');
  });

  it('cli - deploy publishes only the gateway\'s ports, one host port per replica, and exposes operations only on the gateway; a group\'s env is passed on', () => {
    const compose = yamlOf(topologies['replicated']!, 'compose.yaml');
    expect(compose.services.gateway.ports).toEqual(['8080-8081:3000']);
    expect(compose.services.gateway.deploy.replicas).toBe(2);
    expect(compose.services.gateway.environment.KEEL_HTTP_OPERATIONS).toBe('all');
    expect(compose.services.gateway.environment.KEEL_LOG_LEVEL).toBe('info');
    expect(compose.services.orders.ports).toBeUndefined();
    expect(compose.services.orders.environment.ORDERS_FEATURE).toBe('on');
    expect(compose.services.orders.environment.KEEL_HTTP_OPERATIONS).toBe('hosted');
    expect(compose.services.warehouse.ports).toBeUndefined();
    expect(compose.services.warehouse.environment.KEEL_HTTP_OPERATIONS).toBe('none');
    for (const name of ['split', 'per-module']) {
      const services = yamlOf(topologies[name]!, 'compose.yaml').services;
      for (const service of Object.values<any>(services)) expect(service.ports).toBeUndefined();
    }
    // The shop's single.ts (like a new application's) names http: its one process is the gateway.
    expect(yamlOf(topologies['single']!, 'compose.yaml').services.shop.ports).toEqual(['3000:3000']);
  });

  it('cli - deploy writes a Service for the HTTP gateway only, to the container port', () => {
    const services = kubernetesOf(topologies['replicated']!, '-service.yaml');
    expect(services.map(([path]) => path)).toEqual(['k8s/gateway-service.yaml']);
    const [, service] = services[0]!;
    expect(service.spec.ports).toEqual([{ name: 'http', port: 8080, targetPort: 'http', protocol: 'TCP' }]);
    expect(service.spec.selector).toEqual({ 'app.kubernetes.io/name': 'keel', 'app.kubernetes.io/component': 'gateway' });
    for (const name of ['split', 'per-module']) expect(kubernetesOf(topologies[name]!, '-service.yaml')).toEqual([]);
    expect(kubernetesOf(topologies['single']!, '-service.yaml').map(([path]) => path)).toEqual(['k8s/shop-service.yaml']);
  });

  it('cli - deploy writes a PodDisruptionBudget only for groups with two or more replicas', () => {
    const budgets = kubernetesOf(topologies['replicated']!, '-pdb.yaml');
    expect(budgets.map(([path]) => path)).toEqual(['k8s/gateway-pdb.yaml', 'k8s/orders-pdb.yaml', 'k8s/warehouse-pdb.yaml']);
    for (const [, budget] of budgets) expect(budget.spec.maxUnavailable).toBe(1);
    expect(budgets[1]![1].spec.selector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'keel', 'app.kubernetes.io/component': 'orders' });
    for (const name of ['split', 'per-module', 'single']) expect(kubernetesOf(topologies[name]!, '-pdb.yaml')).toEqual([]);
  });

  it('cli - deploy takes the NATS and database URLs from Secrets by secretKeyRef, and the Secrets\' other keys by envFrom, never inline, in every Deployment', () => {
    for (const name of ['split', 'per-module', 'replicated']) {
      for (const [path, deployment] of kubernetesOf(topologies[name]!, '-deployment.yaml')) {
        const env = deployment.spec.template.spec.containers[0].env;
        const nats = env.filter((variable: any) => variable.name === 'KEEL_NATS_URL');
        expect(nats, path).toEqual([{ name: 'KEEL_NATS_URL', valueFrom: { secretKeyRef: { name: 'keel-nats', key: 'KEEL_NATS_URL' } } }]);
        const database = env.filter((variable: any) => variable.name === 'DATABASE_URL');
        expect(database, path).toEqual([{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'keel-database', key: 'DATABASE_URL' } } }]);
        expect(
          deployment.spec.template.spec.containers[0].envFrom,
          `${path}: the Secrets' other keys (NATS token, user, password; DATABASE_URL_<MODULE>)`,
        ).toEqual([{ secretRef: { name: 'keel-nats' } }, { secretRef: { name: `${deployment.metadata.name}-nats` } }, { secretRef: { name: 'keel-database' } }]);
        expect(topologies[name]!.files.get(path)).not.toContain('nats://');
        expect(topologies[name]!.files.get(path)).not.toContain('postgres://');
      }
    }
  });

  it('cli - deploy gives the shop, whose five modules own data, PostgreSQL: a compose service every group reaches by DATABASE_URL, and the database Secret in Kubernetes', () => {
    for (const [name, deployed] of Object.entries(topologies)) {
      const compose = yamlOf(deployed, 'compose.yaml');
      const postgres = compose.services.postgres;
      expect(postgres, name).toMatchObject({ image: 'postgres:17-alpine', volumes: ['postgres-data:/var/lib/postgresql/data'] });
      expect(postgres.environment, name).toEqual({ POSTGRES_USER: 'keel', POSTGRES_PASSWORD: 'keel', POSTGRES_DB: 'keel' });
      expect(postgres.healthcheck.test, name).toEqual(['CMD', 'pg_isready', '-U', 'keel', '-d', 'keel']);
      expect(postgres.ports, `${name}: PostgreSQL is not published`).toBeUndefined();
      expect(compose.volumes['postgres-data'], name).toEqual({});
      const groups = Object.keys(compose.services).filter((service) => service !== 'nats' && service !== 'postgres');
      expect(groups.length, name).toBeGreaterThan(0);
      for (const group of groups) {
        const service = compose.services[group];
        expect(service.environment.DATABASE_URL, `${name}: ${group}`).toBe('postgres://keel:keel@postgres:5432/keel');
        expect(service.depends_on.postgres, `${name}: ${group}`).toEqual({ condition: 'service_healthy' });
      }
      expect(deployed.files.get('k8s/kustomization.yaml'), name).toContain(
        '# Before applying: kubectl create secret generic keel-database --from-literal=DATABASE_URL=postgres://<user>:<password>@<host>:5432/keel\n',
      );
    }
  });

  it('cli - deploy of one process has no NATS: no nats service or volume, no NATS URL; PostgreSQL only, for its data', () => {
    const single = topologies['single']!;
    const compose = yamlOf(single, 'compose.yaml');
    expect(Object.keys(compose.services)).toEqual(['postgres', 'shop']);
    expect(compose.volumes).toEqual({ 'postgres-data': {} });
    expect(compose.services.shop.depends_on).toEqual({ postgres: { condition: 'service_healthy' } });
    expect(compose.services.shop.environment).toEqual({
      KEEL_MODULES: shopModules.join(','),
      KEEL_PROCESS_NAME: 'shop',
      DATABASE_URL: 'postgres://keel:keel@postgres:5432/keel',
      KEEL_HTTP_OPERATIONS: 'all',
    });
    expect(single.files.get('k8s/shop-deployment.yaml')).not.toContain('KEEL_NATS_URL');
    expect(yamlOf(single, 'k8s/shop-deployment.yaml').spec.template.spec.containers[0].envFrom).toEqual([{ secretRef: { name: 'keel-database' } }]);
  });

  it('cli - deploy probes /readyz for readiness and /healthz for liveness and start-up, with a grace period longer than the drains of the kernel and the transport (30 s each)', () => {
    for (const [path, deployment] of kubernetesOf(topologies['replicated']!, '-deployment.yaml')) {
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      expect(container.readinessProbe.httpGet, path).toEqual({ path: '/readyz', port: 'http' });
      expect(container.livenessProbe.httpGet, path).toEqual({ path: '/healthz', port: 'http' });
      expect(container.startupProbe.httpGet, path).toEqual({ path: '/healthz', port: 'http' });
      expect(container.ports).toEqual([{ name: 'http', containerPort: 3000, protocol: 'TCP' }]);
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(60);
      expect(container.resources.requests).toEqual({ cpu: '50m', memory: '96Mi' });
      expect(container.resources.limits.memory).toBe('256Mi');
    }
  });

  it('cli - deploy runs every container as the non-root node user on a read-only root filesystem with an emptyDir at /tmp', () => {
    for (const [path, deployment] of kubernetesOf(topologies['per-module']!, '-deployment.yaml')) {
      const pod = deployment.spec.template.spec;
      const container = pod.containers[0];
      expect(pod.securityContext.runAsNonRoot, path).toBe(true);
      expect(container.securityContext).toEqual({
        runAsNonRoot: true,
        runAsUser: 1000,
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(container.volumeMounts).toEqual([{ name: 'tmp', mountPath: '/tmp' }]);
      expect(pod.volumes).toEqual([{ name: 'tmp', emptyDir: {} }]);
      const group = path.slice(4, -'-deployment.yaml'.length);
      expect(deployment.metadata.labels).toMatchObject({
        'app.kubernetes.io/name': 'keel',
        'app.kubernetes.io/component': group,
        'app.kubernetes.io/part-of': 'keel',
      });
      expect(container.image).toBe(`keel:${require('keel/package.json').version}`);
    }
  });

  it('cli - deploy pauses a gateway pod 5 s before SIGTERM (preStop), inside its grace period, so its Service stops sending to it first; other groups have no pause', () => {
    const deployed = topologies['replicated']!;
    const gateway = yamlOf(deployed, 'k8s/gateway-deployment.yaml').spec.template.spec;
    expect(deployed.files.has('k8s/gateway-service.yaml')).toBe(true);
    expect(gateway.containers[0].lifecycle).toEqual({ preStop: { exec: { command: ['sleep', '5'] } } });
    const other = yamlOf(deployed, 'k8s/orders-deployment.yaml').spec.template.spec;
    expect(other.containers[0].lifecycle).toBeUndefined();
    // The pause, and the gateway's requests in flight (10 s, their deadline, and 1 s of margin).
    expect(gateway.terminationGracePeriodSeconds).toBe(other.terminationGracePeriodSeconds + 5 + 11);
  });

  it("cli - deploy gives every group a grace period past its worst stop, whatever number of modules it hosts: the kernel's (drainTimeoutMs and 5 s), then the NATS transport's drain, and for the gateway its requests in flight (their deadline) before them and, on Kubernetes, its preStop pause", () => {
    const deployed = topologies['replicated']!;
    const compose = yamlOf(deployed, 'compose.yaml');
    const kernelMs = kernelStopBoundMs(DEFAULT_KERNEL_OPTIONS.drainTimeoutMs);
    expect(kernelMs).toBe(35_000);
    for (const group of ['gateway', 'orders', 'warehouse']) {
      const requestsMs = group === 'gateway' ? DEFAULT_TIMEOUT_MS : 0;
      const worstMs = requestsMs + kernelMs + DEFAULT_NATS_TRANSPORT_OPTIONS.drainTimeoutMs;
      const composeSeconds = Number(/^(\d+)s$/.exec(compose.services[group].stop_grace_period)?.[1]);
      const pod = yamlOf(deployed, `k8s/${group}-deployment.yaml`).spec.template.spec;
      const preStopMs = group === 'gateway' ? 5_000 : 0;
      // A margin of at least 5 s: the databases' close (up to 2 s for a statement that waits) and a loaded node.
      expect(composeSeconds * 1000, group).toBeGreaterThanOrEqual(worstMs + 5_000);
      expect(pod.terminationGracePeriodSeconds * 1000, group).toBeGreaterThanOrEqual(preStopMs + worstMs + 5_000);
    }
  });

  it("cli - deploy gives a gateway's group the longest deadline an operation declares (its timeoutMs caps a request's deadline in place of maxTimeoutMs), before the kernel's stop and NATS's", () => {
    const report = defineContract({
      name: 'report',
      version: '1.0.0',
      operations: { build: operation({ input: z.object({}), output: z.object({}), timeoutMs: 60_000 }) },
    });
    const modules = [defineModule({ contract: report, create: () => ({ handlers: { build: () => ({}) } }) })];
    const topology = parseTopology({ processes: { gateway: { modules: ['report'], http: 8080 } } }, ['report'], 'slow.json');
    const files = planDeployment(topology, { app: 'reports', image: 'reports:1.0.0', source: 'slow.json', modules });
    const text = (path: string): any => parse(files.find((file) => file.path === path)!.contents);
    const worstMs = 60_000 + kernelStopBoundMs(DEFAULT_KERNEL_OPTIONS.drainTimeoutMs) + DEFAULT_NATS_TRANSPORT_OPTIONS.drainTimeoutMs;
    const composeSeconds = Number(/^(\d+)s$/.exec(text('compose.yaml').services.gateway.stop_grace_period)?.[1]);
    expect(composeSeconds * 1000).toBeGreaterThanOrEqual(worstMs + 5_000);
    expect(text('k8s/gateway-deployment.yaml').spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(5_000 + worstMs + 5_000);
  });

  it("cli - deploy lengthens a gateway's grace period by as much as keel.config.ts raises the gateway's maxTimeoutMs over its default, in compose.yaml and the Kubernetes Deployment", async () => {
    // It once wrote the grace periods for the default maxTimeoutMs whatever keel.config.ts said:
    // a request given 60 s by its timeout header was killed, with its pod, 50 s before its deadline.
    const root = copyWhoamiApp(temporaryFolder());
    writeFileSync(join(root, 'topologies/gateway.json'), JSON.stringify({ processes: { gateway: { modules: ['whoami'], http: 8080 } } }));
    const graceOf = async (): Promise<{ compose: number; kubernetes: number }> => {
      const out = join(temporaryFolder(), 'deploy');
      const run = await runKeel(['deploy', 'topologies/gateway.json', '--out', out, '--image', 'whoami:1.0.0'], { cwd: root });
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const compose = parse(readFileSync(join(out, 'compose.yaml'), 'utf8')).services.gateway.stop_grace_period;
      const pod = parse(readFileSync(join(out, 'k8s/gateway-deployment.yaml'), 'utf8')).spec.template.spec;
      return { compose: Number(/^(\d+)s$/.exec(compose)?.[1]), kubernetes: pod.terminationGracePeriodSeconds };
    };
    const byDefault = await graceOf();
    expect(byDefault).toEqual({ compose: 86, kubernetes: 91 });
    writeFileSync(join(root, 'keel.config.ts'), "import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ gateway: { maxTimeoutMs: 60_000 } });\n");
    const raised = await graceOf();
    const raisedBySeconds = (60_000 - DEFAULT_TIMEOUT_MS) / 1000;
    expect(raised).toEqual({ compose: byDefault.compose + raisedBySeconds, kubernetes: byDefault.kubernetes + raisedBySeconds });
  });

  it("cli - deploy turns off Kubernetes' service links, whose variables would collide with keel's (a Service keel-http in the namespace sets KEEL_HTTP_PORT=tcp://…)", () => {
    for (const deployed of [topologies['per-module']!, topologies['replicated']!, topologies['single']!]) {
      for (const [path, deployment] of kubernetesOf(deployed, '-deployment.yaml')) {
        expect(deployment.spec.template.spec.enableServiceLinks, path).toBe(false);
      }
    }
  });

  it('cli - deploy writes one NATS user per group into nats-server.conf and nats/<group>.env (mode 0600), the same in each group\'s Kubernetes Secret, and a .gitignore keeping them out of git', () => {
    const { out, files } = topologies['split']!;
    const config = files.get('nats/nats-server.conf')!;
    const passwords = new Set<string>();
    for (const group of ['storefront', 'back-office', 'notifications', '_client']) {
      const path = `nats/${group}.env`;
      expect(statSync(join(out, path)).mode & 0o777, path).toBe(0o600);
      const values = Object.fromEntries(files.get(path)!.split('\n').filter((line) => /^KEEL_/.test(line)).map((line) => line.split(/=(.*)/s).slice(0, 2)));
      // The client user's file also names the prefix the processes serve under, for the scripts that source it.
      expect(Object.keys(values).sort(), path).toEqual(
        group === '_client' ? ['KEEL_NATS_INBOX_PREFIX', 'KEEL_NATS_PASSWORD', 'KEEL_NATS_PREFIX', 'KEEL_NATS_USER'] : ['KEEL_NATS_INBOX_PREFIX', 'KEEL_NATS_PASSWORD', 'KEEL_NATS_USER'],
      );
      expect(values['KEEL_NATS_USER']).toBe(group);
      expect(values['KEEL_NATS_INBOX_PREFIX']).toBe(`_INBOX_keel.${group}`);
      expect(values['KEEL_NATS_PASSWORD']).toMatch(/^[\w-]{32}$/);
      passwords.add(values['KEEL_NATS_PASSWORD']);
      // The server's configuration holds the password's bcrypt hash, not the password.
      const hash = new RegExp(`user: "${group}"\\n      password: "(\\$2b\\$11\\$[^"]+)"`).exec(config)?.[1];
      expect(hash, `${group}'s entry in nats-server.conf`).toBeDefined();
      expect(compareSync(values['KEEL_NATS_PASSWORD']!, hash!)).toBe(true);
      expect(config).not.toContain(values['KEEL_NATS_PASSWORD']);
      if (group !== '_client') {
        expect(yamlOf(topologies['split']!, `k8s/nats-credentials/${group}.yaml`)).toMatchObject({ kind: 'Secret', metadata: { name: `keel-${group}-nats` }, stringData: values });
        expect(statSync(join(out, `k8s/nats-credentials/${group}.yaml`)).mode & 0o777).toBe(0o600);
      }
    }
    expect(passwords.size, 'every user has a password of its own').toBe(4);
    expect(statSync(join(out, 'nats/nats-server.conf')).mode & 0o777).toBe(0o600);
    expect(files.get('.gitignore')!.split('\n')).toEqual(expect.arrayContaining(['nats/', 'k8s/nats-credentials/']));
    for (const password of passwords) expect(files.get('compose.yaml'), 'compose reads the passwords from nats/<group>.env').not.toContain(password);
    const check = spawnSync(process.env['KEEL_NATS_SERVER_BIN'] ?? 'nats-server', ['-t', '-c', join(out, 'nats/nats-server.conf')], { encoding: 'utf8' });
    expect(check.status, `nats-server -t: ${check.stderr}${check.stdout}`).toBe(0);
  });

  it('cli - deploy --force keeps the NATS passwords it wrote before, so that a redeploy does not lock out running processes', async () => {
    const { out, files } = await deploy('topologies/split.ts');
    const again = await runKeel(['deploy', 'topologies/split.ts', '--out', out, '--force'], { cwd: repository });
    expect(again.code).toBe(0);
    expect(readTree(out)).toEqual(files);
    rmSync(join(out, 'nats'), { recursive: true });
    expect((await runKeel(['deploy', 'topologies/split.ts', '--out', out, '--force'], { cwd: repository })).code).toBe(0);
    expect(readFileSync(join(out, 'nats/storefront.env'), 'utf8'), 'rotated: nats/ removed, new passwords').not.toBe(files.get('nats/storefront.env'));
  });

  it("cli - deploy --force adds keel's lines to a .gitignore the folder already has instead of replacing it", async () => {
    const { out } = await deploy('topologies/split.ts');
    writeFileSync(join(out, '.gitignore'), 'node_modules/\n.env\n');
    expect((await runKeel(['deploy', 'topologies/split.ts', '--out', out, '--force'], { cwd: repository })).code).toBe(0);
    const lines = readFileSync(join(out, '.gitignore'), 'utf8').split('\n');
    expect(lines.slice(0, 2)).toEqual(['node_modules/', '.env']);
    expect(lines).toEqual(expect.arrayContaining(['nats/', 'k8s/nats-credentials/']));
    // Again: nothing added twice.
    expect((await runKeel(['deploy', 'topologies/split.ts', '--out', out, '--force'], { cwd: repository })).code).toBe(0);
    expect(readFileSync(join(out, '.gitignore'), 'utf8').split('\n')).toEqual(lines);
  });

  it('cli - deploy output is deterministic: the same topology gives the same bytes', () => {
    const topology = parseTopology(replicated, shopModules, 'replicated.json');
    const options = { app: 'my-shop', image: 'registry.example.com/my-shop:1.0.0', source: 'replicated.json' };
    const first: DeployFile[] = planDeployment(topology, options);
    expect(planDeployment(parseTopology(replicated, shopModules, 'replicated.json'), options)).toEqual(first);
    expect(first.find((file) => file.path === 'k8s/gateway-deployment.yaml')!.contents).toContain('image: registry.example.com/my-shop:1.0.0');
    expect(first.find((file) => file.path === 'Dockerfile')!.contents).toContain('COPY --from=build /app/dist ./dist');
  });

  it('cli - deploy refuses a non-empty --out without --force; --force rewrites it and removes files of groups no longer there', async () => {
    const { out } = await deploy(replicatedPath);
    const refused = await runKeel(['deploy', 'topologies/split.ts', '--out', out], { cwd: repository });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('E_TARGET_EXISTS');
    expect(refused.stderr).toContain('--out');
    writeFileSync(join(out, 'NOTES.md'), 'mine\n');
    const forced = await runKeel(['deploy', 'topologies/split.ts', '--out', out, '--force'], { cwd: repository });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(/^keel deploy: removed .*gateway-deployment\.yaml/m);
    expect(existsSync(join(out, 'k8s/gateway-deployment.yaml'))).toBe(false);
    expect(existsSync(join(out, 'k8s/orders-pdb.yaml'))).toBe(false);
    expect(readFileSync(join(out, 'NOTES.md'), 'utf8')).toBe('mine\n');
    // The same files, those holding generated NATS passwords aside (random, so different from the other run's).
    const secret = (path: string): boolean => path.startsWith('nats/') || (path.startsWith('k8s/nats-credentials/') && path !== 'k8s/nats-credentials/kustomization.yaml');
    const publicPart = (files: Map<string, string>) => new Map([...files].map(([path, text]) => [path, secret(path) ? 'secret' : text]));
    expect(publicPart(readTree(out))).toEqual(publicPart(new Map([...topologies['split']!.files, ['NOTES.md', 'mine\n']])));
    expect(existsSync(join(out, 'nats/gateway.env')), 'the removed group\'s credentials are removed').toBe(false);
  });

  it("cli - deploy --force from a topology that needed NATS to one that does not removes keel's NATS files, its .gitignore and the folders left empty, after checking the configuration, and keeps the user's files", async () => {
    const { out } = await deploy('topologies/split.ts');
    writeFileSync(join(out, 'NOTES.md'), 'mine\n');
    const forced = await runKeel(['deploy', 'topologies/single.ts', '--out', out, '--force'], { cwd: repository });
    expect(forced.code, forced.stderr).toBe(0);
    for (const gone of ['.gitignore', 'nats', 'k8s/nats-credentials']) expect(existsSync(join(out, gone)), gone).toBe(false);
    expect(readTree(out)).toEqual(new Map([...topologies['single']!.files, ['NOTES.md', 'mine\n']]));
    const lines = forced.stdout.split('\n');
    const checked = lines.findIndex((line) => line.startsWith('keel deploy: checked '));
    const removed = lines.findIndex((line) => line.startsWith('keel deploy: removed '));
    expect(checked, forced.stdout).toBeGreaterThanOrEqual(0);
    expect(removed, forced.stdout).toBeGreaterThan(checked);
    expect(lines).toContain(`keel deploy: removed ${relative(repository, join(out, '.gitignore'))} (not among the files this topology makes)`);
  });

  it("cli - deploy --force keeps a .gitignore keel wrote to which the user added lines (with --out . it is the project's), though the topology no longer needs NATS", async () => {
    const { out } = await deploy('topologies/split.ts');
    writeFileSync(join(out, '.gitignore'), `${readFileSync(join(out, '.gitignore'), 'utf8')}node_modules/\n`);
    const forced = await runKeel(['deploy', 'topologies/single.ts', '--out', out, '--force'], { cwd: repository });
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(join(out, '.gitignore'), 'utf8').split('\n')).toContain('node_modules/');
    expect(existsSync(join(out, 'nats')), 'keel\'s NATS files still go').toBe(false);
  });

  it("cli - deploy's default image writes a version's build metadata as a tag may hold it, and names package.json, not --image, when it is still no image reference", () => {
    expect(defaultImage({ name: '@acme/shop', version: '1.0.0+build.5' })).toBe('acme/shop:1.0.0_build.5');
    expect(isImageReference('acme/shop:1.0.0_build.5')).toBe(true);
    expect(isImageReference('acme/shop:1.0.0+build.5')).toBe(false);
    let message = '';
    try {
      defaultImage({ name: 'Shop', version: '1.0.0' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toBe('The default image "Shop:1.0.0", made of package.json\'s name and version, is not an image reference.');
  });

  it('cli - deploy writes a topology whose groups share an HTTP port (each its own Service on Kubernetes) and warns that compose cannot run it on one host, naming both groups', async () => {
    const path = join(temporaryFolder(), 'shared-port.json');
    writeFileSync(path, JSON.stringify({ processes: { gateway: { modules: ['catalog', 'orders'], http: 8080 }, admin: { modules: ['*'], http: 8080 } } }));
    const out = join(temporaryFolder(), 'deploy');
    const run = await runKeel(['deploy', path, '--out', out], { cwd: repository });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr).toContain('keel deploy: warning: processes "gateway" and "admin" both listen on HTTP port 8080 (admin: port 8080): compose.yaml publishes both on one host');
    expect(readTree(out).has('k8s/admin-service.yaml')).toBe(true);
  });

  it("cli - deploy --force leaves another deployment's files in a subfolder of --out alone (--out . beside deploy/, or deploy/ holding staging/)", async () => {
    const { out } = await deploy('topologies/single.ts');
    // An earlier keel deploy of another topology into a folder under this one, as `--out .` finds deploy/.
    const nested = join(out, 'staging');
    expect((await runKeel(['deploy', 'topologies/split.ts', '--out', nested], { cwd: repository })).code).toBe(0);
    const before = readTree(nested);
    const forced = await runKeel(['deploy', 'topologies/single.ts', '--out', out, '--force'], { cwd: repository });
    expect(forced.code).toBe(0);
    expect(forced.stdout).not.toContain('removed');
    expect(readTree(nested)).toEqual(before);
  });

  it('cli - deploy explains its arguments and options', async () => {
    const { code, stdout } = await runKeel(['deploy', '--help'], { cwd: repository });
    expect(code).toBe(0);
    expect(stdout).toMatchInlineSnapshot(`
      "Write a Dockerfile, compose.yaml and Kubernetes manifests for a topology (keel deploy)

      USAGE keel deploy [OPTIONS] <TOPOLOGY>

      ARGUMENTS

        TOPOLOGY    Topology file (.ts, .js or .json) (Required)

      OPTIONS

                  --out=<dir>    Folder to write (must be empty unless --force) (Default: deploy)
           --image=<name:tag>    Image every group runs (default: <package name>:<version>)
                 --name=<app>    Application name for compose and Kubernetes objects (default: from the package name)
               --node=<major>    Major version of the node base image (Default: 24)
                      --force    Write into a folder that is not empty, replacing what keel deploy wrote there before (Default: false)
                    --tracing    Send traces over OTLP: compose gets an OpenTelemetry Collector and Jaeger (UI on 16686), every group the OTEL_* variables (Default: false)
        --otlp-endpoint=<url>    With --tracing, the OTLP/HTTP collector the Kubernetes Deployments send to (default: http://otel-collector:4318)

      EXAMPLES

        $ keel deploy topologies/split.ts --out deploy
        $ keel deploy topologies/per-module.ts --out deploy --image registry.example.com/shop:1.4.0 --force
        $ keel deploy topologies/split.ts --out deploy --tracing
      "
    `);
  });

  it('cli - deploy names the wrong flag or topology field in its errors', async () => {
    const out = join(temporaryFolder(), 'out');
    const cases: [string[], string, string][] = [
      [['--image', 'Not An Image'], 'E_USAGE', '--image'],
      [['--node', 'latest'], 'E_USAGE', '--node'],
      [['--node', '23'], 'E_USAGE', '--node'],
      [['--name', '9lives'], 'E_USAGE', '--name'],
    ];
    for (const [flags, code, named] of cases) {
      const run = await runKeel(['deploy', 'topologies/split.ts', '--out', out, ...flags], { cwd: repository });
      expect(run.stderr, flags.join(' ')).toContain(code);
      expect(run.stderr, flags.join(' ')).toContain(named);
    }
    const bad = join(temporaryFolder(), 'bad.json');
    writeFileSync(bad, JSON.stringify({ processes: { app: { modules: shopModules, env: { KEEL_NATS_URL: 'nats://secret@host:4222' } } } }));
    const env = await runKeel(['deploy', bad, '--out', out], { cwd: repository });
    expect(env.stderr).toContain('E_TOPOLOGY');
    expect(env.stderr).toContain('processes.app.env.KEEL_NATS_URL');
    // A name no Kubernetes API server takes as a container's variable (nor compose, for "A=B": it would set A): refused now, not at kubectl apply.
    for (const name of ['A=B', '', 'MY VAR', '1ABC']) {
      writeFileSync(bad, JSON.stringify({ processes: { app: { modules: shopModules, env: { [name]: 'x' } } } }));
      const named = await runKeel(['deploy', bad, '--out', out], { cwd: repository });
      expect(named.code, name).toBe(1);
      expect(named.stderr, name).toContain('E_TOPOLOGY');
      expect(named.stderr, name).toContain(`processes.app.env."${name}"`);
      expect(existsSync(out), name).toBe(false);
    }
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'file'), '');
    const file = await runKeel(['deploy', 'topologies/split.ts', '--out', join(out, 'file')], { cwd: repository });
    expect(file.stderr).toContain('--out');
    expect(file.code).toBe(2);
  });
});
