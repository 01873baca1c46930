/**
 * `keel warm`: fills Node's module compile cache (Node 22.1 and later) with the code `keel start`
 * loads from the build (keel, its dependencies, the application's modules and configuration,
 * the NATS transport, the HTTP gateway and its plugins, the PostgreSQL driver), without starting
 * anything, so that a process started later with the same cache skips compiling it. The
 * Dockerfile `keel deploy` writes runs it in the image, as the image's user: a container's first
 * start then finds the cache warm (docs/deploy.md, "The Dockerfile").
 */
import module from 'node:module';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { loadAppConfig } from '../app-config.js';
import { findProject, loadManifest } from '../project.js';

/** What `node:module` offers for the compile cache, on the Node lines that have it. */
interface CompileCacheApi {
  enableCompileCache?: () => { status: number; message?: string; directory?: string };
  flushCompileCache?: () => void;
  getCompileCacheDir?: () => string | undefined;
  constants?: { compileCacheStatus?: Record<'FAILED' | 'ENABLED' | 'ALREADY_ENABLED' | 'DISABLED', number> };
}

/**
 * What `keel start` loads only when the process needs it (lazily, to start faster), and which a
 * deployed process needs: the transport, the gateway and the plugins its defaults turn on, the
 * PostgreSQL driver, and jose (the first bearer token). Left out: the embedded PGlite (a deployed
 * process has a `DATABASE_URL`) and OpenTelemetry (tracing is opted into).
 */
const LAZY_CODE = [
  () => import('./start.js'),
  () => import('keel/nats'),
  () => import('keel/http'),
  () => import('keel/postgres'),
  () => import('@fastify/cors'),
  () => import('@fastify/helmet'),
  () => import('@fastify/rate-limit'),
  () => import('@fastify/swagger'),
  () => import('@fastify/swagger-ui'),
  () => import('jose'),
] as const;

/**
 * fastify loads its schema compilers (ajv, fast-json-stringify) when a server with a schema
 * route gets ready, as the gateway does at start: one on no port, closed at once, loads them.
 */
async function compileARoute(): Promise<void> {
  const { default: fastify } = await import('fastify');
  const server = fastify();
  server.post('/', { schema: { body: { type: 'object' }, response: { 200: { type: 'object' } } } }, () => ({}));
  await server.ready();
  await server.close();
}

export default defineCommand({
  meta: {
    name: 'warm',
    description: "Fill Node's compile cache with the code keel start loads, so that a start skips compiling it",
    examples: ['keel warm', 'NODE_COMPILE_CACHE=/app/.node-compile-cache keel warm'],
  },
  args: {},
  run: async ({ data }) => {
    const cli = contextOf(data);
    const api = module as unknown as CompileCacheApi;
    if (api.enableCompileCache === undefined) {
      cli.stderr.write(`keel warm: Node ${process.versions.node} has no module compile cache (Node 22.1 and later have one): nothing to warm.\n`);
      return;
    }
    const enabled = api.enableCompileCache();
    const status = api.constants?.compileCacheStatus;
    if (enabled.status === status?.DISABLED) {
      cli.stderr.write('keel warm: Node\'s compile cache is turned off here (NODE_DISABLE_COMPILE_CACHE is set): nothing to warm.\n');
      return;
    }
    if (enabled.status === status?.FAILED) {
      throw new CLIError(CliErrorCode.E_USAGE, `Node could not open its compile cache: ${enabled.message ?? 'no reason given'}.`, {
        hint: 'Give NODE_COMPILE_CACHE a folder this user can write (Node keeps the cache per user and Node version).',
      });
    }
    const started = Date.now();
    const project = findProject(cli.cwd, { fromBuild: true });
    // The application's code may need an environment the image's build does not have (a secret read at import,
    // a configuration value): what does not load or check here is reported, and keel start loads and checks it where it runs.
    const report = (what: string) => (error: unknown) => {
      cli.stderr.write(`keel warm: ${what} did not load or check here (${error instanceof Error ? error.message : String(error)}); keel start loads it where it runs.\n`);
    };
    await loadManifest(project).catch(report('the modules'));
    await loadAppConfig(project, { checkGateway: true }).catch(report('the configuration'));
    for (const load of LAZY_CODE) await load();
    await compileARoute();
    api.flushCompileCache?.();
    const directory = api.getCompileCacheDir?.() ?? enabled.directory ?? '';
    const modifiedAt = readdirSync(directory).map((name) => statSync(join(directory, name)).mtimeMs);
    const written = modifiedAt.filter((modified) => modified >= started).length;
    const build = project.build === undefined ? 'the sources' : `${relative(cli.cwd, project.build.outDir) || '.'}/`;
    cli.stdout.write(
      `keel warm: ${written} file${written === 1 ? '' : 's'} of keel, its dependencies and the application (from ${build}) compiled into ${directory} (${modifiedAt.length} there in all): ` +
        'a process of this user and Node version started with this cache skips compiling them.\n',
    );
  },
});
