/**
 * `keel/otel`'s lifecycle: one SDK a process at a time, a shutdown bounded in time when the
 * collector does not answer, and export failures logged (rate-limited) through keel's logger.
 * Real sockets throughout: a server that accepts and never answers, a port nothing listens on.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { trace } from '@opentelemetry/api';
import { globalErrorHandler } from '@opentelemetry/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { KeelErrorCode, type Logger } from 'keel';
import { EXPORT_FAILURE_MESSAGES_KEPT, startTracing, type Tracing } from 'keel/otel';
import { createLogger, keelTracer } from 'keel/transport';
import { refusedPorts } from './support/refused-ports.js';

/** A JSON logger whose lines a test reads. */
function capturedLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  let output = '';
  const logger = createLogger({ level: 'debug', format: 'json', destination: { write: (text) => (output += text) } });
  return { logger, lines: () => output.split('\n').filter((line) => line !== '').map((line) => JSON.parse(line) as Record<string, unknown>) };
}

/** Ends one span of keel's tracer (tracing must be on). */
function endOneSpan(name: string): void {
  const tracer = keelTracer();
  if (tracer === undefined) throw new Error('tracing is off');
  tracer.startSpan(name).end();
}

let tracing: Tracing | undefined;
afterEach(async () => {
  await tracing?.shutdown();
  tracing = undefined;
});

describe('otel - one SDK a process at a time', () => {
  it('otel - a second startTracing while the first runs throws INVALID_CONFIG saying to call shutdown() first; after shutdown it starts again', async () => {
    tracing = startTracing({ serviceName: 'first', env: { OTEL_TRACES_EXPORTER: 'none' } });
    const first = keelTracer();
    expect(first).toBeDefined();
    let thrown: unknown;
    try {
      startTracing({ serviceName: 'second', env: { OTEL_TRACES_EXPORTER: 'none' } });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toMatchObject({ code: KeelErrorCode.INVALID_CONFIG });
    expect((thrown as Error).message).toMatch(/already started.*"first".*call shutdown\(\)/);
    // The first one is untouched.
    expect(keelTracer()).toBe(first);
    await tracing.shutdown();
    expect(keelTracer()).toBeUndefined();

    tracing = startTracing({ serviceName: 'again', env: { OTEL_TRACES_EXPORTER: 'none' } });
    expect(tracing.serviceName).toBe('again');
    expect(keelTracer()).toBeDefined();
    // The new provider is OTel's global one: the first's registration was removed at its shutdown.
    expect(trace.getTracer('probe').startSpan('probe').isRecording()).toBe(true);
  });

  it('otel - a shutdown bound a timer cannot hold (Infinity, above 2^31-1 ms) is INVALID_CONFIG naming its field', () => {
    const refusal = (start: () => unknown): unknown => {
      try {
        tracing = start() as Tracing;
      } catch (error) {
        return error;
      }
      throw new Error('accepted');
    };
    for (const shutdownTimeoutMs of [Number.POSITIVE_INFINITY, 2 ** 31, Number.NaN]) {
      const refused = refusal(() => startTracing({ shutdownTimeoutMs, env: { OTEL_TRACES_EXPORTER: 'none' } }));
      expect(refused).toMatchObject({ code: KeelErrorCode.INVALID_CONFIG, message: expect.stringMatching(/^shutdownTimeoutMs is .*at most 2147483647/) });
    }
    const fromEnv = refusal(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'none', OTEL_BSP_EXPORT_TIMEOUT: String(2 ** 31) } }));
    expect(fromEnv).toMatchObject({ code: KeelErrorCode.INVALID_CONFIG, message: expect.stringMatching(/^OTEL_BSP_EXPORT_TIMEOUT is 2147483648; .*at most 2147483647/) });
    // The largest bound a timer holds is taken.
    tracing = startTracing({ shutdownTimeoutMs: 2 ** 31 - 1, env: { OTEL_TRACES_EXPORTER: 'none' } });
    expect(keelTracer()).toBeDefined();
  });

  it('otel - a start refused for its configuration leaves tracing startable', async () => {
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'zipkin' } })).toThrow(/OTEL_TRACES_EXPORTER/);
    tracing = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' } });
    expect(keelTracer()).toBeDefined();
  });
});

describe('otel - shutdown with a collector that never answers', () => {
  let silent: Server | undefined;
  afterEach(async () => {
    silent?.closeAllConnections();
    await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
    silent = undefined;
  });

  it('otel - shutdown resolves within its bound, logs a JSON warning, and keel\'s and OTel\'s spans are off afterwards', async () => {
    // Accepts the connection and reads the request, never answers.
    const requests: string[] = [];
    silent = createServer((request) => void requests.push(request.url ?? ''));
    await new Promise<void>((resolve) => silent?.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const { logger, lines } = capturedLogger();
    tracing = startTracing({
      serviceName: 'stuck',
      logger,
      shutdownTimeoutMs: 300,
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
    });
    endOneSpan('buffered');
    const started = performance.now();
    await tracing.shutdown();
    const elapsed = performance.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(250);
    // Bounded: without the bound the exporter's own timeout (10 s) would end it.
    expect(elapsed).toBeLessThan(8_000);
    // The export did reach the server: it is the answer that never came. (A stall on a loaded machine can let the
    // 300 ms pass before this process's server has read the request it was sent: waited for, not assumed read.)
    await vi.waitFor(() => expect(requests).toEqual(['/v1/traces']), { timeout: 10_000, interval: 20 });
    const warnings = lines().filter((line) => line['level'] === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.['msg']).toMatch(/not sent within 300 ms/);
    expect(warnings[0]?.['component']).toBe('otel');
    expect(keelTracer()).toBeUndefined();
    expect(trace.getTracer('probe').startSpan('probe').isRecording()).toBe(false);
    // And the process can trace again.
    tracing = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' } });
    expect(keelTracer()).toBeDefined();
  });

  it('otel - OTEL_BSP_EXPORT_TIMEOUT bounds the shutdown when no option does', async () => {
    silent = createServer(() => {});
    await new Promise<void>((resolve) => silent?.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const { logger, lines } = capturedLogger();
    tracing = startTracing({ logger, env: { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_BSP_EXPORT_TIMEOUT: '300' } });
    endOneSpan('buffered');
    const started = performance.now();
    await tracing.shutdown();
    expect(performance.now() - started).toBeLessThan(8_000);
    const warnings = lines().filter((line) => line['level'] === 40);
    expect(warnings).toHaveLength(1);
    // The bound is the variable's 300 ms, not keel's default.
    expect(warnings[0]?.['msg']).toMatch(/300 ms/);
    expect(keelTracer()).toBeUndefined();
  });
});

describe('otel - export failures', () => {
  it('otel - a failed export is logged as a JSON warning naming the failure; the same failure at most once per 30 s, then with how often it repeated', async () => {
    const [port] = await refusedPorts(1);
    const { logger, lines } = capturedLogger();
    tracing = startTracing({
      logger,
      // One attempt (the exporter's first retry would come after 1 s), exported 50 ms after the span ends.
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${port}`, OTEL_EXPORTER_OTLP_TIMEOUT: '500', OTEL_BSP_SCHEDULE_DELAY: '50' },
    });
    const warnings = (): Record<string, unknown>[] => lines().filter((line) => line['level'] === 40);
    endOneSpan('lost');
    await vi.waitFor(() => expect(warnings()).toHaveLength(1), { timeout: 10_000, interval: 20 });
    const [first] = warnings();
    expect(first?.['msg']).toMatch(/^tracing: .*ECONNREFUSED/);
    expect(first?.['component']).toBe('otel');
    expect(first?.['err']).toBeDefined();

    // The handler the SDK reports to is keel's: the same failure again within 30 s is counted, not logged.
    const again = new Error(String((first?.['err'] as { message: string }).message));
    const now = Date.now();
    vi.useFakeTimers({ toFake: ['Date'], now });
    try {
      globalErrorHandler(again);
      globalErrorHandler(again);
      expect(warnings()).toHaveLength(1);
      globalErrorHandler(new Error('another failure'));
      expect(warnings()).toHaveLength(2);
      vi.setSystemTime(now + 30_001);
      globalErrorHandler(again);
      expect(warnings()).toHaveLength(3);
      expect(warnings()[2]?.['msg']).toBe(first?.['msg']);
      expect(warnings()[2]?.['repeated']).toBe(2);
    } finally {
      vi.useRealTimers();
    }
  });

  it(`otel - export failures with ever new messages are remembered up to ${EXPORT_FAILURE_MESSAGES_KEPT}: the one logged longest ago is forgotten and logged again, the others stay held back`, () => {
    const { logger, lines } = capturedLogger();
    tracing = startTracing({ logger, env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_BSP_SCHEDULE_DELAY: '60000' } });
    const warnings = (): Record<string, unknown>[] => lines().filter((line) => line['level'] === 40);
    const now = Date.now();
    vi.useFakeTimers({ toFake: ['Date'], now });
    try {
      // The limit's worth of distinct failures, then one more: the first is forgotten.
      for (let index = 0; index <= EXPORT_FAILURE_MESSAGES_KEPT; index += 1) globalErrorHandler(new Error(`failure ${index}`));
      expect(warnings()).toHaveLength(EXPORT_FAILURE_MESSAGES_KEPT + 1);
      globalErrorHandler(new Error('failure 2')); // remembered: held back
      expect(warnings()).toHaveLength(EXPORT_FAILURE_MESSAGES_KEPT + 1);
      globalErrorHandler(new Error('failure 0')); // forgotten: logged again, within the 30 s
      expect(warnings()).toHaveLength(EXPORT_FAILURE_MESSAGES_KEPT + 2);
      expect(warnings().at(-1)?.['msg']).toMatch(/^tracing: failure 0 /);
      // Logging "failure 0" again made room by forgetting "failure 1", the oldest left.
      globalErrorHandler(new Error('failure 1'));
      expect(warnings()).toHaveLength(EXPORT_FAILURE_MESSAGES_KEPT + 3);
      globalErrorHandler(new Error('failure 3'));
      expect(warnings()).toHaveLength(EXPORT_FAILURE_MESSAGES_KEPT + 3);
    } finally {
      vi.useRealTimers();
    }
  });
});
