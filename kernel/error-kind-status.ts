/**
 * One status number per declared error kind, for every adapter: the HTTP gateway answers a
 * declared error with it, and the NATS adapter sends it as the service error code (the NATS
 * service API asks for HTTP-like numbers). A kind therefore means the same number on every wire.
 */
import { ErrorKind } from './declared-errors.js';

/**
 * Status number of a declared contract error, by its {@link ErrorKind}: the HTTP status the
 * gateway answers with and the NATS service error code. `satisfies` makes a new kind a compile
 * error here until it has a status.
 *
 * @example
 * ```ts
 * import { STATUS_BY_ERROR_KIND } from 'keel/transport';
 *
 * STATUS_BY_ERROR_KIND[OutOfStock.kind]; // 409 for kind 'conflict'
 * ```
 */
export const STATUS_BY_ERROR_KIND = {
  [ErrorKind.NOT_FOUND]: 404,
  [ErrorKind.CONFLICT]: 409,
  [ErrorKind.INVALID]: 400,
  [ErrorKind.UNPROCESSABLE]: 422,
  [ErrorKind.FORBIDDEN]: 403,
  [ErrorKind.UNAUTHENTICATED]: 401,
  [ErrorKind.RATE_LIMITED]: 429,
  [ErrorKind.UNAVAILABLE]: 503,
} as const satisfies Record<ErrorKind, number>;
