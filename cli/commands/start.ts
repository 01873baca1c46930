/**
 * `keel start`: runs one process of the application, hosting the named modules (all by
 * default) and reaching the others over NATS, until Ctrl-C or SIGTERM drains it.
 */
import { once } from 'node:events';
import { contextOf, defineCommand } from '../command.js';
import { CLIError, CliErrorCode } from '../errors.js';
import { startHost } from '../host.js';
import { splitList } from '../names.js';
import { findProject, loadManifest } from '../project.js';

export default defineCommand({
  meta: {
    name: 'start',
    description: 'Run the application, or the modules named, in this process',
    examples: [
      'keel start',
      'keel start --modules catalog,orders --nats nats://127.0.0.1:4222',
      'keel start --http 3000',
    ],
  },
  args: {
    modules: { type: 'string', description: 'Modules to host here, comma-separated (default: all)', valueHint: 'a,b' },
    nats: { type: 'string', description: 'NATS server URL for the other modules (default: $KEEL_NATS_URL)', valueHint: 'url' },
    http: { type: 'string', description: 'Serve the HTTP gateway on this port (default: $KEEL_HTTP_PORT, or none)', valueHint: 'port' },
  },
  run: async ({ args, data }) => {
    const cli = contextOf(data);
    const out = (line: string) => cli.stdout.write(`${line}\n`);
    const project = findProject(cli.cwd);
    const modules = await loadManifest(project);
    const host = args.modules === undefined ? undefined : splitList(args.modules);
    if (host !== undefined && host.length === 0) {
      throw new CLIError(CliErrorCode.E_USAGE, '--modules is empty; name at least one module, or leave it out to host all.');
    }
    const httpText = args.http ?? cli.env['KEEL_HTTP_PORT'];
    const httpPort = httpText === undefined || httpText === '' ? undefined : Number(httpText);
    if (httpPort !== undefined && !(Number.isInteger(httpPort) && httpPort >= 0 && httpPort <= 65_535)) {
      throw new CLIError(CliErrorCode.E_USAGE, `HTTP port "${httpText}" is not a port number (0 to 65535).`);
    }
    if (cli.signal.aborted) return;
    const running = await startHost({ modules, host, env: cli.env, natsUrl: args.nats, httpPort });
    const status = running.kernel.status();
    out(`keel: hosting ${status.modules.map((module) => module.name).join(', ')}`);
    if (status.remote.length > 0) out(`keel: reaching ${status.remote.join(', ')} over ${running.transport?.name ?? 'the transport'}`);
    if (running.httpUrl) out(`keel: HTTP gateway on ${running.httpUrl}`);
    out('keel: ready (Ctrl-C to stop)');
    cli.supervisor?.send({ type: 'ready', modules: running.kernel.hosted, httpUrl: running.httpUrl });
    // Nothing may hold the event loop open (in process, the kernel has no sockets): hold it until the signal.
    const keepAlive = setInterval(() => {}, 2 ** 30);
    if (!cli.signal.aborted) await once(cli.signal, 'abort');
    clearInterval(keepAlive);
    cli.supervisor?.send({ type: 'stopping' });
    out('keel: stopping: finishing work in flight');
    await running.stop();
    out('keel: stopped');
  },
});
