/**
 * `keel generate module`: plan every file first, check everything that can be wrong, then
 * write. A refused plan writes nothing; a failed write removes what it had written.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { isContract } from 'keel/transport';
import { CLIError, CliErrorCode } from './errors.js';
import { addToManifest } from './manifest.js';
import { assertEventName, assertGeneratedIdentifiers, assertModuleName, assertOperationName, namedList } from './names.js';
import { findCycle, importProjectFile, loadManifest, moduleGraph, type ModuleNode, type Project } from './project.js';
import {
  contractFile,
  migrationFile,
  moduleFile,
  moduleIdentifiers,
  moduleTestFile,
  testSupportFile,
  type DependencyImport,
  type SubscriptionImport,
} from './templates/module.js';

/** One file a plan creates or changes. */
export interface PlannedFile {
  /** Absolute path. */
  readonly path: string;
  readonly content: string;
  /** `create` for a new file, `update` for the manifest. */
  readonly action: 'create' | 'update';
  /** What the change is, for the summary. */
  readonly note?: string;
  /** The file's content before an `update`. */
  readonly before?: string;
}

/** What `keel generate module` will do. */
export interface ModulePlan {
  readonly name: string;
  readonly files: readonly PlannedFile[];
}

/** Options of {@link planModule}. */
export interface PlanModuleOptions {
  readonly name: string;
  /** Comma-separated module names the new module depends on. */
  readonly dependsOn?: string | undefined;
  /** Comma-separated camelCase names of events the new module publishes. */
  readonly events?: string | undefined;
  /** Comma-separated camelCase names of its operations (default: the placeholder `hello`). */
  readonly operations?: string | undefined;
  /** Comma-separated module names whose events the new module handles. */
  readonly subscribesTo?: string | undefined;
  /** The new module owns data: `migrations/001_<name>.sql` and a `hello` that uses `db`. */
  readonly data?: boolean | undefined;
}

/** Where a planned file goes, relative to the project, with forward slashes. */
export function shownPath(project: Project, path: string): string {
  return relative(project.root, path).split(sep).join('/');
}

/** An import specifier from `fromDir` to a `.ts` file, in NodeNext form (`./x.js`). */
function importSpecifier(fromDir: string, file: string): string {
  const path = relative(fromDir, file).split(sep).join('/').replace(/\.ts$/, '.js');
  return path.startsWith('.') ? path : `./${path}`;
}

async function loadDependencyContract(
  project: Project,
  name: string,
  moduleDir: string,
): Promise<{ readonly dependency: DependencyImport; readonly contract: { readonly events: Record<string, unknown> } }> {
  const file = join(project.modulesDir, name, 'contract.ts');
  if (!existsSync(file)) {
    throw new CLIError(
      CliErrorCode.E_MANIFEST,
      `Module "${name}" is in the manifest, but ${shownPath(project, file)} does not exist; the generator imports a dependency's contract from its module folder.`,
    );
  }
  const exports = await importProjectFile(project, file);
  const exportName = Object.keys(exports).find((key) => isContract(exports[key]) && (exports[key] as { name: string }).name === name);
  if (exportName === undefined) {
    throw new CLIError(
      CliErrorCode.E_MANIFEST,
      `${shownPath(project, file)} exports no contract named "${name}" (made with defineContract({ name: '${name}', ... })).`,
    );
  }
  return {
    dependency: { name, exportName, importPath: importSpecifier(moduleDir, file) },
    contract: exports[exportName] as { readonly events: Record<string, unknown> },
  };
}

async function dependencyImport(project: Project, name: string, moduleDir: string): Promise<DependencyImport> {
  return (await loadDependencyContract(project, name, moduleDir)).dependency;
}

/** A contract to subscribe to, with its events read from the loaded contract. */
async function subscriptionImport(project: Project, name: string, moduleDir: string): Promise<SubscriptionImport> {
  const { dependency, contract } = await loadDependencyContract(project, name, moduleDir);
  return { ...dependency, events: Object.keys(contract.events ?? {}) };
}

/**
 * Checks a new module against the project and returns the files to write. Throws a
 * {@link CLIError} (and writes nothing) for an invalid name, an existing module, an unknown
 * dependency or a dependency cycle.
 *
 * @example
 * ```ts
 * const plan = await planModule(findProject(process.cwd()), { name: 'billing', dependsOn: 'orders', events: 'invoiceSent', data: true });
 * writePlan(plan);
 * ```
 */
export async function planModule(project: Project, options: PlanModuleOptions): Promise<ModulePlan> {
  const name = assertGeneratedIdentifiers(assertModuleName(options.name));
  const dependsOn = namedList(options.dependsOn, '--depends-on').map((dependency) => assertModuleName(dependency, 'Dependency'));
  const events = namedList(options.events, '--events').map(assertEventName);
  const operations = namedList(options.operations, '--operations').map(assertOperationName);
  const subscribesTo = namedList(options.subscribesTo, '--subscribes-to').map((source) => assertModuleName(source, 'Subscribed module'));
  const nodes = moduleGraph(await loadManifest(project));
  return planAgainst(
    project,
    nodes,
    { name, dependsOn, events, operations, subscribesTo, data: options.data === true },
    (dependency, moduleDir) => dependencyImport(project, dependency, moduleDir),
    undefined,
    (source, moduleDir) => subscriptionImport(project, source, moduleDir),
  );
}

/** The part of planning shared with `keel new`, against an already known graph. */
export async function planAgainst(
  project: Project,
  nodes: readonly ModuleNode[],
  request: {
    readonly name: string;
    readonly dependsOn: readonly string[];
    readonly events: readonly string[];
    readonly operations?: readonly string[];
    readonly subscribesTo?: readonly string[];
    readonly data?: boolean;
  },
  resolveDependency: (name: string, moduleDir: string) => Promise<DependencyImport>,
  manifestSource: string = readFileSync(project.manifestPath, 'utf8'),
  resolveSubscription: (name: string, moduleDir: string) => Promise<SubscriptionImport> = () =>
    Promise.reject(new Error('this plan subscribes to no contract')),
): Promise<ModulePlan> {
  const { name, dependsOn, events } = request;
  const operations = request.operations ?? [];
  const subscribesTo = request.subscribesTo ?? [];
  const data = request.data === true;
  const known = nodes.map((node) => node.name);
  const moduleDir = join(project.modulesDir, name);
  if (known.includes(name)) {
    throw new CLIError(CliErrorCode.E_MODULE_EXISTS, `Module "${name}" is already in ${shownPath(project, project.manifestPath)}; choose another name.`);
  }
  if (existsSync(moduleDir)) {
    throw new CLIError(
      CliErrorCode.E_MODULE_EXISTS,
      `${shownPath(project, moduleDir)}/ already exists (though the manifest does not list "${name}"); remove it or choose another name.`,
    );
  }
  const unknown = dependsOn.filter((dependency) => dependency !== name && !known.includes(dependency));
  if (unknown.length > 0) {
    throw new CLIError(
      CliErrorCode.E_UNKNOWN_MODULE,
      `"${name}" cannot depend on ${unknown.map((dependency) => `"${dependency}"`).join(', ')}: no such module in the manifest ` +
        `(it has: ${known.join(', ') || 'no modules yet'}).`,
      { hint: 'Generate the dependency first, or fix the name.' },
    );
  }
  const unknownSources = subscribesTo.filter((source) => source !== name && !known.includes(source));
  if (unknownSources.length > 0) {
    throw new CLIError(
      CliErrorCode.E_UNKNOWN_MODULE,
      `"${name}" cannot subscribe to ${unknownSources.map((source) => `"${source}"`).join(', ')}: no such module in the manifest ` +
        `(it has: ${known.join(', ') || 'no modules yet'}).`,
      { hint: 'Generate that module first, or fix the name.' },
    );
  }
  if (subscribesTo.includes(name)) {
    throw new CLIError(
      CliErrorCode.E_INVALID_NAME,
      `"${name}" cannot subscribe to its own events with --subscribes-to: it has none yet. Add the subscription in module.ts once its contract declares events.`,
    );
  }
  const cycle = findCycle([...nodes, { name, dependsOn, subscribesTo: [] }]);
  if (cycle !== undefined) {
    throw new CLIError(
      CliErrorCode.E_DEPENDENCY_CYCLE,
      `Depending on ${dependsOn.join(', ')} would make a dependency cycle: ${cycle.join(' → ')}.`,
      { hint: 'Replace one call with an event, or move the shared part into its own module.' },
    );
  }

  const imports: DependencyImport[] = [];
  for (const dependency of dependsOn) imports.push(await resolveDependency(dependency, moduleDir));
  const subscriptions: SubscriptionImport[] = [];
  for (const source of subscribesTo) {
    const subscription = await resolveSubscription(source, moduleDir);
    if (subscription.events.length === 0) {
      throw new CLIError(
        CliErrorCode.E_UNKNOWN_MODULE,
        `"${name}" cannot subscribe to "${source}": its contract declares no events.`,
        { hint: `Declare events in modules/${source}/contract.ts first, or leave "${source}" out of --subscribes-to.` },
      );
    }
    subscriptions.push(subscription);
  }
  const ids = moduleIdentifiers(name);
  const testFile = join(project.testDir, `${name}-contract.test.ts`);
  const supportFile = join(project.testDir, 'support', 'application.ts');
  if (existsSync(testFile)) {
    throw new CLIError(CliErrorCode.E_MODULE_EXISTS, `${shownPath(project, testFile)} already exists; remove it or choose another name.`);
  }
  const contractPath = join(moduleDir, 'contract.ts');
  const template = { name, dependsOn: imports, events, operations, subscribesTo: subscriptions, data };
  const files: PlannedFile[] = [
    { path: contractPath, action: 'create', content: contractFile(template) },
    { path: join(moduleDir, 'module.ts'), action: 'create', content: moduleFile(template) },
    ...(data
      ? [{ path: join(moduleDir, 'migrations', `001_${name}.sql`), action: 'create' as const, content: migrationFile(template), note: 'its first table' }]
      : []),
    {
      path: testFile,
      action: 'create',
      content: moduleTestFile({
        ...template,
        manifestImport: importSpecifier(project.testDir, project.manifestPath),
        contractImport: importSpecifier(project.testDir, contractPath),
        supportImport: importSpecifier(project.testDir, supportFile),
      }),
    },
  ];
  if (!existsSync(supportFile)) {
    // keel.config.ts beside package.json, as keel start reads it, from wherever the support file sits.
    const configPath = relative(dirname(supportFile), join(project.root, 'keel.config.ts')).split(sep).join('/');
    files.push({ path: supportFile, action: 'create', content: testSupportFile(configPath), note: 'runs tests in process or over NATS' });
  }
  const manifest = addToManifest(
    manifestSource,
    { identifier: ids.module, importPath: importSpecifier(project.modulesDir, join(moduleDir, 'module.ts')) },
    shownPath(project, project.manifestPath),
  );
  files.push({ path: project.manifestPath, action: 'update', content: manifest, before: manifestSource, note: `registers ${ids.module}` });
  return { name, files };
}

/**
 * Writes a plan: new files first (refusing to overwrite), the manifest last. If any write
 * fails, the files and folders it created are removed again and the manifest is untouched.
 *
 * @example
 * ```ts
 * writePlan(await planModule(project, { name: 'billing' }));
 * ```
 */
export function writePlan(plan: ModulePlan): void {
  const createdFiles: string[] = [];
  const createdDirs: string[] = [];
  try {
    for (const file of plan.files) {
      if (file.action !== 'create') continue;
      const missing: string[] = [];
      for (let dir = dirname(file.path); !existsSync(dir); dir = dirname(dir)) missing.unshift(dir);
      for (const dir of missing) {
        mkdirSync(dir);
        createdDirs.unshift(dir);
      }
      writeFileSync(file.path, file.content, { flag: 'wx' });
      createdFiles.push(file.path);
    }
    for (const file of plan.files) {
      if (file.action !== 'update') continue;
      const temporary = `${file.path}.keel-${process.pid}.tmp`;
      writeFileSync(temporary, file.content);
      renameSync(temporary, file.path);
    }
  } catch (error) {
    for (const path of createdFiles) rmSync(path, { force: true });
    for (const dir of createdDirs) rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}
