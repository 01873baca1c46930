import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * `npm run test:chaos`: the chaos runs (test/*.chaos.ts), apart from `npm test` while one of
 * their promises does not hold (see docs/data.md, Figures: an orderPlaced lost around a
 * nats-server restart; issue 12 stays open until it holds).
 */
export default defineConfig({ ...base, test: { ...base.test, include: ['test/**/*.chaos.ts'] } });
