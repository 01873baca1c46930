/**
 * The sampler `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` name, as the OpenTelemetry
 * specification defines them (the JS SDK 3 no longer reads them itself).
 */
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace';
import { KeelError, KeelErrorCode } from 'keel';

const NAMES = ['always_on', 'always_off', 'traceidratio', 'parentbased_always_on', 'parentbased_always_off', 'parentbased_traceidratio'];

/**
 * The sampler the variables name; default `parentbased_always_on`.
 *
 * @throws KeelError `INVALID_CONFIG` naming the variable with a value it cannot take.
 * @example
 * ```ts
 * samplerFromEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio', OTEL_TRACES_SAMPLER_ARG: '0.25' });
 * ```
 */
export function samplerFromEnv(env: Readonly<Record<string, string | undefined>>): Sampler {
  const name = (env['OTEL_TRACES_SAMPLER']?.trim() || 'parentbased_always_on').toLowerCase();
  const ratio = (): number => {
    const raw = env['OTEL_TRACES_SAMPLER_ARG']?.trim();
    if (raw === undefined || raw === '') return 1;
    const value = Number(raw);
    if (!(value >= 0 && value <= 1)) {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `OTEL_TRACES_SAMPLER_ARG is "${raw}"; for ${name} set it to a ratio from 0 to 1 (such as 0.1), or unset it for 1.`,
      );
    }
    return value;
  };
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio());
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio()) });
    default:
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `OTEL_TRACES_SAMPLER is "${name}", which keel does not know; set it to one of ${NAMES.join(', ')}, or unset it.`,
      );
  }
}

/**
 * True when `sampler`, made by {@link samplerFromEnv}, never samples a span whose parent, local
 * or remote, is not sampled: `always_off`, and the `parentbased_*` samplers (made with their
 * default delegates for such parents: always off). A `ParentBasedSampler` made elsewhere may
 * have other delegates: this answers for {@link samplerFromEnv}'s only.
 *
 * @example
 * ```ts
 * neverSamplesUnderUnsampled(samplerFromEnv({ OTEL_TRACES_SAMPLER: 'parentbased_traceidratio' })); // true
 * ```
 */
export function neverSamplesUnderUnsampled(sampler: Sampler): boolean {
  return sampler instanceof AlwaysOffSampler || sampler instanceof ParentBasedSampler;
}
