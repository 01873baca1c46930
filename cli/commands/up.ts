/**
 * `keel up [topology]`: runs a whole topology locally. Starts nats-server when the topology
 * needs NATS and no URL is given, one `keel start` per process replica, and supervises them
 * until Ctrl-C or SIGTERM drains everything.
 */
import { once } from 'node:events';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { prepareLocalRun } from '../local-run.js';
import { createSupervisor } from '../supervisor.js';

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
    const log = (line: string) => cli.stdout.write(`keel up: ${line}\n`);
    const { processes, stopNats } = await prepareLocalRun({ cli, command: 'keel up', log, topology: args.topology, nats: args.nats });

    const gaveUp = new AbortController();
    let failed: string | undefined;
    const supervisor = createSupervisor({
      processes,
      output: cli.stdout,
      log,
      onAllReady: () => log(`ready: all ${processes.length} processes (${processes.map((process) => process.name).join(', ')})`),
      onGiveUp: (name) => {
        failed = name;
        gaveUp.abort();
      },
    });
    const keepAlive = setInterval(() => {}, 2 ** 30);
    if (!cli.signal.aborted && !gaveUp.signal.aborted) {
      await Promise.race([once(cli.signal, 'abort'), once(gaveUp.signal, 'abort')]);
    }
    clearInterval(keepAlive);
    log(failed ? 'stopping every process' : 'stopping: draining every process');
    const exits = await supervisor.stop();
    for (const exit of exits) {
      log(`  ${exit.name} ${exit.code === 0 ? 'stopped cleanly' : `ended with ${exit.signal ? `signal ${exit.signal}` : `exit code ${exit.code}`}`}`);
    }
    await stopNats();
    if (failed !== undefined) {
      throw new CLIError(CliErrorCode.E_PROCESS, `${failed} kept exiting before it became ready; see its output above.`);
    }
    log('stopped');
  },
});
