/**
 * Loads the contracts of a project at run time: `modules/<folder>/contract.ts` files are plain
 * data, so importing them is cheap and safe, and it runs `defineContract`'s own checks.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AnyContract } from 'keel';
import { isContract } from 'keel/transport';
import { ProjectLayout } from './source-tree.js';

/** Imports one file and returns its exports (the CLI passes one that can load TypeScript). */
export type ImportFile = (absolutePath: string) => Promise<Record<string, unknown>>;

/**
 * Plain dynamic `import()`: enough under tsx or vitest, which load TypeScript themselves.
 *
 * @example
 * ```ts
 * const exports = await importWithNode('/repo/modules/orders/contract.ts');
 * ```
 */
export const importWithNode: ImportFile = async (absolutePath) =>
  (await import(pathToFileURL(absolutePath).href)) as Record<string, unknown>;

/** The contract a module folder defines. */
export interface LoadedContract {
  readonly folder: string;
  /** Project-relative path of the contract file. */
  readonly file: string;
  /** The export holding it. */
  readonly exportName: string;
  readonly contract: AnyContract;
  /** Everything the contract file exports (its declared errors among them), by export name. */
  readonly exports: Readonly<Record<string, unknown>>;
}

/** A contract file that did not load (for example `defineContract` refused a schema). */
export interface ContractLoadFailure {
  readonly folder: string;
  readonly file: string;
  readonly error: unknown;
}

/** What {@link loadContracts} found. */
export interface LoadedContracts {
  /** One per module folder whose contract file loaded, by folder name order. */
  readonly contracts: readonly LoadedContract[];
  readonly failures: readonly ContractLoadFailure[];
}

/**
 * The module folders under `modules/` that hold a `contract.ts`, sorted.
 *
 * @example
 * ```ts
 * contractFolders('/repo'); // ['catalog', 'inventory', 'orders', 'payments']
 * ```
 */
export function contractFolders(root: string): string[] {
  const modulesRoot = join(root, ProjectLayout.MODULES);
  if (!existsSync(modulesRoot)) return [];
  return readdirSync(modulesRoot, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(modulesRoot, entry.name, ProjectLayout.CONTRACT_FILE)))
    .map((entry) => entry.name)
    .sort();
}

/**
 * Imports every `modules/<folder>/contract.ts` and picks the contract each one defines: the
 * exported contract named like the folder, else the only exported contract, else the first
 * one that no other contract file exports too.
 *
 * @example
 * ```ts
 * const { contracts, failures } = await loadContracts('/repo');
 * for (const { contract } of contracts) console.log(contract.name, contract.version);
 * ```
 */
export async function loadContracts(root: string, importFile: ImportFile = importWithNode): Promise<LoadedContracts> {
  const failures: ContractLoadFailure[] = [];
  const found: Array<{ folder: string; file: string; exports: Array<[string, AnyContract]>; all: Record<string, unknown> }> = [];
  for (const folder of contractFolders(root)) {
    const file = `${ProjectLayout.MODULES}/${folder}/${ProjectLayout.CONTRACT_FILE}`;
    try {
      const exports = await importFile(join(root, file));
      const contracts = Object.entries(exports).filter((entry): entry is [string, AnyContract] => isContract(entry[1]));
      found.push({ folder, file, exports: contracts, all: exports });
    } catch (error) {
      failures.push({ folder, file, error });
    }
  }
  const contracts: LoadedContract[] = [];
  for (const { folder, file, exports, all } of found) {
    const elsewhere = new Set(
      found.filter((other) => other.folder !== folder).flatMap((other) => other.exports.map(([, contract]) => contract.name)),
    );
    const own =
      exports.find(([, contract]) => contract.name === folder) ??
      (exports.length === 1 ? exports[0] : undefined) ??
      exports.find(([, contract]) => !elsewhere.has(contract.name));
    if (own === undefined) {
      failures.push({
        folder,
        file,
        error: new Error(`${file} exports no contract of its own; export the value returned by defineContract().`),
      });
      continue;
    }
    contracts.push({ folder, file, exportName: own[0], contract: own[1], exports: all });
  }
  return { contracts, failures };
}
