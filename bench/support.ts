/**
 * Benchmark helpers: timing loops, medians, the machine description, and the results file.
 * Benchmarks compare ratios measured in one run; absolute numbers on a shared box are noise.
 */
import { execFileSync } from 'node:child_process';
import { cpus, totalmem, type as osType, release } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** One measured case. */
export interface Measurement {
  readonly name: string;
  readonly opsPerSecond: number;
  /** Median latency of one operation in microseconds (sequential cases only). */
  readonly p50Micros?: number;
  readonly p99Micros?: number;
}

/** Runs `fn` sequentially `count` times; returns operations per second. */
export async function sequential(count: number, fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  for (let index = 0; index < count; index += 1) await fn();
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return count / elapsed;
}

/** Runs `fn` `count` times with `concurrency` calls in flight; returns operations per second. */
export async function concurrent(count: number, concurrency: number, fn: () => Promise<unknown>): Promise<number> {
  let remaining = count;
  const worker = async (): Promise<void> => {
    while (remaining > 0) {
      remaining -= 1;
      await fn();
    }
  };
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return count / elapsed;
}

/** Latency percentiles (microseconds) of `count` sequential calls. */
export async function latencies(count: number, fn: () => Promise<unknown>): Promise<{ p50: number; p99: number }> {
  const samples = new Float64Array(count);
  for (let index = 0; index < count; index += 1) {
    const started = process.hrtime.bigint();
    await fn();
    samples[index] = Number(process.hrtime.bigint() - started) / 1e3;
  }
  samples.sort();
  return { p50: samples[Math.floor(count * 0.5)] ?? 0, p99: samples[Math.floor(count * 0.99)] ?? 0 };
}

/** The median of `rounds` runs of `measure` (after one discarded warm-up run). */
export async function median(rounds: number, measure: () => Promise<number>): Promise<number> {
  await measure();
  const values: number[] = [];
  for (let round = 0; round < rounds; round += 1) values.push(await measure());
  values.sort((a, b) => a - b);
  return values[Math.floor(values.length / 2)] ?? 0;
}

/** Named measurements, each returning operations per second. */
export type Cases = Record<string, () => Promise<number>>;

/**
 * Runs every case once per round, rotating the order, after one warm-up round (not kept), so a
 * noisy neighbour slows every case alike; returns each case's samples.
 */
export async function interleavedSamples<T>(rounds: number, cases: Record<string, () => Promise<T>>): Promise<Record<string, T[]>> {
  const names = Object.keys(cases);
  const samples: Record<string, T[]> = Object.fromEntries(names.map((name) => [name, []]));
  for (const name of names) await cases[name]!();
  for (let round = 0; round < rounds; round += 1) {
    for (let index = 0; index < names.length; index += 1) {
      const name = names[(index + round) % names.length]!;
      samples[name]!.push(await cases[name]!());
    }
  }
  return samples;
}

/** Runs every case once per round, rotating the order, after one warm-up round; returns medians. */
export async function interleaved(rounds: number, cases: Cases): Promise<Record<string, number>> {
  return mediansOf(await interleavedSamples(rounds, cases));
}

/** Each case's median over rounds ({@link medianOf}), from {@link interleavedSamples}. */
export function mediansOf(samples: Record<string, number[]>): Record<string, number> {
  return Object.fromEntries(Object.entries(samples).map(([name, values]) => [name, medianOf(values)]));
}

/** The median of `values` (0 for none). */
export function medianOf(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  // An even count: the mean of the two middle values, so two rounds do not pick the larger one.
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * The median over rounds of each round's `a / b`, from {@link interleavedSamples}: both ran in
 * every round (back to back with two cases; with more, the rotation puts others between them in
 * some rounds, so the ratio then carries more of the machine's drift within a round).
 */
export function roundRatio(samples: Record<string, number[]>, a: string, b: string): number {
  return medianOf(roundRatios(samples, a, b));
}

/** Each round's own `a / b`, in the order run (what {@link roundRatio} takes the median of). */
export function roundRatios(samples: Record<string, number[]>, a: string, b: string): number[] {
  const bs = samples[b] ?? [];
  return (samples[a] ?? []).map((value, round) => value / (bs[round] ?? Number.NaN));
}

/**
 * A ratio as the verdict beside it reads it: two decimals, more when two would print the target
 * itself on the other side of it (0.598 is "0.598×", not "0.60×", against a target of ≥ 0.6).
 *
 * @example
 * ```ts
 * `Target: ≥ 0.6× raw — ${met ? 'met' : 'NOT met'} (${versusTarget(ratio, 0.6)})`;
 * ```
 */
export function versusTarget(value: number, target: number): string {
  let digits = 2;
  while (digits < 5 && value !== target && Number(value.toFixed(digits)) === target) digits += 1;
  return `${value.toFixed(digits)}×`;
}

/** The installed version of package `name` (from node_modules), for the reports. */
export function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '(unknown version)';
  }
}

/**
 * Replaces the part of `path` between `begin` and `end` (markers included) with `section`, which
 * starts and ends with those markers; appends it when the file has no such part.
 */
export function replaceSection(path: string, begin: string, end: string, section: string): void {
  const current = readFileSync(path, 'utf8');
  const from = current.indexOf(begin);
  const to = current.indexOf(end);
  const next =
    from >= 0 && to > from
      ? `${current.slice(0, from)}${section.trimEnd()}${current.slice(to + end.length)}`
      : `${current.trimEnd()}\n\n${section.trimEnd()}\n`;
  write(path, next);
}

/** A one-line description of this machine. */
export function machine(): string {
  const cpu = cpus();
  return `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${osType()} ${release()}, Node ${process.version}`;
}

/** Formats operations per second. */
export function rate(opsPerSecond: number): string {
  if (opsPerSecond >= 1e6) return `${(opsPerSecond / 1e6).toFixed(2)} M/s`;
  if (opsPerSecond >= 1e3) return `${(opsPerSecond / 1e3).toFixed(1)} k/s`;
  return `${opsPerSecond.toFixed(0)} /s`;
}

/**
 * Builds the checkout of an earlier commit in `folder` (its node_modules linked to this tree's) into
 * its own `dist/`, with this tree's tsc: a benchmark compares keel's builds, the JavaScript
 * production runs, never sources through tsx against a build.
 */
export function buildCheckout(folder: string): void {
  const tsc = join(import.meta.dirname, '..', 'node_modules', '.bin', 'tsc');
  execFileSync(tsc, ['-p', 'tsconfig.build.json'], { cwd: folder, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 });
}

/** Writes `content` to `path`, creating folders. */
export function write(path: string, content: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
}
