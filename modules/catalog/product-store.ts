/**
 * The catalog's data: products by SKU, in memory. Private to the catalog module.
 */
import { inject, injectable } from 'inversify';
import type { Product } from './contract.js';

/** A product as the catalog is seeded with (no creation date yet). */
export type SeedProduct = Omit<Product, 'createdAt'>;

/** Token of the products the catalog starts with. */
export const CATALOG_SEED = Symbol.for('catalog.seed');

/** Products the shop starts with, so that a fresh `npm start` has something to sell. */
export const DEFAULT_CATALOG_SEED: readonly SeedProduct[] = [
  { sku: 'KB-001', name: 'Mechanical keyboard', priceCents: 8900 },
  { sku: 'MS-001', name: 'Wireless mouse', priceCents: 3450 },
  { sku: 'MN-027', name: '27-inch monitor', priceCents: 27900 },
  { sku: 'CB-USB-C', name: 'USB-C cable, 2 m', priceCents: 1299 },
];

/** Products by SKU. */
@injectable()
export class ProductStore {
  readonly #products = new Map<string, Product>();

  constructor(@inject(CATALOG_SEED) seed: readonly SeedProduct[]) {
    const createdAt = new Date().toISOString();
    for (const product of seed) this.#products.set(product.sku, { ...product, createdAt });
  }

  /** Adds `product`; false when its SKU is taken. */
  add(product: Product): boolean {
    if (this.#products.has(product.sku)) return false;
    this.#products.set(product.sku, product);
    return true;
  }

  get(sku: string): Product | undefined {
    return this.#products.get(sku);
  }

  /** Every product, ordered by SKU. */
  list(): Product[] {
    return [...this.#products.values()].sort((a, b) => a.sku.localeCompare(b.sku));
  }
}
