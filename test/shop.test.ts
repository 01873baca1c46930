import { createKernel } from 'keel';
import { modules } from '../modules/index.js';
import { describeShopSuite } from './support/shop-suite.js';

describeShopSuite('one process', async () => {
  const kernel = createKernel({ modules });
  await kernel.start();
  return {
    client: (contract) => kernel.client(contract),
    stop: () => kernel.stop(),
  };
});
