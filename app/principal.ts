/**
 * Who the shop's callers are: the principal every call and event carries (`context.principal`),
 * declared once here as a zod schema, given to the kernel (`createKernel({ principal })`), and
 * registered with keel so that handlers, `auth` predicates and the gateway's `authenticate` hook
 * are typed by it. The gateway builds it from a bearer JWT (app/main.ts); see docs/security.md.
 */
import { z } from 'zod';

/**
 * The shop's principal: the token's subject and its roles (`admin` may change prices).
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
