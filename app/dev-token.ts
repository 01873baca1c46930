/**
 * Prints a development token for the shop's gateway: a JWT (HS256, valid one hour) signed with
 * `SHOP_AUTH_SECRET`, for the subject and roles given on the command line.
 *
 * ```sh
 * SHOP_AUTH_SECRET=<secret> npm run token -- <subject> [role ...]
 *
 * export SHOP_AUTH_SECRET=$(openssl rand -hex 32)
 * TOKEN=$(npm run -s token -- ada admin)      # -s: the token alone, without npm's header
 * ```
 */
import { SignJWT } from 'jose';
import { SHOP_TOKENS } from './principal.js';

const [sub, ...roles] = process.argv.slice(2);
const secret = process.env['SHOP_AUTH_SECRET']?.trim();
if (sub === undefined || secret === undefined || secret === '') {
  console.error('usage: SHOP_AUTH_SECRET=<secret> npm run token -- <subject> [role ...]');
  process.exit(2);
}
const token = await new SignJWT({ roles })
  .setProtectedHeader({ alg: 'HS256' })
  .setSubject(sub)
  .setIssuer(SHOP_TOKENS.issuer)
  .setAudience(SHOP_TOKENS.audience)
  .setIssuedAt()
  .setExpirationTime('1h')
  .sign(new TextEncoder().encode(secret));
console.log(token);
