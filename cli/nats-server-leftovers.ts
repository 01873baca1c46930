/**
 * The folders of the nats-servers `keel up` and `keel dev` started that a killed run left behind
 * (a SIGKILL, the OOM killer: no code of theirs ran to remove them). Each holds a JetStream store
 * and the `_client` credentials of a server that is gone. The next launch removes them.
 */
import { lstatSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** The name every such folder starts with, under the temporary folder. */
export const NATS_FOLDER_PREFIX = 'keel-up-nats-';

/** The file in such a folder naming the processes it belongs to, and where they run. */
const OWNERS_FILE = 'owners.json';

/**
 * Where a process runs, as far as its pid means anything: the host, its boot, and its pid
 * namespace (two containers sharing a temporary folder each number their own processes).
 */
interface Place {
  readonly host: string;
  readonly boot?: string;
  readonly pidNamespace?: string;
}

/** What an owners file holds. */
interface Owners extends Place {
  readonly starter: number;
  readonly server?: number;
}

/** When this host booted (ms since the epoch), from `/proc/stat`'s `btime`; undefined without it. */
function bootTimeMs(): number | undefined {
  try {
    const seconds = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** Where this process runs; `boot` and `pidNamespace` only where `/proc` says (Linux). */
function placeHere(): Place {
  const read = (path: string, how: (path: string) => string): string | undefined => {
    try {
      return how(path).trim() || undefined;
    } catch {
      return undefined;
    }
  };
  const boot = read('/proc/sys/kernel/random/boot_id', (path) => readFileSync(path, 'utf8'));
  const pidNamespace = read('/proc/self/ns/pid', readlinkSync);
  return { host: hostname(), ...(boot === undefined ? {} : { boot }), ...(pidNamespace === undefined ? {} : { pidNamespace }) };
}

/**
 * Names the processes a server's folder belongs to, and where they run: the one that started
 * the server and, once it runs, the server's process group. Written again as each becomes known.
 * Never throws: a folder whose owners could not be written is never removed by a later launch.
 *
 * @example
 * ```ts
 * recordOwners(directory, { starter: process.pid, server: child.pid });
 * ```
 */
export function recordOwners(directory: string, owners: { readonly starter: number; readonly server?: number }): void {
  try {
    // Written aside, then renamed into place: a reader never sees it half-written.
    const aside = join(directory, `${OWNERS_FILE}.${process.pid}.tmp`);
    writeFileSync(aside, JSON.stringify({ ...owners, ...placeHere() } satisfies Owners), { mode: 0o600 });
    renameSync(aside, join(directory, OWNERS_FILE));
  } catch {
    // A full disk, say: housekeeping, never a reason to fail a launch.
  }
}

/**
 * Removes the server folders under `parent` whose owners are all gone, and returns their paths.
 * Only a folder whose owners file says it was made on this host is looked at, and:
 * - made in an earlier boot (another boot id, and last changed before this boot began): removed;
 * - made in another pid namespace (another container sharing the folder), or where one side
 *   cannot tell (on Linux, where namespaces exist, a `/proc` that does not say): its pids mean
 *   nothing here, and it is kept (where there are no pid namespaces, as on macOS, pids decide);
 * - else kept while any of its owners runs, as a process or a process group: the starter, the
 *   server, and the server whose pid is in its ports file's name (`nats-server_<pid>.ports`). A
 *   zombie does not run; a process of another user does.
 *
 * A folder without an owners file that can be read (made by a keel before it, or one that could not
 * write it) is kept.
 * Folders of other users, and anything not a folder, are left alone. A folder that cannot be read
 * or removed is skipped: this is housekeeping, never a reason to fail a launch.
 *
 * @example
 * ```ts
 * removeLeftFolders(tmpdir()); // ['/tmp/keel-up-nats-Xk3b9a']
 * ```
 */
export function removeLeftFolders(parent: string): string[] {
  let names: string[];
  try {
    names = readdirSync(parent).filter((name) => name.startsWith(NATS_FOLDER_PREFIX));
  } catch {
    return [];
  }
  if (names.length === 0) return [];
  const here = { ...placeHere(), bootedAt: bootTimeMs() };
  // Taken after the names: the starter of any folder listed made it before, so it is in the
  // snapshot unless it has ended (a run starting meanwhile made no folder listed here).
  const isRunning = runningCheck();
  const removed: string[] = [];
  for (const name of names) {
    const folder = join(parent, name);
    try {
      const stats = lstatSync(folder);
      if (!stats.isDirectory() || (process.getuid !== undefined && stats.uid !== process.getuid())) continue;
      if (!isLeft(folder, stats.mtimeMs, here, isRunning)) continue;
      rmSync(folder, { recursive: true, force: true });
      removed.push(folder);
    } catch {
      // Gone meanwhile, or not ours to read: the next launch looks again.
    }
  }
  return removed;
}

/** Whether a folder was left by a run that is gone (see {@link removeLeftFolders}). */
function isLeft(folder: string, changedMs: number, here: Place & { readonly bootedAt: number | undefined }, isRunning: (pid: number) => boolean): boolean {
  const files = readdirSync(folder);
  if (!files.includes(OWNERS_FILE)) return false;
  let owners: Owners;
  try {
    owners = JSON.parse(readFileSync(join(folder, OWNERS_FILE), 'utf8')) as Owners;
  } catch {
    return false;
  }
  if (typeof owners !== 'object' || owners === null || owners.host !== here.host) return false;
  // Another boot id alone could be a sandbox of its own sharing the folder: the folder must also predate this boot.
  if (owners.boot !== undefined && here.boot !== undefined && owners.boot !== here.boot) return here.bootedAt !== undefined && changedMs < here.bootedAt;
  // Another namespace's pids, or one side that cannot tell (on Linux, where namespaces exist, both): they mean nothing here.
  if (owners.pidNamespace !== here.pidNamespace || (process.platform === 'linux' && here.pidNamespace === undefined)) return false;
  const pids = [owners.starter, owners.server];
  for (const file of files) {
    const match = /_(\d+)\.ports$/.exec(file);
    if (match !== null) pids.push(Number(match[1]));
  }
  const named = pids.filter((pid): pid is number => typeof pid === 'number' && Number.isInteger(pid) && pid > 0);
  return named.length > 0 && !named.some(isRunning);
}

/**
 * Whether a pid is running, as a process or as a process group. On Linux from `/proc`, where a
 * zombie (exited, not yet reaped: under a PID 1 that reaps no orphans, forever) is not running;
 * elsewhere by signal 0, where another user's process counts as running.
 */
function runningCheck(): (pid: number) => boolean {
  const live = liveProcesses();
  if (live !== undefined) return (pid) => live.pids.has(pid) || live.groups.has(pid);
  return (pid) => {
    if (pid <= 1) return true; // never -1: "every process"
    for (const target of [pid, -pid]) {
      try {
        process.kill(target, 0);
        return true;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EPERM') return true;
      }
    }
    return false;
  };
}

/**
 * False when `/proc` shows no process of the group `pgid` but zombies (exited, never reaped);
 * true when it shows a running one, or cannot say (no `/proc`).
 *
 * @example
 * ```ts
 * if (!groupRunsBeyondZombies(server.pid)) markGone();
 * ```
 */
export function groupRunsBeyondZombies(pgid: number): boolean {
  const live = liveProcesses();
  return live === undefined || live.groups.has(pgid);
}

/** The pids and process groups of every process not a zombie, from `/proc`; undefined without it. */
function liveProcesses(): { pids: Set<number>; groups: Set<number> } | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  const pids = new Set<number>();
  const groups = new Set<number>();
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (state === 'Z') continue;
      pids.add(Number(entry));
      groups.add(Number(pgrp));
    } catch {
      // Ended while listed.
    }
  }
  return pids.size === 0 ? undefined : { pids, groups };
}
