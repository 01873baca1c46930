/**
 * `keel up [topology]`: runs a whole topology locally. Starts nats-server when the topology
 * needs NATS and no URL is given, one `keel start` per process replica, and supervises them
 * until Ctrl-C or SIGTERM drains everything. In JSON format every line it writes is a JSON object:
 * its processes' records (any other line of theirs wrapped in one), and its own.
 */
import { once } from 'node:events';
import { contextOf, defineCommand, type CliContext } from '../command.js';
import { createCommandLog, type CommandLog } from '../command-log.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { prepareLocalRun } from '../local-run.js';
import { gaveUpReason, gaveUpRemedy } from '../give-up.js';
import { createSupervisor, type ProcessFailure } from '../supervisor.js';

export default defineCommand({
  meta: {
    name: 'up',
    description: 'Run a whole topology locally: every process, NATS, restarts, one log',
    examples: ['keel up', 'keel up topologies/split.ts', 'keel up topologies/per-module.ts --nats nats://127.0.0.1:4222'],
  },
  args: {
    topology: {
      type: 'positional',
      description: 'Topology file (.ts, .js or .json); default: every module in one process',
      required: false,
    },
    nats: {
      type: 'string',
      description: 'NATS server URL (default: the topology\'s, then $KEEL_NATS_URL, else nats-server is started)',
      valueHint: 'url',
    },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const own = createCommandLog(cli, 'keel up');
    await own.run(() => up(cli, own, args));
  },
});

/** The run itself; its own lines go through `own`, in the processes' format once known. */
async function up(cli: CliContext, own: CommandLog, args: { readonly topology?: string | undefined; readonly nats?: string | undefined }): Promise<void> {
  const { log } = own;
  const { processes, logFormat, natsLost, stopNats } = await prepareLocalRun({ cli, command: 'keel up', log, onLogFormat: own.use, topology: args.topology, nats: args.nats });

  const gaveUp = new AbortController();
  let failed: { name: string; failure: ProcessFailure | undefined } | undefined;
  const supervisor = createSupervisor({
    processes,
    output: cli.stdout,
    format: logFormat,
    log,
    onAllReady: () => log(`ready: ${processes.length === 1 ? (processes[0]?.name ?? '') : `all ${processes.length} processes (${processes.map((process) => process.name).join(', ')})`}`),
    onGiveUp: (name, failure) => {
      failed ??= { name, failure };
      gaveUp.abort();
    },
  });
  // The nats-server started here exiting while it runs (killed, crashed): every process lost NATS
  // for good, since nothing starts that server again on its port. Said, and everything stops.
  let natsGone: string | undefined;
  let stopping = false;
  const lostNats = natsLost.then((why) => {
    if (stopping) return;
    natsGone = why;
    log(`${why}; stopping every process`, 'error');
  });
  const keepAlive = setInterval(() => {}, 2 ** 30);
  if (!cli.signal.aborted && !gaveUp.signal.aborted) {
    await Promise.race([once(cli.signal, 'abort'), once(gaveUp.signal, 'abort'), lostNats]);
  }
  clearInterval(keepAlive);
  stopping = true;
  if (natsGone === undefined) log(failed ? 'stopping every process' : 'stopping: draining every process');
  const exits = await supervisor.stop();
  own.exits(exits);
  await stopNats();
  if (natsGone !== undefined) {
    throw new CLIError(CliErrorCode.E_NATS_SERVER, `${natsGone.charAt(0).toUpperCase()}${natsGone.slice(1)}.`, {
      hint: 'Run keel up again: it starts a new nats-server. To keep NATS apart from keel up, start nats-server yourself and pass --nats nats://127.0.0.1:4222.',
    });
  }
  if (failed !== undefined) {
    const where = own.json ? `its records (process "${failed.name}")` : 'its output above';
    const remedy = gaveUpRemedy(failed.failure, { topology: args.topology !== undefined });
    throw new CLIError(CliErrorCode.E_PROCESS, `${gaveUpReason(failed.name, failed.failure)}; see ${where}.`, remedy === undefined ? {} : { hint: remedy });
  }
  log('stopped');
}
