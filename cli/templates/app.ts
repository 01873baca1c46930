/**
 * Templates of a new application (`keel new`): package.json, tsconfig, an empty manifest,
 * README and .gitignore. The starter module is written by the module generator.
 */

/** What the application templates need. */
export interface AppTemplateInput {
  /** Package name of the application. */
  readonly name: string;
  /** The keel dependency: a semver range, or a `file:` path to a packed tarball. */
  readonly keelSpec: string;
  /** The Node.js range the application runs on: keel's own `engines.node`. */
  readonly nodeRange: string;
  /** Version ranges of the packages the application uses, from keel's own package.json. */
  readonly versions: {
    readonly zod: string;
    readonly tsx: string;
    readonly typescript: string;
    readonly vitest: string;
    readonly typesNode: string;
    /**
     * vitest's bundler, pinned to the range keel is tested with: vite 8.4.0 declares an optional
     * dependency the npm registry does not serve, and `npm ci` then rejects the lock file that
     * `npm install` wrote (npm counts the missing optional package as drift).
     */
    readonly vite: string;
  };
  /** Name of the starter module. */
  readonly starter: string;
}

/**
 * The application's package.json.
 *
 * @example
 * ```ts
 * packageJsonFile({ name: 'my-shop', keelSpec: '^0.1.0', nodeRange: '>=22.12.0', versions, starter: 'greeter' });
 * ```
 */
export function packageJsonFile(input: AppTemplateInput): string {
  const manifest = {
    name: input.name,
    version: '0.1.0',
    private: true,
    type: 'module',
    engines: { node: input.nodeRange },
    scripts: {
      start: 'keel start',
      build: 'keel build',
      // Typechecks first: a test calls its module through the contract's typed client, so an
      // operation renamed or reshaped in contract.ts fails here, naming the test, not at run time.
      test: 'npm run typecheck && vitest run',
      typecheck: 'tsc --noEmit',
      keel: 'keel',
    },
    dependencies: {
      keel: input.keelSpec,
      zod: input.versions.zod,
    },
    devDependencies: {
      '@types/node': input.versions.typesNode,
      tsx: input.versions.tsx,
      typescript: input.versions.typescript,
      vite: input.versions.vite,
      vitest: input.versions.vitest,
    },
    // esbuild (under tsx and vitest) ships its binary in a platform package; its postinstall
    // only re-checks that binary, so npm 11's script review can skip it without a warning.
    allowScripts: { esbuild: false },
  };
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

/**
 * The application's tsconfig.json: strict NodeNext, as keel itself is built.
 *
 * @example
 * ```ts
 * writeFileSync('tsconfig.json', tsconfigFile());
 * ```
 */
export function tsconfigFile(): string {
  const config = {
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      lib: ['ES2023'],
      types: ['node'],
      strict: true,
      noUncheckedIndexedAccess: true,
      noImplicitOverride: true,
      verbatimModuleSyntax: true,
      isolatedModules: true,
      experimentalDecorators: true,
      skipLibCheck: true,
      noEmit: true,
    },
    include: ['modules', 'test', 'topologies', 'keel.config.ts'],
  };
  return `${JSON.stringify(config, null, 2)}\n`;
}

/**
 * The application's vitest.config.ts: a minute for hooks, where a test file starts the
 * application. A module that owns data makes that start open a PGlite database (PostgreSQL
 * compiled to WebAssembly) for the file, a few seconds each, and more when several test files
 * start at once on a machine of two cores, as CI has: vitest's 10 s default is too short there.
 *
 * @example
 * ```ts
 * writeFileSync('vitest.config.ts', vitestConfigFile());
 * ```
 */
export function vitestConfigFile(): string {
  return `/**
 * vitest's settings. A test file starts the application in a hook; once a module owns data,
 * that start opens a PGlite database in memory for the file (PostgreSQL compiled to
 * WebAssembly), which takes a few seconds, more when several files start at once.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: { hookTimeout: 60_000 },
});
`;
}

/**
 * An empty manifest; the module generator adds to its `modules` array.
 *
 * @example
 * ```ts
 * writeFileSync('modules/index.ts', manifestFile());
 * ```
 */
export function manifestFile(): string {
  return `/**
 * The application manifest: every module of the application, whichever process hosts it.
 * \`keel generate module\` adds new modules here; the kernel sorts them by dependency.
 *
 * @module
 */
import type { AnyModule } from 'keel';

/**
 * Every module of the application.
 *
 * @example
 * \`\`\`ts
 * const kernel = createKernel({ modules });
 * \`\`\`
 */
export const modules: readonly AnyModule[] = [];
`;
}

/**
 * The application's README: how to run, test, generate and split it.
 *
 * @example
 * ```ts
 * writeFileSync('README.md', readmeFile({ name: 'my-shop', keelSpec: '^0.1.0', nodeRange: '>=22.12.0', versions, starter: 'greeter' }));
 * ```
 */
export function readmeFile(input: AppTemplateInput): string {
  return `# ${input.name}

A modular monolith built with [keel](https://www.npmjs.com/package/keel): modules talk only
through typed contracts, so any of them can move to its own process without a code change.

## Run it

Node.js ${input.nodeRange} (see \`engines\` in package.json).

\`\`\`sh
npm install
npm test        # typechecks, then runs every module's tests, in one process
npm start       # the whole application in one process, serving HTTP on $PORT (default 3000)
\`\`\`

Call an operation (every operation is \`POST /<module>/<operation>\` with its input as JSON; the
OpenAPI document is at \`/openapi.json\`, a browsable one at \`/docs\`):

\`\`\`sh
curl -s -X POST http://127.0.0.1:3000/${input.starter}/hello -H 'content-type: application/json' -d '{"name":"Ada"}'
\`\`\`

\`/healthz\` and \`/readyz\` answer probes, \`/metrics\` serves Prometheus metrics. \`PORT=8080 npm start\`
picks another port, \`PORT=off\` serves no HTTP.

## Build and run in production

\`\`\`sh
npm run build                 # keel build: type-checks and compiles to JavaScript in dist/
npx keel start --build        # runs dist/ here, where the sources are too
\`\`\`

Where it runs, it needs only package.json, package-lock.json and dist/, and production
dependencies (no tsx, no TypeScript):

\`\`\`sh
mkdir ../${input.name}-prod && cp -r package.json package-lock.json dist ../${input.name}-prod/
cd ../${input.name}-prod && npm ci --omit=dev
node node_modules/keel/dist/cli/bin.js start   # a folder with a build and no sources runs the build
\`\`\`

\`npx keel deploy topologies/single.ts --out deploy\` writes a Dockerfile, a Compose file and
Kubernetes manifests for a topology.

## Layout

\`\`\`
modules/index.ts            the manifest: every module of the application
modules/<name>/contract.ts  a module's public door, the only file other modules import
modules/<name>/module.ts    its implementation; everything else in the folder is private
test/<name>-contract.test.ts  tests that call a module through its contract
\`\`\`

## Add a module

\`\`\`sh
npx keel generate module billing --depends-on ${input.starter} --operations sendInvoice,getInvoice --events invoiceSent
npx keel generate module mailer --subscribes-to billing   # a handler stub for each of billing's events
npx keel generate module ledger --data    # one that owns data: its own schema, a migration, db
\`\`\`

Each module gets a test that calls its operations through the contract's typed client. When
you rename or reshape an operation in \`contract.ts\`, \`npm test\` (which typechecks first)
names every handler and test to update.

A module that owns data keeps it in the embedded PostgreSQL (PGlite) in \`.keel/data/app\` under
\`npm start\`, in memory in the tests, and in PostgreSQL where \`DATABASE_URL\` is set;
\`npx keel db status\` shows where each module stands.

## Split it into services

Run the same tests over NATS (needs a running \`nats-server\`):

\`\`\`sh
KEEL_NATS_URL=nats://127.0.0.1:4222 npm test
\`\`\`

Host some modules per process, reaching the others over NATS:

\`\`\`sh
npx keel start --modules ${input.starter} --nats nats://127.0.0.1:4222
\`\`\`

Or run a whole topology locally: \`topologies/*.ts\` say which process hosts which modules
and how many replicas each runs. \`keel up\` starts \`nats-server\` from PATH on a loopback port when
the topology has several processes and no NATS URL, prefixes every line with its process,
restarts a crashed process, and drains everything on Ctrl-C:

\`\`\`sh
npx keel up topologies/single.ts
\`\`\`
`;
}

/**
 * `topologies/single.ts`: the whole application in one process.
 *
 * @example
 * ```ts
 * writeFileSync('topologies/single.ts', topologyFile('greeter'));
 * ```
 */
export function topologyFile(starter: string): string {
  return `/**
 * The whole application in one process: "*" is every module of the manifest that no other
 * process names, so a module added later runs here too, and \`http\` makes it the gateway that
 * serves every operation over HTTP (published by \`keel deploy\`). Copy this file to split it:
 * give a process the modules it hosts (such as { modules: ['${starter}'], replicas: 2 }), and
 * the others reach it over NATS.
 */
import { defineTopology } from 'keel/cli';

export default defineTopology({
  processes: {
    app: { modules: ['*'], http: 3000 },
  },
});
`;
}

/**
 * `keel.config.ts`: the application's configuration, with the gateway's defences spelt out as
 * comments to edit (their defaults are safe; docs/security.md says what each protects).
 *
 * @example
 * ```ts
 * writeFileSync('keel.config.ts', configFile());
 * ```
 */
export function configFile(): string {
  return `/**
 * The application's configuration, read by \`keel start\` (so by every process of \`keel up\` and
 * of a \`keel deploy\` image) and checked by \`keel up\` and \`keel deploy\`. A wrong field is
 * refused with its name. The gateway's defaults are safe; uncomment what you need otherwise.
 */
import { defineConfig } from 'keel/config';

export default defineConfig({
  gateway: {
    // Browsers on these origins may call the API (default: no cross-origin calls).
    // cors: { origins: ['https://app.example.com'] },
    // Requests per client address (default 1000 a minute; false: none, when a proxy limits).
    // rateLimit: { max: 1000, windowMs: 60_000 },
    // Behind a load balancer: believe its X-Forwarded-For, so the rate limit counts each client.
    // trustProxy: 1,
    // A client has this long to send a whole request (default 30 s), its headers 10 s.
    // requestTimeoutMs: 30_000,
    // maxConnections: 10_000,
    // bodyLimit: 1024 * 1024,
  },
});
`;
}

/**
 * The application's .gitignore; `.keel/` holds the embedded database `keel start` keeps its
 * modules' data in.
 *
 * @example
 * ```ts
 * writeFileSync('.gitignore', gitignoreFile());
 * ```
 */
export function gitignoreFile(): string {
  return 'node_modules/\ndist/\ncoverage/\n*.tgz\n.keel/\n';
}
