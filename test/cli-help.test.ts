import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { runKeel, type CliRun } from './support/cli.js';

const { version } = createRequire(import.meta.url)('keel/package.json') as { version: string };

async function run(argv: string[]): Promise<CliRun> {
  const result = await runKeel(argv, { cwd: process.cwd() });
  // The version changes with every release; the help text around it is what is pinned.
  return { ...result, stdout: result.stdout.replaceAll(`v${version}`, 'v<version>') };
}

describe('cli - help', () => {
  it('cli - lists the commands with examples', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(stdout).toMatchInlineSnapshot(`
      "Build a modular monolith whose modules split into services without code changes (keel v<version>)

      USAGE keel new|generate|g|build|start|warm|up|dev|deploy|db|check|graph|status|contracts

      COMMANDS

                new    Create an application with one starter module
        generate, g    Generate code in the current application
              build    Compile the application (modules, topologies, entry files) to JavaScript in dist/
              start    Run the application, or the modules named, in this process
               warm    Fill Node's compile cache with the code keel start loads, so that a start skips compiling it
                 up    Run a whole topology locally: every process, NATS, restarts, one log
                dev    Watch mode: run the application (or a topology) and restart the processes a change concerns
             deploy    Write a Dockerfile, compose.yaml and Kubernetes manifests for a topology
                 db    Apply and show the migrations of the modules that own data
              check    Check module boundaries, cycles, declared dependencies, layering and contract schemas
              graph    Draw the modules, their calls and events, grouped by process under a topology
             status    Show the running modules: instances, version, uptime, requests, errors, average time
          contracts    Record contracts in contracts.lock.json and check changes against it

      Use keel <command> --help for more information about a command.

      EXAMPLES

        $ keel new my-shop
        $ keel generate module billing --depends-on orders --events invoiceSent
        $ keel start --modules catalog,orders --nats nats://127.0.0.1:4222
        $ keel up topologies/split.ts
        $ keel dev
      "
    `);
  });

  it('cli - prints the root help when no command is given', async () => {
    const bare = await run([]);
    expect(bare.code).toBe(0);
    expect(bare.stdout).toBe((await run(['--help'])).stdout);
  });

  it('cli - explains keel new', async () => {
    expect((await run(['new', '--help'])).stdout).toMatchInlineSnapshot(`
      "Create an application with one starter module (keel new)

      USAGE keel new [OPTIONS] <DIR>

      ARGUMENTS

        DIR    Folder to create (must not exist, or be empty) (Required)

      OPTIONS

            --name=<name>    Package name (default: the folder name)
        --module=<module>    Name of the starter module (Default: greeter)
            --keel=<spec>    keel dependency in package.json: a version range or file:<tarball>

      EXAMPLES

        $ keel new my-shop
        $ keel new my-shop --module catalog
        $ keel new my-shop --keel file:../keel-0.1.0.tgz
      "
    `);
  });

  it('cli - explains keel generate', async () => {
    expect((await run(['generate', '--help'])).stdout).toMatchInlineSnapshot(`
      "Generate code in the current application (keel generate)

      USAGE keel generate module

      COMMANDS

        module    Generate a module: contract.ts, module.ts and a test, registered in the manifest

      Use keel generate <command> --help for more information about a command.

      EXAMPLES

        $ keel generate module billing
        $ keel generate module billing --depends-on orders --dry-run
      "
    `);
  });

  it('cli - explains keel generate module', async () => {
    expect((await run(['generate', 'module', '--help'])).stdout).toMatchInlineSnapshot(`
      "Generate a module: contract.ts, module.ts and a test, registered in the manifest (keel generate module)

      USAGE keel generate module [OPTIONS] <NAME>

      ARGUMENTS

        NAME    Module name, lower-kebab-case (such as order-history) (Required)

      OPTIONS

           --depends-on=<a,b>    Modules it calls, comma-separated
               --events=<a,b>    Events it publishes, camelCase, comma-separated
           --operations=<a,b>    Its operations, camelCase, comma-separated (default: a placeholder hello)
        --subscribes-to=<a,b>    Modules whose events it handles, comma-separated: a handler stub per event
                       --data    It owns data: its own schema, made by migrations/001_<name>.sql, reached through db
                    --dry-run    Show the files without writing anything

      EXAMPLES

        $ keel generate module billing
        $ keel generate module billing --depends-on orders,payments --events invoiceSent,invoicePaid
        $ keel generate module billing --operations sendInvoice,getInvoice
        $ keel generate module mailer --subscribes-to billing
        $ keel generate module billing --data
        $ keel generate module billing --dry-run
      "
    `);
  });

  it('cli - explains keel start', async () => {
    expect((await run(['start', '--help'])).stdout).toMatchInlineSnapshot(`
      "Run the application, or the modules named, in this process (keel start)

      USAGE keel start [OPTIONS]

      OPTIONS

             --modules=<a,b>    Modules to host here, comma-separated, or none (default: $KEEL_MODULES, else all)
                --nats=<url>    NATS server URL for the other modules (default: $KEEL_NATS_URL)
               --http=<port>    Serve the HTTP gateway on this port; 0 picks a free one, off serves none (default: $KEEL_HTTP_PORT, then $PORT, else 3000 when hosting every module, else none)
            --host=<address>    Address the HTTP gateway listens on (default: $KEEL_HTTP_HOST, else 127.0.0.1)
                     --build    Run the build from \`keel build\` even where the TypeScript sources are (without them, the build runs anyway)
        --operations=<which>    Operations the HTTP gateway exposes: all, hosted (those of the modules hosted here) or none (only /healthz, /readyz, /metrics; default: $KEEL_HTTP_OPERATIONS, else all)

      EXAMPLES

        $ keel start
        $ keel start --modules catalog,orders --nats nats://127.0.0.1:4222
        $ keel start --http 8080
        $ keel start --build
        $ keel start --modules none --nats nats://127.0.0.1:4222 --http 8080 --host 0.0.0.0
        $ keel start --modules orders --nats nats://127.0.0.1:4222 --http 3004 --operations none
      "
    `);
  });

  it('cli - explains keel dev', async () => {
    expect((await run(['dev', '--help'])).stdout).toMatchInlineSnapshot(`
      "Watch mode: run the application (or a topology) and restart the processes a change concerns (keel dev)

      USAGE keel dev [OPTIONS] [TOPOLOGY]

      ARGUMENTS

        TOPOLOGY    Topology file to run as keel up does; default: one process, as keel start

      OPTIONS

        --modules=<a,b>    Without a topology: modules to host, comma-separated, or none (default: all)
          --http=<port>    Without a topology: the HTTP gateway port, as keel start --http (default: $KEEL_HTTP_PORT, then $PORT, else 3000 when hosting every module)
           --nats=<url>    NATS server URL (default: the topology's, then $KEEL_NATS_URL, else nats-server is started when needed)
        --debounce=<ms>    Quiet time after the last saved change before restarting, in milliseconds from 10 to 60000: changes within it restart once (default 150)

      EXAMPLES

        $ keel dev
        $ keel dev --modules catalog,orders --nats nats://127.0.0.1:4222
        $ keel dev topologies/split.ts
        $ keel dev --debounce 1000
      "
    `);
  });

  it('cli - explains keel up', async () => {
    expect((await run(['up', '--help'])).stdout).toMatchInlineSnapshot(`
      "Run a whole topology locally: every process, NATS, restarts, one log (keel up)

      USAGE keel up [OPTIONS] [TOPOLOGY]

      ARGUMENTS

        TOPOLOGY    Topology file (.ts, .js or .json); default: every module in one process

      OPTIONS

        --nats=<url>    NATS server URL (default: the topology's, then $KEEL_NATS_URL, else nats-server is started)

      EXAMPLES

        $ keel up
        $ keel up topologies/split.ts
        $ keel up topologies/per-module.ts --nats nats://127.0.0.1:4222
      "
    `);
  });

  it('cli - prints its version', async () => {
    const { code, stdout } = await run(['--version']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe('cli - usage errors', () => {
  it('cli - refuses an unknown command with E_UNKNOWN_COMMAND and exit code 2, naming a near miss\'s command', async () => {
    const { code, stderr } = await run(['publish']);
    expect(code).toBe(2);
    expect(stderr).toMatchInlineSnapshot(`
      "error E_UNKNOWN_COMMAND: Unknown command "publish" for keel. Available: new, generate, build, start, warm, up, dev, deploy, db, check, graph, status, contracts.
        Run \`keel --help\` to see what each command does.
      "
    `);
    // A near miss is named.
    const near = await run(['chek']);
    expect(near.code).toBe(2);
    expect(near.stderr).toContain('error E_UNKNOWN_COMMAND: Unknown command "chek" for keel. Did you mean check? Available: new, generate,');
  });

  it('cli - refuses an unknown option with E_USAGE', async () => {
    const { code, stderr } = await run(['generate', 'module', 'billing', '--depend-on', 'orders']);
    expect(code).toBe(2);
    expect(stderr).toMatchInlineSnapshot(`
      "error E_USAGE: Unknown option --depend-on for keel generate module. Did you mean --depends-on?
        Run \`keel generate module --help\` for usage.
      "
    `);
  });

  it('cli - refuses a missing argument with E_USAGE', async () => {
    const { code, stderr } = await run(['new']);
    expect(code).toBe(2);
    expect(stderr).toMatchInlineSnapshot(`
      "error E_USAGE: Missing required positional argument: DIR.
        Run \`keel new --help\` for usage.
      "
    `);
  });

  it('cli - refuses an extra argument with E_USAGE', async () => {
    const { code, stderr } = await run(['generate', 'module', 'billing', 'shipping']);
    expect(code).toBe(2);
    expect(stderr).toContain('error E_USAGE: Unexpected argument "shipping" for keel generate module.');
  });

  it('cli - refuses an option without its value with E_USAGE', async () => {
    const { code, stderr } = await run(['generate', 'module', 'billing', '--depends-on']);
    expect(code).toBe(2);
    expect(stderr).toContain('error E_USAGE: Option --depends-on needs a value.');
  });

  it('cli - takes a negative number after an option that needs a value as its value, so the option\'s own check refuses it', async () => {
    const { code, stderr } = await run(['start', '--http', '-1']);
    expect(code).toBe(2);
    expect(stderr).toContain('error E_USAGE: HTTP port "-1" (from --http) is not a port number (0 to 65535), nor "off".');
    expect(stderr).not.toContain('Unknown option');
    const flag = await run(['generate', 'module', 'billing', '--dry-run', '-1']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('error E_USAGE: Unknown option -1 for keel generate module.');
  });
});
