import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { findProject, isCliError, loadTopology, parseTopology } from 'keel/cli';
import { httpPortClash, isSubjectPrefix, localPrefix, replicaHttpPort } from '../cli/topology.js';
import { isValidPrefix } from '../adapters/nats/wire.js';
import { modules } from '../modules/index.js';

const repository = dirname(createRequire(import.meta.url).resolve('keel/package.json'));
const shop = modules.map((module) => module.name as string);

function failure(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (isCliError(error, 'E_TOPOLOGY')) return error.message;
    throw error;
  }
  throw new Error('expected an E_TOPOLOGY error');
}

describe('cli - topology files', () => {
  it.each(['single.ts', 'per-module.ts', 'split.ts'])('cli - the shipped topology %s hosts every shop module', async (file) => {
    const topology = await loadTopology(findProject(repository), join(repository, 'topologies', file), shop);
    const hosted = Object.values(topology.processes).flatMap((group) => group.modules);
    expect(new Set(hosted)).toEqual(new Set(shop));
  });

  it('cli - fills in defaults', () => {
    expect(parseTopology({ processes: { app: { modules: ['catalog'] } } }, ['catalog'])).toEqual({
      nats: {},
      processes: { app: { modules: ['catalog'], replicas: 1, env: {} } },
    });
  });

  it('cli - lists every schema problem with its path', () => {
    expect(
      failure(() =>
        parseTopology(
          { processes: { Store: { modules: [] }, back: { modules: ['catalog'], replicas: 0, extra: true } } },
          shop,
          'topologies/bad.json',
        ),
      ),
    ).toMatchInlineSnapshot(`
      "topologies/bad.json is not a valid topology:
        - processes.Store.modules: list at least one module
        - processes.back.replicas: Too small: expected number to be >=1
        - processes.back: Unrecognized key: "extra"
        - processes.Store: process name "Store" must be lower-kebab-case, such as "back-office""
    `);
  });

  it('cli - refuses a module that is not in the manifest', () => {
    expect(failure(() => parseTopology({ processes: { app: { modules: ['catalog', 'billing'] } } }, ['catalog']))).toBe(
      'the topology: process "app" hosts "billing", which is not in the manifest (it has: catalog).',
    );
  });

  it("cli - refuses KEEL_NATS_PREFIX and KEEL_PROCESS_NAME in a process's env, and a nats.prefix that is no subject prefix, each with its path", () => {
    expect(
      failure(() =>
        parseTopology(
          { nats: { prefix: 'acme.>' }, processes: { app: { modules: ['catalog'], env: { KEEL_NATS_PREFIX: 'other', KEEL_PROCESS_NAME: 'web', OTEL_SERVICE_NAME: 'web' } } } },
          ['catalog'],
          'split.json',
        ),
      ),
    ).toBe(
      [
        'split.json is not a valid topology:',
        '  - nats.prefix: "acme.>" is not a subject prefix: a subject prefix is one or more tokens of letters, digits, _ and -, joined by dots, such as "acme.shop"',
        "  - processes.app.env.KEEL_NATS_PREFIX: every process of a topology serves and calls under one subject prefix, and its NATS permissions are written for it: set the topology's nats.prefix instead",
        "  - processes.app.env.KEEL_PROCESS_NAME: a process is named by its group's key (keel up adds #<n> to each replica's), and keeps its embedded database under that name: rename the group, or set OTEL_SERVICE_NAME to name its traces",
      ].join('\n'),
    );
  });

  it("cli - refuses a value its process would refuse at every start in a process's env (KEEL_HTTP_OPERATIONS, KEEL_LOG_LEVEL, KEEL_LOG_FORMAT, KEEL_RELEASE_STARTUP_MEMORY, KEEL_DATABASE_POOL_SIZE), or one written otherwise than its process and its NATS permissions read it, naming the path and the choices; accepts the choices and other variables", () => {
    expect(
      failure(() =>
        parseTopology(
          {
            processes: {
              app: {
                modules: ['catalog'],
                env: { KEEL_HTTP_OPERATIONS: 'public', KEEL_LOG_LEVEL: 'verbose', KEEL_LOG_FORMAT: '', KEEL_RELEASE_STARTUP_MEMORY: ' on', KEEL_DATABASE_POOL_SIZE: '0' },
              },
            },
          },
          ['catalog'],
          'split.json',
        ),
      ),
    ).toBe(
      [
        'split.json is not a valid topology:',
        '  - processes.app.env.KEEL_HTTP_OPERATIONS: "public" is not one of all, hosted, none (leave it out for the default)',
        '  - processes.app.env.KEEL_LOG_LEVEL: "verbose" is not one of trace, debug, info, warn, error, fatal, silent (leave it out for the default)',
        '  - processes.app.env.KEEL_LOG_FORMAT: "" is not one of json, pretty (leave it out for the default)',
        '  - processes.app.env.KEEL_RELEASE_STARTUP_MEMORY: " on" is not one of on, off (leave it out for the default)',
        '  - processes.app.env.KEEL_DATABASE_POOL_SIZE: "0" is not a whole number of connections from 1 to 100',
      ].join('\n'),
    );
    const accepted = parseTopology(
      { processes: { app: { modules: ['catalog'], env: { KEEL_HTTP_OPERATIONS: 'hosted', KEEL_LOG_FORMAT: 'json', KEEL_DATABASE_POOL_SIZE: '20', OTEL_SERVICE_NAME: 'public' } } } },
      ['catalog'],
    );
    expect(accepted.processes['app']?.env).toEqual({ KEEL_HTTP_OPERATIONS: 'hosted', KEEL_LOG_FORMAT: 'json', KEEL_DATABASE_POOL_SIZE: '20', OTEL_SERVICE_NAME: 'public' });
  });

  it("cli - a topology's prefix rule is the NATS adapter's", () => {
    for (const prefix of ['keel', 'acme.shop', 'a_b-c.d1', '-', '_a', 'A.B', '', ' keel', 'keel ', 'a\n', 'a..b', '.a', 'a.', 'acme.>', 'a.*', 'a b', 'é']) {
      expect(isSubjectPrefix(prefix), JSON.stringify(prefix)).toBe(isValidPrefix(prefix));
    }
  });

  it('cli - keel up runs a topology under its nats.prefix, else the shell\'s KEEL_NATS_PREFIX trimmed, else keel, and refuses a shell prefix the adapter would', () => {
    const bare = parseTopology({ processes: { app: { modules: ['catalog'] } } }, ['catalog']);
    const named = parseTopology({ nats: { prefix: 'acme.shop' }, processes: { app: { modules: ['catalog'] } } }, ['catalog']);
    expect(localPrefix(named, { KEEL_NATS_PREFIX: 'other' })).toBe('acme.shop');
    expect(localPrefix(bare, { KEEL_NATS_PREFIX: ' other ' })).toBe('other');
    expect(localPrefix(bare, { KEEL_NATS_PREFIX: '' })).toBe('keel');
    expect(localPrefix(bare, {})).toBe('keel');
    let refusal: unknown;
    try {
      localPrefix(bare, { KEEL_NATS_PREFIX: 'a..b' });
    } catch (error) {
      refusal = error;
    }
    expect(isCliError(refusal, 'E_USAGE')).toBe(true);
    expect((refusal as Error).message).toBe('KEEL_NATS_PREFIX "a..b" is not a subject prefix: a subject prefix is one or more tokens of letters, digits, _ and -, joined by dots.');
  });

  it('cli - refuses a topology that leaves a module without a process, naming each', () => {
    expect(failure(() => parseTopology({ processes: { app: { modules: ['catalog'] } } }, ['catalog', 'orders']))).toBe(
      'the topology: no process hosts "orders"; calls to it would find no responders.',
    );
    expect(failure(() => parseTopology({ processes: { app: { modules: ['catalog'] } } }, ['catalog', 'orders', 'payments']))).toBe(
      'the topology: no process hosts "orders", "payments"; calls to them would find no responders.',
    );
  });

  it('cli - "*" hosts every module of the manifest that no other process names', () => {
    const topology = parseTopology({ processes: { main: { modules: ['*'] }, pay: { modules: ['payments'], replicas: 2 } } }, shop);
    expect(topology.processes['main']?.modules).toEqual(shop.filter((module) => module !== 'payments'));
    expect(topology.processes['pay']?.modules).toEqual(['payments']);
    expect(parseTopology({ processes: { app: { modules: ['*'] } } }, shop).processes['app']?.modules).toEqual(shop);
  });

  it('cli - refuses "*" beside names, in two processes, or with nothing left for it', () => {
    expect(failure(() => parseTopology({ processes: { app: { modules: ['*', 'catalog'] } } }, shop))).toContain(
      'processes.app.modules: "*" stands alone: write modules: ["*"]',
    );
    expect(failure(() => parseTopology({ processes: { a: { modules: ['*'] }, b: { modules: ['*'] } } }, shop))).toBe(
      'the topology: processes "a" and "b" both host "*"; one process at most hosts every other module.',
    );
    expect(failure(() => parseTopology({ processes: { a: { modules: ['*'] }, b: { modules: ['catalog'] } } }, ['catalog']))).toBe(
      'the topology: process "a" hosts "*", every module that no other process names, and the others name them all.',
    );
  });

  it('cli - gives a gateway\'s replicas one HTTP port each, from its http on (0: any free port for each), names ports two groups would share on one host (valid on Kubernetes), and refuses ports past 65535', () => {
    const web = parseTopology({ processes: { web: { modules: ['catalog'], replicas: 2, http: 3000 }, admin: { modules: ['orders'], http: 3002 } } }, ['catalog', 'orders']);
    expect(web.processes['web']).toMatchObject({ replicas: 2, http: 3000 });
    expect([1, 2].map((replica) => replicaHttpPort(3000, replica))).toEqual([3000, 3001]);
    expect([1, 2].map((replica) => replicaHttpPort(0, replica))).toEqual([0, 0]);
    expect(parseTopology({ processes: { web: { modules: ['catalog'], replicas: 3, http: 0 }, admin: { modules: ['orders'], http: 0 } } }, ['catalog', 'orders'])).toBeDefined();
    expect(httpPortClash(web)).toBeUndefined();
    expect(httpPortClash(parseTopology({ processes: { web: { modules: ['catalog'], replicas: 2, http: 3000 }, admin: { modules: ['orders'], http: 3001 } } }, ['catalog', 'orders']))).toBe(
      'processes "web" and "admin" both listen on HTTP port 3001 (admin: port 3001)',
    );
    expect(httpPortClash(parseTopology({ processes: { admin: { modules: ['orders'], http: 3001 }, web: { modules: ['catalog'], replicas: 2, http: 3000 } } }, ['catalog', 'orders']))).toBe(
      'processes "admin" and "web" both listen on HTTP port 3001 (web: ports 3000-3001 (one per replica))',
    );
    expect(failure(() => parseTopology({ processes: { web: { modules: ['catalog'], replicas: 2, http: 65_535 } } }, ['catalog']))).toBe(
      'the topology: process "web" has 2 replicas from HTTP port 65535, past 65535; give it a lower http port.',
    );
  });

  it('cli - refuses a topology file that does not exist with E_TOPOLOGY naming it, and the files its folder has', async () => {
    const error = await loadTopology(findProject(repository), join(repository, 'topologies', 'nope.ts'), shop).catch((caught: unknown) => caught);
    expect(isCliError(error)).toBe(true);
    expect(error).toMatchObject({ code: 'E_TOPOLOGY', message: 'There is no topology file topologies/nope.ts.', hint: 'topologies has: per-module.ts, single.ts, split.ts.' });
  });

  it('cli - refuses a file without a default export', async () => {
    await expect(loadTopology(findProject(repository), join(repository, 'modules', 'index.ts'), shop)).rejects.toThrow(
      'modules/index.ts has no default export; export default defineTopology({ ... }).',
    );
  });
});
