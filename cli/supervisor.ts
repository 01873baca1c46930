/**
 * The process supervisor behind `keel up` and `keel dev`: starts every process, prefixes each
 * output line with its name (in JSON format, writes each as a JSON record naming it), tracks
 * readiness (each `keel start` child reports it over IPC), restarts a crashed process with
 * exponential backoff, and drains them all on stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { LogFormat, MAX_TIMEOUT_MS } from 'keel/transport';
import type { OutputStream, SupervisorMessage } from './command.js';
import { STOP_GRACE } from './deploy/grace.js';
import { jsonLineOf, type OutputSource } from './output-lines.js';

/** One process to supervise. */
export interface ProcessSpec {
  /** Shown before each of its output lines, such as `storefront#2` (in JSON format, the `process` of its records). */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /**
   * How long {@link Supervisor.stop} waits for this process to drain before SIGKILL, in place of
   * the supervisor's `drainTimeoutMs`: `keel up` and `keel dev` give each the grace period `keel
   * deploy` gives its group (cli/deploy/grace.ts, `stopGraceSecondsOf`).
   */
  readonly drainTimeoutMs?: number | undefined;
}

/** Options of {@link createSupervisor}. */
export interface SupervisorOptions {
  readonly processes: readonly ProcessSpec[];
  /** Where the processes' output lines go, stdout's and stderr's alike. */
  readonly output: OutputStream;
  /**
   * How output lines are written: `pretty` (the default), each behind its process's name
   * (`storefront#2 | ...`); `json`, each a JSON object naming its process (see {@link jsonLineOf}).
   */
  readonly format?: LogFormat | undefined;
  /** Where the supervisor's own messages go, with how grave each is (default info). */
  readonly log: (line: string, level?: SupervisorLogLevel) => void;
  /** Called each time every process has become ready. */
  readonly onAllReady?: () => void;
  /**
   * Called when a process failed `maxFailedStarts` times in a row without becoming ready, or
   * once when it said its failure would come again on a restart (a bad option, variable or
   * configuration of `keel start`, a port another process holds, NATS refusing its
   * credentials); with the failure it reported last, when it reported one.
   */
  readonly onGiveUp?: (name: string, failure: ProcessFailure | undefined) => void;
  /** First restart delay (default 250 ms); doubles with each crash in a row. */
  readonly initialBackoffMs?: number;
  /** Longest restart delay (default 10 000 ms). */
  readonly maxBackoffMs?: number;
  /** A process that stayed up this long after becoming ready restarts from the initial delay again (default 30 000 ms). */
  readonly resetBackoffAfterMs?: number;
  /** Starts in a row that end before readiness, after which the supervisor gives up (default 5). */
  readonly maxFailedStarts?: number;
  /**
   * How long {@link Supervisor.stop} waits for a process to drain before SIGKILL, when its
   * {@link ProcessSpec} says nothing (default 85 000 ms: the grace period `keel deploy` gives a
   * gateway's group with the default timeouts, the longest stop a `keel start` allows itself, plus a margin).
   */
  readonly drainTimeoutMs?: number;
}

/** What a process reported of the error it failed with (`keel start` sends it over IPC before exiting). */
export type ProcessFailure = Omit<Extract<SupervisorMessage, { type: 'failed' }>, 'type'>;

/** How grave one of the supervisor's own messages is. */
export type SupervisorLogLevel = 'info' | 'warn' | 'error';

/** Defaults of {@link SupervisorOptions}. */
export const DEFAULT_SUPERVISOR_OPTIONS = {
  initialBackoffMs: 250,
  maxBackoffMs: 10_000,
  resetBackoffAfterMs: 30_000,
  maxFailedStarts: 5,
  // A process is killed only once its own stop has run out: as on Kubernetes and compose.
  drainTimeoutMs: (STOP_GRACE.seconds + STOP_GRACE.gatewaySeconds) * 1000,
} as const satisfies Partial<SupervisorOptions>;

/** How one supervised process ended when the supervisor stopped. */
export interface ProcessExit {
  readonly name: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /**
   * Set when the SIGTERM of a stop reached it before it said it was ready, and ended it (exit
   * code 143, or the signal itself): stopped while starting, with nothing in flight to drain.
   */
  readonly beforeReady?: true;
}

/** A running supervisor. */
export interface Supervisor {
  /** True while every process reports ready. */
  readonly ready: boolean;
  /** Sends SIGTERM to every process, waits for each to drain (SIGKILL after the drain timeout). Idempotent. */
  stop(): Promise<readonly ProcessExit[]>;
  /**
   * Drains the named processes as {@link stop} does, then starts each again with a fresh backoff
   * (`keel dev`, after a change). A process waiting to restart after a crash, or given up on,
   * starts at once. Unknown names are ignored; nothing starts once {@link stop} was called.
   */
  restart(names: readonly string[]): Promise<void>;
}

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93, 95, 92] as const;

interface Managed {
  readonly spec: ProcessSpec;
  readonly prefix: string;
  child: ChildProcess | undefined;
  exited: Promise<ProcessExit> | undefined;
  ready: boolean;
  readyAt: number | undefined;
  failedStarts: number;
  backoffMs: number;
  restartTimer: NodeJS.Timeout | undefined;
  lastExit: ProcessExit | undefined;
  /** What the current run reported of its failure, if it did. */
  failure: ProcessFailure | undefined;
  /** Set while {@link Supervisor.restart} drains it: its exit is no crash. */
  restarting: boolean;
}

/**
 * Starts every process and keeps them running until {@link Supervisor.stop}.
 *
 * @example
 * ```ts
 * const supervisor = createSupervisor({
 *   processes: [{ name: 'catalog', command: process.execPath, args: ['keel.js', 'start', '--modules', 'catalog'], cwd, env }],
 *   output: process.stdout,
 *   log: (line) => console.log(line),
 * });
 * // ... later
 * await supervisor.stop();
 * ```
 */
export function createSupervisor(options: SupervisorOptions): Supervisor {
  const defined = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  const resolved = { ...DEFAULT_SUPERVISOR_OPTIONS, ...defined } as SupervisorOptions & typeof DEFAULT_SUPERVISOR_OPTIONS;
  const width = Math.max(...options.processes.map((process) => process.name.length));
  const managed: Managed[] = options.processes.map((spec, index) => {
    const label = spec.name.padEnd(width);
    const color = COLORS[index % COLORS.length] as number;
    return {
      spec,
      prefix: options.output.isTTY ? `\u001B[${color}m${label} |\u001B[39m` : `${label} |`,
      child: undefined,
      exited: undefined,
      ready: false,
      readyAt: undefined,
      failedStarts: 0,
      backoffMs: resolved.initialBackoffMs,
      restartTimer: undefined,
      lastExit: undefined,
      failure: undefined,
      restarting: false,
    };
  });
  let stopping = false;
  let allReady = false;

  const checkReady = (): void => {
    const now = managed.every((entry) => entry.ready);
    if (now && !allReady) {
      allReady = true;
      options.onAllReady?.();
    } else if (!now) {
      allReady = false;
    }
  };

  const pipeLines = (entry: Managed, child: ChildProcess, source: OutputSource): void => {
    const stream = child[source];
    if (stream === null) return;
    const json = options.format === LogFormat.JSON;
    const origin = { process: entry.spec.name, pid: child.pid, stream: source };
    createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      options.output.write(json ? `${jsonLineOf(line, origin)}\n` : `${entry.prefix} ${line}\n`);
    });
  };

  const launch = (entry: Managed): void => {
    entry.restartTimer = undefined;
    const child = spawn(entry.spec.command, [...entry.spec.args], {
      cwd: entry.spec.cwd,
      env: entry.spec.env,
      // Its own process group: a Ctrl-C in the terminal reaches keel up only, which drains each child once.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    entry.child = child;
    entry.ready = false;
    entry.failure = undefined;
    pipeLines(entry, child, 'stdout');
    pipeLines(entry, child, 'stderr');
    child.on('message', (message: SupervisorMessage) => {
      if (message?.type === 'ready') {
        entry.ready = true;
        entry.readyAt = Date.now();
        entry.failedStarts = 0;
        checkReady();
      } else if (message?.type === 'stopping') {
        entry.ready = false;
        checkReady();
      } else if (message?.type === 'failed') {
        entry.failure = {
          code: String(message.code),
          message: String(message.message),
          retry: message.retry !== false,
          ...(typeof message.hint === 'string' ? { hint: message.hint } : {}),
          ...(typeof message.details === 'object' && message.details !== null ? { details: message.details } : {}),
        };
      }
    });
    entry.exited = new Promise((resolve) => {
      let spawnError: Error | undefined;
      child.once('error', (error) => {
        spawnError = error;
        options.log(`${entry.spec.name}: could not start: ${error.message}`, 'error');
      });
      child.once('close', (code, signal) => {
        const exit: ProcessExit = { name: entry.spec.name, code: spawnError ? 1 : code, signal };
        entry.lastExit = exit;
        // Not `ready`: a process stopping (SIGTERM from outside keel up) is no longer ready, yet it had started.
        const wasReady = entry.readyAt !== undefined;
        entry.ready = false;
        entry.child = undefined;
        checkReady();
        resolve(exit);
        if (!stopping && !entry.restarting) onCrash(entry, exit, wasReady);
      });
    });
  };

  const onCrash = (entry: Managed, exit: ProcessExit, wasReady: boolean): void => {
    const how = exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`;
    const failure = entry.failure;
    if (!wasReady) entry.failedStarts++;
    if (!wasReady && failure?.retry === false) {
      options.log(`${entry.spec.name} exited (${how}) before becoming ready, with ${failure.code}, which a restart would meet again; not restarting it.`, 'error');
      options.onGiveUp?.(entry.spec.name, failure);
      return;
    }
    if (entry.failedStarts >= resolved.maxFailedStarts) {
      options.log(`${entry.spec.name} exited (${how}) ${entry.failedStarts} times in a row before becoming ready; giving up.`, 'error');
      options.onGiveUp?.(entry.spec.name, failure);
      return;
    }
    if (entry.readyAt !== undefined && Date.now() - entry.readyAt >= resolved.resetBackoffAfterMs) {
      entry.backoffMs = resolved.initialBackoffMs;
    }
    const delay = entry.backoffMs;
    entry.backoffMs = Math.min(entry.backoffMs * 2, resolved.maxBackoffMs);
    entry.readyAt = undefined;
    options.log(`${entry.spec.name} exited (${how}); restarting in ${delay} ms.`, 'warn');
    entry.restartTimer = setTimeout(() => {
      if (!stopping) launch(entry);
    }, delay);
  };

  /** SIGTERM, then its exit (SIGKILL after the drain timeout); the last exit when it is not running. */
  const drain = async (entry: Managed): Promise<ProcessExit> => {
    const child = entry.child;
    if (child === undefined || entry.exited === undefined) {
      return entry.lastExit ?? { name: entry.spec.name, code: null, signal: null };
    }
    // Not `ready`: one stopping after a SIGTERM from outside had started, and drains.
    const starting = entry.readyAt === undefined;
    child.kill('SIGTERM');
    // At most the longest delay a Node timer holds: a longer one (the grace of a gateway whose operation
    // declares timeoutMs MAX_TIMEOUT_MS, stopGraceSecondsOf adding 76 s to it) fires at once, a SIGKILL with the SIGTERM.
    const drainTimeoutMs = Math.min(entry.spec.drainTimeoutMs ?? resolved.drainTimeoutMs, MAX_TIMEOUT_MS);
    const force = setTimeout(() => {
      options.log(`${entry.spec.name} did not drain within ${drainTimeoutMs} ms; killing it.`, 'warn');
      child.kill('SIGKILL');
    }, drainTimeoutMs);
    const exit = await entry.exited;
    clearTimeout(force);
    return starting && (exit.code === 128 + 15 || exit.signal === 'SIGTERM') ? { ...exit, beforeReady: true } : exit;
  };

  // This process exiting while some of its processes run (a second Ctrl-C, an uncaught error)
  // takes them along: each is in a process group of its own, which no terminal signal reaches,
  // and one left draining would hold its port and its embedded database with nobody reading its output.
  const killOnExit = (): void => {
    for (const entry of managed) {
      const pid = entry.child?.pid;
      // One that exited is reaped: its pid may be another process's by now.
      if (pid === undefined || entry.child?.exitCode !== null || entry.child.signalCode !== null) continue;
      try {
        process.kill(-pid, 'SIGKILL');
      } catch {
        entry.child?.kill('SIGKILL');
      }
    }
  };
  process.on('exit', killOnExit);

  for (const entry of managed) launch(entry);

  let stopped: Promise<readonly ProcessExit[]> | undefined;
  return {
    get ready() {
      return allReady;
    },
    stop() {
      stopped ??= (async () => {
        stopping = true;
        const exits = managed.map(async (entry): Promise<ProcessExit> => {
          if (entry.restartTimer !== undefined) clearTimeout(entry.restartTimer);
          return drain(entry);
        });
        const all = await Promise.all(exits);
        process.removeListener('exit', killOnExit);
        return all;
      })();
      return stopped;
    },
    async restart(names) {
      const entries = managed.filter((entry) => names.includes(entry.spec.name));
      await Promise.all(
        entries.map(async (entry) => {
          if (stopping) return;
          if (entry.restartTimer !== undefined) clearTimeout(entry.restartTimer);
          entry.restartTimer = undefined;
          entry.restarting = true;
          try {
            await drain(entry);
          } finally {
            entry.restarting = false;
          }
          entry.failedStarts = 0;
          entry.backoffMs = resolved.initialBackoffMs;
          entry.readyAt = undefined;
          if (!stopping) launch(entry);
        }),
      );
    },
  };
}
