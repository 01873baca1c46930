import { describe, expect, it } from 'vitest';
import { main, renderHelp } from 'keel/cli';

describe('tooling - help', () => {
  it('tooling - help explains keel check', async () => {
    expect(await renderHelp(main, ['check'])).toMatchInlineSnapshot(`
      "Check module boundaries, cycles, declared dependencies, layering and contract schemas (keel check)

      USAGE keel check [OPTIONS]

      OPTIONS

              --json    Print the report as JSON (for tools); the exit code is the same (Default: false)
        --root=<dir>    Project root (default: the nearest folder above with package.json and modules/index.ts)

      EXAMPLES

        $ keel check
        $ keel check --json
      "
    `);
  });

  it('tooling - help explains keel graph', async () => {
    expect(await renderHelp(main, ['graph'])).toMatchInlineSnapshot(`
      "Draw the modules, their calls and events, grouped by process under a topology (keel graph)

      USAGE keel graph [OPTIONS]

      OPTIONS

                  --topology=<file>    Topology file (as for \`keel up\`): group modules by process, show network hops
        --format=<mermaid|dot|json>    Output format (json: the graph as data, for tools) (Default: mermaid)
                       --root=<dir>    Project root (default: the nearest folder above with package.json and modules/index.ts)

      EXAMPLES

        $ keel graph
        $ keel graph --topology topologies/split.ts
        $ keel graph --format dot | dot -Tsvg > graph.svg
        $ keel graph --format json
      "
    `);
  });

  it('tooling - help explains keel status', async () => {
    expect(await renderHelp(main, ['status'])).toMatchInlineSnapshot(`
      "Show the running modules: instances, version, uptime, requests, errors, average time (keel status)

      USAGE keel status [OPTIONS]

      OPTIONS

             --nats=<url>    NATS server URL (default: the topology's, then $KEEL_NATS_URL, else nats://127.0.0.1:4222)
        --topology=<file>    Topology file: wait (up to --wait) for every instance its replicas make, and fail when one of its modules has no running instance
        --prefix=<prefix>    Only modules serving under this subject prefix (default: with --topology, the topology's, then $KEEL_NATS_PREFIX, else keel; without, any)
                    --all    Also list NATS services that keel did not register (Default: false)
              --instances    One line per instance under each module (Default: false)
              --wait=<ms>    Longest wait for answers in milliseconds, up to 60000 (default 1000)
                   --json    Print the report as JSON (Default: false)
             --root=<dir>    Project root (default: the nearest folder above with package.json and modules/index.ts)

      EXAMPLES

        $ keel status
        $ keel status --nats nats://10.0.0.5:4222 --json
        $ keel status --topology topologies/split.ts
      "
    `);
  });

  it('tooling - help explains keel contracts and its sub-commands', async () => {
    expect(await renderHelp(main, ['contracts'])).toMatchInlineSnapshot(`
      "Record contracts in contracts.lock.json and check changes against it (keel contracts)

      USAGE keel contracts snapshot|diff

      COMMANDS

        snapshot    Write every contract's JSON Schemas to contracts.lock.json (commit it)
            diff    Classify contract changes against contracts.lock.json; fail on an unannounced breaking change

      Use keel contracts <command> --help for more information about a command.

      EXAMPLES

        $ keel contracts snapshot
        $ keel contracts diff
      "
    `);
    expect(await renderHelp(main, ['contracts', 'snapshot'])).toMatchInlineSnapshot(`
      "Write every contract's JSON Schemas to contracts.lock.json (commit it) (keel contracts snapshot)

      USAGE keel contracts snapshot [OPTIONS]

      OPTIONS

        --lock=<file>    Lock file (default: contracts.lock.json at the project root)
         --root=<dir>    Project root (default: the nearest folder above with package.json and modules/index.ts)

      EXAMPLES

        $ keel contracts snapshot
      "
    `);
    expect(await renderHelp(main, ['contracts', 'diff'])).toMatchInlineSnapshot(`
      "Classify contract changes against contracts.lock.json; fail on an unannounced breaking change (keel contracts diff)

      USAGE keel contracts diff [OPTIONS]

      OPTIONS

        --lock=<file>    Lock file (default: contracts.lock.json at the project root)
             --strict    Also fail on a change the lock has not recorded (run \`keel contracts snapshot\`) (Default: false)
               --json    Print the diff as JSON (Default: false)
         --root=<dir>    Project root (default: the nearest folder above with package.json and modules/index.ts)

      EXAMPLES

        $ keel contracts diff
        $ keel contracts diff --strict
        $ keel contracts diff --json
      "
    `);
  });
});
