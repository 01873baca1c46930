/**
 * Who the shop's tests call as. `catalog.addProduct`, `catalog.setPrice` and `inventory.restock`
 * are for admins only, and the lists of a customer's orders, payments and notifications are
 * that customer's own (their contracts' `auth`). So a test that adds or restocks a product passes
 * {@link AS_ADMIN}, and one that lists a customer's data {@link asCustomer}, as the call option
 * of a kernel's client (in one process and over NATS, where every kernel is given the shop's
 * `Principal` schema), or sends a bearer token ({@link bearer}) to a shop gateway that
 * authenticates: one given {@link shopAuthenticator}, or a shop process started with
 * {@link SHOP_AUTH_ENV} (app/principal.ts reads `SHOP_AUTH_SECRET`).
 */
import { SignJWT } from 'jose';
import type { Principal } from 'keel';
import type { Authenticate } from 'keel/http';
import { SHOP_TOKENS, authenticatorFromEnv } from '../../app/principal.js';

/** An admin: may add products, restock and set prices. */
export const ADMIN: Principal = { sub: 'test-admin', roles: ['admin'] };

/** A signed-in customer: no admin role. */
export const CUSTOMER: Principal = { sub: 'test-customer', roles: ['customer'] };

/**
 * The call option of an admin's call through a kernel's client.
 *
 * @example
 * ```ts
 * await kernel.client(inventory).restock({ sku, quantity: 10 }, AS_ADMIN);
 * ```
 */
export const AS_ADMIN: { readonly principal: Principal } = { principal: ADMIN };

/**
 * The call option of a customer's own call: `orders.listOrders`, `payments.listPayments` and
 * `notifications.listNotifications` answer a principal whose subject is the `customerId` asked
 * for (or an admin), and refuse every other one.
 *
 * @example
 * ```ts
 * const { orders: mine } = await kernel.client(orders).listOrders({ customerId: 'c-42' }, asCustomer('c-42'));
 * ```
 */
export function asCustomer(customerId: string): { readonly principal: Principal } {
  return { principal: { sub: customerId, roles: ['customer'] } };
}

/** The secret the shop's tests sign their bearer tokens with (`SHOP_AUTH_SECRET`: 32 bytes at least). */
export const SHOP_TEST_SECRET = 'the secret of the shop tests only, longer than thirty-two bytes';

/** The environment of a shop process whose gateway verifies the tests' tokens. */
export const SHOP_AUTH_ENV: Readonly<Record<string, string>> = { SHOP_AUTH_SECRET: SHOP_TEST_SECRET };

/** The shop's own authenticate hook (app/principal.ts), verifying the tests' tokens: for a gateway made in the test. */
export function shopAuthenticator(): Authenticate {
  const authenticate = authenticatorFromEnv(SHOP_AUTH_ENV);
  if (authenticate === undefined) throw new Error('authenticatorFromEnv made no hook from SHOP_AUTH_ENV');
  return authenticate;
}

/** A token for `principal`, as `npm run token` makes one (app/dev-token.ts), signed with {@link SHOP_TEST_SECRET}. */
export function shopToken(principal: Principal = ADMIN): Promise<string> {
  return new SignJWT({ roles: principal.roles })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(principal.sub)
    .setIssuer(SHOP_TOKENS.issuer)
    .setAudience(SHOP_TOKENS.audience)
    .setIssuedAt()
    .setExpirationTime('1h')
    .sign(new TextEncoder().encode(SHOP_TEST_SECRET));
}

/**
 * The `authorization` header of a request made as `principal` (default {@link ADMIN}).
 *
 * @example
 * ```ts
 * await fetch(`${url}/inventory/restock`, { method: 'POST', headers: { 'content-type': 'application/json', ...(await bearer()) }, body });
 * ```
 */
export async function bearer(principal: Principal = ADMIN): Promise<{ authorization: string }> {
  return { authorization: `Bearer ${await shopToken(principal)}` };
}
