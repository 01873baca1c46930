import { randomUUID } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import { isKeelError } from 'keel';
import { DuplicateSku, UnknownProduct, catalog } from '../modules/catalog/contract.js';
import { catalogModule } from '../modules/catalog/module.js';
import { AS_ADMIN, CUSTOMER } from './support/shop-auth.js';
import { EVENTUALLY, describeInTopologies } from './support/shop-module-harness.js';
import { eventRecorder } from './support/shop-suite.js';

describeInTopologies('catalog - products', (boot) => {
  const added = eventRecorder(catalog);
  const app = boot({ modules: [catalogModule, added.module] });
  const products = () => app.client(catalog);

  it('catalog - starts seeded with products, listed by SKU', async () => {
    const { products: seeded } = await products().listProducts({});
    expect(seeded.map((product) => product.sku)).toEqual(expect.arrayContaining(['CB-USB-C', 'KB-001', 'MN-027', 'MS-001']));
    const skus = seeded.map((product) => product.sku);
    expect(skus).toEqual([...skus].sort((a, b) => a.localeCompare(b)));
    expect(await products().getProduct({ sku: 'KB-001' })).toMatchObject({ name: 'Mechanical keyboard', priceCents: 8900 });
  });

  it('catalog - addProduct stores the product, dates it and announces productAdded', async () => {
    const sku = `SKU-${randomUUID()}`;
    const product = await products().addProduct({ sku, name: 'Desk lamp', priceCents: 2450 }, AS_ADMIN);

    expect(product).toEqual({ sku, name: 'Desk lamp', priceCents: 2450, createdAt: expect.any(String) });
    expect(Number.isNaN(Date.parse(product.createdAt))).toBe(false);
    expect(await products().getProduct({ sku })).toEqual(product);
    expect((await products().listProducts({})).products).toContainEqual(product);
    await vi.waitFor(() => expect(added.of('productAdded')).toContainEqual(product), EVENTUALLY);
  });

  it('catalog - addProduct is for admins: without a principal it is UNAUTHENTICATED, for a customer FORBIDDEN, and nothing is added', async () => {
    const sku = `SKU-${randomUUID()}`;
    const input = { sku, name: 'Unwanted lamp', priceCents: 100 };

    const anonymous = await products()
      .addProduct(input)
      .catch((error: unknown) => error);
    expect(isKeelError(anonymous, 'UNAUTHENTICATED')).toBe(true);
    expect((anonymous as Error).message).toContain('catalog.addProduct needs a caller identity');
    const customer = await products()
      .addProduct(input, { principal: CUSTOMER })
      .catch((error: unknown) => error);
    expect(isKeelError(customer, 'FORBIDDEN')).toBe(true);
    await expect(products().getProduct({ sku })).rejects.toBeInstanceOf(UnknownProduct);

    expect(await products().addProduct(input, AS_ADMIN)).toMatchObject(input);
  });

  it('catalog - a taken SKU fails with DuplicateSku and leaves the product unchanged', async () => {
    const sku = `SKU-${randomUUID()}`;
    const original = await products().addProduct({ sku, name: 'Original', priceCents: 100 }, AS_ADMIN);

    const failure = await products()
      .addProduct({ sku, name: 'Impostor', priceCents: 1 }, AS_ADMIN)
      .catch((error: unknown) => error);

    expect(failure).toBeInstanceOf(DuplicateSku);
    expect((failure as InstanceType<typeof DuplicateSku>).data).toEqual({ sku });
    expect((failure as InstanceType<typeof DuplicateSku>).kind).toBe('conflict');
    expect(await products().getProduct({ sku })).toEqual(original);
  });

  it('catalog - an unknown SKU fails with UnknownProduct, a not-found error', async () => {
    const sku = `SKU-${randomUUID()}`;
    const failure = await products()
      .getProduct({ sku })
      .catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(UnknownProduct);
    expect((failure as InstanceType<typeof UnknownProduct>).kind).toBe('not-found');
    expect((failure as Error).message).toContain('catalog.addProduct');
  });

  it('catalog - refuses SKUs, names and prices outside the contract', async () => {
    const cases = [
      [{ sku: 'has space', name: 'x', priceCents: 1 }, 'sku'],
      [{ sku: `SKU-${randomUUID()}`, name: '', priceCents: 1 }, 'name'],
      [{ sku: `SKU-${randomUUID()}`, name: 'Free', priceCents: 0 }, 'priceCents'],
      [{ sku: `SKU-${randomUUID()}`, name: 'Float', priceCents: 9.99 }, 'priceCents'],
    ] as const;
    for (const [input, field] of cases) {
      const failure = await products()
        .addProduct(input, AS_ADMIN)
        .catch((error: unknown) => error);
      expect(isKeelError(failure, 'INVALID_INPUT')).toBe(true);
      expect((failure as Error).message).toContain(`${field}:`);
    }
  });
});
