/**
 * Who the shop's callers are: the principal every call and event carries (`context.principal`),
 * declared once here as a zod schema, given to the kernel (`createKernel({ principal })`), and
 * registered with keel so that handlers, `auth` predicates and the gateway's `authenticate` hook
 * are typed by it. The gateway builds it from a bearer JWT (app/main.ts); see docs/security.md.
 */
import { KeelError, KeelErrorCode } from 'keel';
import { createJwtAuthenticator, type Authenticate } from 'keel/http';
import { z } from 'zod';

/**
 * The shop's principal: the token's subject and its roles (`admin` may add products, restock
 * and change prices, and read and cancel every customer's orders; a customer's subject is its
 * `customerId`: it places orders as itself, lists its orders, payments and notifications, reads
 * its orders and payments, and cancels its orders).
 *
 * @example
 * ```ts
 * const kernel = createKernel({ modules, principal: Principal });
 * await kernel.client(catalog).setPrice({ sku: 'KB-001', priceCents: 9900 }, { principal: { sub: 'ada', roles: ['admin'] } });
 * ```
 */
export const Principal = z.object({
  sub: z.string().min(1),
  roles: z.array(z.string()),
});

declare module 'keel' {
  interface Register {
    principal: z.output<typeof Principal>;
  }
}

/** Issuer and audience of the shop's development tokens (app/dev-token.ts). */
export const SHOP_TOKENS = { issuer: 'keel-shop', audience: 'keel-shop' } as const;

/**
 * The gateway's authenticate hook from the environment: bearer JWTs (HS256) signed with
 * `SHOP_AUTH_SECRET` (at least 32 bytes), issued by `keel-shop` for `keel-shop`, whose `sub` and
 * `roles` claims make the principal. Without the variable, `undefined`: every call is anonymous,
 * and an operation whose contract declares `auth` (catalog.addProduct and setPrice,
 * inventory.restock, and what is a customer's own: orders.listOrders, getOrder and cancelOrder,
 * payments.listPayments and getPayment, notifications.listNotifications) answers 401. In production, verify your identity provider's tokens
 * instead: `createJwtAuthenticator({ jwksUrl, issuer, audience })`.
 *
 * @example
 * ```ts
 * // SHOP_AUTH_SECRET=$(openssl rand -hex 32) npm start
 * const gateway = await createHttpGateway({ kernel, authenticate: authenticatorFromEnv(process.env) });
 * ```
 */
export function authenticatorFromEnv(env: Readonly<Record<string, string | undefined>>): Authenticate | undefined {
  const secret = env['SHOP_AUTH_SECRET']?.trim();
  if (secret === undefined || secret === '') return undefined;
  if (Buffer.byteLength(secret) < 32) {
    // createJwtAuthenticator would refuse it too, naming its option, not the variable.
    throw new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `SHOP_AUTH_SECRET is ${Buffer.byteLength(secret)} bytes long; it needs at least 32 (a shorter HMAC secret can be guessed). ` +
        'Make one with: export SHOP_AUTH_SECRET=$(openssl rand -hex 32)',
    );
  }
  return createJwtAuthenticator({
    secret,
    ...SHOP_TOKENS,
    principal: (claims) => ({ sub: claims.sub, roles: Array.isArray(claims['roles']) ? claims['roles'] : [] }),
  });
}
