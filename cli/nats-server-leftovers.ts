/**
 * The folders of the nats-servers `keel up` and `keel dev` started that a killed run left behind
 * (a SIGKILL, the OOM killer: no code of theirs ran to remove them). Each holds a JetStream store
 * and the `_client` credentials of a server that is gone. The next launch removes them.
 */
import { lstatSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The name every such folder starts with, under the temporary folder. */
export const NATS_FOLDER_PREFIX = 'keel-up-nats-';

/** The file in such a folder naming the processes it belongs to. */
const OWNERS_FILE = 'owners.json';

/** A folder with no process named in it is left alone for this long: its run may be starting. */
const UNNAMED_GRACE_MS = 10 * 60_000;

/**
 * Names the processes a server's folder belongs to: the one that started the server and,
 * once it runs, the server's process group. Written again as each becomes known.
 *
 * @example
 * ```ts
 * recordOwners(directory, { starter: process.pid, server: child.pid });
 * ```
 */
export function recordOwners(directory: string, owners: { readonly starter: number; readonly server?: number }): void {
  writeFileSync(join(directory, OWNERS_FILE), JSON.stringify(owners), { mode: 0o600 });
}

/**
 * Removes the server folders under `parent` whose owners are all gone, and returns their paths.
 * A folder's owners are the processes its owners file names and the server whose pid is in its
 * ports file's name (`nats-server_<pid>.ports`, also in folders of keel versions before the owners
 * file), each as a process or a process group. A folder is kept while any of them runs (a zombie
 * does not; a process of another user does), and
 * one naming no process is kept for ten minutes after it was last changed, since its run may be
 * starting. Folders of other users, and anything not a folder, are left alone. A folder that
 * cannot be read or removed is skipped: this is housekeeping, never a reason to fail a launch.
 *
 * @example
 * ```ts
 * removeLeftFolders(tmpdir()); // ['/tmp/keel-up-nats-Xk3b9a']
 * ```
 */
export function removeLeftFolders(parent: string, now = Date.now()): string[] {
  let names: string[];
  try {
    names = readdirSync(parent).filter((name) => name.startsWith(NATS_FOLDER_PREFIX));
  } catch {
    return [];
  }
  const removed: string[] = [];
  // Taken after the names: the starter of any folder listed made it before, so it is in the
  // snapshot unless it has ended (a run starting meanwhile made no folder listed here).
  const isRunning = names.length === 0 ? () => true : runningCheck();
  for (const name of names) {
    const folder = join(parent, name);
    try {
      const stats = lstatSync(folder);
      if (!stats.isDirectory() || (process.getuid !== undefined && stats.uid !== process.getuid())) continue;
      const pids = ownersOf(folder);
      const left = pids.length === 0 ? now - stats.mtimeMs > UNNAMED_GRACE_MS : !pids.some(isRunning);
      if (!left) continue;
      rmSync(folder, { recursive: true, force: true });
      removed.push(folder);
    } catch {
      // Gone meanwhile, or not ours to read: the next launch looks again.
    }
  }
  return removed;
}

/** The pids a folder names: its owners file's, and the one in its ports file's name. */
function ownersOf(folder: string): number[] {
  const pids: number[] = [];
  const files = readdirSync(folder);
  for (const file of files) {
    const match = /_(\d+)\.ports$/.exec(file);
    if (match !== null) pids.push(Number(match[1]));
  }
  if (files.includes(OWNERS_FILE)) {
    try {
      const owners = JSON.parse(readFileSync(join(folder, OWNERS_FILE), 'utf8')) as Record<string, unknown>;
      for (const pid of [owners['starter'], owners['server']]) if (typeof pid === 'number') pids.push(pid);
    } catch {
      // Being written: the folder names its starter again in a moment; keep it this time.
      pids.push(process.pid);
    }
  }
  return pids.filter((pid) => Number.isInteger(pid) && pid > 0);
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
