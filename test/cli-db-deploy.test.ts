/**
 * `keel deploy` for an application whose modules own data: the groups hosting one get
 * DATABASE_URL (compose: its PostgreSQL service; Kubernetes: a Secret), the others do not, and
 * every file still validates against the Compose specification and the Kubernetes schemas.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { planDeployment } from '../cli/deploy/index.js';
import { parseTopology } from '../cli/topology.js';
import { runKeel } from './support/cli.js';
import { createDataApp, type DataApp } from './support/data-app.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));

let app: DataApp;
let files: Map<string, string>;

/** `keel deploy <topology>` in the application; the files it wrote, by path under --out. */
async function deploy(topology: unknown, out: string): Promise<{ code: number; stderr: string; files: Map<string, string> }> {
  const path = join(app.root, `${out}.json`);
  writeFileSync(path, JSON.stringify(topology));
  const run = await runKeel(['deploy', path, '--out', out], { cwd: app.root });
  const written = new Map<string, string>();
  if (run.code === 0) {
    for (const entry of readdirSync(join(app.root, out), { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) written.set(join(entry.parentPath, entry.name).slice(join(app.root, out).length + 1), readFileSync(join(entry.parentPath, entry.name), 'utf8'));
    }
  }
  return { code: run.code, stderr: run.stderr, files: written };
}

const yamlOf = (path: string): any => parse(files.get(path) ?? '');

beforeAll(async () => {
  app = createDataApp();
  const split = await deploy({ processes: { writer: { modules: ['ledger'], http: 8080 }, reader: { modules: ['audit'], replicas: 2 }, echo: { modules: ['echo'] } } }, 'deploy');
  expect(split.stderr).toBe('');
  files = split.files;
});

afterAll(() => app?.remove());

describe('cli - deploy of modules that own data', () => {
  it('cli - deploy compose runs PostgreSQL when a group hosts a module that owns data, and gives those groups its DATABASE_URL', () => {
    const compose = yamlOf('compose.yaml');
    expect(Object.keys(compose.services)).toEqual(['nats', 'postgres', 'writer', 'reader', 'echo']);
    const postgres = compose.services.postgres;
    expect(postgres.image).toBe('postgres:17-alpine');
    expect(postgres.environment).toEqual({ POSTGRES_USER: 'keel', POSTGRES_PASSWORD: 'keel', POSTGRES_DB: 'data-app' });
    expect(postgres.volumes).toEqual(['postgres-data:/var/lib/postgresql/data']);
    expect(postgres.healthcheck.test).toEqual(['CMD', 'pg_isready', '-U', 'keel', '-d', 'data-app']);
    expect(postgres.ports).toBeUndefined();
    expect(compose.volumes).toEqual({ 'nats-data': {}, 'postgres-data': {} });
    for (const group of ['writer', 'reader']) {
      const service = compose.services[group];
      expect(service.environment.DATABASE_URL, group).toBe('postgres://keel:keel@postgres:5432/data-app');
      expect(service.depends_on, group).toEqual({ nats: { condition: 'service_healthy' }, postgres: { condition: 'service_healthy' } });
    }
    expect(compose.services.echo.environment.DATABASE_URL).toBeUndefined();
    expect(compose.services.echo.depends_on).toEqual({ nats: { condition: 'service_healthy' } });
  });

  it('cli - deploy compose.yaml with PostgreSQL validates against the Compose specification schema', () => {
    const schema = JSON.parse(readFileSync(join(repository, 'test/fixtures/schemas/compose-spec.json'), 'utf8'));
    const ajv = new Ajv({ allErrors: true, strict: false });
    ajv.addMetaSchema({ ...require('ajv/dist/refs/json-schema-draft-07.json'), $id: schema.$schema });
    const validate = ajv.compile(schema);
    expect(validate(yamlOf('compose.yaml')) ? null : validate.errors).toBeNull();
  });

  it('cli - deploy k8s takes DATABASE_URL from the <app>-database Secret, and its other keys by envFrom, in the Deployments of groups hosting data only', () => {
    for (const group of ['writer', 'reader', 'echo']) {
      const path = `k8s/${group}-deployment.yaml`;
      const deployment = yamlOf(path);
      expect(() => new Deployment(deployment).validate(), path).not.toThrow();
      const container = deployment.spec.template.spec.containers[0];
      const database = container.env.filter((variable: any) => variable.name === 'DATABASE_URL');
      if (group === 'echo') {
        expect(database, path).toEqual([]);
        expect(container.envFrom, path).toEqual([{ secretRef: { name: 'data-app-nats' } }, { secretRef: { name: `data-app-${group}-nats` } }]);
      } else {
        expect(database, path).toEqual([{ name: 'DATABASE_URL', valueFrom: { secretKeyRef: { name: 'data-app-database', key: 'DATABASE_URL' } } }]);
        expect(container.envFrom, path).toEqual([
          { secretRef: { name: 'data-app-nats' } },
          { secretRef: { name: `data-app-${group}-nats` } },
          { secretRef: { name: 'data-app-database' } },
        ]);
      }
      expect(files.get(path)).not.toContain('postgres://');
    }
    expect(files.get('k8s/kustomization.yaml')).toContain(
      '# Before applying: kubectl create secret generic data-app-database --from-literal=DATABASE_URL=postgres://<user>:<password>@<host>:5432/data-app\n',
    );
  });

  it('cli - deploy keeps the embedded database of keel start out of the image', () => {
    for (const ignore of ['.dockerignore', 'Dockerfile.dockerignore']) expect(files.get(ignore)?.split('\n')).toContain('.keel');
  });

  it('cli - deploy of an application whose modules own no data has no PostgreSQL, no volume of it and no DATABASE_URL', () => {
    const topology = parseTopology({ processes: { app: { modules: ['*'] } } }, ['audit', 'ledger', 'echo']);
    const plan = new Map(planDeployment(topology, { app: 'data-app', image: 'data-app:0.1.0' }).map((file) => [file.path, file.contents]));
    const compose = parse(plan.get('compose.yaml')!);
    expect(Object.keys(compose.services)).toEqual(['app']);
    expect(compose.volumes).toBeUndefined();
    expect(compose.services.app.environment.DATABASE_URL).toBeUndefined();
    expect(compose.services.app.depends_on).toBeUndefined();
    expect(plan.get('k8s/app-deployment.yaml')).not.toContain('DATABASE_URL');
    expect(plan.get('k8s/kustomization.yaml')).not.toContain('database');
  });

  it('cli - deploy refuses DATABASE_URL in a group\'s env, and a group named like compose\'s postgres service', async () => {
    const inline = await deploy({ processes: { app: { modules: ['*'], env: { DATABASE_URL: 'postgres://keel:secret@db/shop' } } } }, 'deploy-inline');
    expect(inline.code).toBe(1);
    expect(inline.stderr).toContain('error E_TOPOLOGY: deploy-inline.json: processes.app.env.DATABASE_URL is set by keel deploy itself');
    expect(inline.stderr).toContain("The database URL comes from compose's PostgreSQL service, and in Kubernetes from a Secret");
    const named = await deploy({ processes: { postgres: { modules: ['*'] } } }, 'deploy-named');
    expect(named.code).toBe(1);
    expect(named.stderr).toContain('error E_TOPOLOGY: deploy-named.json: processes.postgres: compose.yaml runs a "postgres" service of its own; rename the process.');
  });
});
