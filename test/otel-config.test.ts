/**
 * `keel/otel`: the SDK started from the standard variables. Spans go to a real OTLP/HTTP
 * receiver, in both protocols; a value keel cannot use is refused naming its variable.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type Kernel } from 'keel';
import { startTracing } from 'keel/otel';
import { keelTracer, logFields, newTraceparent, tracingRequested } from 'keel/transport';
import { neverSamplesUnderUnsampled, samplerFromEnv } from '../adapters/otel/sampler.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: { say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }) },
});
const echoModule = defineModule({ contract: echo, create: () => ({ handlers: { say: ({ text }) => ({ text }) } }) });
/** The log fields the logging echo's handler saw last. */
let echoed: Record<string, unknown> = {};
const loggingEchoModule = defineModule({
  contract: echo,
  create: () => ({
    handlers: {
      say: ({ text }) => {
        echoed = logFields();
        return { text };
      },
    },
  }),
});

describe('otel - which variables switch tracing on', () => {
  it('otel - an OTLP endpoint or an exporter name asks for traces; OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none do not', () => {
    expect(tracingRequested({})).toBe(false);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(true);
    expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:4318/v1/traces' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
    expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(false);
    expect(tracingRequested({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' })).toBe(false);
  });

  it('otel - a protocol, exporter or sampler keel cannot use is refused with INVALID_CONFIG naming the variable, and tracing stays off', () => {
    expect(() => startTracing({ env: { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' } })).toThrow(/OTEL_EXPORTER_OTLP_PROTOCOL is "grpc".*http\/protobuf or http\/json/);
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'zipkin' } })).toThrow(/OTEL_TRACES_EXPORTER is "zipkin"/);
    expect(() => startTracing({ env: { OTEL_TRACES_SAMPLER: 'sometimes' } })).toThrow(/OTEL_TRACES_SAMPLER is "sometimes"/);
    expect(() => startTracing({ env: { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '2' } })).toThrow(/OTEL_TRACES_SAMPLER_ARG is "2"/);
    expect(() => startTracing({ env: { OTEL_BSP_SCHEDULE_DELAY: 'soon' } })).toThrow(/OTEL_BSP_SCHEDULE_DELAY is "soon"/);
    expect(() => startTracing({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' } })).toThrow(/OTEL_EXPORTER_OTLP_ENDPOINT is "collector:4318", which is not an http\(s\) URL/);
    expect(() => startTracing({ env: { OTEL_RESOURCE_ATTRIBUTES: 'team' } })).toThrow(/OTEL_RESOURCE_ATTRIBUTES has "team", which is not key=value/);
    // keel's own boolean is true or false, in any case: "0" or "no" left in-process spans on without a word.
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'none', KEEL_TRACE_IN_PROCESS: '0' } })).toThrow('KEEL_TRACE_IN_PROCESS is "0"; set it to true or false, or unset it.');
    expect(keelTracer()).toBeUndefined();
  });

  it("otel - OTEL_SDK_DISABLED other than true or false is read as false, as the specification says, with a warning naming it", async () => {
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (_fields: object, message: string) => void warnings.push(message), child: () => logger };
    const tracing = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none', OTEL_SDK_DISABLED: '1' }, logger });
    try {
      expect(tracing.exporter).toBe('none');
      expect(keelTracer()).toBeDefined();
      expect(warnings).toContain('OTEL_SDK_DISABLED is "1", read as false: set it to true or false');
    } finally {
      await tracing.shutdown();
    }
  });

  it('otel - startTracing checks its options once: a misspelt option, a serviceName that is no string, a logger without the Logger methods, naming the field', () => {
    // A misspelt option was ignored; a logger without child() threw a TypeError.
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' }, sampleRatio: 0.5 } as never)).toThrow(
      'startTracing: unknown option "sampleRatio" (it takes serviceName, env, logger, shutdownTimeoutMs).',
    );
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' }, serviceName: 5 } as never)).toThrow('startTracing: serviceName must be a string, got 5.');
    expect(() => startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' }, logger: {} } as never)).toThrow(/^startTracing: logger must be a Logger \(debug, info, warn, error, child\)/);
    expect(() => startTracing({ env: 'OTEL_TRACES_EXPORTER=none' } as never)).toThrow('startTracing: env must be an object of environment variables, such as process.env, got "OTEL_TRACES_EXPORTER=none".');
    expect(keelTracer()).toBeUndefined();
  });

  it('otel - service.name is OTEL_SERVICE_NAME, then OTEL_RESOURCE_ATTRIBUTES\'s, then KEEL_PROCESS_NAME, then the option, then keel', async () => {
    const nameOf = async (env: Record<string, string>, serviceName?: string): Promise<string> => {
      const tracing = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none', ...env }, serviceName });
      await tracing.shutdown();
      return tracing.serviceName;
    };
    const all = { OTEL_SERVICE_NAME: 'from-service-name', OTEL_RESOURCE_ATTRIBUTES: 'team=a,service.name=from-attributes', KEEL_PROCESS_NAME: 'from-process' };
    expect(await nameOf(all, 'from-option')).toBe('from-service-name');
    expect(await nameOf({ ...all, OTEL_SERVICE_NAME: ' ' }, 'from-option')).toBe('from-attributes');
    expect(await nameOf({ KEEL_PROCESS_NAME: 'from-process', OTEL_RESOURCE_ATTRIBUTES: 'team=a' }, 'from-option')).toBe('from-process');
    expect(await nameOf({ OTEL_RESOURCE_ATTRIBUTES: 'team=a' }, 'from-option')).toBe('from-option');
    expect(await nameOf({})).toBe('keel');
  });

  it('otel - OTEL_SDK_DISABLED=true makes startTracing start nothing: exporter none, keel\'s spans stay off, nothing is checked', async () => {
    const tracing = startTracing({ env: { OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_TRACES_SAMPLER: 'sometimes' }, serviceName: 'off' });
    expect(tracing.exporter).toBe('none');
    expect(tracing.serviceName).toBe('off');
    expect(keelTracer()).toBeUndefined();
    await tracing.shutdown();
    // It holds nothing: tracing can start after it without a shutdown first.
    const started = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' } });
    expect(keelTracer()).toBeDefined();
    await started.shutdown();
    expect(keelTracer()).toBeUndefined();
  });

  it('otel - OTEL_TRACES_SAMPLER names the spec samplers, with OTEL_TRACES_SAMPLER_ARG as the ratio', () => {
    expect(samplerFromEnv({}).toString()).toMatch(/ParentBased\{root=AlwaysOnSampler/);
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'always_off' }).toString()).toBe('AlwaysOffSampler');
    expect(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' }).toString()).toMatch(/TraceIdRatioBased\{0.25\}/);
  });

  it('otel - keel makes no span under a parent not sampled only for always_off and the parentbased_* samplers, which never sample there', () => {
    const keeps = (name: string) => neverSamplesUnderUnsampled(samplerFromEnv({ OTEL_TRACES_SAMPLER: name }));
    expect(['always_off', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'].filter(keeps)).toHaveLength(4);
    // always_on samples under any parent; traceidratio decides by trace id, whatever a remote parent's flag says.
    expect(['always_on', 'traceidratio'].filter(keeps)).toEqual([]);
  });

  it('otel - startTracing with a parentbased sampler makes no span under a traceparent not sampled: the handler logs the caller\'s ids; with always_on, a span of its own', async () => {
    const traceparent = `${newTraceparent().slice(0, 53)}00`;
    const spanIdSeen = async (sampler: string): Promise<unknown> => {
      const tracing = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none', OTEL_TRACES_SAMPLER: sampler } });
      const kernel = createKernel({ modules: [loggingEchoModule], logger: silentLogger });
      try {
        await kernel.start();
        await kernel.client(echo).say({ text: sampler }, { traceparent });
        expect(echoed['trace_id']).toBe(traceparent.slice(3, 35));
        return echoed['span_id'];
      } finally {
        await kernel.stop();
        await tracing.shutdown();
      }
    };
    expect(await spanIdSeen('parentbased_traceidratio')).toBe(traceparent.slice(36, 52));
    expect(await spanIdSeen('always_on')).not.toBe(traceparent.slice(36, 52));
  });
});

describe('otel - a keel up replica, with the OTLP headers variables', () => {
  it("otel - a replica's spans carry its group's service.name and its own service.instance.id; OTEL_EXPORTER_OTLP_TRACES_HEADERS reaches the collector over OTEL_EXPORTER_OTLP_HEADERS", async () => {
    const receiver = await startOtlpReceiver();
    let shutdown: (() => Promise<void>) | undefined;
    const kernel = createKernel({ modules: [echoModule], logger: silentLogger });
    try {
      const tracing = startTracing({
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=general,x-team=shop',
          OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-api-key=for-traces',
          OTEL_BSP_SCHEDULE_DELAY: '50',
          KEEL_PROCESS_NAME: 'storefront#2',
        },
      });
      shutdown = () => tracing.shutdown();
      expect(tracing.serviceName).toBe('storefront');
      await kernel.start();
      await kernel.client(echo).say({ text: 'hi' });
      await kernel.stop();
      await shutdown();
      const spans = receiver.spans.filter((span) => span.name === 'echo/say');
      expect(spans).toHaveLength(2);
      for (const span of spans) {
        expect(span.serviceName).toBe('storefront');
        expect(span.resource['service.instance.id']).toBe('storefront#2');
      }
      expect(receiver.requests.length).toBeGreaterThan(0);
      expect(receiver.requests.map((request) => request.apiKey)).toEqual(receiver.requests.map(() => 'for-traces'));
    } finally {
      await kernel.stop();
      await shutdown?.();
      await receiver.close();
    }
  });

  it('otel - a grpc protocol is refused naming the variable it was read from', () => {
    expect(() => startTracing({ env: { OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' } })).toThrow(
      /^OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is "grpc"/,
    );
    expect(keelTracer()).toBeUndefined();
  });
});

for (const protocol of ['http/json', 'http/protobuf'] as const) {
  describe(`otel - spans exported over ${protocol}`, () => {
    let receiver: OtlpReceiver;
    let kernel: Kernel;
    let shutdown: () => Promise<void>;

    beforeAll(async () => {
      receiver = await startOtlpReceiver();
      const tracing = startTracing({
        serviceName: 'fallback-name',
        env: {
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_SERVICE_NAME: `echo-${protocol.replace('/', '-')}`,
          OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test',
          OTEL_BSP_SCHEDULE_DELAY: '50',
        },
      });
      expect(tracing.exporter).toBe(`otlp ${protocol}`);
      shutdown = () => tracing.shutdown();
      kernel = createKernel({ modules: [echoModule], logger: silentLogger });
      await kernel.start();
    });
    afterAll(async () => {
      await kernel?.stop();
      await shutdown?.();
      await receiver?.close();
    });

    it(`otel - a call's client and server spans reach the receiver under OTEL_SERVICE_NAME with OTEL_RESOURCE_ATTRIBUTES; shutdown sends what is buffered and switches keel's spans off`, async () => {
      await kernel.client(echo).say({ text: 'hi' });
      await shutdown();
      expect(keelTracer()).toBeUndefined();
      const spans = receiver.spans.filter((span) => span.name === 'echo/say');
      expect(spans.map((span) => span.kind).sort()).toEqual(['client', 'server']);
      for (const span of spans) {
        expect(span.serviceName).toBe(`echo-${protocol.replace('/', '-')}`);
        expect(span.resource['deployment.environment.name']).toBe('test');
        // The SDK's default resource is merged in.
        expect(span.resource['telemetry.sdk.language']).toBe('nodejs');
        expect(span.resource['telemetry.sdk.name']).toBe('opentelemetry');
        expect(typeof span.resource['telemetry.sdk.version']).toBe('string');
        expect(span.protocol).toBe(protocol === 'http/json' ? 'json' : 'protobuf');
        expect(span.scope.name).toBe('keel');
      }
    });
  });
}
