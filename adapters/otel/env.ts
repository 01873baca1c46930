/**
 * The `OTEL_*` variables `startTracing` (index.ts) reads from the `env` it is given (the exporters
 * themselves read only `process.env`): the exporter's URL, headers and timeout, the batch span
 * processor's options, and the `key=value` lists they are written in. A value that is not
 * supported is named in a KeelError `INVALID_CONFIG`.
 */
import { KeelError, KeelErrorCode } from 'keel';

/** {@link keyValues}, or nothing when the variable cannot be read: for a name only, where nothing is checked. */
export function tolerantKeyValues(env: Readonly<Record<string, string | undefined>>, variable: string): Record<string, string> {
  try {
    return keyValues(env, variable);
  } catch {
    return {};
  }
}

/**
 * The exporter's URL and headers from `env` (the exporters themselves read only `process.env`):
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else `OTEL_EXPORTER_OTLP_ENDPOINT` plus
 * `/v1/traces`; the general and the traces headers; the traces or the general timeout (ms, each
 * export with its retries).
 */
export function exporterConfig(env: Readonly<Record<string, string | undefined>>): { url?: string; headers?: Record<string, string>; timeoutMillis?: number } {
  const config: { url?: string; headers?: Record<string, string>; timeoutMillis?: number } = {};
  const traces = env['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT']?.trim();
  const base = env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim();
  const url = traces || (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  if (url !== undefined) {
    if (!/^https?:$/.test(URL.parse(url)?.protocol ?? '')) {
      const variable = traces ? 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `${variable} is "${traces || base}", which is not an http(s) URL; set it to the receiver's, such as http://localhost:4318.`,
      );
    }
    config.url = url;
  }
  const headers = { ...keyValues(env, 'OTEL_EXPORTER_OTLP_HEADERS'), ...keyValues(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS') };
  if (Object.keys(headers).length > 0) config.headers = headers;
  const timeoutVariable = ['OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 'OTEL_EXPORTER_OTLP_TIMEOUT'].find((name) => env[name]?.trim());
  if (timeoutVariable !== undefined) config.timeoutMillis = positiveInteger(env, timeoutVariable);
  return config;
}

/** A `key1=value1,key2=value2` variable (values percent-decoded), as the OTel variables write lists. */
export function keyValues(env: Readonly<Record<string, string | undefined>>, variable: string): Record<string, string> {
  const pairs: Record<string, string> = {};
  for (const item of (env[variable] ?? '').split(',')) {
    if (item.trim() === '') continue;
    const at = item.indexOf('=');
    if (at <= 0) throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} has "${item.trim()}", which is not key=value; write it as key1=value1,key2=value2.`);
    try {
      pairs[item.slice(0, at).trim()] = decodeURIComponent(item.slice(at + 1).trim());
    } catch {
      throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} has "${item.trim()}", whose value is not percent-encoded correctly.`);
    }
  }
  return pairs;
}

/** The longest delay a timer takes (2^31-1 ms, about 24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const BATCH_VARIABLES = {
  OTEL_BSP_SCHEDULE_DELAY: 'scheduledDelayMillis',
  OTEL_BSP_EXPORT_TIMEOUT: 'exportTimeoutMillis',
  OTEL_BSP_MAX_QUEUE_SIZE: 'maxQueueSize',
  OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 'maxExportBatchSize',
} as const;

/** The batch span processor's options from `OTEL_BSP_*`; a value that is not a positive whole number is named. */
export function batchOptions(env: Readonly<Record<string, string | undefined>>): Record<string, number> {
  const options: Record<string, number> = {};
  for (const [variable, field] of Object.entries(BATCH_VARIABLES)) {
    const raw = env[variable]?.trim();
    if (raw === undefined || raw === '') continue;
    options[field] = positiveInteger(env, variable);
  }
  return options;
}

/** A variable that is set, as a positive whole number; another value is named. */
function positiveInteger(env: Readonly<Record<string, string | undefined>>, variable: string): number {
  const raw = env[variable]?.trim() ?? '';
  const value = Number(raw);
  if (raw === '' || !Number.isInteger(value) || value <= 0) {
    throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} is "${raw}"; set it to a positive whole number, or unset it.`);
  }
  return value;
}

/**
 * A boolean variable: `true` or `false` (any case), else `fallback` when it is unset or empty.
 * Another value is refused, naming the variable, rather than read as one or the other.
 */
export function booleanVariable(env: Readonly<Record<string, string | undefined>>, variable: string, fallback: boolean): boolean {
  const value = env[variable]?.trim();
  if (!value) return fallback;
  const lower = value.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  throw new KeelError(KeelErrorCode.INVALID_CONFIG, `${variable} is "${value}"; set it to true or false, or unset it.`);
}
