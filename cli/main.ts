/**
 * The `keel` command. Each sub-command is one `defineCommand` in its own file under
 * `commands/`, imported only when it runs (or when `--help` lists it). To add one, write
 * `commands/<name>.ts` with a default export and add one line to `subCommands` below.
 */
import { createRequire } from 'node:module';
import { defineCommand } from './command.js';

const { version } = createRequire(import.meta.url)('keel/package.json') as { version: string };

const load = <T>(module: Promise<{ default: T }>): Promise<T> => module.then((loaded) => loaded.default);

/**
 * The root `keel` command, for {@link runCli}.
 *
 * @example
 * ```ts
 * process.exitCode = await runCli(main, process.argv.slice(2));
 * ```
 */
export const main = defineCommand({
  meta: {
    name: 'keel',
    version,
    description: 'Build a modular monolith whose modules split into services without code changes',
    examples: [
      'keel new my-shop',
      'keel generate module billing --depends-on orders --events invoiceSent',
      'keel start --modules catalog,orders --nats nats://127.0.0.1:4222',
      'keel up topologies/split.ts',
      'keel dev',
    ],
  },
  subCommands: {
    new: () => load(import('./commands/new.js')),
    generate: () => load(import('./commands/generate.js')),
    build: () => load(import('./commands/build.js')),
    start: () => load(import('./commands/start.js')),
    warm: () => load(import('./commands/warm.js')),
    up: () => load(import('./commands/up.js')),
    dev: () => load(import('./commands/dev.js')),
    deploy: () => load(import('./commands/deploy.js')),
    db: () => load(import('./commands/db.js')),
    check: () => load(import('./commands/check.js')),
    graph: () => load(import('./commands/graph.js')),
    status: () => load(import('./commands/status.js')),
    contracts: () => load(import('./commands/contracts.js')),
  },
});
