import { availableParallelism } from 'node:os';
import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['keel-source'] },
  ssr: { resolve: { conditions: ['keel-source'] } },
  test: {
    include: ['test/**/*.test.ts'],
    // The chaos suite runs for minutes: `npm run test:chaos` (vitest.chaos.config.ts).
    exclude: [...configDefaults.exclude, 'test/chaos/**'],
    env: { KEEL_LOG_LEVEL: process.env['KEEL_LOG_LEVEL'] ?? 'silent' },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time at least. The suite waits on servers, processes and timers more
    // than it computes: on 2 cores vitest's default (cores - 1, so one file at a time) took 1159 s
    // where two took 747 s, every test passing (docs/ci.md).
    maxWorkers: Math.max(2, availableParallelism() - 1),
  },
});
