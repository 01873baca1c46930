/**
 * `keel status`: the modules running on a NATS system, found through the NATS service API
 * (`$SRV.PING`, `$SRV.INFO`, `$SRV.STATS`): instances, version, uptime, requests, errors and
 * average processing time per module. With a topology, fails when one of its modules has no
 * running instance.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { NATS_ENV } from 'keel/nats';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { ROOT_ARG, projectAt, topologyAt } from '../tooling/command-support.js';
import { connectForStatus, formatStatusReport, readStatus, type StatusConnectOptions } from '../tooling/status.js';
import { localPrefix } from '../topology.js';

const DEFAULT_NATS_URL = 'nats://127.0.0.1:4222';

/** The longest `--wait`: a minute. */
const MAX_WAIT_MS = 60_000;

export default defineCommand({
  meta: {
    name: 'status',
    description: 'Show the running modules: instances, version, uptime, requests, errors, average time',
    examples: ['keel status', 'keel status --nats nats://10.0.0.5:4222 --json', 'keel status --topology topologies/split.ts'],
  },
  args: {
    nats: { type: 'string', description: `NATS server URL (default: the topology's, then $KEEL_NATS_URL, else ${DEFAULT_NATS_URL})`, valueHint: 'url' },
    topology: {
      type: 'string',
      description: 'Topology file: wait (up to --wait) for every instance its replicas make, and fail when one of its modules has no running instance',
      valueHint: 'file',
    },
    prefix: {
      type: 'string',
      description: "Only modules serving under this subject prefix (default: with --topology, the topology's, then $KEEL_NATS_PREFIX, else keel; without, any)",
      valueHint: 'prefix',
    },
    all: { type: 'boolean', description: 'Also list NATS services that keel did not register', default: false },
    instances: { type: 'boolean', description: 'One line per instance under each module', default: false },
    wait: { type: 'string', description: `Longest wait for answers in milliseconds, up to ${MAX_WAIT_MS} (default 1000)`, valueHint: 'ms' },
    json: { type: 'boolean', description: 'Print the report as JSON', default: false },
    root: ROOT_ARG,
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const maxWaitMs = args.wait === undefined ? undefined : Number(args.wait);
    if (maxWaitMs !== undefined && !(Number.isInteger(maxWaitMs) && maxWaitMs > 0 && maxWaitMs <= MAX_WAIT_MS)) {
      throw new CLIError(CliErrorCode.E_USAGE, `--wait "${args.wait}" is not a whole number of milliseconds from 1 to ${MAX_WAIT_MS}.`);
    }
    const topology = args.topology === undefined ? undefined : await topologyAt(projectAt(cli.cwd, args.root), cli.cwd, args.topology);
    // A topology's processes serve under its prefix, else under the one keel up gives them (this
    // shell's KEEL_NATS_PREFIX, else keel): another keel system on the same server must not count
    // as this one's instances. Settled (and a bad one refused) before connecting.
    const prefix = args.prefix ?? (topology === undefined ? undefined : localPrefix(topology, cli.env));
    // Read as the NATS adapter reads them: trimmed, and empty as unset.
    const env = (name: string) => {
      const value = cli.env[name]?.trim();
      return value === undefined || value === '' ? undefined : value;
    };
    const servers = args.nats ?? topology?.nats.url ?? env(NATS_ENV.URL) ?? DEFAULT_NATS_URL;
    const options: StatusConnectOptions = {
      servers,
      token: env(NATS_ENV.TOKEN),
      user: env(NATS_ENV.USER),
      password: env(NATS_ENV.PASSWORD),
      credentialsFile: env(NATS_ENV.CREDS),
      inboxPrefix: env(NATS_ENV.INBOX_PREFIX),
      tls:
        env(NATS_ENV.TLS_CA) ?? env(NATS_ENV.TLS_CERT) ?? env(NATS_ENV.TLS_KEY)
          ? { caFile: env(NATS_ENV.TLS_CA), certFile: env(NATS_ENV.TLS_CERT), keyFile: env(NATS_ENV.TLS_KEY) }
          : undefined,
    };
    let connection: NatsConnection;
    try {
      connection = await connectForStatus(options);
    } catch (error) {
      throw new CLIError(CliErrorCode.E_STATUS, `Cannot reach NATS at ${servers}: ${(error as Error).message}.`, {
        cause: error,
        hint:
          'Pass the server with --nats <url> (or set KEEL_NATS_URL), and check that it runs. keel status logs in with ' +
          'KEEL_NATS_USER and KEEL_NATS_PASSWORD, KEEL_NATS_TOKEN or KEEL_NATS_CREDS (an Authorization Violation: missing or wrong); ' +
          'for the server keel up started, run `set -a; . <the _client.env file it names>` first.',
      });
    }
    try {
      const groups = topology === undefined ? [] : Object.values(topology.processes);
      // A module's instances: one per replica of each process hosting it.
      const expectedInstances: Record<string, number> = {};
      for (const group of groups) for (const module of group.modules) expectedInstances[module] = (expectedInstances[module] ?? 0) + group.replicas;
      const report = await readStatus(connection, {
        expectedInstances,
        prefix,
        all: args.all,
        ...(maxWaitMs === undefined ? {} : { maxWaitMs }),
      }).catch((error: unknown) => {
        // Not "nothing running": the question itself failed (a permission violation, a closed connection).
        throw new CLIError(CliErrorCode.E_STATUS, (error as Error).message, { cause: error });
      });
      cli.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatusReport(report, { instances: args.instances }));
      if (!report.ok) {
        throw new CLIError(CliErrorCode.E_STATUS, `No running instance of ${report.missing.join(', ')}.`, {
          hint: 'Start it (`keel start --modules <name>` or `keel up <topology>`), then run `keel status` again.',
        });
      }
    } finally {
      await connection.close();
    }
  },
});
