/**
 * `npm run test:chaos`: the chaos suite (test/chaos/), a few minutes of real processes broken on
 * purpose, one file at a time. Not part of `npm test` (vitest.config.ts leaves test/chaos/ out).
 * With KEEL_CHAOS_WRITE=1 it writes its figures into docs/resilience.md.
 */
import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['keel-source'] },
  ssr: { resolve: { conditions: ['keel-source'] } },
  test: {
    include: ['test/chaos/**/*.test.ts'],
    env: { KEEL_LOG_LEVEL: process.env['KEEL_LOG_LEVEL'] ?? 'silent' },
    testTimeout: 180_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // One scenario at a time: each runs seven processes on a 2-core box.
    fileParallelism: false,
  },
});
