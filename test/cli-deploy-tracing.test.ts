import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GENERATED_MARK, planDeployment } from '../cli/deploy/index.js';
import { parseTopology } from '../cli/topology.js';
import { KEEL_REPOSITORY_DEPLOY_WARNING, runKeel } from './support/cli.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const shopModules = ['catalog', 'inventory', 'payments', 'orders', 'notifications'];
const splitGroups = ['storefront', 'back-office', 'notifications'];
const temporary: string[] = [];

function temporaryFolder(): string {
  const folder = mkdtempSync(join(tmpdir(), 'keel-deploy-tracing-'));
  temporary.push(folder);
  return folder;
}

afterAll(() => {
  for (const folder of temporary) rmSync(folder, { recursive: true, force: true });
});

function readTree(out: string, prefix = ''): Map<string, string> {
  const files = new Map<string, string>();
  for (const entry of readdirSync(join(out, prefix), { withFileTypes: true })) {
    const path = `${prefix}${entry.name}`;
    if (entry.isDirectory()) for (const [nested, text] of readTree(out, `${path}/`)) files.set(nested, text);
    else files.set(path, readFileSync(join(out, path), 'utf8'));
  }
  return files;
}

async function deploy(topology: string, extra: readonly string[] = [], out = join(temporaryFolder(), 'deploy')): Promise<Map<string, string>> {
  const run = await runKeel(['deploy', topology, '--out', out, ...extra], { cwd: repository });
  expect(run.stderr).toMatch(KEEL_REPOSITORY_DEPLOY_WARNING);
  expect(run.code).toBe(0);
  return readTree(out);
}

const yamlOf = (files: Map<string, string>, path: string): any => parse(files.get(path) ?? '');

let validateCompose: ValidateFunction;
let traced: Map<string, string>;
let plain: Map<string, string>;
const ENDPOINT = 'http://otel-collector.observability.svc:4318';

beforeAll(async () => {
  const composeSchema = JSON.parse(readFileSync(join(repository, 'test/fixtures/schemas/compose-spec.json'), 'utf8'));
  const ajv = new Ajv({ allErrors: true, strict: false });
  ajv.addMetaSchema({ ...require('ajv/dist/refs/json-schema-draft-07.json'), $id: composeSchema.$schema });
  validateCompose = ajv.compile(composeSchema);
  traced = await deploy('topologies/split.ts', ['--tracing', '--otlp-endpoint', ENDPOINT]);
  plain = await deploy('topologies/split.ts');
});

describe('cli - deploy --tracing', () => {
  it('cli - deploy --tracing writes otel-collector.yaml beside compose.yaml, and compose.yaml still validates against the Compose specification schema', () => {
    expect([...traced.keys()].sort()).toEqual([...plain.keys(), 'otel-collector.yaml'].sort());
    const compose = yamlOf(traced, 'compose.yaml');
    expect(validateCompose(compose), JSON.stringify(validateCompose.errors)).toBe(true);
    expect(Object.keys(compose.services)).toEqual(['nats', 'postgres', 'otel-collector', 'jaeger', ...splitGroups]);
  });

  it('cli - deploy --tracing runs a pinned collector reading the written config, and a pinned Jaeger with its UI published on 16686', () => {
    const { services } = yamlOf(traced, 'compose.yaml');
    const collector = services['otel-collector'];
    expect(collector.image).toMatch(/^otel\/opentelemetry-collector-contrib:\d+\.\d+\.\d+$/);
    const [mount] = collector.volumes as string[];
    const [source, target] = mount!.split(':');
    expect(source).toBe('./otel-collector.yaml');
    expect(collector.command).toEqual([`--config=${target}`]);
    expect(collector.depends_on).toEqual({ jaeger: { condition: 'service_started' } });
    expect(services.jaeger.image).toMatch(/^jaegertracing\/jaeger:2\.\d+\.\d+$/);
    expect(services.jaeger.ports).toEqual(['127.0.0.1:16686:16686']);
  });

  it('cli - deploy --tracing collector config takes OTLP over HTTP on 4318 and exports the traces pipeline to the jaeger service over OTLP/gRPC on 4317', () => {
    const text = traced.get('otel-collector.yaml')!;
    // The header lets a later `keel deploy --force` without --tracing remove it.
    expect(text.startsWith(`# ${GENERATED_MARK}`)).toBe(true);
    const config = parse(text);
    const pipeline = config.service.pipelines.traces;
    expect(pipeline.receivers).toEqual(['otlp']);
    expect(config.receivers.otlp.protocols.http.endpoint).toBe('0.0.0.0:4318');
    for (const processor of pipeline.processors) expect(config.processors, processor).toHaveProperty([processor]);
    expect(pipeline.exporters).toHaveLength(1);
    const [exporter] = pipeline.exporters as string[];
    // otlp_grpc: the OTLP gRPC exporter's name since collector v0.144 (`otlp` is a deprecated alias).
    expect(exporter!.split('/')[0]).toBe('otlp_grpc');
    expect(config.exporters[exporter!]).toEqual({ endpoint: 'jaeger:4317', tls: { insecure: true } });
  });

  it('cli - deploy --tracing gives every group OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL and OTEL_SERVICE_NAME: compose its own collector, Kubernetes --otlp-endpoint', () => {
    const { services } = yamlOf(traced, 'compose.yaml');
    for (const group of splitGroups) {
      expect(services[group].environment, group).toMatchObject({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://otel-collector:4318',
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_SERVICE_NAME: group,
      });
      expect(services[group].depends_on['otel-collector'], group).toEqual({ condition: 'service_started' });
      const deployment = yamlOf(traced, `k8s/${group}-deployment.yaml`);
      expect(() => new Deployment(deployment).validate(), group).not.toThrow();
      expect(deployment.spec.template.spec.containers[0].env, group).toEqual(
        expect.arrayContaining([
          { name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: ENDPOINT },
          { name: 'OTEL_EXPORTER_OTLP_PROTOCOL', value: 'http/protobuf' },
          { name: 'OTEL_SERVICE_NAME', value: group },
        ]),
      );
    }
  });

  it('cli - deploy without --tracing writes no collector, no Jaeger and no OTEL_ variable: the tracing parts taken out of a traced compose.yaml give the plain one', () => {
    expect(plain.has('otel-collector.yaml')).toBe(false);
    for (const [path, text] of plain) expect(text, path).not.toMatch(/OTEL_|otel-collector|jaeger/);
    const compose = yamlOf(traced, 'compose.yaml');
    delete compose.services['otel-collector'];
    delete compose.services.jaeger;
    for (const group of splitGroups) {
      const service = compose.services[group];
      for (const key of Object.keys(service.environment)) if (key.startsWith('OTEL_')) delete service.environment[key];
      delete service.depends_on['otel-collector'];
    }
    expect(compose).toEqual(yamlOf(plain, 'compose.yaml'));
  });

  it("cli - deploy --tracing lets a group's env override an OTEL_ variable, and Kubernetes defaults to a Service named otel-collector", () => {
    const topology = parseTopology(
      { processes: { shop: { modules: shopModules, env: { OTEL_SERVICE_NAME: 'my-shop' } } } },
      shopModules,
      'one.json',
    );
    const files = planDeployment(topology, { app: 'keel', image: 'keel:0.1.0', tracing: true });
    const compose = parse(files.find((file) => file.path === 'compose.yaml')!.contents);
    expect(compose.services.shop.environment.OTEL_SERVICE_NAME).toBe('my-shop');
    const env = parse(files.find((file) => file.path === 'k8s/shop-deployment.yaml')!.contents).spec.template.spec.containers[0].env;
    expect(env.filter((entry: { name: string }) => entry.name === 'OTEL_SERVICE_NAME')).toEqual([{ name: 'OTEL_SERVICE_NAME', value: 'my-shop' }]);
    expect(env).toContainEqual({ name: 'OTEL_EXPORTER_OTLP_ENDPOINT', value: 'http://otel-collector:4318' });
  });

  it('cli - deploy --force without --tracing removes the otel-collector.yaml an earlier --tracing wrote', async () => {
    const out = join(temporaryFolder(), 'deploy');
    await deploy('topologies/split.ts', ['--tracing'], out);
    expect(existsSync(join(out, 'otel-collector.yaml'))).toBe(true);
    const files = await deploy('topologies/split.ts', ['--force'], out);
    expect(files.has('otel-collector.yaml')).toBe(false);
    expect(files.get('compose.yaml')).not.toContain('otel-collector');
  });

  it('cli - deploy --tracing names the wrong flag or topology field in its errors', async () => {
    const out = join(temporaryFolder(), 'out');
    const cases: [string, string[], string, string][] = [
      ['topologies/split.ts', ['--otlp-endpoint', 'http://collector:4318'], 'E_USAGE', '--otlp-endpoint http://collector:4318 is used only with --tracing'],
      ['topologies/split.ts', ['--tracing', '--otlp-endpoint', 'collector:4318'], 'E_USAGE', '--otlp-endpoint "collector:4318"'],
      ['topologies/split.ts', ['--tracing', '--otlp-endpoint', 'http://collector:4318/v1/traces'], 'E_USAGE', 'without /v1/traces'],
    ];
    const named = join(temporaryFolder(), 'jaeger.json');
    writeFileSync(named, JSON.stringify({ processes: { jaeger: { modules: shopModules } } }));
    cases.push([named, ['--tracing'], 'E_TOPOLOGY', 'processes.jaeger: compose.yaml runs a "jaeger" service of its own']);
    for (const [topology, flags, code, message] of cases) {
      const run = await runKeel(['deploy', topology, '--out', out, ...flags], { cwd: repository });
      expect(run.stderr, flags.join(' ')).toContain(code);
      expect(run.stderr, flags.join(' ')).toContain(message);
      expect(existsSync(out), flags.join(' ')).toBe(false);
    }
    // The same group name deploys without --tracing.
    expect((await runKeel(['deploy', named, '--out', out], { cwd: repository })).code).toBe(0);
  });
});
