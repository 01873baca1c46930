/**
 * Editing the application manifest's source: add one import and one entry to the exported
 * `modules` array, keeping the file's own layout. The edit is computed in memory first, so a
 * manifest the generator cannot read safely is refused before anything is written.
 */
import { CLIError, CliErrorCode } from './errors.js';

/** One module to register in the manifest. */
export interface ManifestEntry {
  /** The module value's identifier, such as `billingModule`. */
  readonly identifier: string;
  /** Import path from the manifest, such as `./billing/module.js`. */
  readonly importPath: string;
}

/** Skips a string, template or comment starting at `index`; returns the index after it, or `index` if none starts there. */
function skipLiteral(source: string, index: number): number {
  const char = source[index];
  if (char === '/' && source[index + 1] === '/') {
    const end = source.indexOf('\n', index);
    return end < 0 ? source.length : end;
  }
  if (char === '/' && source[index + 1] === '*') {
    const end = source.indexOf('*/', index + 2);
    return end < 0 ? source.length : end + 2;
  }
  if (char === "'" || char === '"' || char === '`') {
    let cursor = index + 1;
    while (cursor < source.length && source[cursor] !== char) cursor += source[cursor] === '\\' ? 2 : 1;
    return cursor + 1;
  }
  return index;
}

/** Index of the `]` closing the `[` at `open`, skipping strings and comments. */
function closingBracket(source: string, open: number): number {
  let depth = 0;
  for (let index = open; index < source.length; index++) {
    const skipped = skipLiteral(source, index);
    if (skipped !== index) {
      index = skipped - 1;
      continue;
    }
    const char = source[index];
    if (char === '[' || char === '(' || char === '{') depth++;
    else if (char === ']' || char === ')' || char === '}') {
      depth--;
      if (depth === 0) return char === ']' ? index : -1;
    }
  }
  return -1;
}

/**
 * Returns the manifest source with `entry` imported and appended to `export const modules = [...]`.
 * Throws `E_MANIFEST` (and changes nothing) when the file has no such array literal.
 *
 * @example
 * ```ts
 * const next = addToManifest(readFileSync('modules/index.ts', 'utf8'), {
 *   identifier: 'billingModule',
 *   importPath: './billing/module.js',
 * });
 * ```
 */
export function addToManifest(source: string, entry: ManifestEntry, shownPath = 'the manifest'): string {
  const refuse = (why: string): never => {
    throw new CLIError(CliErrorCode.E_MANIFEST, `Cannot add ${entry.identifier} to ${shownPath}: ${why}`, {
      hint: `Keep \`export const modules = [ ... ];\` as an array literal of module identifiers, or add \`${entry.identifier}\` by hand.`,
    });
  };
  const declaration = /export\s+const\s+modules\b[^=]*=\s*\[/.exec(source);
  if (declaration === null) return refuse('it has no `export const modules = [...]` array literal.');
  const open = declaration.index + declaration[0].length - 1;
  const close = closingBracket(source, open);
  if (close < 0) return refuse('its `modules` array is not closed.');

  const inner = source.slice(open + 1, close);
  const trimmed = inner.replace(/\s+$/, '');
  let nextArray: string;
  if (trimmed.trim() === '') {
    nextArray = `[${entry.identifier}]`;
  } else if (inner.includes('\n')) {
    const lines = trimmed.split('\n');
    const last = [...lines].reverse().find((line) => line.trim() !== '') ?? '';
    const indent = /^\s*/.exec(last)?.[0] || '  ';
    const closingIndent = /[^\S\n]*$/.exec(inner)?.[0] ?? '';
    const withComma = /,\s*(\/\/[^\n]*)?$/.test(trimmed) ? trimmed : `${trimmed},`;
    nextArray = `[${withComma}\n${indent}${entry.identifier},\n${closingIndent}]`;
  } else {
    const withoutComma = trimmed.replace(/,\s*$/, '');
    nextArray = `[${withoutComma}, ${entry.identifier}]`;
  }
  let next = source.slice(0, open) + nextArray + source.slice(close + 1);

  const importLine = `import { ${entry.identifier} } from '${entry.importPath}';`;
  const imports = [...next.slice(0, declaration.index).matchAll(/^import\s[^;]*?from\s+['"][^'"]+['"];?[^\S\n]*$/gm)];
  const lastImport = imports.at(-1);
  if (lastImport === undefined) {
    next = `${importLine}\n${next}`;
  } else {
    const at = lastImport.index + lastImport[0].length;
    next = `${next.slice(0, at)}\n${importLine}${next.slice(at)}`;
  }
  return next;
}
