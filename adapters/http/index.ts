/**
 * keel/http — the HTTP gateway: contract operations as HTTP endpoints, derived from the
 * contracts alone, with OpenAPI 3.1, an API reference page, health, readiness and Prometheus
 * metrics. See docs/http.md.
 *
 * @example
 * ```ts
 * import { createKernel } from 'keel';
 * import { createHttpGateway } from 'keel/http';
 * import { modules } from './modules/index.js';
 *
 * const kernel = createKernel({ modules });
 * const gateway = await createHttpGateway({ kernel, port: 3000 }); // before start: /metrics counts from the first call
 * await kernel.start();
 * await gateway.listen(); // POST http://127.0.0.1:3000/<module>/<operation>
 * ```
 *
 * @module
 */

export { createHttpGateway, type HttpGateway } from './gateway.js';
export {
  DEFAULT_HTTP_GATEWAY_OPTIONS,
  HttpGatewayConfigSchema,
  type HttpGatewayConfig,
  type HttpGatewayOptions,
} from './gateway-options.js';
export type { HttpCorsOptions, HttpRateLimitOptions } from './gateway-option-rules.js';
export { createJwtAuthenticator, type Authenticate, type JwtAuthenticatorOptions } from './authenticate.js';
export {
  HTTP_STATUS_BY_CODE,
  HTTP_STATUS_BY_KIND,
  HttpProblemCode,
  httpStatusOf,
} from './status.js';
export { PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX, problemOf, type Problem } from './problem.js';
export { createOpenApiDocument, operationPath, servedOperations, type OpenApiDocument, type OpenApiOptions } from './openapi.js';
export {
  DEFAULT_LATENCY_BUCKETS,
  createKernelMetrics,
  type KernelMetrics,
  type KernelMetricsOptions,
} from './metrics.js';
