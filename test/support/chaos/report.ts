/**
 * The chaos suite's figures as Markdown, and their place in docs/resilience.md: between
 * `<!-- chaos:begin -->` and `<!-- chaos:end -->`, rewritten only when KEEL_CHAOS_WRITE=1 (so a
 * normal run leaves the tree clean).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FrozenInstanceOptions, FrozenInstanceReport } from './frozen-instance.js';
import type { ClusterNodeOptions } from './cluster-node.js';
import type { KilledInstanceOptions, KilledInstanceReport } from './killed-instance.js';
import type { NatsOutageOptions, NatsOutageReport } from './nats-outage.js';

const DOC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'docs', 'resilience.md');
const BEGIN = '<!-- chaos:begin -->';
const END = '<!-- chaos:end -->';

/** Everything one run measured. */
export interface ChaosFigures {
  readonly frozen?: { readonly options: FrozenInstanceOptions; readonly report: FrozenInstanceReport };
  readonly killed?: { readonly options: KilledInstanceOptions; readonly report: KilledInstanceReport };
  readonly natsRestart?: { readonly options: NatsOutageOptions; readonly report: NatsOutageReport };
  readonly clusterNode?: { readonly options: ClusterNodeOptions; readonly report: NatsOutageReport };
  /** The whole run, shop start and stop included. */
  readonly totalMs: number;
  readonly postgres: string;
}

const ms = (value: number): string => (Number.isNaN(value) ? '–' : `${Math.round(value)} ms`);
const pct = (value: number): string => `${(value * 100).toFixed(2)} %`;
const counts = (record: Record<string, number>): string =>
  Object.entries(record)
    .sort(([, a], [, b]) => b - a)
    .map(([label, n]) => `${n} × ${label}`)
    .join(', ');
const none = (list: readonly string[]): string => (list.length === 0 ? '0 ✓' : `${list.length} ✗ (${list.slice(0, 5).join(', ')})`);

/** The figures as the lines between the markers. */
export function chaosMarkdown(figures: ChaosFigures): string {
  const natsServer = spawnSync(process.env['KEEL_NATS_SERVER_BIN'] ?? 'nats-server', ['--version'], { encoding: 'utf8' }).stdout.trim();
  const lines = [
    `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run test:chaos\` on a shared ${cpus().length}-core box ` +
      `(${cpus()[0]?.model.trim() ?? 'unknown CPU'}), Node ${process.version}, ${natsServer}, ${figures.postgres}; ` +
      `the whole run took ${(figures.totalMs / 1000).toFixed(0)} s, starting the shop included.`,
    '',
  ];
  const frozen = figures.frozen;
  if (frozen !== undefined) {
    const { report: r, options: o } = frozen;
    lines.push(
      '**A frozen instance.** ' +
        `${o.shoppers} shoppers reading products through the gateway (deadline ${o.readDeadlineMs} ms), one of two catalog instances frozen ` +
        `${(r.freezeMs / 1000).toFixed(0)} s; a write (catalog.addProduct, deadline ${o.writeDeadlineMs} ms) every ${o.writeEveryMs} ms during the freeze.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| reads sent during the freeze | ${r.reads.duringFreeze} (${counts(r.reads.statuses)}) |`,
      `| answered 200 within their deadline | **${pct(r.reads.share)}** (target ≥ 99 %) |`,
      `| latency during the freeze, p50 / p99 | ${ms(r.reads.p50Ms)} / ${ms(r.reads.p99Ms)} (before it: ${ms(r.reads.beforeP50Ms)} / ${ms(r.reads.beforeP99Ms)}) |`,
      `| last failed read sent | ${r.reads.lastFailureAtMs === undefined ? 'none failed' : `${(r.reads.lastFailureAtMs / 1000).toFixed(1)} s into the freeze`} |`,
      `| writes sent during the freeze | ${r.writes.sent} (${counts(r.writes.statuses)}); ${r.writes.applied} in the database |`,
      `| writes applied after their caller's deadline | ${none(r.writes.appliedAfterDeadline)} |`,
      `| writes applied after the thaw | ${none(r.writes.appliedAfterThaw)} |`,
      `| writes answered 200 not in the database | ${none(r.writes.answered200NotApplied)} |`,
      `| catalog instances after the thaw (requests / errors) | ${r.instances.map((instance) => `${instance.requests} / ${instance.errors}`).join(' and ')} |`,
      '',
    );
  }
  const killed = figures.killed;
  if (killed !== undefined) {
    const { report: r, options: o } = killed;
    lines.push(
      '**A killed instance.** ' +
        `${o.shoppers} shoppers reading (deadline ${o.readDeadlineMs} ms) and one writing (catalog.addProduct, deadline ${o.writeDeadlineMs} ms) ` +
        `through the gateway; one of two catalog instances killed with SIGKILL, the load kept ${(o.afterMs / 1000).toFixed(0)} s after.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| reads after the kill | ${r.reads.sent} (${counts(r.reads.statuses)}) |`,
      `| writes after the kill | ${r.writes.sent} (${counts(r.writes.statuses)}) |`,
      `| last failed call sent | ${r.recoveredAfterMs === 0 ? 'none failed' : `${r.recoveredAfterMs} ms after the kill; every call after it succeeded`} |`,
      `| writes answered 200 not in the database | ${none(r.answered200NotApplied)} |`,
      `| writes failed TIMEOUT (outcome unknown): applied / not applied | ${r.timedOutApplied} / ${r.timedOutNotApplied} |`,
      `| the killed instance started again in | ${(r.restartMs / 1000).toFixed(1)} s |`,
      '',
    );
  }
  const restart = figures.natsRestart;
  if (restart !== undefined) {
    const { report: r, options: o } = restart;
    lines.push(
      '**NATS restarted under load.** ' +
        `${o.writers} writers in the test process (catalog.addProduct over NATS, deadline ${o.writeDeadlineMs} ms) and ${o.shoppers} shoppers reading ` +
        `through the gateway; nats-server stopped, down ${(o.downMs / 1000).toFixed(0)} s (${(r.outageMs / 1000).toFixed(1)} s until it accepted connections again), started again.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| writes | ${r.writes.sent} (${counts(r.writes.outcomes)}) |`,
      `| failed TIMEOUT although never delivered (not in the database) | ${none(r.writes.timeoutNeverDelivered)} (target 0) |`,
      `| failed TIMEOUT, delivered and applied (the answer lost with the connection) | ${r.writes.timeoutApplied} |`,
      `| failed TIMEOUT although made while the caller's connection was down | ${r.writes.timeoutMadeWhileDown} |`,
      `| reported not sent (UNAVAILABLE, NO_RESPONDERS) but applied | ${none(r.writes.notSentButApplied)} |`,
      `| answered but not in the database | ${none(r.writes.answeredNotApplied)} |`,
      `| reads from 1 s before the outage on | ${r.reads.sent} (${counts(r.reads.statuses)}) |`,
      `| last failed call sent | ${r.recoveredAfterMs === 0 ? 'none failed once NATS was back' : `${r.recoveredAfterMs} ms after nats-server accepted connections again`} |`,
      '',
    );
  }
  const node = figures.clusterNode;
  if (node !== undefined) {
    const { report: r, options: o } = node;
    lines.push(
      '**A cluster node lost.** ' +
        `The same shop on a three-node nats-server cluster (every process given the three URLs, event streams with three replicas); ` +
        `${o.writers} writers in the test process (deadline ${o.writeDeadlineMs} ms) and ${o.shoppers} shoppers through the gateway; node ${o.node} killed with SIGKILL ` +
        `(${(r.outageMs / 1000).toFixed(1)} s until the test process was connected again), the load kept ${(o.afterMs / 1000).toFixed(0)} s after.`,
      '',
      '| figure | value |',
      '|---|---|',
      `| writes | ${r.writes.sent} (${counts(r.writes.outcomes)}) |`,
      `| failed TIMEOUT, never delivered: in transit through the killed node (sent at most 1 s after the kill) | ${r.writes.timeoutNeverDeliveredSentAtMs.filter((at) => at <= 1_000).length} (lost with the node; outcome unknown to the caller) |`,
      `| failed TIMEOUT, never delivered, sent later than that | ${r.writes.timeoutNeverDeliveredSentAtMs.filter((at) => at > 1_000).length === 0 ? '0 ✓' : `${r.writes.timeoutNeverDeliveredSentAtMs.filter((at) => at > 1_000).length} ✗`} (target 0) |`,
      `| reported not sent (UNAVAILABLE, NO_RESPONDERS) but applied | ${none(r.writes.notSentButApplied)} |`,
      `| answered but not in the database | ${none(r.writes.answeredNotApplied)} (nothing acknowledged lost) |`,
      `| reads from 1 s before the kill on | ${r.reads.sent} (${counts(r.reads.statuses)}) |`,
      `| last failed call sent | ${r.recoveredAfterMs === 0 ? 'none failed once the test process had reconnected' : `${r.recoveredAfterMs} ms after the test process reconnected`} |`,
      '',
    );
  }
  return lines.join('\n');
}

/** Rewrites the figures between the markers of docs/resilience.md when KEEL_CHAOS_WRITE=1; returns whether it wrote. */
export function writeChaosFigures(figures: ChaosFigures): boolean {
  if (process.env['KEEL_CHAOS_WRITE'] !== '1') return false;
  const text = readFileSync(DOC, 'utf8');
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`docs/resilience.md has no ${BEGIN} … ${END} block to write the figures into`);
  writeFileSync(DOC, `${text.slice(0, begin + BEGIN.length)}\n${chaosMarkdown(figures)}\n${text.slice(end)}`);
  return true;
}
