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
 * - **Who holds it.** A file names a process id, that process's start, a random token of the
 *   thread that wrote it, and a nonce of its own. Another process holds the folder while its pid
 *   runs. A lock with this process's pid is another thread's when it names this process's start,
 *   and a previous process's (a container restarted, whose process is pid 1 again) when it does
 *   not; a file with this thread's own token is one it left.
 * - **Taking over a stale lock** is the racy part: two processes that find the same stale lock
 *   must not both replace it. A lock is replaced only under a takeover file made exclusively for
 *   that lock (named after a hash of its inode, mtime and content), and only while `keel.lock` is
 *   still that file; the new lock takes its place in one rename, so the folder is never without
 *   one. A takeover file is removed by its maker only once the lock is no longer the one it was
 *   made for, so no process removes one that is in use: one whose process died (or that this
 *   thread left) is passed by a takeover file made for it in turn. Once the lock is replaced,
 *   every takeover file in the folder belongs to a lock that is gone, and the new holder removes
 *   them. docs/design-notes.md has the history and what remains.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';

export const LOCK_FILE = 'keel.lock';
const TAKEOVER_PREFIX = `${LOCK_FILE}.takeover-`;
/** How long a process waits for another's takeover (a few file operations) before giving up. */
const TAKEOVER_WAIT_MS = 2_000;
/** A file seen without its line break this long is a writer's that died (well within {@link TAKEOVER_WAIT_MS}). */
const UNFINISHED_MS = 1_000;
/** The most of a file read: what keel writes is under 100 bytes. */
const READ_BYTES = 256;
/** Two start times this close are the same process's, off Linux (each thread estimates it; a restart takes longer). */
const SAME_START_MS = 250;
/** Takeover files made in turn for takeover files whose processes died, at most. */
const MAX_DEPTH = 8;

/** This thread's mark on what it writes. */
const TOKEN = randomBytes(8).toString('hex');

/**
 * This process's start, the same in every thread of it: on Linux the boot's id and the start
 * time in clock ticks the kernel keeps for it (no wall clock involved); elsewhere, the wall clock
 * less the process's uptime, in ms, which two threads compute within a few ms of each other
 * unless the clock is stepped between their starts.
 */
function processStart(): string {
  if (process.platform === 'linux') {
    try {
      const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim();
      const stat = readFileSync('/proc/self/stat', 'latin1');
      const ticks = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
      if (boot !== '' && ticks !== undefined && /^\d+$/.test(ticks)) return `linux.${boot}.${ticks}`;
    } catch (error) {
      // No /proc mounted: the estimate, in every thread alike. Anything else (out of file descriptors) is thrown, not guessed past.
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  }
  return String(Math.round(Date.now() - process.uptime() * 1000));
}

let startedOnce: string | undefined;
/** This process's start (read once, when a folder is first taken). */
const started = (): string => (startedOnce ??= processStart());

/** True when `start`, read from a lock with this process's pid, is this process's start. */
function isThisProcess(start: string | undefined): boolean {
  if (start === undefined) return false;
  if (start.startsWith('linux.')) {
    const own = started();
    // Read from /proc by another thread of a process where this one could not: only this process.
    return !own.startsWith('linux.') || start === own;
  }
  // An estimate (another system, no /proc, or a keel before the kernel's start was read): compared with this process's.
  return Math.abs(Number(start) - (Date.now() - process.uptime() * 1000)) < SAME_START_MS;
}

/**
 * The identities of the locks this thread holds: a file with its own token is live when it is one
 * of them, so this thread never opens a folder twice either, by whatever path it reaches it.
 */
const heldLocks = new Set<string>();

/** What this thread writes in a file of the protocol: pid, start, token, and the file's own nonce. */
const ownerText = (): string => `${process.pid}\n${started()}\n${TOKEN}\n${randomBytes(6).toString('hex')}\n`;

/** Who holds a folder, for the refusal: this process, another's pid, or a process whose lock names none yet. */
export type FolderHolder = 'this process' | 'unknown' | number;

/** Test hook: pauses of up to this many ms (at random) in the protocol's windows, from `KEEL_TEST_LOCK_PAUSE_MS`. */
const TEST_PAUSE_MS = Number(process.env['KEEL_TEST_LOCK_PAUSE_MS'] ?? 0);

/** Blocks this thread for `ms` (the lock is taken synchronously, before anything opens). */
function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function testPause(): void {
  if (TEST_PAUSE_MS > 0) pause(Math.random() * TEST_PAUSE_MS);
}

/** A file of the protocol as read: who wrote it, and which file it is. */
export interface Found {
  /** Undefined for a file naming no process (not a number), which counts as a dead one's. */
  readonly pid: number | undefined;
  readonly started: string | undefined;
  readonly token: string | undefined;
  /** Not yet ended by its line break (being written, or its writer died). */
  readonly unfinished: boolean;
  /** Its inode, mtime and content: a new file in its place differs, even with the inode and mtime of the old. */
  readonly identity: string;
}

/** `file` as read; undefined when it is not there. */
export function read(file: string): Found | undefined {
  for (;;) {
    let text: string;
    let stat: string;
    try {
      stat = statOf(file);
      text = head(file);
      // Replaced while being read: read the one there now.
      if (statOf(file) !== stat) continue;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    const [pid, started, token] = text.split('\n');
    const number = Number(pid);
    return {
      pid: pid !== undefined && /^\d+$/.test(pid) && Number.isSafeInteger(number) && number > 0 ? number : undefined,
      started: started !== undefined && started !== '' ? started : undefined,
      token: token !== undefined && token !== '' ? token : undefined,
      unfinished: !text.endsWith('\n'),
      identity: `${stat}:${text}`,
    };
  }
}

/** A file's inode, modification time and size. */
function statOf(file: string): string {
  const stat = statSync(file, { bigint: true });
  return `${stat.ino}.${stat.mtimeNs}.${stat.size}`;
}

/** The start of `file`, as text: all of a file keel wrote, and no more than {@link READ_BYTES} of another. */
function head(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const bytes = Buffer.alloc(Math.min(READ_BYTES, Number(fstatSync(fd).size)));
    const length = readSync(fd, bytes, 0, bytes.length, 0);
    return bytes.toString('latin1', 0, length);
  } finally {
    closeSync(fd);
  }
}

/** A short name for a file as found (fixed length, however deep the takeovers go). */
const nameOf = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 24);

/** The takeover file made for the lock `stale`. */
export const firstTakeover = (folder: string, stale: Found): string => join(folder, `${TAKEOVER_PREFIX}${nameOf(stale.identity)}`);

/** The takeover file made for the takeover file `takeover`, found as `taker`, whose process died. */
export const nextTakeover = (folder: string, takeover: string, taker: Found): string =>
  join(folder, `${TAKEOVER_PREFIX}${nameOf(`${takeover}\n${taker.identity}`)}`);

/**
 * Files seen unfinished in one call, and since when by this thread's monotonic clock: a writer is
 * dead once one stays unfinished {@link UNFINISHED_MS} (a file's mtime may come from another
 * clock), which a call reaches within its {@link TAKEOVER_WAIT_MS}.
 */
type Unfinished = Map<string, number>;

/** True while `found` (unfinished) may still be being written. */
function stillWriting(found: Found, unfinished: Unfinished): boolean {
  const now = performance.now();
  const since = unfinished.get(found.identity);
  if (since === undefined) unfinished.set(found.identity, now);
  return since === undefined || now - since < UNFINISHED_MS;
}

/**
 * True when the writer of `found` still runs: another process, or another thread of this one. A
 * file with this thread's own token is live when it is a lock this thread holds (reached by
 * another path: a symbolic link, another case), and one it left (a takeover that failed) else.
 */
function isAlive(found: Found, unfinished: Unfinished): boolean {
  if (found.unfinished) return stillWriting(found, unfinished);
  const { pid } = found;
  if (pid === undefined) return false;
  if (pid === process.pid) return found.token === TOKEN ? heldLocks.has(found.identity) : isThisProcess(found.started);
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Error codes of a file system that makes no hard links (EISDIR: FAT on Windows). */
const NO_HARD_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EISDIR', 'UNKNOWN']);

/** A file of this thread's own, holding `text`, for linking or renaming into place; its name. */
function writeOwn(folder: string, text: string): string {
  const own = join(folder, `${LOCK_FILE}.${process.pid}.${TOKEN}.${randomBytes(4).toString('hex')}.new`);
  try {
    writeFileSync(own, text, { flag: 'wx' });
  } catch (error) {
    rmSync(own, { force: true });
    throw error;
  }
  return own;
}

/**
 * Creates `file` holding this thread's owner text, whole from its first moment; false when it
 * exists. On a file system without hard links, an exclusive create, checked after it is written:
 * a writer stalled long enough to be taken for a dead one finds the file replaced, and backs off.
 */
function create(folder: string, file: string): boolean {
  const text = ownerText();
  const own = writeOwn(folder, text);
  try {
    testPause();
    linkSync(own, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === undefined || !NO_HARD_LINKS.has(code)) throw error;
    return createExclusively(file, text);
  } finally {
    rmSync(own, { force: true });
  }
}

function createExclusively(file: string, text: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    testPause();
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
  const now = read(file);
  return now !== undefined && now.identity.endsWith(`:${text}`);
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
function takeOver(folder: string, stale: Found, unfinished: Unfinished): boolean {
  const file = join(folder, LOCK_FILE);
  let takeover = firstTakeover(folder, stale);
  for (let depth = 0; depth < MAX_DEPTH; depth++) {
    testPause();
    if (create(folder, takeover)) {
      // Only this thread may replace `stale` now; it still may only while keel.lock is that file.
      let replaced = false;
      try {
        testPause();
        if (read(file)?.identity !== stale.identity) return false;
        const own = writeOwn(folder, ownerText());
        try {
          testPause();
          renameSync(own, file);
        } finally {
          rmSync(own, { force: true });
        }
        replaced = true;
        return true;
      } finally {
        if (replaced) {
          // Every takeover file is a gone lock's now.
          removeTakeovers(folder);
        } else if (read(file)?.identity !== stale.identity) {
          // The lock is no longer `stale`: one made again for it fails the same check.
          rmSync(takeover, { force: true });
        }
        // Else (this thread failed replacing it) the file stays, and is passed like a dead process's.
      }
    }
    const taker = read(takeover);
    testPause();
    if (taker === undefined) return false; // done and removed meanwhile: look again
    if (isAlive(taker, unfinished)) {
      pause(5);
      return false;
    }
    // Its process died taking over: take over from it, under a takeover file made for this one.
    takeover = nextTakeover(folder, takeover, taker);
  }
  return false;
}

/**
 * Takes `folder` for this thread: makes `keel.lock`, or takes over one whose writer has ended.
 * Throws the error `busy` makes for the process that holds it. Returns the release.
 */
export function holdFolder(folder: string, busy: (holder: FolderHolder) => Error): () => void {
  mkdirSync(folder, { recursive: true });
  const file = join(folder, LOCK_FILE);
  const giveUpAt = Date.now() + TAKEOVER_WAIT_MS;
  const unfinished: Unfinished = new Map();
  for (;;) {
    if (create(folder, file)) {
      // Left by takeovers of locks that are gone (a process that died in one).
      removeTakeovers(folder);
      break;
    }
    const holder = read(file);
    if (holder === undefined) continue;
    if (isAlive(holder, unfinished)) {
      // Being written (a file system without hard links): it ends, or stays unfinished long enough to be a dead writer's.
      if (holder.unfinished && Date.now() < giveUpAt + UNFINISHED_MS) {
        pause(5);
        continue;
      }
      throw busy(holder.unfinished || holder.pid === undefined ? 'unknown' : holder.pid === process.pid ? 'this process' : holder.pid);
    }
    if (takeOver(folder, holder, unfinished)) break;
    // Taken over by another process meanwhile (the next look finds it running), or still being taken over.
    if (Date.now() > giveUpAt) throw busy(holder.pid ?? 'unknown');
  }
  const mine = read(file)?.identity;
  if (mine !== undefined) heldLocks.add(mine);
  return () => {
    if (mine !== undefined) heldLocks.delete(mine);
    // Only while it is still this thread's lock.
    if (mine !== undefined && read(file)?.identity === mine) rmSync(file, { force: true });
  };
}
