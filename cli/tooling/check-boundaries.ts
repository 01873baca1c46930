/**
 * `keel check`'s rules on what the files of modules/ import: a module reaches another only
 * through its `contract.ts`, a contract stays plain data, imports are static and stay out of
 * 'keel/transport', and every contract used is declared in `dependsOn` or `subscribesTo`.
 */
import type { ModuleFacts } from './module-facts.js';
import { ProjectLayout, type SourceTree } from './source-tree.js';
import { CheckRule, at, describeKind, type Violation } from './check-rules.js';

/** The entry of keel for adapter and tooling authors; application modules import 'keel'. */
const TRANSPORT_ENTRY = 'keel/transport';

/** Database drivers and engines: a module reaches its data through the db the kernel gives it. */
const DATABASE_DRIVERS = [/^pg($|\/)/, /^postgres($|\/)/, /^@electric-sql\/pglite($|\/)/, /^keel\/(pglite|postgres)($|\/)/];

/** Imports across module boundaries: deep imports, contracts exposing internals, computed specifiers, the transport door. */
export function moduleBoundaries(tree: SourceTree): Violation[] {
  const violations: Violation[] = [];
  for (const file of tree.filesUnder(ProjectLayout.MODULES)) {
    const from = file.moduleFolder;
    const isManifest = file.path === ProjectLayout.MANIFEST;
    const isContract = from !== undefined && file.path === `${ProjectLayout.MODULES}/${from}/${ProjectLayout.CONTRACT_FILE}`;
    const who = from ?? file.path;
    for (const reference of file.imports) {
      if (reference.specifier === undefined) {
        if (from !== undefined || isManifest) {
          violations.push({
            rule: CheckRule.DYNAMIC_IMPORT,
            ...at(file, reference),
            message: `${who} imports a computed specifier (${reference.text}), which cannot be checked. Import other modules' contracts statically, by a literal path.`,
          });
        }
        continue;
      }
      if (reference.specifier === TRANSPORT_ENTRY) {
        violations.push({
          rule: CheckRule.MODULE_IMPORTS_TRANSPORT_PORT,
          ...at(file, reference),
          message:
            `${who} ${describeKind(reference)} '${TRANSPORT_ENTRY}', the door for adapter and tooling authors (transports, gateways, observers). ` +
            `Everything a module needs is in 'keel' (type Transport too): import it from there, and write what needs '${TRANSPORT_ENTRY}' as an adapter.`,
        });
        continue;
      }
      if (DATABASE_DRIVERS.some((pattern) => pattern.test(reference.specifier ?? ''))) {
        violations.push({
          rule: CheckRule.MODULE_IMPORTS_DATABASE_DRIVER,
          ...at(file, reference),
          message:
            `${who} ${describeKind(reference)} '${reference.specifier}', a database driver. A module reaches its data through the db the kernel ` +
            "gives it (declare data: { migrations } in defineModule): its own schema, its transactions, the outbox and the inbox. A connection of " +
            "its own would reach other modules' tables and skip the outbox; the engine is chosen where the kernel is made.",
        });
        continue;
      }
      const target = reference.target;
      if (target === undefined || !target.startsWith(`${ProjectLayout.MODULES}/`)) continue;
      const to = tree.moduleOf(target);
      if (to === undefined) {
        if (target === ProjectLayout.MANIFEST && from !== undefined) {
          violations.push({
            rule: CheckRule.DEEP_IMPORT,
            ...at(file, reference),
            message: `${from} ${describeKind(reference)} the application manifest (${reference.specifier}), which pulls in every module's implementation. A module may import other modules' contract.ts files only.`,
          });
        }
        continue;
      }
      const contractPath = `${ProjectLayout.MODULES}/${to}/${ProjectLayout.CONTRACT_FILE}`;
      const modulePath = `${ProjectLayout.MODULES}/${to}/${ProjectLayout.MODULE_FILE}`;
      if (to === from) {
        if (isContract && target !== contractPath) {
          const smuggles = reference.kind === 're-export';
          violations.push({
            rule: CheckRule.CONTRACT_EXPOSES_INTERNALS,
            ...at(file, reference),
            message: smuggles
              ? `The contract of ${from} re-exports ${target}, a private file: every module importing the contract gets the internals too. Define what callers need in contract.ts itself (plain zod schemas, errors), and keep implementation out.`
              : `The contract of ${from} ${describeKind(reference)} ${target}, a private file: the contract is the module's public door and must stay plain data that imports no implementation. Move the shared schema into contract.ts, and let the private file import it from there.`,
          });
        }
        continue;
      }
      if (target === contractPath) continue;
      if (isManifest && target === modulePath) continue;
      violations.push({
        rule: CheckRule.DEEP_IMPORT,
        ...at(file, reference),
        message: `${who} ${describeKind(reference)} ${target}, a private file of ${to}. Only modules/${to}/contract.ts is public: call ${to} through its contract (dependsOn + get), or move what is shared into that contract.`,
      });
    }
  }
  return violations;
}

/** Contracts imported or clients asked for (`get`) without a matching `dependsOn` or `subscribesTo`. */
export function undeclaredDependencies(tree: SourceTree, facts: ReadonlyMap<string, ModuleFacts>): Violation[] {
  const violations: Violation[] = [];
  for (const fact of facts.values()) {
    if (!fact.declared) continue;
    const dependsOn = new Set(fact.dependsOn.map((reference) => reference.folder));
    const subscribesTo = new Set(fact.subscribesTo.map((reference) => reference.folder));
    const declared = (folder: string) => dependsOn.has(folder) || subscribesTo.has(folder);
    for (const file of tree.files.values()) {
      if (file.moduleFolder !== fact.folder || file.path === `${ProjectLayout.MODULES}/${fact.folder}/${ProjectLayout.CONTRACT_FILE}`) continue;
      for (const reference of file.imports) {
        const target = reference.target;
        if (target === undefined) continue;
        const to = tree.moduleOf(target);
        if (to === undefined || to === fact.folder || target !== `${ProjectLayout.MODULES}/${to}/${ProjectLayout.CONTRACT_FILE}`) continue;
        if (declared(to)) continue;
        violations.push({
          rule: CheckRule.UNDECLARED_DEPENDENCY,
          ...at(file, reference),
          message: `${fact.folder} ${describeKind(reference)} the contract of ${to} but its defineModule lists ${to} neither in dependsOn (to call it) nor in subscribesTo (to handle its events). Declare it in ${ProjectLayout.MODULES}/${fact.folder}/${ProjectLayout.MODULE_FILE}, or drop the import.`,
        });
      }
    }
    for (const use of fact.gets) {
      if (use.folder === undefined || dependsOn.has(use.folder)) continue;
      violations.push({
        rule: CheckRule.UNDECLARED_DEPENDENCY,
        file: use.file,
        line: use.line,
        column: use.column,
        code: use.text,
        message: subscribesTo.has(use.folder)
          ? `${fact.folder} asks for the client of ${use.folder} with ${use.text}, but lists ${use.folder} only in subscribesTo; get() gives clients of dependsOn contracts. Add ${use.folder} to dependsOn.`
          : `${fact.folder} asks for the client of ${use.folder} with ${use.text} without listing ${use.folder} in dependsOn; the kernel refuses it at start (UNDECLARED_DEPENDENCY). Add ${use.folder} to dependsOn.`,
      });
    }
  }
  return violations;
}
