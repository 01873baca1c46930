/**
 * Metrics read from `kernel.status()` when a registry is read, never per call: each hosted
 * module's bulkhead and database, and each dependency's circuit breaker and retry budget. Several kernels of one process may
 * share a registry; their figures are summed by module or dependency (a breaker's state and a
 * database's are the worst of them).
 */
import type { Kernel } from 'keel';
import { Counter, Gauge, type Registry } from 'prom-client';

type KernelStatus = ReturnType<Kernel['status']>;
type StatusSource = () => KernelStatus;

/** `keel_circuit_state`'s values. */
const CIRCUIT_STATE = { closed: 0, open: 1, 'half-open': 2 } as const;
const STATE_OF = ['closed', 'open', 'half-open'] as const;
/** Which state wins when kernels of one process disagree: open, then half-open, then closed. */
const SEVERITY = { closed: 0, 'half-open': 1, open: 2 } as const;

/** The kernels each registry's state metrics read. */
const sources = new WeakMap<Registry, Set<StatusSource>>();

/**
 * Registers `source` with the registry's state metrics, made on first use. A metric of the
 * same name registered by someone else is left alone. Returns the unregistering function.
 */
export function collectKernelState(registry: Registry, source: StatusSource): () => void {
  let all = sources.get(registry);
  if (all === undefined) {
    const made = new Set<StatusSource>();
    all = made;
    sources.set(registry, made);
    registerMetrics(registry, () => [...made].map((read) => read()));
  }
  const registered = all;
  registered.add(source);
  return () => registered.delete(source);
}

function registerMetrics(registry: Registry, statuses: () => KernelStatus[]): void {
  const byModule = (field: 'running' | 'queued' | 'rejected'): Map<string, number> => {
    const totals = new Map<string, number>();
    for (const status of statuses()) for (const bulkhead of status.bulkheads) totals.set(bulkhead.module, (totals.get(bulkhead.module) ?? 0) + bulkhead[field]);
    return totals;
  };
  const circuits = (): Map<string, { state: number; opened: number; retriesRefused: number }> => {
    const totals = new Map<string, { state: number; opened: number; retriesRefused: number }>();
    for (const status of statuses()) {
      for (const circuit of status.circuits) {
        const seen = totals.get(circuit.dependency) ?? { state: 0, opened: 0, retriesRefused: 0 };
        const worse = SEVERITY[circuit.state] > SEVERITY[STATE_OF[seen.state] ?? 'closed'] ? CIRCUIT_STATE[circuit.state] : seen.state;
        totals.set(circuit.dependency, { state: worse, opened: seen.opened + circuit.opened, retriesRefused: seen.retriesRefused + circuit.retriesRefused });
      }
    }
    return totals;
  };
  const databases = (field: 'up' | 'downs'): Map<string, number> => {
    const totals = new Map<string, number>();
    for (const status of statuses()) {
      for (const database of status.databases) {
        const value = field === 'up' ? (database.state === 'up' ? 1 : 0) : database.downs;
        const seen = totals.get(database.module);
        // One kernel's database down is down: the worst of them, and the downs of all.
        totals.set(database.module, seen === undefined ? value : field === 'up' ? Math.min(seen, value) : seen + value);
      }
    }
    return totals;
  };
  const gauge = (name: string, help: string, labelName: string, read: () => Map<string, number>): void => {
    if (registry.getSingleMetric(name) !== undefined) return;
    new Gauge({
      name,
      help,
      labelNames: [labelName],
      registers: [registry],
      collect() {
        this.reset();
        for (const [label, value] of read()) this.set({ [labelName]: label }, value);
      },
    });
  };
  const counter = (name: string, help: string, labelName: string, read: () => Map<string, number>): void => {
    if (registry.getSingleMetric(name) !== undefined) return;
    new Counter({
      name,
      help,
      labelNames: [labelName],
      registers: [registry],
      collect() {
        this.reset();
        for (const [label, value] of read()) this.inc({ [labelName]: label }, value);
      },
    });
  };
  gauge('keel_bulkhead_running', 'Handler runs in progress, per module bulkhead.', 'module', () => byModule('running'));
  gauge('keel_bulkhead_queued', 'Calls waiting for a free slot, per module bulkhead.', 'module', () => byModule('queued'));
  counter(
    'keel_bulkhead_rejected_total',
    'Calls refused with RESOURCE_EXHAUSTED (concurrency limit reached and queue full), per module bulkhead.',
    'module',
    () => byModule('rejected'),
  );
  gauge(
    'keel_database_up',
    "Each hosted module's database: 1 when its last check (select 1, every databaseCheckMs) answered, 0 when it failed or got no answer in time.",
    'module',
    () => databases('up'),
  );
  counter('keel_database_down_total', "Times each hosted module's database went from up to down.", 'module', () => databases('downs'));
  const mapOf = (field: 'state' | 'opened' | 'retriesRefused') => () => new Map([...circuits()].map(([dependency, circuit]) => [dependency, circuit[field]]));
  gauge('keel_circuit_state', 'Circuit breaker of each dependency called from this process: 0 closed, 1 open, 2 half-open.', 'dependency', mapOf('state'));
  counter('keel_circuit_opened_total', 'Times the circuit breaker of each dependency opened.', 'dependency', mapOf('opened'));
  counter(
    'keel_retries_over_budget_total',
    'Retries and hedges to each dependency not sent because its retry budget was spent (0 without a budget).',
    'dependency',
    mapOf('retriesRefused'),
  );
}
