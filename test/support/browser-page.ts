/**
 * What a browser page of the shop does with the typed HTTP client: bundled for the browser by
 * test/http-client-bundle.test.ts and run in headless Chromium and in a bare `vm` context, both
 * against a real gateway. It imports only the browser doors and a shop contract.
 */
import { isKeelError } from 'keel/contract';
import { createHttpClient } from 'keel/http-client';
import { UnknownProduct, catalog } from '../../modules/catalog/contract.js';

/** What the page saw, as plain JSON for the test to check. */
export interface PageReport {
  readonly added: { readonly sku: string; readonly name: string; readonly priceCents: number };
  readonly got: { readonly sku: string; readonly priceCents: number };
  readonly listed: readonly string[];
  readonly unknown: { readonly instanceOfItsClass: boolean; readonly code: string; readonly data: unknown; readonly correlationId: string | undefined };
  readonly invalid: { readonly keelError: boolean; readonly code: string };
  /** What a client given the page's own fetch (`fetch: globalThis.fetch`, i.e. window.fetch) got back. */
  readonly givenFetch: string;
  readonly nodeGlobals: { readonly process: string; readonly require: string };
}

/**
 * Adds a product through the gateway at `baseUrl` as the admin `token` (a bearer JWT: addProduct
 * is for admins), reads it back, and fails in the two ways a caller meets.
 */
export async function runPage(baseUrl: string, sku: string, token: string): Promise<PageReport> {
  const shop = createHttpClient(catalog, { baseUrl, headers: { 'x-page': 'browser-page' } });
  const added = await shop.addProduct({ sku, name: 'Browser mug', priceCents: 1_250 }, { headers: { authorization: `Bearer ${token}` } });
  const got = await shop.getProduct({ sku });
  const { products } = await shop.listProducts({});
  let unknown: PageReport['unknown'] | undefined;
  try {
    await shop.getProduct({ sku: 'NO-SUCH-SKU' }, { correlationId: `page-${sku}` });
  } catch (error) {
    if (!(error instanceof Error)) throw error;
    unknown = {
      instanceOfItsClass: error instanceof UnknownProduct,
      code: UnknownProduct.is(error) ? error.code : error.name,
      data: UnknownProduct.is(error) ? error.data : undefined,
      correlationId: UnknownProduct.is(error) ? error.correlationId : undefined,
    };
  }
  let invalid: PageReport['invalid'] | undefined;
  try {
    await shop.getProduct({ sku: '' });
  } catch (error) {
    invalid = { keelError: isKeelError(error, 'INVALID_INPUT'), code: isKeelError(error) ? error.code : String(error) };
  }
  if (unknown === undefined || invalid === undefined) throw new Error('an expected failure did not happen');
  // A browser's fetch throws "Illegal invocation" unless called with the global object or undefined as `this`.
  const withGivenFetch = createHttpClient(catalog, { baseUrl, fetch: globalThis.fetch });
  const givenFetch = (await withGivenFetch.getProduct({ sku })).sku;
  return {
    added: { sku: added.sku, name: added.name, priceCents: added.priceCents },
    got: { sku: got.sku, priceCents: got.priceCents },
    listed: products.map((product) => product.sku),
    unknown,
    invalid,
    givenFetch,
    nodeGlobals: { process: typeof (globalThis as { process?: unknown }).process, require: typeof (globalThis as { require?: unknown }).require },
  };
}
