import { afterAll } from 'vitest';
import { createKernel } from 'keel';
import { Principal } from '../app/principal.js';
import { modules } from '../modules/index.js';
import { enginesUnderTest } from './support/databases.js';
import { describeShopSuite } from './support/shop-suite.js';

const engines = enginesUnderTest();
afterAll(async () => {
  for (const engine of engines) await engine.cleanup();
});

for (const engine of engines) {
  describeShopSuite(`one process on ${engine.name}`, async () => {
    const kernel = createKernel({ modules, principal: Principal, database: await engine.fresh() });
    await kernel.start();
    return {
      client: (contract) => kernel.client(contract),
      stop: () => kernel.stop(),
    };
  });
}
