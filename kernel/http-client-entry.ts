/**
 * keel/http-client — a typed client of a contract over the HTTP gateway, for a browser page, a
 * worker or a script: {@link createHttpClient}. Like `'keel/contract'`, its whole import graph
 * is zod and browser-safe kernel files: no Node.js built-in, no server library. The client gives
 * the same typed results and the same errors as `kernel.client(contract)` in process: a
 * declared error is an instance of its contract's class, a framework failure a `KeelError`
 * (from `'keel/contract'`) with its code.
 *
 * @example
 * ```ts
 * import { createHttpClient } from 'keel/http-client';
 * import { UnknownProduct, catalog } from './modules/catalog/contract.js';
 *
 * const shop = createHttpClient(catalog, { baseUrl: location.origin });
 * try {
 *   const product = await shop.getProduct({ sku: 'KB-001' });
 *   console.log(product.name, product.priceCents);
 * } catch (error) {
 *   if (error instanceof UnknownProduct) console.log(`no product ${error.data.sku}`);
 * }
 * ```
 *
 * @module
 */
export {
  DEFAULT_HTTP_CLIENT_OPTIONS,
  createHttpClient,
  type HttpCallOptions,
  type HttpClient,
  type HttpClientOptions,
  type HttpHeaders,
} from './http-client.js';
