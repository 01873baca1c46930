/**
 * `keel deploy <topology> --out <dir>`: writes the files a team hands to Docker and
 * Kubernetes (Dockerfile, compose.yaml, k8s/) from a topology's process groups, replicas and
 * environment; with `--tracing`, an OpenTelemetry Collector and Jaeger too. The generators live in `cli/deploy/`; this command loads, checks and writes.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { contextOf, defineCommand } from '../command.js';
import { appNameOf, defaultImage, GENERATED_MARK, passwordsFromEnvFiles, planDeployment, type DeployFile } from '../deploy/index.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { loadAppConfig } from '../app-config.js';
import { DEFAULT_PROJECT_SETTINGS, findProject, loadManifest, projectSettings } from '../project.js';
import { topologyAt } from '../tooling/command-support.js';
import { httpPortClash } from '../topology.js';

/** `name` and `version` of the application's package.json. */
function packageOf(root: string): { name: string; version: string } {
  try {
    const parsed = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
    return {
      name: typeof parsed.name === 'string' ? parsed.name : 'app',
      version: typeof parsed.version === 'string' ? parsed.version : 'latest',
    };
  } catch (error) {
    throw new CLIError(CliErrorCode.E_NO_PROJECT, `${join(root, 'package.json')} cannot be read: ${(error as Error).message}`, { cause: error });
  }
}

/**
 * The folders under `--out` that `keel deploy` writes files into: its root, `k8s/`,
 * `k8s/nats-credentials/` and `nats/`.
 * Only they are searched for stale files, never deeper: a subfolder may hold another
 * deployment's files (`--out .` beside `deploy/`, or `deploy/` holding `staging/`).
 */
const GENERATED_FOLDERS = ['', 'k8s/', 'k8s/nats-credentials/', 'nats/'] as const;

/** The files (not folders) directly in `folder`, none when it does not exist. */
function filesIn(folder: string): string[] {
  if (!existsSync(folder) || !statSync(folder).isDirectory()) return [];
  return readdirSync(folder, { withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name);
}

/**
 * Files an earlier `keel deploy` wrote in `out`'s own folders that this plan no longer has (a
 * group removed, a PDB no longer needed, the NATS files and keel's own `.gitignore` of a topology
 * that needed NATS; a `.gitignore` of the user's, to which keel added lines, or one of keel's to which
 * the user added some, stays).
 */
function staleGenerated(out: string, plan: readonly DeployFile[]): string[] {
  const planned = new Set(plan.map((file) => file.path));
  return GENERATED_FOLDERS.flatMap((folder) => filesIn(join(out, folder)).map((name) => `${folder}${name}`)).filter(
    (path) =>
      !planned.has(path) &&
      (/\.ya?ml$/.test(path) || /^nats\/[^/]*\.(env|conf)$/.test(path) || path === '.gitignore') &&
      isKeelsAlone(path, readFileSync(join(out, path), 'utf8')),
  );
}

/** The lines of the `.gitignore` keel deploy writes (cli/deploy/nats-files.ts). */
const KEEL_GITIGNORE_LINES = new Set(['nats/', 'k8s/nats-credentials/']);

/**
 * Whether a file keel deploy wrote holds nothing else: a `.gitignore` it wrote with `--out .` is the
 * project's, to which the user may have added lines (node_modules/), which removing it would lose.
 */
function isKeelsAlone(path: string, text: string): boolean {
  if (!text.startsWith(`# ${GENERATED_MARK}`)) return false;
  if (path !== '.gitignore') return true;
  return text.split('\n').every((line) => line.trim() === '' || line.trim().startsWith('#') || KEEL_GITIGNORE_LINES.has(line.trim()));
}

/** Removes the folders keel deploy writes in `out` that are left empty, deepest first; never one holding anything. */
function removeEmptyGeneratedFolders(out: string): void {
  for (const folder of [...GENERATED_FOLDERS].reverse()) {
    const path = join(out, folder);
    if (folder !== '' && existsSync(path) && statSync(path).isDirectory() && readdirSync(path).length === 0) rmdirSync(path);
  }
}

/** The NATS passwords an earlier `keel deploy` wrote under `out/nats/`, by user: kept, so that a redeploy does not lock out running processes. */
function earlierNatsPasswords(out: string): Record<string, string> {
  const folder = join(out, 'nats');
  if (!existsSync(folder)) return {};
  const texts = readdirSync(folder)
    .filter((file) => file.endsWith('.env'))
    .map((file) => readFileSync(join(folder, file), 'utf8'))
    .filter((text) => text.startsWith(`# ${GENERATED_MARK}`));
  return passwordsFromEnvFiles(texts);
}

export default defineCommand({
  meta: {
    name: 'deploy',
    description: 'Write a Dockerfile, compose.yaml and Kubernetes manifests for a topology',
    examples: [
      'keel deploy topologies/split.ts --out deploy',
      'keel deploy topologies/per-module.ts --out deploy --image registry.example.com/shop:1.4.0 --force',
      'keel deploy topologies/split.ts --out deploy --tracing',
    ],
  },
  args: {
    topology: { type: 'positional', description: 'Topology file (.ts, .js or .json)', required: true },
    out: { type: 'string', description: 'Folder to write (must be empty unless --force)', default: 'deploy', valueHint: 'dir' },
    image: { type: 'string', description: 'Image every group runs (default: <package name>:<version>)', valueHint: 'name:tag' },
    name: { type: 'string', description: 'Application name for compose and Kubernetes objects (default: from the package name)', valueHint: 'app' },
    node: { type: 'string', description: 'Major version of the node base image', default: '24', valueHint: 'major' },
    force: { type: 'boolean', description: 'Write into a folder that is not empty, replacing what keel deploy wrote there before', default: false },
    tracing: {
      type: 'boolean',
      description: 'Send traces over OTLP: compose gets an OpenTelemetry Collector and Jaeger (UI on 16686), every group the OTEL_* variables',
      default: false,
    },
    'otlp-endpoint': {
      type: 'string',
      description: 'With --tracing, the OTLP/HTTP collector the Kubernetes Deployments send to (default: http://otel-collector:4318)',
      valueHint: 'url',
    },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const project = findProject(cli.cwd);
    const topologyPath = resolve(cli.cwd, args.topology);
    const topology = await topologyAt(project, cli.cwd, args.topology);
    // The image's `keel build` compiles keel.config.ts and each process reads it there: a wrong one is refused now, not at start.
    const { path: configPath, config } = await loadAppConfig(project);
    const pkg = packageOf(project.root);
    const nodeText = String(args.node).trim();
    if (!/^\d+$/.test(nodeText)) {
      throw new CLIError(CliErrorCode.E_USAGE, `--node "${nodeText}" is not a Node.js major version such as 24.`);
    }
    const out = resolve(cli.cwd, args.out);
    const manifest = await loadManifest(project);
    const plan = planDeployment(topology, {
      app: args.name ?? appNameOf(pkg.name),
      image: args.image ?? defaultImage(pkg),
      nodeMajor: Number(nodeText),
      source: relative(project.root, topologyPath).replaceAll('\\', '/') || args.topology,
      buildDir: (projectSettings(project.root)?.outDir ?? DEFAULT_PROJECT_SETTINGS.outDir).replaceAll('\\', '/').replace(/^\.\/|\/+$/g, ''),
      dataModules: manifest.filter((module) => module.data !== undefined).map((module) => module.name),
      modules: manifest,
      natsPasswords: args.force && existsSync(out) && statSync(out).isDirectory() ? earlierNatsPasswords(out) : {},
      tracing: args.tracing,
      otlpEndpoint: args['otlp-endpoint'],
      // Its gateway's maxTimeoutMs lengthens the grace periods.
      config,
    });

    if (existsSync(out) && !statSync(out).isDirectory()) {
      throw new CLIError(CliErrorCode.E_USAGE, `--out ${args.out} is a file, not a folder.`);
    }
    if (existsSync(out) && readdirSync(out).length > 0) {
      if (!args.force) {
        throw new CLIError(CliErrorCode.E_TARGET_EXISTS, `--out ${args.out} is not empty; keel deploy will not overwrite it.`, {
          hint: 'Choose an empty folder, or pass --force to replace the files keel deploy writes there.',
        });
      }
    }
    if (configPath !== undefined) cli.stdout.write(`keel deploy: checked ${relative(cli.cwd, configPath)}; every process of the image reads it from the build\n`);
    if (args.force && existsSync(out)) {
      for (const path of staleGenerated(out, plan)) {
        rmSync(join(out, path));
        cli.stdout.write(`keel deploy: removed ${relative(cli.cwd, join(out, path))} (not among the files this topology makes)\n`);
      }
      removeEmptyGeneratedFolders(out);
    }
    for (const file of plan) {
      const path = join(out, file.path);
      mkdirSync(dirname(path), { recursive: true });
      // A secret's file that existed keeps its mode through writeFileSync: narrow it before writing.
      if (file.mode !== undefined && existsSync(path)) chmodSync(path, file.mode);
      writeFileSync(path, file.path === '.gitignore' ? gitignoreWith(path, file.contents) : file.contents, file.mode === undefined ? {} : { mode: file.mode });
      cli.stdout.write(`keel deploy: wrote ${relative(cli.cwd, path)}\n`);
    }
    const clash = httpPortClash(topology);
    if (clash !== undefined) {
      cli.stderr.write(
        `keel deploy: warning: ${clash}: compose.yaml publishes both on one host, where docker compose up fails to start the second; ` +
          'the Kubernetes files are not affected (each group has a Service of its own). Give each group HTTP ports of its own to run compose.yaml.\n',
      );
    }
    if (pkg.name === 'keel') {
      // keel's own repository (the example shop): npm links no package's bin into itself.
      cli.stderr.write(
        "keel deploy: warning: this is keel's own repository, not an application that depends on keel: the Dockerfile runs keel from " +
          'node_modules/keel (npx keel build, node node_modules/keel/dist/cli/bin.js start), which only such an application has. ' +
          'The other files hold as they are; to build the image, make the application with keel new (docs/deploy.md).\n',
      );
    }
  },
});

/**
 * The `.gitignore` of the output folder: keel's lines, added to one the folder already has (with
 * `--out .` it is the project's own) rather than replacing it; lines it already has are not
 * repeated. One keel wrote before is replaced.
 */
function gitignoreWith(path: string, ours: string): string {
  if (!existsSync(path)) return ours;
  const existing = readFileSync(path, 'utf8');
  if (existing.includes(GENERATED_MARK)) return ours; // keel's own, from an earlier run: replaced like the others
  const lines = new Set(existing.split('\n').map((line) => line.trim()));
  const missing = ours.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('#') && !lines.has(line.trim()));
  if (missing.length === 0) return existing;
  return `${existing.replace(/\n*$/, '\n')}# Added by keel deploy: the generated NATS passwords, never to be committed.\n${missing.join('\n')}\n`;
}
