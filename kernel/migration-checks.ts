/**
 * What keel refuses of a module's migrations before it applies any (one renamed, one merged
 * below those applied, a folder that did not come with the build), and the order they apply in.
 */
import { createHash } from 'node:crypto';
import { KeelError, KeelErrorCode } from './errors.js';
import type { Migration } from './migrations.js';

/** A migration keel_migrations records as applied. */
export interface Applied {
  readonly name: string;
  readonly checksum: string;
  readonly applied_at: Date | string;
}

/**
 * The order migrations apply in: by name, character by character, except that a run of digits
 * compares by its value (`9_more.sql` before `10_most.sql`, as the author means), and by its
 * length when the values are equal (`01_` before `1_`). Names with numbers of one width
 * (`001_`, `002_`) sort as plain name order.
 */
export function byName(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    if (isDigit(a, i) && isDigit(b, j)) {
      // Two runs of digits, each whole: by value, then the longer (its leading zeros) first, as plain name order has it.
      const x = runAt(a, i);
      const y = runAt(b, j);
      const order = compare(BigInt(x), BigInt(y)) || compare(y.length, x.length);
      if (order !== 0) return order;
      i += x.length;
      j += y.length;
      continue;
    }
    // Character by character otherwise, so that `users.sql` sorts before `users2.sql` as it reads
    // (comparing `users.sql` with `users` as wholes would put it after).
    if (a[i] !== b[j]) return compare(a[i] as string, b[j] as string);
    i += 1;
    j += 1;
  }
  return compare(a.length - i, b.length - j);
}

const DIGITS = /\d+/y;

function isDigit(text: string, at: number): boolean {
  const code = text.charCodeAt(at);
  return code >= 48 && code <= 57;
}

/** The run of digits of `text` that starts at `at`. */
function runAt(text: string, at: number): string {
  DIGITS.lastIndex = at;
  return (DIGITS.exec(text) as RegExpExecArray)[0];
}

function compare<T extends string | number | bigint>(x: T, y: T): number {
  return x < y ? -1 : x > y ? 1 : 0;
}


/**
 * Refuses a pending migration with the content of an applied one whose file is gone: that file
 * renamed, which would run a second time (a seed inserted twice, an update applied twice).
 */
export function refuseRenamed(module: string, schema: string, applied: Map<string, Applied>, migrations: readonly Migration[], pending: readonly Migration[]): void {
  const files = new Set(migrations.map((candidate) => candidate.name));
  const gone = [...applied.values()].filter((done) => !files.has(done.name));
  for (const candidate of pending) {
    const { name, sql } = candidate;
    // An empty file is no one's content: two of them are two placeholders.
    if (sql.trim() === '') continue;
    // The same content with other line endings (another checkout) is the same migration renamed too.
    const was = gone.find((done) => isApplied(done, candidate));
    if (was === undefined) continue;
    throw new KeelError(
      KeelErrorCode.INVALID_MODULE,
      `Module "${module}": migration ${name} is ${was.name} renamed: the same content, applied to schema "${schema}" at ${new Date(was.applied_at).toISOString()} ` +
        `under that name, would run a second time; nothing was applied. An applied migration keeps its name: rename ${name} back to ${was.name}.`,
    );
  }
}

/** keel's own migrations' names, which apply before a module's whatever they are called. */
export function isSystem(name: string): boolean {
  return name.startsWith('keel/');
}

/** The module's last applied migration by {@link byName}, if any. */
export function lastApplied(applied: Map<string, Applied>): Applied | undefined {
  return [...applied.values()].filter((done) => !isSystem(done.name)).sort((a, b) => byName(a.name, b.name)).at(-1);
}

/**
 * Refuses a pending migration that sorts before the last applied one (a branch merged below
 * migrations already applied): here it would run after them, on a fresh database before them,
 * and a schema would depend on where it was made.
 */
export function refuseOutOfOrder(module: string, schema: string, applied: Map<string, Applied>, pending: readonly Migration[]): void {
  const last = lastApplied(applied);
  const early = last === undefined ? undefined : pending.find((candidate) => !isSystem(candidate.name) && byName(candidate.name, last.name) < 0);
  if (last === undefined || early === undefined) return;
  throw new KeelError(
    KeelErrorCode.INVALID_MODULE,
    `Module "${module}": migration ${early.name} is pending but sorts before ${last.name}, applied to schema "${schema}" at ${new Date(last.applied_at).toISOString()}; ` +
      `nothing was applied. Here it would run after ${last.name}, on a fresh database before it: rename ${early.name} so that it sorts after ${last.name} ` +
      '(the next number), so that every database applies the migrations in one order.',
  );
}

/**
 * Refuses a list that holds none of the schema's applied migrations of the module: its folder
 * missing or emptied (a build or image that left the `.sql` files out), so that keel would go on
 * against a schema it cannot check, and on a fresh database make no tables at all.
 */
export function refuseFolderGone(module: string, schema: string, applied: Map<string, Applied>, migrations: readonly Migration[]): void {
  const own = [...applied.keys()].filter((name) => !isSystem(name)).sort(byName);
  if (own.length === 0 || migrations.some((candidate) => !isSystem(candidate.name))) return;
  throw new KeelError(
    KeelErrorCode.INVALID_MODULE,
    `Module "${module}": its migrations folder holds no migration, and schema "${schema}" has ${own.length} applied (${own.slice(0, 3).join(', ')}${own.length > 3 ? ', ...' : ''}). ` +
      'The .sql files did not come with this build: copy the folder data.migrations names into the image or bundle (keel build does), and start again.',
  );
}

/**
 * Whether `migration`'s file is the one applied as `done`: the same bytes, or the same text with
 * other line endings (a checkout with Git's `core.autocrlf`, as on Windows, turns each `\n` into
 * `\r\n`: the migration is the same, and a team sharing a database from two systems must not read
 * it as changed). Any other difference, a space included, is a change.
 */
export function isApplied(done: Applied, migration: Migration): boolean {
  if (done.checksum === migration.checksum) return true;
  if (!migration.sql.includes('\n')) return false;
  const lf = migration.sql.replace(/\r\n/g, '\n');
  return done.checksum === sha256(lf) || done.checksum === sha256(lf.replace(/\n/g, '\r\n'));
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}
