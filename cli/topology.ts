/**
 * Topology files for `keel up`: which process groups run, the modules each hosts, how many
 * replicas of each, and the NATS server they share. Written in TypeScript with
 * {@link defineTopology}, or as JSON of the same shape; validated with zod either way.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, extname, relative } from 'node:path';
import { z } from 'zod';
import { isDatabasePoolSize } from 'keel/databases';
import { LOG_LEVELS } from './config.js';
import { CLIError, CliErrorCode } from './errors.js';
import { HttpOperations } from './host.js';
import { MODULE_NAME_PATTERN } from './names.js';
import { importProjectFile, type Project } from './project.js';

/** The NATS adapter's rule for a subject prefix (adapters/nats/wire.ts `isValidPrefix`; a test keeps them equal). */
const SUBJECT_PREFIX = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
const PREFIX_RULE = 'a subject prefix is one or more tokens of letters, digits, _ and -, joined by dots';

/**
 * True when `prefix` is a subject prefix the NATS adapter takes (`keel`, `acme.shop`).
 *
 * @example
 * ```ts
 * isSubjectPrefix('acme.shop'); // true
 * isSubjectPrefix('acme.>'); // false
 * ```
 */
export function isSubjectPrefix(prefix: string): boolean {
  return SUBJECT_PREFIX.test(prefix);
}

/**
 * The prefix a topology's processes serve under when `keel up` or `keel dev` runs them: its
 * `nats.prefix`, else `KEEL_NATS_PREFIX` from the environment they inherit (trimmed, as the
 * adapter reads it), else `keel`. Refuses an environment prefix the adapter would refuse.
 *
 * @example
 * ```ts
 * localPrefix(topology, { KEEL_NATS_PREFIX: 'acme.shop' }); // 'acme.shop' when the topology sets none
 * ```
 */
export function localPrefix(topology: TopologyFile, env: Readonly<Record<string, string | undefined>>): string {
  if (topology.nats.prefix !== undefined) return topology.nats.prefix;
  const inherited = env['KEEL_NATS_PREFIX']?.trim();
  if (inherited === undefined || inherited === '') return 'keel';
  if (!isSubjectPrefix(inherited)) {
    throw new CLIError(CliErrorCode.E_USAGE, `KEEL_NATS_PREFIX "${inherited}" is not a subject prefix: ${PREFIX_RULE}.`, {
      hint: "Set it to a prefix such as acme.shop, or unset it and set the topology's nats.prefix.",
    });
  }
  return inherited;
}

/**
 * Variables a group's `env` may not set, because the topology decides them for `keel up`,
 * `keel dev` and `keel deploy` alike, with why and what to write instead.
 */
const SET_BY_THE_TOPOLOGY: Readonly<Record<string, string>> = {
  KEEL_NATS_PREFIX:
    "every process of a topology serves and calls under one subject prefix, and its NATS permissions are written for it: set the topology's nats.prefix instead",
  KEEL_PROCESS_NAME:
    'a process is named by its group\'s key (keel up adds #<n> to each replica\'s), and keeps its embedded database under that name: rename the group, or set OTEL_SERVICE_NAME to name its traces',
};

/**
 * Variables a group's `env` may set to one of a few values only, which its process would refuse
 * at every start (and compose or Kubernetes restart it, over and over): refused here instead, as
 * is a `KEEL_DATABASE_POOL_SIZE` that is not 1 to 100.
 */
const CLOSED_CHOICES: Readonly<Record<string, readonly string[]>> = {
  KEEL_HTTP_OPERATIONS: Object.values(HttpOperations),
  KEEL_LOG_LEVEL: LOG_LEVELS,
  KEEL_LOG_FORMAT: ['json', 'pretty'],
  KEEL_RELEASE_STARTUP_MEMORY: ['on', 'off'],
};

/** In a process group's `modules`: every module of the manifest that no other group names. */
export const EVERY_OTHER_MODULE = '*';

const kebab = (what: string) =>
  z.string().regex(MODULE_NAME_PATTERN, `${what} must be lower-kebab-case, such as "order-history"`);

/**
 * One process group of a topology.
 *
 * @example
 * ```ts
 * ProcessGroupSchema.parse({ modules: ['catalog'] }); // { modules: ['catalog'], replicas: 1, env: {} }
 * ```
 */
export const ProcessGroupSchema = z
  .object({
    /**
     * Modules this process hosts; it reaches every other module over NATS. `'*'` stands for every
     * module of the manifest that no other process names, so that a new module has a home.
     */
    modules: z
      .array(z.union([z.literal(EVERY_OTHER_MODULE), kebab('a module name')]))
      .min(1, 'list at least one module')
      .refine((modules) => !modules.includes(EVERY_OTHER_MODULE) || modules.length === 1, '"*" stands alone: write modules: ["*"]'),
    /** Identical processes to run (default 1); calls and events are balanced across them. */
    replicas: z.number().int().min(1).max(32).default(1),
    /**
     * HTTP gateway port of this process (needs the HTTP adapter). Its replicas listen on the
     * ports from it on (3000, 3001, …) under `keel up` and compose, which publish them on one host;
     * on Kubernetes they share the Service's port. `0`: each replica on any free port.
     */
    http: z.number().int().min(0).max(65_535).optional(),
    /**
     * Extra environment variables of this process. Not `KEEL_NATS_PREFIX` (the prefix is the
     * topology's `nats.prefix`) nor `KEEL_PROCESS_NAME` (the name is the group's key).
     */
    env: z
      .record(z.string(), z.string())
      .default({})
      .superRefine((env, context) => {
        for (const [key, message] of Object.entries(SET_BY_THE_TOPOLOGY)) {
          if (Object.hasOwn(env, key)) context.addIssue({ code: 'custom', path: [key], message });
        }
        // Exactly: keel deploy's NATS permissions read KEEL_HTTP_OPERATIONS as written, so " all " would get none.
        for (const [key, choices] of Object.entries(CLOSED_CHOICES)) {
          const value = env[key];
          if (value === undefined || choices.includes(value)) continue;
          context.addIssue({ code: 'custom', path: [key], message: `"${value}" is not one of ${choices.join(', ')} (leave it out for the default)` });
        }
        const poolSize = env['KEEL_DATABASE_POOL_SIZE'];
        if (poolSize !== undefined && !isDatabasePoolSize(poolSize)) {
          context.addIssue({ code: 'custom', path: ['KEEL_DATABASE_POOL_SIZE'], message: `"${poolSize}" is not a whole number of connections from 1 to 100` });
        }
      }),
  })
  .strict();

/**
 * The topology file's schema (use {@link parseTopology}, which also checks module names).
 *
 * @example
 * ```ts
 * TopologySchema.safeParse(JSON.parse(readFileSync('topologies/split.json', 'utf8'))).success;
 * ```
 */
export const TopologySchema = z
  .object({
    /** Shown in `keel up` output. */
    name: z.string().min(1).optional(),
    /** NATS server the processes share. Without a URL, `keel up` starts `nats-server` from PATH on a loopback port. */
    nats: z
      .object({
        url: z.string().min(1).optional(),
        /** Subject prefix (default `keel`): one or more tokens of letters, digits, `_` and `-`, joined by dots. */
        prefix: z
          .string()
          .refine(isSubjectPrefix, { error: (issue) => `${JSON.stringify(issue.input)} is not a subject prefix: ${PREFIX_RULE}, such as "acme.shop"` })
          .optional(),
      })
      .strict()
      .default({}),
    /** Process groups by name. */
    processes: z.record(z.string(), ProcessGroupSchema).superRefine((processes, context) => {
      const names = Object.keys(processes);
      if (names.length === 0) context.addIssue({ code: 'custom', message: 'define at least one process' });
      for (const name of names.filter((name) => !MODULE_NAME_PATTERN.test(name))) {
        context.addIssue({ code: 'custom', path: [name], message: `process name "${name}" must be lower-kebab-case, such as "back-office"` });
      }
    }),
  })
  .strict();

/**
 * A topology as written in a file (defaults may be left out).
 *
 * @example
 * ```ts
 * import type { TopologyInput } from 'keel/cli';
 *
 * const split: TopologyInput = {
 *   processes: { storefront: { modules: ['catalog', 'orders'] }, warehouse: { modules: ['inventory'], replicas: 2 } },
 * };
 * ```
 */
export type TopologyInput = z.input<typeof TopologySchema>;
/**
 * A validated topology, defaults filled in.
 *
 * @example
 * ```ts
 * const topology: TopologyFile = await loadTopology(project, '/home/me/shop/topologies/split.ts', manifestNames);
 * for (const [name, group] of Object.entries(topology.processes)) console.log(name, group.modules, group.replicas);
 * ```
 */
export type TopologyFile = z.output<typeof TopologySchema>;
/**
 * One validated process group.
 *
 * @example
 * ```ts
 * const group: ProcessGroup = ProcessGroupSchema.parse({ modules: ['inventory'], replicas: 2 });
 * group.env; // {} (defaulted)
 * ```
 */
export type ProcessGroup = z.output<typeof ProcessGroupSchema>;

/**
 * The HTTP port replica `replica` (from 1) of a group listens on under `keel up` and compose:
 * the group's `http` for the first, the ports after it for the others; `0` (any free port) for each.
 *
 * @example
 * ```ts
 * replicaHttpPort(8080, 2); // 8081
 * ```
 */
export function replicaHttpPort(http: number, replica: number): number {
  return http === 0 ? 0 : http + replica - 1;
}

/** Refuses a group whose HTTP ports (one per replica on one host, {@link replicaHttpPort}) pass 65535. */
function checkHttpPorts(topology: TopologyFile, source: string): void {
  for (const [name, group] of Object.entries(topology.processes)) {
    if (group.http === undefined || group.http === 0 || replicaHttpPort(group.http, group.replicas) <= 65_535) continue;
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `${source}: process "${name}" has ${group.replicas} replicas from HTTP port ${group.http}, past 65535; give it a lower http port.`);
  }
}

/**
 * Where two groups would listen on one HTTP port of one host (`keel up`, `keel dev`, compose),
 * each replica taking a port from its group's `http` on ({@link replicaHttpPort}): a sentence
 * naming both groups and the port, or undefined. On Kubernetes each group has a Service of its
 * own, so such a topology is valid there; on one host, the second process cannot listen.
 *
 * @example
 * ```ts
 * httpPortClash(topology); // 'processes "web" and "admin" both listen on HTTP port 3001 (admin: port 3001)'
 * ```
 */
export function httpPortClash(topology: TopologyFile): string | undefined {
  const taken = new Map<number, string>();
  for (const [name, group] of Object.entries(topology.processes)) {
    if (group.http === undefined || group.http === 0) continue;
    const last = replicaHttpPort(group.http, group.replicas);
    const range = group.replicas === 1 ? `port ${group.http}` : `ports ${group.http}-${last} (one per replica)`;
    for (let port = group.http; port <= last; port++) {
      const other = taken.get(port);
      if (other !== undefined) return `processes "${other}" and "${name}" both listen on HTTP port ${port} (${name}: ${range})`;
      taken.set(port, name);
    }
  }
  return undefined;
}

/**
 * Declares a topology with type checking; `keel up <file>` runs it.
 *
 * @example
 * ```ts
 * // topologies/split.ts
 * import { defineTopology } from 'keel/cli';
 *
 * export default defineTopology({
 *   processes: {
 *     storefront: { modules: ['catalog', 'orders'], replicas: 2 },
 *     'back-office': { modules: ['inventory', 'payments', 'notifications'] },
 *   },
 * });
 * ```
 */
export function defineTopology<const T extends TopologyInput>(topology: T): T {
  return topology;
}

/**
 * Checks a topology value: the schema, then the modules against the manifest (every name
 * known, every module hosted somewhere). Throws `E_TOPOLOGY` naming the problem.
 *
 * @example
 * ```ts
 * const topology = parseTopology(JSON.parse(text), ['catalog', 'orders'], 'topologies/split.json');
 * ```
 */
export function parseTopology(value: unknown, manifest: readonly string[], source = 'the topology'): TopologyFile {
  const parsed = TopologySchema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues
      .map((issue) => `  - ${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`)
      .join('\n');
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `${source} is not a valid topology:\n${issues}`, {
      hint: 'A topology is { processes: { <name>: { modules: [...], replicas?: n } }, nats?: { url } }.',
    });
  }
  const topology = expandEveryOtherModule(parsed.data, manifest, source);
  const hosted = new Set<string>();
  for (const [name, group] of Object.entries(topology.processes)) {
    for (const module of group.modules) {
      if (!manifest.includes(module)) {
        throw new CLIError(
          CliErrorCode.E_TOPOLOGY,
          `${source}: process "${name}" hosts "${module}", which is not in the manifest (it has: ${manifest.join(', ')}).`,
        );
      }
      hosted.add(module);
    }
  }
  checkHttpPorts(topology, source);
  const missing = manifest.filter((module) => !hosted.has(module));
  if (missing.length > 0) {
    throw new CLIError(
      CliErrorCode.E_TOPOLOGY,
      `${source}: no process hosts ${missing.map((module) => `"${module}"`).join(', ')}; calls to ${missing.length === 1 ? 'it' : 'them'} would find no responders.`,
      { hint: `Add ${missing.length === 1 ? 'it' : 'each'} to the modules of one of the processes, or give one process modules: ["*"] (every module no other process names).` },
    );
  }
  return topology;
}

/** Replaces `['*']` with the manifest's modules that no other group names. */
function expandEveryOtherModule(topology: TopologyFile, manifest: readonly string[], source: string): TopologyFile {
  const groups = Object.entries(topology.processes);
  const wildcards = groups.filter(([, group]) => group.modules.includes(EVERY_OTHER_MODULE));
  if (wildcards.length === 0) return topology;
  if (wildcards.length > 1) {
    throw new CLIError(
      CliErrorCode.E_TOPOLOGY,
      `${source}: processes ${wildcards.map(([name]) => `"${name}"`).join(' and ')} both host "*"; one process at most hosts every other module.`,
    );
  }
  const named = new Set(groups.flatMap(([, group]) => group.modules));
  const rest = manifest.filter((module) => !named.has(module));
  if (rest.length === 0) {
    throw new CLIError(
      CliErrorCode.E_TOPOLOGY,
      `${source}: process "${wildcards[0]?.[0]}" hosts "*", every module that no other process names, and the others name them all.`,
      { hint: 'Remove that process, or move a module to it.' },
    );
  }
  const processes = Object.fromEntries(
    groups.map(([name, group]) => [name, group.modules.includes(EVERY_OTHER_MODULE) ? { ...group, modules: rest } : group]),
  );
  return { ...topology, processes };
}

/**
 * The default topology: every module in one process.
 *
 * @example
 * ```ts
 * singleProcessTopology(['catalog', 'orders']); // { processes: { app: { modules: ['catalog', 'orders'], replicas: 1, env: {} } }, nats: {} }
 * ```
 */
export function singleProcessTopology(manifest: readonly string[]): TopologyFile {
  return { nats: {}, processes: { app: { modules: [...manifest], replicas: 1, env: {} } } };
}

/**
 * Loads a topology file (`.ts`, `.js`, `.mjs` with a default export, or `.json`) and checks it.
 *
 * @example
 * ```ts
 * const topology = await loadTopology(project, '/home/me/shop/topologies/split.ts', ['catalog', 'orders']);
 * ```
 */
export async function loadTopology(project: Project, path: string, manifest: readonly string[]): Promise<TopologyFile> {
  const shown = relative(project.root, path) || path;
  if (!existsSync(path)) {
    const folder = dirname(path);
    const near = existsSync(folder) ? readdirSync(folder).filter((name) => /\.(ts|mts|js|mjs|json)$/.test(name)).sort() : [];
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `There is no topology file ${shown}.`, {
      hint: near.length > 0 ? `${relative(project.root, folder) || '.'} has: ${near.join(', ')}.` : 'Give the path of a topology file, such as topologies/split.ts.',
    });
  }
  let value: unknown;
  try {
    if (extname(path) === '.json') {
      value = JSON.parse(readFileSync(path, 'utf8'));
    } else {
      const exports = await importProjectFile(project, path);
      value = exports['default'] ?? exports['topology'];
    }
  } catch (error) {
    if (error instanceof CLIError) throw error;
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `Cannot load ${shown}: ${(error as Error).message}`, { cause: error });
  }
  if (value === undefined) {
    throw new CLIError(CliErrorCode.E_TOPOLOGY, `${shown} has no default export; export default defineTopology({ ... }).`);
  }
  return parseTopology(value, manifest, shown);
}

/**
 * True when a topology needs NATS: more than one process runs.
 *
 * @example
 * ```ts
 * needsNats(singleProcessTopology(['catalog'])); // false
 * ```
 */
export function needsNats(topology: TopologyFile): boolean {
  return Object.values(topology.processes).reduce((count, group) => count + group.replicas, 0) > 1;
}
