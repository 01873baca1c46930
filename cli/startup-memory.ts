/**
 * Hands back to the system the memory a process's start-up used and no longer needs.
 *
 * Starting a module process allocates tens of megabytes that are garbage once it is ready
 * (module loading, schema building, the first connections), and V8 grows its young generation
 * toward its maximum to keep up (32 MB committed on the shop's one-module processes, 64 MB on one
 * hosting every module). An idle Node server never gives it back: V8's
 * memory reducer waits for a low allocation rate it measures at garbage collections, and an idle
 * process has none, so it judges the rate high every eight seconds for as long as the process
 * idles (`--trace-memory-reducer`). `keel start` therefore asks V8, once it is ready, for the
 * collection it makes before giving up on memory (the `last-resort` flavour of its `gc`
 * extension): it shrinks the young generation to one page and compacts the old one. On the
 * shop's module processes, on Node 24, that is about 22 MB of 110 (docs/performance.md,
 * "Start-up memory").
 *
 * The `gc` function is taken from a fresh `vm` context with `--expose-gc` set for that moment
 * only, so that the application's global scope never gets a `gc` (a process started with
 * `--expose-gc` uses its own, and keeps the flag). Node 20's V8 ignores the flavour (a plain
 * full collection shrinks nothing), so there it is skipped. It never throws: the process is
 * ready and serving, and a collection that could not run is reported, not worth a crash.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** What {@link releaseStartupMemory} did, in MB and milliseconds. */
export type StartupMemoryRelease =
  | {
      readonly released: true;
      /** Resident memory before and after. */
      readonly rssBeforeMb: number;
      readonly rssAfterMb: number;
      /** V8's young generation, committed, before and after. */
      readonly newSpaceBeforeMb: number;
      readonly newSpaceAfterMb: number;
      /** How long the collection held the event loop. */
      readonly ms: number;
    }
  | { readonly released: false; readonly reason: string };

/** The first Node line whose V8 honours the `last-resort` flavour. */
const FIRST_NODE = 22;

const megabytes = (bytes: number) => Math.round((bytes / 1_048_576) * 10) / 10;

function newSpaceMb(): number {
  return megabytes(getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0);
}

/**
 * Runs one memory-reducing full collection, synchronously, and says what it freed, or why it
 * did not run (Node 20, no `gc` extension, a failure). Never throws.
 *
 * @example
 * ```ts
 * logger.info({ modules }, 'ready');
 * // Only where the command owns its process (the `keel` executable), never inside another program.
 * if (cli.ownsProcess) setImmediate(() => {
 *   const release = releaseStartupMemory();
 *   logger.debug(release, startupMemoryMessage(release));
 * });
 * ```
 */
export function releaseStartupMemory(): StartupMemoryRelease {
  const version = process.versions.node;
  const major = Number(version.split('.')[0]);
  if (!(major >= FIRST_NODE)) {
    return { released: false, reason: `Node ${version}'s V8 cannot shrink its heap on request (Node ${FIRST_NODE} or later does)` };
  }
  const rssBefore = process.memoryUsage.rss();
  const newSpaceBeforeMb = newSpaceMb();
  const started = performance.now();
  try {
    // Started with --expose-gc: use that gc, and leave the flag as the user set it (later contexts and workers keep theirs).
    const exposed = (globalThis as { gc?: unknown }).gc;
    let gc: unknown = exposed;
    if (typeof exposed !== 'function') {
      setFlagsFromString('--expose-gc');
      try {
        // undefined, not a ReferenceError, when the extension is named otherwise (--expose-gc-as).
        gc = runInNewContext('typeof gc === "function" ? gc : undefined');
      } finally {
        setFlagsFromString('--no-expose-gc');
      }
    }
    if (typeof gc !== 'function') return { released: false, reason: "V8's gc extension was not available (--expose-gc-as set?)" };
    (gc as (options: object) => void)({ type: 'major', execution: 'sync', flavor: 'last-resort' });
  } catch (error) {
    // Never worth a crash: the process is ready and serving.
    return { released: false, reason: `the collection failed: ${error instanceof Error ? error.message : String(error)}` };
  }
  return {
    released: true,
    rssBeforeMb: megabytes(rssBefore),
    rssAfterMb: megabytes(process.memoryUsage.rss()),
    newSpaceBeforeMb,
    newSpaceAfterMb: newSpaceMb(),
    ms: Math.round((performance.now() - started) * 10) / 10,
  };
}

/**
 * A log message for what {@link releaseStartupMemory} did.
 *
 * @example
 * ```ts
 * const release = releaseStartupMemory();
 * logger.debug(release, startupMemoryMessage(release)); // "released start-up memory: 110.2 → 88.4 MB resident (61.3 ms)"
 * ```
 */
export function startupMemoryMessage(release: StartupMemoryRelease): string {
  return release.released
    ? `released start-up memory: ${release.rssBeforeMb} → ${release.rssAfterMb} MB resident (${release.ms} ms)`
    : `start-up memory left to V8: ${release.reason}`;
}
