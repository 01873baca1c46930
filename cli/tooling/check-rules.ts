/**
 * The vocabulary of `keel check`'s rules: the rule names, the shape of a broken rule, and the
 * helpers every rule uses to say where an import is and what kind of import it is.
 */
import type { ProjectFile, ResolvedImport } from './source-tree.js';

/** Every rule `keel check` applies. */
export const CheckRule = {
  /** A module imports a file of another module that is not its `contract.ts`. */
  DEEP_IMPORT: 'deep-import',
  /** A `contract.ts` imports or re-exports a private file of its own module, leaking it to every caller. */
  CONTRACT_EXPOSES_INTERNALS: 'contract-exposes-internals',
  /** A module imports with a computed specifier, which no tool can check. */
  DYNAMIC_IMPORT: 'dynamic-import',
  /** Modules depend on each other in a circle through `dependsOn`. */
  DEPENDENCY_CYCLE: 'dependency-cycle',
  /** Files of several modules import each other in a circle (at run time, one sees the other undefined). */
  IMPORT_CYCLE: 'import-cycle',
  /** A module uses another module's contract without listing it in `dependsOn` or `subscribesTo`. */
  UNDECLARED_DEPENDENCY: 'undeclared-dependency',
  /** The kernel imports an adapter or a transport library. */
  KERNEL_IMPORTS_ADAPTER: 'kernel-imports-adapter',
  /** The kernel imports a package that is not one of its own few dependencies. */
  KERNEL_IMPORTS_PACKAGE: 'kernel-imports-package',
  /** A module imports `keel/transport`, the door for adapter and tooling authors, instead of `keel`. */
  MODULE_IMPORTS_TRANSPORT_PORT: 'module-imports-transport-port',
  MODULE_IMPORTS_DATABASE_DRIVER: 'module-imports-database-driver',
  /** An adapter imports kernel files instead of `keel`. */
  ADAPTER_IMPORTS_KERNEL_INTERNALS: 'adapter-imports-kernel-internals',
  /** An adapter imports another adapter's files instead of its public entry. */
  ADAPTER_IMPORTS_ADAPTER_INTERNALS: 'adapter-imports-adapter-internals',
  /**
   * A handler throws or rethrows another module's declared error that its own operation does
   * not declare: its callers would get INTERNAL (HTTP 500) instead of the error.
   */
  UNDECLARED_ERROR: 'undeclared-error',
  /** A contract cannot be defined: `defineContract` refused it (a schema that cannot cross a process, …). */
  INVALID_CONTRACT: 'invalid-contract',
  /** A contract file failed to load for another reason. */
  CONTRACT_LOAD_FAILED: 'contract-load-failed',
  /** A file does not parse. */
  SYNTAX_ERROR: 'syntax-error',
} as const;

/** A {@link CheckRule} value. */
export type CheckRule = (typeof CheckRule)[keyof typeof CheckRule];

/** One broken rule. */
export interface Violation {
  readonly rule: CheckRule;
  /** Project-relative path. */
  readonly file: string;
  readonly line: number;
  readonly column: number;
  /** What is wrong and what to do. */
  readonly message: string;
  /** The offending statement or call, as written. */
  readonly code?: string;
  /** For cycles: the chain of modules or files, ending where it starts. */
  readonly chain?: readonly string[];
}

/** The position and text of an import, for a {@link Violation} about it. */
export function at(file: ProjectFile, reference: ResolvedImport): Pick<Violation, 'file' | 'line' | 'column' | 'code'> {
  return { file: file.path, line: reference.line, column: reference.column, code: reference.text };
}

/** The verb for an import in a message: 'imports', 're-exports', 'imports types from', … */
export function describeKind(reference: ResolvedImport): string {
  switch (reference.kind) {
    case 're-export':
      return 're-exports';
    case 'dynamic':
      return reference.typeOnly ? 'refers by type to' : 'dynamically imports';
    case 'require':
      return 'requires';
    default:
      return reference.typeOnly ? 'imports types from' : 'imports';
  }
}
