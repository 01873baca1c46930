/**
 * keel up's check of where a topology's modules keep their data (cli/database.ts), on the shop's
 * real modules: a module that owns data and runs in more than one process must have one database
 * its processes share, never an embedded copy per process. (The refusals through `keel up` itself,
 * with its exit code and error record: test/cli-db-start.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import { assertOwnDataFolders } from '../cli/database.js';
import { catalogModule } from '../modules/catalog/module.js';
import { ordersModule } from '../modules/orders/module.js';

const root = '/srv/shop';
const POSTGRES = 'postgres://keel@127.0.0.1:5432/shop';
type Group = Parameters<typeof assertOwnDataFolders>[0][number];
const group = (name: string, modules: Group['modules'], env: Group['env'] = {}, replicas = 1): Group => ({ name, modules, replicas, env });
const refusal = (groups: Group[], env: Record<string, string> = {}): unknown => {
  try {
    assertOwnDataFolders(groups, { env, root });
    return undefined;
  } catch (error) {
    return error;
  }
};

describe('cli - a topology keeps each module\'s data in one place', () => {
  it('cli - refuses a module that owns data in two processes, each with its own embedded database, naming the module, the processes and the folders', () => {
    expect(refusal([group('a', [catalogModule, ordersModule]), group('b', [catalogModule])])).toMatchObject({
      code: 'E_TOPOLOGY',
      message:
        'Module "catalog" owns data and runs in processes "a" and "b", with an embedded database (in .keel/data/a, in .keel/data/b): ' +
        'each process would keep a copy of its own, and a call would find what another copy wrote missing.',
      hint: 'Set DATABASE_URL (or DATABASE_URL_CATALOG) to a PostgreSQL they share, or host "catalog" in one process of one replica.',
    });
  });

  it('cli - refuses replicas of a module that owns data in memory, two processes on one folder, and one process on PostgreSQL beside one embedded', () => {
    expect(refusal([group('app', [ordersModule], { KEEL_DATA_DIR: 'memory' }, 3)])).toMatchObject({
      code: 'E_TOPOLOGY',
      message: expect.stringMatching(/^Module "orders" owns data and runs in the 3 replicas of process "app", with an embedded database \(in memory\)/),
    });
    // On one folder too: the advice that holds is a shared PostgreSQL, not a folder each.
    expect(refusal([group('a', [catalogModule]), group('b', [catalogModule])], { KEEL_DATA_DIR: 'data' })).toMatchObject({
      code: 'E_TOPOLOGY',
      message: expect.stringContaining('Module "catalog" owns data and runs in processes "a" and "b", with an embedded database (in data)'),
    });
    // Different modules on one folder: that folder is the problem, and a folder each the fix.
    expect(refusal([group('a', [catalogModule]), group('b', [ordersModule])], { KEEL_DATA_DIR: 'data' })).toMatchObject({
      code: 'E_TOPOLOGY',
      message: 'Processes "a" and "b" host modules that own data, and both would open the embedded database in data: PGlite serves one process.',
    });
    expect(refusal([group('a', [catalogModule], { DATABASE_URL: POSTGRES }), group('b', [catalogModule])])).toMatchObject({
      code: 'E_TOPOLOGY',
      message: expect.stringContaining('runs in processes "a" and "b", with an embedded database (in .keel/data/b)'),
    });
  });

  it('cli - accepts a module that owns data in several processes sharing a PostgreSQL, by DATABASE_URL or its own variable, and each module in a process of its own', () => {
    expect(refusal([group('a', [catalogModule, ordersModule]), group('b', [catalogModule])], { DATABASE_URL: POSTGRES })).toBeUndefined();
    expect(refusal([group('a', [catalogModule, ordersModule]), group('b', [catalogModule], {}, 2)], { DATABASE_URL_CATALOG: POSTGRES })).toBeUndefined();
    expect(refusal([group('a', [ordersModule]), group('b', [catalogModule])])).toBeUndefined();
  });
});
