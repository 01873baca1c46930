/**
 * `keel check`'s layering rules: the kernel imports no adapter, no transport library and no
 * package beyond its own dependencies; an adapter imports neither kernel files nor another
 * adapter's files, only the public entries.
 */
import { isBuiltin } from 'node:module';
import { ProjectLayout, type SourceTree } from './source-tree.js';
import { CheckRule, at, describeKind, type Violation } from './check-rules.js';

/** Transports and database engines, and their libraries: the kernel reaches them through its ports only. */
const TRANSPORT_PACKAGES = [
  /^nats($|\/)/,
  /^@nats-io\//,
  /^keel\/(nats|http|pglite|postgres)($|\/)/,
  /^pg($|\/)/,
  /^@electric-sql\/pglite($|\/)/,
];

/**
 * The packages a `kernel/` file may import besides Node's built-in modules: the kernel's own
 * dependencies. Anything else (fastify, prom-client, a utility library) would travel into every
 * application through `keel`, whatever transport it uses. `@opentelemetry/api` is the one
 * exception made for observability: keel's call context lives on the OTel context, and the API
 * package is built for libraries to depend on (no dependencies, no-op without an SDK).
 * pino-pretty is the default logger's format for a terminal (`KEEL_LOG_FORMAT=pretty`).
 */
const KERNEL_PACKAGES: readonly string[] = ['zod', 'inversify', 'reflect-metadata', 'pino', 'pino-pretty', '@opentelemetry/api'];

/** `zod` of `zod/v4`, `@scope/name` of `@scope/name/sub`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return (specifier.startsWith('@') ? parts.slice(0, 2) : parts.slice(0, 1)).join('/');
}

/** What kernel/ and adapters/ files import, against the layers they may reach. */
export function layering(tree: SourceTree): Violation[] {
  const violations: Violation[] = [];
  for (const file of tree.filesUnder(ProjectLayout.KERNEL)) {
    for (const reference of file.imports) {
      const specifier = reference.specifier ?? '';
      const intoAdapters = reference.target?.startsWith(`${ProjectLayout.ADAPTERS}/`) ?? false;
      if (!intoAdapters && !TRANSPORT_PACKAGES.some((pattern) => pattern.test(specifier))) {
        const isPackage = reference.specifier !== undefined && !specifier.startsWith('.') && !specifier.startsWith('/');
        if (!isPackage || isBuiltin(specifier) || KERNEL_PACKAGES.includes(packageName(specifier))) continue;
        violations.push({
          rule: CheckRule.KERNEL_IMPORTS_PACKAGE,
          ...at(file, reference),
          message: `The kernel ${describeKind(reference)} '${specifier}', which is not one of its own dependencies (${KERNEL_PACKAGES.join(', ')} and node: built-ins). Every application gets what the kernel imports; put this code in an adapter${packageName(specifier) === 'keel' ? ', or import the kernel file by its relative path' : ''}.`,
        });
        continue;
      }
      violations.push({
        rule: CheckRule.KERNEL_IMPORTS_ADAPTER,
        ...at(file, reference),
        message: `The kernel ${describeKind(reference)} ${intoAdapters ? reference.target : `'${specifier}'`}; the kernel must not know any transport. Put the code in an adapter, and let the kernel reach it through the Transport port.`,
      });
    }
  }
  for (const file of tree.filesUnder(ProjectLayout.ADAPTERS)) {
    const adapter = file.path.split('/')[1];
    for (const reference of file.imports) {
      const target = reference.target;
      if (target === undefined) continue;
      if (target.startsWith(`${ProjectLayout.KERNEL}/`)) {
        violations.push({
          rule: CheckRule.ADAPTER_IMPORTS_KERNEL_INTERNALS,
          ...at(file, reference),
          message: `The ${adapter} adapter ${describeKind(reference)} ${target}, a kernel file. Adapters depend on the public doors only: import from 'keel' or 'keel/transport' (and export what is missing from kernel/index.ts or kernel/transport-entry.ts).`,
        });
      } else if (target.startsWith(`${ProjectLayout.ADAPTERS}/`) && target.split('/')[1] !== adapter) {
        const other = target.split('/')[1];
        violations.push({
          rule: CheckRule.ADAPTER_IMPORTS_ADAPTER_INTERNALS,
          ...at(file, reference),
          message: `The ${adapter} adapter ${describeKind(reference)} ${target}, a file of the ${other} adapter. Import from 'keel/${other}' instead.`,
        });
      }
    }
  }
  return violations;
}
