/**
 * Module-owned data, measured: placeOrder's throughput in one process on PGlite and on
 * PostgreSQL against the shop as it was before it owned data (in memory, run from a checkout of
 * that commit), and the chaos run of test/support/shop-chaos.ts at a larger size. Writes the
 * Figures section of docs/data.md with the machine it ran on.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestDatabase } from '../test/support/databases.js';
import { chaosMarkdown, runShopChaos, type ChaosOptions } from '../test/support/shop-chaos.js';
import { buildCheckout, machine, write } from './support.js';

/** The last commit whose shop kept its data in memory. */
const IN_MEMORY_COMMIT = 'd1c2a61';
const ROUNDS = 3;
const CHAOS: ChaosOptions = { orders: 300, concurrency: 12, natsOutageMs: 3_000, killOrders: true, retryForMs: 90_000, log: (line) => console.log(`  ${line}`) };

interface Throughput {
  readonly sequential: number;
  readonly concurrent: number;
}

function placeOrders(root: string, engine: string, url?: string): Throughput {
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'bench/place-order.ts', engine, ...(url ? [url] : [])], {
    cwd: root,
    encoding: 'utf8',
    timeout: 300_000,
  });
  const line = run.stdout.trim().split('\n').pop() ?? '';
  if (run.status !== 0 || !line.startsWith('{')) throw new Error(`place-order on ${engine} in ${root} failed:\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(line) as Throughput;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

export async function benchData(): Promise<{ markdown: string }> {
  const root = process.cwd();
  const old = join(tmpdir(), `keel-in-memory-${process.pid}`);
  // The database first: when PostgreSQL cannot be reached, no checkout is left behind.
  const database = await createTestDatabase();
  try {
    execFileSync('git', ['worktree', 'add', '--detach', old, IN_MEMORY_COMMIT], { stdio: 'ignore' });
    symlinkSync(join(root, 'node_modules'), join(old, 'node_modules'));
    copyFileSync(join(root, 'bench/place-order.ts'), join(old, 'bench/place-order.ts'));
    buildCheckout(old);
    const samples: Record<'memory' | 'pglite' | 'postgres', Throughput[]> = { memory: [], pglite: [], postgres: [] };
    for (let round = 0; round < ROUNDS; round += 1) {
      samples.memory.push(placeOrders(old, 'memory'));
      samples.pglite.push(placeOrders(root, 'pglite'));
      samples.postgres.push(placeOrders(root, 'postgres', database.url));
      console.log(`  round ${round + 1}: ${JSON.stringify({ memory: samples.memory.at(-1), pglite: samples.pglite.at(-1), postgres: samples.postgres.at(-1) })}`);
    }
    const figure = (engine: keyof typeof samples, key: keyof Throughput) => median(samples[engine].map((sample) => sample[key]));
    const memory = { sequential: figure('memory', 'sequential'), concurrent: figure('memory', 'concurrent') };
    const row = (label: string, engine: keyof typeof samples) => {
      const sequential = figure(engine, 'sequential');
      const concurrent = figure(engine, 'concurrent');
      return `| ${label} | ${sequential.toFixed(0)}/s | ${(sequential / memory.sequential).toFixed(2)}× | ${concurrent.toFixed(0)}/s | ${(concurrent / memory.concurrent).toFixed(2)}× |`;
    };
    const throughput = [
      '### placeOrder in one process',
      '',
      `The five modules in one process, placeOrder through the kernel's client (catalog, inventory and payments`,
      `called, the order recorded pending then placed, orderPlaced through the outbox), medians of ${ROUNDS} interleaved rounds`,
      `of 200 sequential and 400 orders at 16 in flight. "In memory" is the shop of commit ${IN_MEMORY_COMMIT}, before it owned`,
      'data (no saga, no outbox), run from a checkout of that commit. Reported, with no target.',
      '',
      '| engine | sequential | vs in memory | 16 in flight | vs in memory |',
      '|---|---|---|---|---|',
      row('in memory (before)', 'memory'),
      row('PGlite, in memory', 'pglite'),
      row('PostgreSQL 15, loopback', 'postgres'),
    ].join('\n');
    console.log(throughput);
    console.log('  chaos run...');
    const report = await runShopChaos(CHAOS);
    const chaos = ['### Chaos: the shop split per module, on PostgreSQL', '', chaosMarkdown(report, CHAOS)].join('\n');
    const markdown = [
      `Written by \`npm run bench -- data\` (bench/data.ts). Machine: ${machine()}. Date: ${new Date().toISOString()}.`,
      '',
      throughput,
      '',
      chaos,
    ].join('\n');
    const path = 'docs/data.md';
    const text = readFileSync(path, 'utf8');
    const at = text.indexOf('## Figures');
    if (at < 0) throw new Error('docs/data.md has no "## Figures" section');
    write(path, `${text.slice(0, at)}## Figures\n\n${markdown}\n`);
    return { markdown };
  } finally {
    await database.drop().catch(() => undefined);
    if (existsSync(old)) rmSync(old, { recursive: true, force: true });
    execFileSync('git', ['worktree', 'prune'], { stdio: 'ignore' });
  }
}
