/**
 * `keel up [topology]`: runs a whole topology locally. Starts nats-server when the topology
 * needs NATS and no URL is given, one `keel start` per process replica, and supervises them
 * until Ctrl-C or SIGTERM drains everything.
 */
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { logFormatOf } from 'keel/transport';
import { contextOf, defineCommand } from '../command.js';
import { assertOwnDataFolders } from '../database.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { NATS_CLIENT_USER, isGateway, natsAuthorization, natsEnvFile, natsUserEnvironment, natsUsers, type NatsUser } from '../deploy/index.js';
import { launchNatsServer, type LaunchedNatsServer } from '../nats-server.js';
import { loadAppConfig, loggingEnv } from '../app-config.js';
import { findProject, loadManifest } from '../project.js';
import { createSupervisor, type ProcessSpec } from '../supervisor.js';
import { loadTopology, needsNats, singleProcessTopology } from '../topology.js';

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
    const project = findProject(cli.cwd);
    const modules = await loadManifest(project);
    // Checked here once, rather than by every process failing in turn; each process reads it again as it starts.
    const { path: configPath, config } = await loadAppConfig(project);
    // Every process logs in the format keel up would use itself (its children write to pipes,
    // which alone would make them JSON): KEEL_LOG_FORMAT, else the configuration's, else pretty
    // lines in a terminal and JSON lines elsewhere, each behind its process's name.
    const logFormat = logFormatOf(loggingEnv(cli.env, config), cli.stdout);
    const names = modules.map((module) => module.name as string);
    const file = args.topology === undefined ? undefined : resolve(cli.cwd, args.topology);
    const topology = file === undefined ? singleProcessTopology(names) : await loadTopology(project, file, names);
    const label = topology.name ?? (file === undefined ? 'one process' : relative(project.root, file));
    // Refused here, once, rather than by every process crashing in turn: a bad database URL, or two processes on one embedded database folder.
    assertOwnDataFolders(
      Object.entries(topology.processes).map(([name, spec]) => ({
        name,
        modules: modules.filter((module) => spec.modules.includes(module.name)),
        replicas: spec.replicas,
        env: spec.env,
      })),
      { env: cli.env, root: project.root },
    );

    let natsUrl = args.nats ?? topology.nats.url ?? (cli.env['KEEL_NATS_URL'] || undefined);
    let natsServer: LaunchedNatsServer | undefined;
    // The server keel up starts is locked down: one user per process group, allowed what its modules need.
    let users: NatsUser[] = [];
    if (natsUrl === undefined && needsNats(topology)) {
      users = natsUsers(topology, modules);
      natsServer = await launchNatsServer({ binary: cli.env['KEEL_NATS_SERVER_BIN'] || undefined, extraConfig: natsAuthorization(users) });
      natsUrl = natsServer.url;
      log(`started nats-server on ${natsUrl}`);
      const client = users.find((user) => user.user === NATS_CLIENT_USER) as NatsUser;
      const clientEnv = join(natsServer.directory, `${NATS_CLIENT_USER}.env`);
      writeFileSync(clientEnv, natsEnvFile(client, 'Written by keel up; removed when it stops.'), { mode: 0o600 });
      log(`NATS is locked down: each process has its own user; a client of every operation (keel status, scripts) finds its credentials in ${clientEnv}`);
    }
    const credentialsOf = (group: string): Record<string, string> => {
      const user = users.find((candidate) => candidate.user === group);
      return user === undefined ? {} : natsUserEnvironment(user);
    };

    // A process serves HTTP where the topology says (`http`, or a port in its `env`), never because
    // this shell has PORT or KEEL_HTTP_PORT set: every process would then claim the same port.
    const { PORT: _port, KEEL_HTTP_PORT: _httpPort, ...inherited } = cli.env;
    const processes: ProcessSpec[] = [];
    for (const [group, spec] of Object.entries(topology.processes)) {
      for (let replica = 1; replica <= spec.replicas; replica++) {
        const name = spec.replicas > 1 ? `${group}#${replica}` : group;
        processes.push({
          name,
          command: cli.self.command,
          args: [
            ...cli.self.args,
            'start',
            '--modules',
            spec.modules.join(','),
            ...(natsUrl === undefined ? [] : ['--nats', natsUrl]),
            ...(spec.http === undefined ? [] : ['--http', String(spec.http)]),
          ],
          cwd: project.root,
          env: {
            ...inherited,
            // What its HTTP gateway exposes, as keel deploy sets it and as its NATS permissions
            // assume: every operation for a group with `http`, none for the others (their env may say otherwise).
            KEEL_HTTP_OPERATIONS: isGateway(spec) ? 'all' : 'none',
            ...spec.env,
            KEEL_LOG_FORMAT: logFormat,
            KEEL_PROCESS_NAME: name,
            ...(topology.nats.prefix === undefined ? {} : { KEEL_NATS_PREFIX: topology.nats.prefix }),
            ...credentialsOf(group),
          },
        });
      }
    }
    if (configPath !== undefined) log(`configuration from ${relative(cli.cwd, configPath) || configPath}`);
    log(`${label}: ${processes.length} process${processes.length === 1 ? '' : 'es'}${natsUrl ? ` over ${natsUrl}` : ''}`);
    for (const [group, spec] of Object.entries(topology.processes)) {
      log(`  ${group}${spec.replicas > 1 ? ` ×${spec.replicas}` : ''}: ${spec.modules.join(', ')}`);
    }

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
    await natsServer?.stop();
    if (failed !== undefined) {
      throw new CLIError(CliErrorCode.E_PROCESS, `${failed} kept exiting before it became ready; see its output above.`);
    }
    log('stopped');
  },
});
