/**
 * The catalog module: implements {@link catalog} over an in-memory {@link ProductStore}.
 */
import { defineModule } from 'keel';
import { DuplicateSku, UnknownProduct, catalog } from './contract.js';
import { CATALOG_SEED, DEFAULT_CATALOG_SEED, ProductStore } from './product-store.js';

/**
 * The catalog module, seeded with a few products.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule] });
 * await kernel.start();
 * await kernel.client(catalog).getProduct({ sku: 'KB-001' });
 * ```
 */
export const catalogModule = defineModule({
  contract: catalog,
  providers: (bind) => {
    bind(CATALOG_SEED).toConstantValue(DEFAULT_CATALOG_SEED);
    bind(ProductStore).toSelf().inSingletonScope();
  },
  create: ({ get, emit, logger }) => {
    const store = get(ProductStore);
    return {
      handlers: {
        addProduct: async (input) => {
          const product = { ...input, createdAt: new Date().toISOString() };
          if (!store.add(product)) throw new DuplicateSku({ sku: input.sku });
          logger.info({ sku: product.sku, priceCents: product.priceCents }, 'product added');
          await emit('productAdded', product);
          return product;
        },
        getProduct: ({ sku }) => {
          const product = store.get(sku);
          if (product === undefined) throw new UnknownProduct({ sku });
          return product;
        },
        listProducts: () => ({ products: store.list() }),
      },
    };
  },
});
