/**
 * `keel dev [topology]`: watch mode. Runs one process (as `keel start`) or a whole topology (as
 * `keel up`, but with an open nats-server), with pretty logs, and restarts only the processes a
 * saved change concerns: those hosting the module changed, and, for a contract, those hosting
 * the modules that call it or handle its events and those serving every operation over HTTP; a
 * change elsewhere restarts every process. Each is drained before it starts again. In JSON format
 * (`KEEL_LOG_FORMAT=json`, or the configuration's) every line it writes is a JSON object, as keel up's.
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { LogFormat } from 'keel/transport';
import { contextOf, defineCommand, type CliContext } from '../command.js';
import { createCommandLog, type CommandLog } from '../command-log.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { prepareLocalRun } from '../local-run.js';
import { hostedList } from '../names.js';
import { findProject, moduleGraph, projectSettings, type ModuleNode } from '../project.js';
import type { ModuleGraph } from '../tooling/graph.js';
import { fixedBySave, gaveUpReason, gaveUpRemedy, type RemedyContext } from '../give-up.js';
import { createSupervisor, type ProcessFailure } from '../supervisor.js';
import { DEFAULT_WATCH_OPTIONS, impactOf, processesToRestart, watchProject, type ProjectWatch } from '../watch.js';

const execFileAsync = promisify(execFile);

/** At most this many changed paths are named in a restart line. */
const PATHS_SHOWN = 3;

/** The shortest `--debounce`: one save can be two file events a few milliseconds apart. */
const MIN_DEBOUNCE_MS = 10;
/** The longest `--debounce`: a minute (a longer quiet time would read as a watch that never fires). */
const MAX_DEBOUNCE_MS = 60_000;

export default defineCommand({
  meta: {
    name: 'dev',
    description: 'Watch mode: run the application (or a topology) and restart the processes a change concerns',
    examples: ['keel dev', 'keel dev --modules catalog,orders --nats nats://127.0.0.1:4222', 'keel dev topologies/split.ts', 'keel dev --debounce 1000'],
  },
  args: {
    topology: {
      type: 'positional',
      description: 'Topology file to run as keel up does; default: one process, as keel start',
      required: false,
    },
    modules: {
      type: 'string',
      description: 'Without a topology: modules to host, comma-separated, or none (default: all)',
      valueHint: 'a,b',
    },
    http: {
      type: 'string',
      description: 'Without a topology: the HTTP gateway port, as keel start --http (default: $KEEL_HTTP_PORT, then $PORT, else 3000 when hosting every module)',
      valueHint: 'port',
    },
    nats: {
      type: 'string',
      description: "NATS server URL (default: the topology's, then $KEEL_NATS_URL, else nats-server is started when needed)",
      valueHint: 'url',
    },
    debounce: {
      type: 'string',
      description: `Quiet time after the last saved change before restarting, in milliseconds from ${MIN_DEBOUNCE_MS} to ${MAX_DEBOUNCE_MS}: changes within it restart once (default ${DEFAULT_WATCH_OPTIONS.debounceMs})`,
      valueHint: 'ms',
    },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const own = createCommandLog(cli, 'keel dev');
    await own.run(() => dev(cli, own, args));
  },
});

/**
 * What to do about a process given up on: fix a file and save, when that can help; else what
 * frees the cause (a port, a NATS server), and a save to start it again; for a bad option or
 * variable, a restart of keel dev, which a save would not change.
 */
function devAdvice(failure: ProcessFailure | undefined, context: RemedyContext): string {
  if (fixedBySave(failure)) return 'Fix it and save: the next change starts it again.';
  const remedy = gaveUpRemedy(failure, context);
  if (failure?.code === CliErrorCode.E_USAGE) return `${remedy ?? 'Fix the option or variable it names.'} Then restart keel dev: a save starts it again with the same ones.`;
  return `${remedy ?? 'Remove its cause.'} Then save any file: the next change starts it again.`;
}

/** The run itself; its own lines go through `own`, in the processes' format once known. */
async function dev(
  cli: CliContext,
  own: CommandLog,
  args: {
    readonly topology?: string | undefined;
    readonly modules?: string | undefined;
    readonly http?: string | undefined;
    readonly nats?: string | undefined;
    readonly debounce?: string | undefined;
  },
): Promise<void> {
  const { log } = own;
  if (args.topology !== undefined && (args.modules !== undefined || args.http !== undefined)) {
    throw new CLIError(CliErrorCode.E_USAGE, `--modules and --http are for one process; the topology ${args.topology} says which modules each process hosts and where HTTP is served.`);
  }
  const debounceMs = args.debounce === undefined ? DEFAULT_WATCH_OPTIONS.debounceMs : Number(args.debounce);
  if (!(Number.isInteger(debounceMs) && debounceMs >= MIN_DEBOUNCE_MS && debounceMs <= MAX_DEBOUNCE_MS)) {
    throw new CLIError(CliErrorCode.E_USAGE, `--debounce "${args.debounce}" is not a whole number of milliseconds from ${MIN_DEBOUNCE_MS} to ${MAX_DEBOUNCE_MS}.`, {
      hint: `Pass the quiet time to wait after the last saved change, such as --debounce 1000 (default ${DEFAULT_WATCH_OPTIONS.debounceMs}).`,
    });
  }
  if (findProject(cli.cwd).build !== undefined) {
    throw new CLIError(CliErrorCode.E_USAGE, 'keel dev runs and watches the TypeScript sources, and this project has only its build.', {
      hint: 'Run keel dev where the sources are, or keel start to run the build.',
    });
  }
  const single = args.topology === undefined ? { modules: hostedList(args.modules, '--modules'), http: args.http } : undefined;
  // Its nats-server is open (no users, loopback only): permissions listed at launch would refuse what the next save adds.
  const run = await prepareLocalRun({
    cli,
    command: 'keel dev',
    log,
    onLogFormat: own.use,
    topology: args.topology,
    nats: args.nats,
    single,
    defaultLogFormat: LogFormat.PRETTY,
    lockDown: false,
  });
  const { project, processes } = run;
  const settings = projectSettings(project.root);
  const modulesDir = relative(project.root, project.modulesDir).split('\\').join('/');
  const topologyPath = args.topology === undefined ? undefined : relative(project.root, resolve(cli.cwd, args.topology)).split('\\').join('/');
  let graph = moduleGraph(run.modules);
  // Read by `keel graph --format json` in a short-lived process, from the sources as they are
  // now: an import here would get the module files from this process's import cache, as they
  // were at launch, and keep one more copy of the manifest in memory at every save.
  const readGraph = async (): Promise<ModuleNode[]> => {
    const { stdout } = await execFileAsync(cli.self.command, [...cli.self.args, 'graph', '--format', 'json', '--root', project.root], {
      cwd: project.root,
      env: { ...cli.env },
      maxBuffer: 64 * 1024 * 1024,
      // Stopping keel dev ends a read still running: its answer would not be used.
      signal: cli.signal,
    });
    const read = JSON.parse(stdout) as ModuleGraph;
    return read.modules.map((module) => ({
      name: module.name,
      dependsOn: read.calls.filter((edge) => edge.from === module.name).map((edge) => edge.to),
      subscribesTo: read.events.filter((edge) => edge.to === module.name).map((edge) => edge.from),
    }));
  };

  /** The processes given up on: the next change starts them again, whatever it touches. */
  const givenUp = new Set<string>();
  const supervisor = createSupervisor({
    processes,
    output: cli.stdout,
    format: run.logFormat,
    log,
    onAllReady: () =>
      log(`ready: ${processes.length === 1 ? (processes[0]?.name ?? '') : `all ${processes.length} processes`}; watching for changes (Ctrl-C to stop)`),
    // The supervisor's own line said it as an error; this one says what to do, which a save does not always do.
    onGiveUp: (name, failure) => {
      givenUp.add(name);
      log(`${gaveUpReason(name, failure)}. ${devAdvice(failure, { topology: topologyPath !== undefined })}`, 'warn');
    },
  });

  const restart = async (paths: readonly string[]): Promise<void> => {
    const impact = impactOf(paths, modulesDir, graph);
    const targets = processesToRestart(impact, processes, givenUp);
    givenUp.clear();
    const shown = paths.length > PATHS_SHOWN ? `${paths.slice(0, PATHS_SHOWN).join(', ')} and ${paths.length - PATHS_SHOWN} more` : paths.join(', ');
    if (topologyPath !== undefined && paths.includes(topologyPath)) {
      log(`${topologyPath} changed: restart keel dev to run the processes it now describes.`, 'warn');
    }
    if (targets.length === 0) {
      log(`${shown} changed; no process hosts ${impact.all ? 'it' : [...impact.modules].join(', ')}.`);
      return;
    }
    log(`${shown} changed; restarting ${targets.map((process) => process.name).join(', ')}`);
    // A module may now depend on another: read the graph again, while the processes restart (a
    // graph that does not read keeps the last one).
    const [, next] = await Promise.all([
      supervisor.restart(targets.map((process) => process.name)),
      readGraph().catch((error: unknown) => {
        // Ctrl-C reaches the read too (one process group), and stopping aborts it: not a failure.
        if (cli.signal.aborted) return graph;
        const stderr = (error as { stderr?: unknown }).stderr;
        const reason = (typeof stderr === 'string' && stderr.trim() !== '' ? stderr : (error as Error).message).trim().split('\n')[0];
        log(`cannot read the module graph again, the last one stays: ${reason ?? ''}`, 'warn');
        return graph;
      }),
    ]);
    // A module the manifest gained is hosted only by a process that takes every module: the
    // others were started with the modules the topology named, so calls to it would find no responders.
    const unhosted = next
      .map((module) => module.name)
      .filter((name) => !graph.some((module) => module.name === name))
      .filter((name) => !processes.some((process) => process.hostsEveryModule || process.modules.includes(name)));
    if (unhosted.length > 0) {
      const names = unhosted.map((name) => `"${name}"`).join(', ');
      log(
        `no process hosts ${names}, new in the manifest: calls to ${unhosted.length === 1 ? 'it' : 'them'} find no responders. ` +
          (topologyPath === undefined
            ? `Name ${unhosted.length === 1 ? 'it' : 'each'} in --modules, or run keel dev without --modules, then restart keel dev.`
            : `Add ${unhosted.length === 1 ? 'it' : 'each'} to a process of ${topologyPath} (a process of modules: ["*"] takes it when keel dev starts again), then restart keel dev.`),
        'warn',
      );
    }
    graph = next;
  };
  let restarts = Promise.resolve();
  const ignore = [settings?.outDir, project.testDir]
    .filter((folder): folder is string => folder !== undefined)
    .map((folder) => relative(project.root, resolve(project.root, folder)).split('\\').join('/'))
    .filter((folder) => folder !== '' && !folder.startsWith('..'));
  let watcher: ProjectWatch;
  try {
    watcher = watchProject({
      root: project.root,
      ignore,
      debounceMs,
      // A record's level says it is a warning; a pretty line, its text.
      warn: (line) => log(own.json ? line : `warning: ${line}`, 'warn'),
      onChange: (paths) => {
        restarts = restarts
          .then(() => restart(paths))
          .catch((error: unknown) => {
            log(`restarting failed: ${(error as Error).message}`, 'error');
          });
      },
    });
  } catch (error) {
    await supervisor.stop();
    await run.stopNats();
    throw new CLIError(CliErrorCode.E_WATCH, `Cannot watch ${project.root}: ${(error as Error).message}`, {
      cause: error,
      hint: 'On Linux, ENOSPC means too few inotify watches: raise fs.inotify.max_user_watches (sysctl), or run keel up.',
    });
  }

  // The nats-server started here exiting while it runs: no restart of the processes brings it back.
  let natsGone: string | undefined;
  let stopping = false;
  const lostNats = run.natsLost.then((why) => {
    if (stopping) return;
    natsGone = why;
    log(`${why}; stopping every process`, 'error');
  });
  const keepAlive = setInterval(() => {}, 2 ** 30);
  if (!cli.signal.aborted) await Promise.race([once(cli.signal, 'abort'), lostNats]);
  clearInterval(keepAlive);
  stopping = true;
  watcher.close();
  if (natsGone === undefined) log('stopping: draining every process');
  const exits = await supervisor.stop();
  await restarts;
  own.exits(exits);
  await run.stopNats();
  if (natsGone !== undefined) {
    throw new CLIError(CliErrorCode.E_NATS_SERVER, `${natsGone.charAt(0).toUpperCase()}${natsGone.slice(1)}.`, {
      hint: 'Run keel dev again: it starts a new nats-server. To keep NATS apart from keel dev, start nats-server yourself and pass --nats nats://127.0.0.1:4222.',
    });
  }
  log('stopped');
}
