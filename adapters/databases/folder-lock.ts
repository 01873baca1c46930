/**
 * The lock of an embedded database's folder: `keel.lock` in it, holding the pid of the process
 * that has it open. PGlite does not notice a second process on its folder, and two corrupt it.
 *
 * A lock whose process has ended (a crash, a container restarted) is taken over. Taking one
 * over is the racy part: two processes that both find the same stale lock must not both remove
 * it, or the second removes the lock the first has just made and both open the folder. So a
 * stale lock is replaced only under `keel.lock.takeover` (made exclusively, holding the pid of
 * the process taking over), and only while it still names the process found dead; the new lock
 * takes its place in one rename, so the folder is never without one.
 *
 * Every file of the protocol appears with its pid already in it: it is written under a name of
 * its own and hard-linked into place, which fails when the name exists. A file made with
 * `O_EXCL` and written after would be empty for a moment, and a process reading it then would
 * take it for a dead process's (this let two of six processes hold one folder).
 */
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'keel.lock';
const TAKEOVER_FILE = 'keel.lock.takeover';
/** How long a process waits for another's takeover (a few file operations) before giving up. */
const TAKEOVER_WAIT_MS = 2_000;

/** Folders of embedded databases this process holds, so that it never opens one twice either. */
const heldFolders = new Set<string>();

/** Who holds a folder, for the refusal: this process, or another's pid. */
export type FolderHolder = 'this process' | number;

/** True when `pid` is a running process other than this one. */
function isRunning(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Error codes of a file system that makes no hard links. */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS']);

/**
 * Creates `file` holding this process's pid, whole from its first moment; false when it
 * exists. On a file system without hard links it falls back to an exclusive create.
 */
function create(file: string): boolean {
  const whole = `${file}.${process.pid}.new`;
  writeFileSync(whole, `${process.pid}\n`);
  try {
    linkSync(whole, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw error;
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return true;
    } catch (fallbackError) {
      if ((fallbackError as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fallbackError;
    }
  } finally {
    rmSync(whole, { force: true });
  }
}

/**
 * Removes `file`, found to hold the ended process `pid`, unless another process replaced it
 * meanwhile: it is moved aside first, and put back when what was moved is not the one found.
 */
export function removeLeftOver(file: string, pid: number): void {
  const aside = `${file}.${process.pid}.ended`;
  try {
    renameSync(file, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    if (Object.is(pidIn(aside), pid)) return;
    linkSync(aside, file);
  } catch (error) {
    // EEXIST: another process made one since; its own is the one that counts.
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    rmSync(aside, { force: true });
  }
}

/** The pid `file` holds; undefined when it is gone (removed meanwhile). */
function pidIn(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim());
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Blocks this thread for `ms` (the lock is taken synchronously, before anything opens). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Replaces the lock of `holder`, found dead, with this process's, under the takeover file.
 * True when this process now holds the folder; false when it should look again (another
 * process took it over first, or is taking it over now).
 */
function takeOver(folder: string, holder: number): boolean {
  const file = join(folder, LOCK_FILE);
  const takeover = join(folder, TAKEOVER_FILE);
  if (!create(takeover)) {
    // Another process is taking it over; a takeover file whose process has ended is left over.
    const taker = pidIn(takeover);
    if (taker !== undefined && !isRunning(taker)) removeLeftOver(takeover, taker);
    else pause(5);
    return false;
  }
  try {
    // Object.is: a lock holding no number (NaN) is still the one found.
    if (!Object.is(pidIn(file), holder)) return false;
    const mine = join(folder, `${LOCK_FILE}.${process.pid}.new`);
    writeFileSync(mine, `${process.pid}\n`);
    renameSync(mine, file);
    return true;
  } finally {
    rmSync(takeover, { force: true });
  }
}

/**
 * Takes `folder` for this process: makes `keel.lock`, or takes over one whose process has
 * ended. Throws the error `busy` makes for the process that holds it. Returns the release.
 */
export function holdFolder(folder: string, busy: (holder: FolderHolder) => Error): () => void {
  if (heldFolders.has(folder)) throw busy('this process');
  mkdirSync(folder, { recursive: true });
  const file = join(folder, LOCK_FILE);
  const giveUpAt = Date.now() + TAKEOVER_WAIT_MS;
  for (;;) {
    if (create(file)) break;
    const holder = pidIn(file);
    if (holder === undefined) continue;
    if (isRunning(holder)) throw busy(holder);
    if (takeOver(folder, holder)) break;
    // Taken over by another process meanwhile (the next look finds it running), or still being taken over.
    if (Date.now() > giveUpAt) throw busy(pidIn(join(folder, TAKEOVER_FILE)) ?? holder);
  }
  heldFolders.add(folder);
  return () => {
    heldFolders.delete(folder);
    rmSync(file, { force: true });
  };
}
