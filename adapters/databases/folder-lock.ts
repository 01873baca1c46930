/**
 * The lock of an embedded database's folder: `keel.lock` in it, naming the process that has it
 * open. PGlite does not notice a second process on its folder, and two corrupt it.
 *
 * - **Whole from the first moment.** Every file of the protocol is written under a name of its
 *   own and hard-linked into place; `link` fails when the name exists, as an exclusive create
 *   does, but the file never appears empty. (A file made with `O_EXCL` and written after was
 *   empty for a moment, and a process reading it then took it for a dead process's: two of six
 *   processes held one folder.) A file system without hard links gets the exclusive create, and a
 *   file not yet ended by its line break is taken as being written.
 * - **Who holds it.** A lock names a process id, when that process started, and a random token
 *   of the thread that took it. Another process holds the folder while its pid runs. A lock with
 *   this process's pid is another thread's when it names this process's start, and a previous
 *   process's (a container restarted, whose process is pid 1 again) when it does not.
 * - **Taking over a stale lock** is the racy part: two processes that find the same stale lock
 *   must not both replace it. A lock is replaced only under a takeover file made exclusively for
 *   that lock (`keel.lock.takeover-<inode>.<mtime>`), and only while `keel.lock` is still that
 *   file; the new lock takes its place in one rename, so the folder is never without one. A
 *   takeover file is never removed while its lock may still be replaced, so no process removes
 *   another's: one whose process died is passed by a takeover file made for it in turn
 *   (`…-<its inode>-<its mtime>`). Once the lock is replaced, every takeover file in the folder
 *   belongs to a lock that is gone, and the new holder removes them.
 */
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const LOCK_FILE = 'keel.lock';
const TAKEOVER_PREFIX = `${LOCK_FILE}.takeover-`;
/** How long a process waits for another's takeover (a few file operations) before giving up. */
const TAKEOVER_WAIT_MS = 2_000;
/** A file still without its line break this long after it was written is a writer's that died. */
const UNFINISHED_MS = 2_000;
/** Two start times this close are the same process's (each thread computes it; a restart takes longer). */
const SAME_START_MS = 250;
/** Takeover files made in turn for takeover files whose processes died, at most. */
const MAX_DEPTH = 8;

/** This thread's mark on what it writes. */
const TOKEN = randomBytes(8).toString('hex');
/** When this process started (ms since the epoch; the same in every thread of it, give or take a millisecond). */
const STARTED = Math.round(Date.now() - process.uptime() * 1000);
const OWNER_TEXT = `${process.pid}\n${STARTED}\n${TOKEN}\n`;

/** Folders of embedded databases this thread holds, so that it never opens one twice either. */
const heldFolders = new Set<string>();

/** Who holds a folder, for the refusal: this process, or another's pid. */
export type FolderHolder = 'this process' | number;

/** Test hook: pauses of up to this many ms (at random) in the protocol's windows, from `KEEL_TEST_LOCK_PAUSE_MS`. */
const TEST_PAUSE_MS = Number(process.env['KEEL_TEST_LOCK_PAUSE_MS'] ?? 0);

/** Blocks this thread for `ms` (the lock is taken synchronously, before anything opens). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function testPause(): void {
  if (TEST_PAUSE_MS > 0) pause(Math.random() * TEST_PAUSE_MS);
}

/** A file of the protocol as read: who wrote it, and which file it is (its inode and mtime). */
interface Found {
  /** Undefined for a file naming no process (not a number), which counts as a dead one's. */
  readonly pid: number | undefined;
  readonly started: number | undefined;
  readonly token: string | undefined;
  /** Not yet ended by its line break (being written, or its writer died). */
  readonly unfinished: boolean;
  readonly identity: string;
  readonly ageMs: number;
}

/** A file's inode and modification time, short: which file it is, for names and comparisons. */
function identityOf(stat: { ino: bigint; mtimeNs: bigint }): string {
  return `${stat.ino.toString(36)}.${stat.mtimeNs.toString(36)}`;
}

/** `file` as read; undefined when it is not there. */
function read(file: string): Found | undefined {
  for (;;) {
    let text: string;
    let identity: string;
    let ageMs: number;
    try {
      const before = statSync(file, { bigint: true });
      text = readFileSync(file, 'latin1');
      identity = identityOf(before);
      // Replaced while being read: read the one there now.
      if (identityOf(statSync(file, { bigint: true })) !== identity) continue;
      ageMs = Date.now() - Number(before.mtimeMs);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const [pid, started, token] = text.split('\n');
    const number = Number(pid);
    return {
      pid: pid !== undefined && /^\d+$/.test(pid) && Number.isSafeInteger(number) && number > 0 ? number : undefined,
      started: started !== undefined && /^\d+$/.test(started) ? Number(started) : undefined,
      token: token !== undefined && token !== '' ? token : undefined,
      unfinished: !text.endsWith('\n'),
      identity,
      ageMs,
    };
  }
}

/** True when the writer of `found` still runs: another process, or another thread of this one. */
function isAlive(found: Found): boolean {
  if (found.unfinished) return found.ageMs < UNFINISHED_MS;
  const { pid } = found;
  if (pid === undefined) return false;
  if (pid === process.pid) {
    // This process's pid: this thread's, another thread's, or a previous process's (a restart with the same pid).
    return found.token === TOKEN || (found.started !== undefined && Math.abs(found.started - STARTED) < SAME_START_MS);
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Error codes of a file system that makes no hard links (EISDIR: FAT on Windows). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EISDIR', 'UNKNOWN']);

/** A file of this thread's own, holding its owner text, for linking or renaming into place; its name. */
function writeOwn(folder: string): string {
  const own = join(folder, `${LOCK_FILE}.${process.pid}.${TOKEN}.${randomBytes(4).toString('hex')}.new`);
  try {
    writeFileSync(own, OWNER_TEXT, { flag: 'wx' });
  } catch (error) {
    rmSync(own, { force: true });
    throw error;
  }
  return own;
}

/**
 * Creates `file` holding this thread's owner text, whole from its first moment; false when it
 * exists. On a file system without hard links, an exclusive create.
 */
function create(folder: string, file: string): boolean {
  const own = writeOwn(folder);
  try {
    testPause();
    linkSync(own, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw error;
    try {
      writeFileSync(file, OWNER_TEXT, { flag: 'wx' });
      return true;
    } catch (fallbackError) {
      if ((fallbackError as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw fallbackError;
    }
  } finally {
    rmSync(own, { force: true });
  }
}

/** Removes every takeover file in `folder`: called by a holder, when all belong to locks that are gone. */
function removeTakeovers(folder: string): void {
  for (const name of readdirSync(folder)) {
    if (name.startsWith(TAKEOVER_PREFIX)) rmSync(join(folder, name), { force: true });
  }
}

/**
 * Replaces the lock `stale` (found with a writer that has ended) with this thread's, under the
 * takeover file made for it. True when this thread now holds the folder; false when it should
 * look again (another process took it over first, or is taking it over now).
 */
function takeOver(folder: string, stale: Found): boolean {
  const file = join(folder, LOCK_FILE);
  let takeover = join(folder, `${TAKEOVER_PREFIX}${stale.identity}`);
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    testPause();
    if (create(folder, takeover)) {
      // Only this thread may replace `stale` now; it still may only while keel.lock is that file.
      let replaced = false;
      try {
        testPause();
        if (read(file)?.identity !== stale.identity) return false;
        const own = writeOwn(folder);
        try {
          testPause();
          renameSync(own, file);
        } finally {
          rmSync(own, { force: true });
        }
        replaced = true;
        return true;
      } finally {
        // Replaced: every takeover file is a gone lock's. Not: this one may be made again, and fail the same check.
        if (replaced) removeTakeovers(folder);
        else rmSync(takeover, { force: true });
      }
    }
    const taker = read(takeover);
    testPause();
    if (taker === undefined) return false; // done and removed meanwhile: look again
    if (isAlive(taker)) {
      pause(5);
      return false;
    }
    // Its process died taking over: take over from it, under a takeover file made for this one.
    takeover = `${takeover}-${taker.identity}`;
  }
  return false;
}

/**
 * Takes `folder` for this thread: makes `keel.lock`, or takes over one whose writer has ended.
 * Throws the error `busy` makes for the process that holds it. Returns the release.
 */
export function holdFolder(folder: string, busy: (holder: FolderHolder) => Error): () => void {
  if (heldFolders.has(folder)) throw busy('this process');
  mkdirSync(folder, { recursive: true });
  const file = join(folder, LOCK_FILE);
  const giveUpAt = Date.now() + TAKEOVER_WAIT_MS;
  for (;;) {
    if (create(folder, file)) {
      // Left by takeovers of locks that are gone (a process that died in one).
      removeTakeovers(folder);
      break;
    }
    const holder = read(file);
    if (holder === undefined) continue;
    if (isAlive(holder)) {
      // Being written (a file system without hard links): it ends, or ages into a dead writer's.
      if (holder.unfinished && Date.now() < giveUpAt + UNFINISHED_MS) {
        pause(5);
        continue;
      }
      throw busy(holder.pid === process.pid ? 'this process' : (holder.pid ?? 0));
    }
    if (takeOver(folder, holder)) break;
    // Taken over by another process meanwhile (the next look finds it running), or still being taken over.
    if (Date.now() > giveUpAt) throw busy(holder.pid ?? 0);
  }
  heldFolders.add(folder);
  return () => {
    heldFolders.delete(folder);
    rmSync(file, { force: true });
  };
}
