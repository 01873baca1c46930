/**
 * The catalog's public door: the products the shop sells and their prices. Other modules
 * import this file, and only this file, from `../catalog/contract.js`.
 *
 * @example
 * ```ts
 * import { defineModule } from 'keel';
 * import { catalog, UnknownProduct } from '../catalog/contract.js';
 *
 * export const pricingModule = defineModule({
 *   contract: pricing,
 *   dependsOn: [catalog],
 *   create: ({ get }) => {
 *     const products = get(catalog);
 *     return {
 *       handlers: {
 *         quote: async ({ sku, quantity }) => {
 *           const product = await products.getProduct({ sku }); // may throw UnknownProduct
 *           return { totalCents: product.priceCents * quantity };
 *         },
 *       },
 *     };
 *   },
 * });
 * ```
 *
 * @module
 */
import { z } from 'zod';
import { ErrorKind, defineContract, defineError, event, operation, text } from 'keel/contract';

/**
 * A stock keeping unit: letters, digits, `.`, `_` or `-`, at most 64 characters.
 *
 * @example
 * ```ts
 * Sku.parse('KB-001'); // 'KB-001'
 * ```
 */
export const Sku = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'use letters, digits, ".", "_" or "-", starting with a letter or digit');

/**
 * A price or an amount of money, in integer cents (never floating-point currency).
 *
 * @example
 * ```ts
 * Cents.parse(1999); // $19.99
 * ```
 */
export const Cents = z.number().int().nonnegative().max(100_000_000);

/**
 * A product of the catalog.
 *
 * @example
 * ```ts
 * const product: Product = { sku: 'KB-001', name: 'Mechanical keyboard', priceCents: 8900, createdAt: '2024-05-01T12:00:00.000Z' };
 * ```
 */
export const Product = z.object({
  sku: Sku,
  name: text().min(1).max(200),
  priceCents: Cents.positive(),
  createdAt: z.iso.datetime(),
});
/** A {@link Product} as callers receive it. */
export type Product = z.output<typeof Product>;

/**
 * No product has this SKU.
 *
 * @example
 * ```ts
 * if (error instanceof UnknownProduct) console.warn(`no such product: ${error.data.sku}`);
 * ```
 */
export const UnknownProduct = defineError({
  code: 'UNKNOWN_PRODUCT',
  kind: ErrorKind.NOT_FOUND,
  data: z.object({ sku: z.string() }),
  description: 'No product has this SKU.',
  message: (data) => `No product has SKU "${data.sku}". Check the SKU, or add the product with catalog.addProduct.`,
});

/**
 * A product with this SKU already exists.
 *
 * @example
 * ```ts
 * if (error instanceof DuplicateSku) console.warn(`${error.data.sku} is taken`);
 * ```
 */
export const DuplicateSku = defineError({
  code: 'DUPLICATE_SKU',
  kind: ErrorKind.CONFLICT,
  data: z.object({ sku: z.string() }),
  description: 'A product with this SKU already exists; SKUs are unique.',
  message: (data) => `A product with SKU "${data.sku}" already exists. Choose another SKU, or read it with catalog.getProduct.`,
});

/**
 * The catalog contract.
 *
 * @example
 * ```ts
 * const products = kernel.client(catalog);
 * await products.addProduct({ sku: 'MUG-01', name: 'Mug', priceCents: 1200 }, { principal: { sub: 'ada', roles: ['admin'] } }); // admins only
 * const { products: all } = await products.listProducts({});
 * ```
 */
export const catalog = defineContract({
  name: 'catalog',
  // 2.0.0: addProduct is admin-only (auth), which refuses its anonymous callers.
  // 3.0.0: addProduct's name is text(), refusing what a database cannot store (a NUL, a lone surrogate),
  // which failed as INTERNAL; keel contracts diff calls the narrower input breaking.
  version: '3.0.0',
  description: 'The products the shop sells, with their names and prices in cents.',
  operations: {
    addProduct: operation({
      description: "Adds a product to the catalog. SKUs are unique. Admins only: the caller's principal must have the admin role.",
      input: z.object({ sku: Sku, name: Product.shape.name, priceCents: Product.shape.priceCents }),
      output: Product,
      errors: [DuplicateSku],
      auth: (principal) => principal.roles.includes('admin'),
    }),
    getProduct: operation({
      description: 'Reads one product by SKU.',
      input: z.object({ sku: Sku }),
      output: Product,
      errors: [UnknownProduct],
      idempotent: true,
      // A read: a second attempt to another instance beats waiting on a slow or frozen one.
      // Up to 8 attempts: with one of two instances frozen, all of them land on it once in 256 reads,
      // and even then a read makes 2 attempts on average (docs/resilience.md, "Chaos suite").
      hedge: { percentile: 95, delayMs: 25, maxAttempts: 8 },
    }),
    listProducts: operation({
      description: 'Lists every product, ordered by SKU.',
      input: z.object({}),
      output: z.object({ products: z.array(Product) }),
      idempotent: true,
      // A read: a second attempt to another instance beats waiting on a slow or frozen one.
      // Up to 8 attempts: with one of two instances frozen, all of them land on it once in 256 reads,
      // and even then a read makes 2 attempts on average (docs/resilience.md, "Chaos suite").
      hedge: { percentile: 95, delayMs: 25, maxAttempts: 8 },
    }),
    setPrice: operation({
      description: "Changes a product's price. Admins only: the caller's principal must have the admin role.",
      input: z.object({ sku: Sku, priceCents: Product.shape.priceCents }),
      output: Product,
      errors: [UnknownProduct],
      idempotent: true,
      // The principal's type is the shop's (app/principal.ts registers it): no import needed here.
      auth: (principal) => principal.roles.includes('admin'),
    }),
  },
  events: {
    productAdded: event({
      description: 'A product was added to the catalog.',
      payload: Product,
    }),
  },
});
