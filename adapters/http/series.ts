/**
 * Metric recording for the gateway's hot path. prom-client's `inc` and `observe` validate and
 * hash their label object on every call, which cost the gateway more than the in-process call
 * it measured. Here each label set is resolved once to a series object and recording is
 * arithmetic on it; exposition stays prom-client's:
 *
 * - a {@link SeriesCounter} keeps its counts per series and adds them to a prom-client `Counter`
 *   when the registry is read (the counter's `collect` hook), so the text and JSON outputs are
 *   prom-client's own;
 * - a {@link SeriesHistogram} is registered in the prom-client registry as a metric of its own
 *   (name, help, type, aggregator, `get()`, `reset()`: what a registry reads from a metric) and
 *   reports exactly the values a prom-client `Histogram` fed the same observations reports.
 *
 * A metric of the same name already in the registry is reused: one made here keeps collecting
 * for every user; one made elsewhere is fed directly through prom-client's own API.
 */
import { Counter, type Histogram, type Metric, type MetricValueWithName, type Registry } from 'prom-client';

/** Label values of one series. */
export type SeriesLabels = Readonly<Record<string, string>>;

/** One label set of a {@link SeriesCounter}: increments wait here until the registry is read. */
export class CounterSeries {
  pending = 0;

  constructor(readonly labels: SeriesLabels) {}
}

/** What a counter made here asks of each of its users when the registry reads or resets it. */
interface CounterUser {
  /** Adds the pending counts to the prom-client counter. */
  handOver(): void;
  /** Drops the pending counts. */
  forget(): void;
}

/** Users of each counter made here (several kernels may share a registry, hence a counter). */
const counterUsers = new WeakMap<object, Set<CounterUser>>();

/** A prom-client counter made here: collecting it first hands over every user's pending counts. */
class CollectedCounter extends Counter<string> {
  /** Forgets counts not yet handed over, as prom-client's reset forgets the counted ones. */
  override reset(): void {
    for (const user of counterUsers.get(this) ?? []) user.forget();
    super.reset();
  }
}

function collectPending(this: Counter<string>): void {
  for (const user of counterUsers.get(this) ?? []) user.handOver();
}

/**
 * A counter whose hot path is `series.pending += 1`.
 *
 * @example
 * ```ts
 * const requests = new SeriesCounter(registry, 'http_requests_total', 'Requests.', ['route']);
 * const home = requests.series('/', () => ({ route: '/' }));
 * requests.inc(home); // per request
 * ```
 */
export class SeriesCounter {
  readonly #series = new Map<string, CounterSeries>();
  readonly #counter: Counter<string>;
  /** Set when the counter was made here; unset for one made elsewhere, which is incremented directly. */
  readonly #user: CounterUser | undefined;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[]) {
    const existing = registry.getSingleMetric(name) as Counter<string> | undefined;
    this.#counter =
      existing ?? new CollectedCounter({ name, help, labelNames: [...labelNames], registers: [registry], collect: collectPending });
    if (this.#counter instanceof CollectedCounter) {
      this.#user = { handOver: () => this.#handOver(), forget: () => this.#forget() };
      let users = counterUsers.get(this.#counter);
      if (users === undefined) {
        users = new Set();
        counterUsers.set(this.#counter, users);
      }
      users.add(this.#user);
    }
  }

  /** The series of one label set; `key` must identify the label values. */
  series(key: string, labels: () => SeriesLabels): CounterSeries {
    let series = this.#series.get(key);
    if (series === undefined) {
      series = new CounterSeries(labels());
      this.#series.set(key, series);
    }
    return series;
  }

  /** Counts one. */
  inc(series: CounterSeries): void {
    if (this.#user === undefined) this.#counter.inc(series.labels);
    else series.pending += 1;
  }

  /** Hands pending counts over and stops collecting for this user. */
  close(): void {
    if (this.#user === undefined) return;
    this.#handOver();
    counterUsers.get(this.#counter)?.delete(this.#user);
  }

  #handOver(): void {
    for (const series of this.#series.values()) {
      if (series.pending === 0) continue;
      this.#counter.inc(series.labels, series.pending);
      series.pending = 0;
    }
  }

  #forget(): void {
    for (const series of this.#series.values()) series.pending = 0;
  }
}

/** One label set of a {@link SeriesHistogram}: a count per bucket (not cumulative), the sum and the count. */
export class HistogramSeries {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: SeriesLabels,
    buckets: number,
  ) {
    this.counts = new Float64Array(buckets);
  }
}

/** What a prom-client histogram's `get()` returns (prom-client's typings declare `type` as a number; it is the string). */
interface HistogramValues {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly values: MetricValueWithName<string>[];
  readonly aggregator: 'sum';
}

/**
 * A histogram whose hot path is a bucket search and three additions, registered in a prom-client
 * registry. Observations above the last bucket count only in `+Inf`, as in prom-client.
 *
 * @example
 * ```ts
 * const latency = SeriesHistogram.in(registry, 'http_duration_seconds', 'Latency.', [0.01, 0.1, 1]);
 * const home = latency.series('/', () => ({ route: '/' }));
 * latency.observe(home, 0.004);
 * ```
 */
export class SeriesHistogram {
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #buckets: readonly number[];
  readonly #series = new Map<string, HistogramSeries>();
  /** A prom-client histogram made elsewhere under this name: observations go straight to it. */
  readonly #direct: Histogram<string> | undefined;

  private constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    direct: Histogram<string> | undefined,
  ) {
    this.#buckets = [...buckets].sort((a, b) => a - b);
    this.#direct = direct;
  }

  /**
   * The histogram named `name` in `registry`: the one made here earlier, a new one registered
   * now, or, when a histogram made elsewhere holds the name, one that feeds it directly.
   */
  static in(registry: Registry, name: string, help: string, buckets: readonly number[]): SeriesHistogram {
    const existing = registry.getSingleMetric(name) as unknown;
    if (existing instanceof SeriesHistogram) return existing;
    if (existing !== undefined) return new SeriesHistogram(name, help, buckets, existing as Histogram<string>);
    const histogram = new SeriesHistogram(name, help, buckets, undefined);
    // A registry reads a metric through name, help, type, aggregator, get() and reset().
    registry.registerMetric(histogram as unknown as Metric<string>);
    return histogram;
  }

  /** The series of one label set; `key` must identify the label values. */
  series(key: string, labels: () => SeriesLabels): HistogramSeries {
    let series = this.#series.get(key);
    if (series === undefined) {
      series = new HistogramSeries(labels(), this.#buckets.length);
      this.#series.set(key, series);
    }
    return series;
  }

  /** Records one observation (seconds). */
  observe(series: HistogramSeries, value: number): void {
    if (this.#direct !== undefined) {
      this.#direct.observe(series.labels, value);
      return;
    }
    if (!Number.isFinite(value)) return;
    const buckets = this.#buckets;
    let index = 0;
    while (index < buckets.length && value > (buckets[index] as number)) index += 1;
    if (index < buckets.length) series.counts[index] = (series.counts[index] as number) + 1;
    series.sum += value;
    series.count += 1;
  }

  /** What a prom-client `Histogram` reports: cumulative `_bucket` per `le`, `+Inf`, `_sum`, `_count`, per series. */
  async get(): Promise<HistogramValues> {
    const values: MetricValueWithName<string>[] = [];
    const bucketName = `${this.name}_bucket`;
    for (const series of this.#series.values()) {
      if (series.count === 0) continue;
      let cumulative = 0;
      for (let index = 0; index < this.#buckets.length; index += 1) {
        cumulative += series.counts[index] as number;
        values.push({ labels: { le: this.#buckets[index] as number, ...series.labels }, value: cumulative, metricName: bucketName });
      }
      values.push({ labels: { le: '+Inf', ...series.labels }, value: series.count, metricName: bucketName });
      values.push({ labels: { ...series.labels }, value: series.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...series.labels }, value: series.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** Forgets every observation, as prom-client's `reset`. */
  reset(): void {
    for (const series of this.#series.values()) {
      series.counts.fill(0);
      series.sum = 0;
      series.count = 0;
    }
  }
}

type Level = Map<unknown, unknown>;

/**
 * Values cached under five keys, found through nested Maps. The names a kernel reports (module,
 * operation, transport, caller) are the same string objects call after call and keep their hash,
 * so a lookup builds no key string. Unused trailing keys are `''`. The last value found is kept
 * with its keys: a run of the same record (one route under load) costs five comparisons, not
 * five Map lookups.
 *
 * @example
 * ```ts
 * const series = new SeriesCache<CounterSeries>();
 * const found = series.get('POST', '/pricing/quote', 200, '', '') ?? series.set(make(), 'POST', '/pricing/quote', 200, '', '');
 * ```
 */
export class SeriesCache<T> {
  readonly #root: Level = new Map();
  #a: unknown;
  #b: unknown;
  #c: unknown;
  #d: unknown;
  #e: unknown;
  #last: T | undefined;

  get(a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): T | undefined {
    if (this.#last !== undefined && a === this.#a && b === this.#b && c === this.#c && d === this.#d && e === this.#e) return this.#last;
    const one = this.#root.get(a) as Level | undefined;
    const two = one?.get(b) as Level | undefined;
    const three = two?.get(c) as Level | undefined;
    const four = three?.get(d) as Level | undefined;
    const found = four?.get(e) as T | undefined;
    if (found !== undefined) this.#remember(found, a, b, c, d, e);
    return found;
  }

  set(value: T, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): T {
    let level = this.#root;
    for (const key of [a, b, c, d]) {
      let next = level.get(key) as Level | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(key, next);
      }
      level = next;
    }
    level.set(e, value);
    this.#remember(value, a, b, c, d, e);
    return value;
  }

  #remember(value: T, a: unknown, b: unknown, c: unknown, d: unknown, e: unknown): void {
    this.#last = value;
    this.#a = a;
    this.#b = b;
    this.#c = c;
    this.#d = d;
    this.#e = e;
  }
}

/**
 * Bounds the values a label takes where they come from a sender (a NATS request's `Keel-Caller`
 * header, a remote answer's error code), so that a sender making up a new value per request
 * cannot grow the registry without end: a value known in advance, or admitted before, is itself;
 * up to `room` others are admitted as they come; past that, and for a value longer than
 * {@link BoundedLabel.MAX_LENGTH}, {@link BoundedLabel.OTHER}. Asked when no series is found for
 * a record: once per admitted value, and on each record of a value past the bound (a sender
 * making values up pays for the lookups it causes).
 *
 * @example
 * ```ts
 * const callers = new BoundedLabel(['orders', 'http'], 64);
 * callers.of('orders'); // 'orders'
 * callers.of('x'.repeat(100)); // '_other'
 * ```
 */
export class BoundedLabel {
  /**
   * The overflow's value. Its leading underscore is what no module name (`^[a-z]...`), no code of
   * the closed map and no declared error's code can start with, so a module or an error named
   * `other` keeps a series of its own (as the gateway's unparsed method is `_OTHER`).
   */
  static readonly OTHER = '_other';
  static readonly MAX_LENGTH = 64;
  readonly #admitted: Set<string>;
  #room: number;

  constructor(known: Iterable<string>, room: number) {
    this.#admitted = new Set(known);
    this.#room = room;
  }

  of(value: string): string {
    if (this.#admitted.has(value)) return value;
    // The overflow's own name, sent as a value (a Keel-Caller header), is the overflow: it takes no room.
    if (value === BoundedLabel.OTHER) return value;
    if (this.#room === 0 || value.length > BoundedLabel.MAX_LENGTH) return BoundedLabel.OTHER;
    this.#room -= 1;
    this.#admitted.add(value);
    return value;
  }
}
