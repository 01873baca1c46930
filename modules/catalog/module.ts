/**
 * The catalog module: implements {@link catalog} over its `products` table, in its own schema
 * (`migrations/`, which also seed the products a fresh shop sells). Its few statements sit in
 * the handlers; inventory, orders and payments, with more SQL, keep theirs in a repository class.
 */
import { defineModule } from 'keel';
import { DuplicateSku, UnknownProduct, catalog, type Product } from './contract.js';

type ProductRow = { sku: string; name: string; price_cents: number; created_at: Date | string };

const COLUMNS = 'sku, name, price_cents, created_at';

function toProduct(row: ProductRow): Product {
  return { sku: row.sku, name: row.name, priceCents: row.price_cents, createdAt: new Date(row.created_at).toISOString() };
}

/**
 * The catalog module, seeded with a few products by its migrations.
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules: [catalogModule], database: await createPGliteDatabase() });
 * await kernel.start();
 * await kernel.client(catalog).getProduct({ sku: 'KB-001' });
 * ```
 */
export const catalogModule = defineModule({
  contract: catalog,
  data: { migrations: new URL('./migrations/', import.meta.url) },
  create: ({ db, emit, logger }) => ({
    handlers: {
      addProduct: (input) =>
        db.transaction(async () => {
          const product: Product = { ...input, createdAt: new Date().toISOString() };
          const { rowCount } = await db.query(
            `insert into products (${COLUMNS}) values ($1, $2, $3, $4) on conflict (sku) do nothing`,
            [product.sku, product.name, product.priceCents, product.createdAt],
          );
          if (rowCount === 0) throw new DuplicateSku({ sku: input.sku });
          logger.info({ sku: product.sku, priceCents: product.priceCents }, 'product added');
          // Written to the outbox with the product: published once the insert commits.
          await emit('productAdded', product);
          return product;
        }),
      getProduct: async ({ sku }) => {
        const { rows } = await db.query<ProductRow>(`select ${COLUMNS} from products where sku = $1`, [sku]);
        if (rows[0] === undefined) throw new UnknownProduct({ sku });
        return toProduct(rows[0]);
      },
      listProducts: async () => {
        // collate "C": the same order on every engine, whatever the database's locale.
        const { rows } = await db.query<ProductRow>(`select ${COLUMNS} from products order by sku collate "C"`);
        return { products: rows.map(toProduct) };
      },
      // Only an admin gets here: the contract's auth refused everyone else (FORBIDDEN).
      setPrice: async ({ sku, priceCents }, context) => {
        const { rows } = await db.query<ProductRow>(`update products set price_cents = $2 where sku = $1 returning ${COLUMNS}`, [sku, priceCents]);
        if (rows[0] === undefined) throw new UnknownProduct({ sku });
        logger.info({ sku, priceCents, by: context.principal?.sub }, 'price changed');
        return toProduct(rows[0]);
      },
    },
  }),
});
