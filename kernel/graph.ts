/**
 * The application's module graph, checked before anything starts: every module made with
 * defineModule() and listed once, every dependency and subscription implemented by a module of
 * the manifest on the same major version, no cycle; what one process hosts; and the contracts of
 * modules hosted elsewhere that the kernel's `contracts` option lists.
 */
import { majorOf, type AnyContract } from './contract.js';
import { KeelError, KeelErrorCode } from './errors.js';
import type { AnyModule } from './module.js';

/** An `INVALID_TOPOLOGY` error. */
export function topologyError(message: string): KeelError {
  return new KeelError(KeelErrorCode.INVALID_TOPOLOGY, message);
}

/** Checks the manifest; returns every module in dependency order (dependencies first). */
export function checkGraph(modules: readonly AnyModule[]): AnyModule[] {
  const byName = new Map<string, AnyModule>();
  for (const module of modules) {
    if (module === undefined || module.kind !== 'module') {
      throw topologyError('Every entry of `modules` must be made with defineModule() (an import cycle can leave one undefined).');
    }
    if (byName.has(module.name)) {
      throw topologyError(`Module "${module.name}" appears twice in the manifest; list each module once.`);
    }
    byName.set(module.name, module);
  }
  const known = () => [...byName.keys()].join(', ');
  for (const module of modules) {
    const references: [string, AnyContract][] = [
      ...module.dependsOn.map((contract: AnyContract): [string, AnyContract] => ['depends on', contract]),
      ...module.subscribesTo.map((contract: AnyContract): [string, AnyContract] => ['subscribes to', contract]),
    ];
    for (const [relation, contract] of references) {
      const provider = byName.get(contract.name);
      if (provider === undefined) {
        throw topologyError(
          `Module "${module.name}" ${relation} "${contract.name}", but no module in the manifest implements that contract ` +
            `(manifest: ${known()}). Add the module to the manifest or remove the dependency.`,
        );
      }
      if (majorOf(provider.contract.version) !== majorOf(contract.version)) {
        throw topologyError(
          `Module "${module.name}" ${relation} "${contract.name}" ${contract.version}, but the manifest's module implements ` +
            `${provider.contract.version}: the major versions differ.`,
        );
      }
    }
  }
  const order: AnyModule[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (module: AnyModule, chain: string[]): void => {
    const mark = state.get(module.name);
    if (mark === 'done') return;
    if (mark === 'visiting') {
      const cycle = [...chain.slice(chain.indexOf(module.name)), module.name];
      throw topologyError(
        `Dependency cycle: ${cycle.join(' → ')}. Break it by replacing one call with an event, ` +
          'or by moving the shared part into its own module.',
      );
    }
    state.set(module.name, 'visiting');
    for (const dependency of module.dependsOn as readonly AnyContract[]) {
      visit(byName.get(dependency.name) as AnyModule, [...chain, module.name]);
    }
    state.set(module.name, 'done');
    order.push(module);
  };
  for (const module of modules) visit(module, []);
  return order;
}

/**
 * The modules this process hosts, in start order (dependencies first). Refuses a host name not
 * in the manifest and, without a transport to other processes, a hosted module that needs one
 * hosted elsewhere.
 */
export function hostedModules(order: readonly AnyModule[], host: readonly string[] | undefined, hasTransport: boolean): AnyModule[] {
  const names = new Set(order.map((module) => module.name));
  const requested = new Set(host ?? names);
  for (const name of requested) {
    if (!names.has(name)) {
      throw topologyError(`The topology hosts "${name}", which is not in the manifest (manifest: ${[...names].join(', ')}).`);
    }
  }
  const hosted = order.filter((module) => requested.has(module.name));
  if (!hasTransport) {
    for (const module of hosted) {
      for (const contract of [...module.dependsOn, ...module.subscribesTo] as AnyContract[]) {
        if (!requested.has(contract.name)) {
          throw topologyError(
            `Module "${module.name}" needs "${contract.name}", which this process does not host, and no transport ` +
              'reaches other processes. Host it here too, or configure a transport (for example KEEL_NATS_URL).',
          );
        }
      }
    }
  }
  return hosted;
}

/**
 * The `contracts` option by name, checked: each listed once, on the major version of the
 * manifest's module when there is one, and reached through a transport.
 */
export function remoteContracts(modules: readonly AnyModule[], contracts: readonly AnyContract[], hasTransport: boolean): ReadonlyMap<string, AnyContract> {
  const byName = new Map<string, AnyContract>();
  for (const contract of contracts) {
    const listed = byName.get(contract.name);
    if (listed !== undefined && listed !== contract) {
      throw topologyError(`Contract "${contract.name}" appears twice in the kernel's contracts; list each contract once.`);
    }
    const module = modules.find((candidate) => candidate.name === contract.name);
    if (module !== undefined && majorOf(module.contract.version) !== majorOf(contract.version)) {
      throw topologyError(
        `The kernel's contracts list "${contract.name}" ${contract.version}, but the manifest's module implements ` +
          `${module.contract.version}: the major versions differ.`,
      );
    }
    byName.set(contract.name, contract);
  }
  const elsewhere = [...byName.keys()].filter((name) => !modules.some((module) => module.name === name));
  if (elsewhere.length > 0 && !hasTransport) {
    throw topologyError(
      `The kernel's contracts list ${elsewhere.map((name) => `"${name}"`).join(', ')}, whose modules run elsewhere, but no transport reaches them. ` +
        'Give one in topology.transport (for example await createNatsTransport({ servers: process.env.KEEL_NATS_URL })).',
    );
  }
  return byName;
}
