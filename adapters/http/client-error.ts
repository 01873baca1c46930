/**
 * The answer to a request Node's HTTP parser refused before fastify saw it (its `clientError`):
 * broken HTTP, headers or chunk extensions over the size limit, or a request or its headers that
 * did not arrive in time. Written raw to the socket, as a problem, with the status Node's own default answer uses.
 */
import { STATUS_CODES, maxHeaderSize } from 'node:http';
import { KeelErrorCode } from 'keel';
import { newCorrelationId } from 'keel/transport';
import type { ResolvedHttpGatewayOptions } from './gateway-options.js';
import { PROBLEM_CONTENT_TYPE, gatewayProblem } from './problem.js';
import { HttpProblemCode } from './status.js';

/** The gateway's timeouts, named in the detail of a 408. */
type Timeouts = Pick<ResolvedHttpGatewayOptions, 'requestTimeoutMs' | 'headersTimeoutMs'>;

/** The codes a client error is answered with. */
type ClientErrorCode =
  | typeof HttpProblemCode.MALFORMED_REQUEST
  | typeof HttpProblemCode.REQUEST_TIMEOUT
  | typeof HttpProblemCode.HEADERS_TOO_LARGE
  | typeof KeelErrorCode.PAYLOAD_TOO_LARGE;

/** A client error's answer: its status (for the metric) and the bytes to write before closing. */
export interface ClientErrorAnswer {
  readonly status: number;
  readonly raw: string;
}

/**
 * The answer to `error`, a `clientError` of Node's HTTP server. `timeouts` are the gateway's, named
 * in the detail of a 408.
 *
 * @example
 * ```ts
 * const { status, raw } = clientErrorAnswer(error, { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 });
 * socket.end(raw);
 * ```
 */
export function clientErrorAnswer(
  error: Error,
  timeouts: Timeouts,
): ClientErrorAnswer {
  const [code, detail] = problemFields(error, timeouts);
  const problem = gatewayProblem(code, detail, newCorrelationId());
  const body = JSON.stringify(problem);
  return {
    status: problem.status,
    raw:
      `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\nConnection: close\r\nCache-Control: no-store\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  };
}

function problemFields(
  error: Error,
  timeouts: Timeouts,
): [ClientErrorCode, string] {
  switch ((error as NodeJS.ErrnoException).code) {
    // Node's own request and headers timeouts (requestTimeoutMs, headersTimeoutMs).
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return [
        HttpProblemCode.REQUEST_TIMEOUT,
        `The request did not arrive within ${timeouts.requestTimeoutMs} ms (its headers within ${timeouts.headersTimeoutMs} ms); send it whole, at once.`,
      ];
    // Node counts the request line with the headers: a long URL (a large `?input=`) ends here too.
    case 'HPE_HEADER_OVERFLOW':
      return [
        HttpProblemCode.HEADERS_TOO_LARGE,
        `The request line and headers are larger than the ${maxHeaderSize} bytes this server accepts; send fewer or smaller headers (large cookies or tokens are the usual cause) and a shorter URL (a large input by POST, in the body).`,
      ];
    // A chunked body's chunk extensions over Node's 16 KiB: Node's own answer is 413 too.
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return [
        KeelErrorCode.PAYLOAD_TOO_LARGE,
        'The chunk extensions of the request body are larger than this server accepts; send the body without chunk extensions.',
      ];
    default:
      return [HttpProblemCode.MALFORMED_REQUEST, `The HTTP request is malformed: ${error.message}`];
  }
}
