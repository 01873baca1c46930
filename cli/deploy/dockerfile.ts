/**
 * The image: one for every process group (the group is chosen at run time by `KEEL_MODULES`),
 * built in two stages so that the runtime stage holds production dependencies and the build only.
 */
import { DEFAULT_DEPLOY_OPTIONS, generatedHeader, healthCommand, type ResolvedDeployOptions } from './plan.js';

/** The `keel` command inside the image, started by node itself (no npm or shell between). */
const KEEL_BIN = 'node_modules/keel/dist/cli/bin.js';

/** The folder of `/app` (the WORKDIR) where the image keeps the compile cache `keel warm` fills. */
const COMPILE_CACHE_FOLDER = '.node-compile-cache';

/** The first Node line whose images have the module compile cache (22.1 and later; `node:22-slim` is the newest 22). */
const COMPILE_CACHE_NODE_MAJOR = 22;

/**
 * Node's module compile cache, baked into the image: `keel warm` compiles what `keel start`
 * loads into a folder of the image, so that a container's first start reads the bytecode
 * instead of compiling (docs/deploy.md, "The Dockerfile"). Node keeps the cache per user, so the
 * image's user (`node`, uid 1000) fills it, in the one folder it owns; a read-only root file
 * system (the Kubernetes manifests) only stops later additions, which Node skips quietly.
 */
function compileCacheLines(): string[] {
  return [
    `ENV NODE_COMPILE_CACHE=/app/${COMPILE_CACHE_FOLDER}`,
    // uid and gid 1000: the official image's `node` user.
    `RUN mkdir ${COMPILE_CACHE_FOLDER} && chown 1000:1000 ${COMPILE_CACHE_FOLDER}`,
    'USER node',
    `RUN node ${KEEL_BIN} warm`,
  ];
}

/**
 * The Dockerfile: a build stage (`npm ci`, `npx keel build`) and a runtime stage on the same
 * official `node:<major>-slim` image with `npm ci --omit=dev` and the build folder, run as
 * the image's non-root `node` user, with an exec-form `CMD` (so SIGTERM reaches node and keel
 * drains) and a `HEALTHCHECK` on `/healthz` done by node.
 *
 * @example
 * ```ts
 * writeFileSync('deploy/Dockerfile', dockerfile(resolveDeployOptions({ app: 'my-shop', image: 'my-shop:0.1.0' })));
 * ```
 */
export function dockerfile(options: ResolvedDeployOptions): string {
  const base = `node:${options.nodeMajor}-slim`;
  const port = DEFAULT_DEPLOY_OPTIONS.containerPort;
  return [
    // BuildKit (Docker's default builder since 23.0) for the npm cache mounts below.
    '# syntax=docker/dockerfile:1',
    `# ${generatedHeader(options)}`,
    '# Build from the application folder: docker build -t ' + options.image + ' -f <out>/Dockerfile .',
    '# One image for every process group: KEEL_MODULES picks the modules a container hosts.',
    '',
    `FROM ${base} AS build`,
    'WORKDIR /app',
    'COPY package.json package-lock.json ./',
    // The npm cache lives in a BuildKit cache mount: rebuilds reuse it, and no layer keeps it.
    'RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund',
    'COPY . .',
    'RUN npx keel build',
    '',
    `FROM ${base} AS runtime`,
    `ENV NODE_ENV=production PORT=${port} KEEL_HTTP_HOST=0.0.0.0`,
    'WORKDIR /app',
    'COPY package.json package-lock.json ./',
    'RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund',
    `COPY --from=build /app/${options.buildDir} ./${options.buildDir}`,
    // The files stay root's: the process (uid 1000) reads them and cannot change them.
    ...(options.nodeMajor >= COMPILE_CACHE_NODE_MAJOR ? compileCacheLines() : ['USER node']),
    `EXPOSE ${port}`,
    `HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 CMD ${JSON.stringify(healthCommand())}`,
    `CMD ${JSON.stringify(['node', KEEL_BIN, 'start'])}`,
    '',
  ].join('\n');
}

/**
 * The `.dockerignore` beside the Dockerfile: what the build stage must not copy from the
 * application folder (it installs and builds its own), nor the embedded database of
 * `keel start` on the developer's machine (`.keel/`), nor a file holding a secret
 * ({@link SECRET_FILES}).
 *
 * @example
 * ```ts
 * writeFileSync('.dockerignore', dockerignore({ buildDir: 'dist' }));
 * ```
 */
export function dockerignore(options: Pick<ResolvedDeployOptions, 'buildDir'> = { buildDir: 'dist' }): string {
  return [...new Set(['node_modules', 'dist', options.buildDir, '.git', '*.tgz', '.keel', ...SECRET_FILES])].join('\n') + '\n';
}

/**
 * Files that hold secrets, kept out of the build context wherever they are: the NATS passwords
 * `keel deploy` writes (`<out>/nats/*.env`, the server's `nats-server.conf` with their hashes, and
 * `<out>/k8s/nats-credentials/`), and a developer's `.env` files. The build stage
 * copies the application folder, so anything not ignored here would be in one of its layers.
 */
const SECRET_FILES = ['**/nats/*.env', '**/nats/nats-server.conf', '**/k8s/nats-credentials/**', '**/.env', '**/.env.*'];
