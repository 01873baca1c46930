/**
 * `npm run bench`: runs every benchmark and writes docs/benchmarks.md with the machine it ran on.
 * Each section compares keel against a baseline measured in the same run.
 */
import { benchData } from './data.js';
import { benchDurable, DURABLE_BEGIN, DURABLE_END } from './durable.js';
import { benchHttp, HTTP_BEGIN, HTTP_END } from './http.js';
import { benchInProcess } from './in-process.js';
import { benchNats } from './nats.js';
import { benchNatsClient, NATS_CLIENT_BEGIN, NATS_CLIENT_END, natsClientAtFullScale } from './nats-client.js';
import { benchPeers, benchPeersOnNode24, PEERS_BEGIN, PEERS_END, peersAtFullScale } from './peers.js';
import { benchPolicies, POLICIES_BEGIN, POLICIES_END } from './policies.js';
import { benchStartup } from './startup.js';
import { benchTracing } from './tracing.js';
import { readFileSync } from 'node:fs';
import { machine, replaceSection, write } from './support.js';

const only = process.argv.slice(2);
const sections: string[] = [];
const wanted = (name: string) => only.length === 0 || only.includes(name);

if (wanted('in-process')) {
  const result = await benchInProcess();
  console.log(result.markdown);
  sections.push(result.markdown);
}

if (wanted('nats')) {
  const result = await benchNats();
  console.log(result.markdown);
  sections.push(result.markdown);
}

// `nats` v2 against the modular v3 client (issue 17): between its markers, like the peers section.
if (wanted('nats-client')) {
  const result = await benchNatsClient();
  console.log(result.markdown);
  sections.push(result.markdown);
}

// keel against Moleculer and NestJS: on this Node, then again on Node 24 (a child process).
let peersSection: string | undefined;
let httpSection: string | undefined;
if (wanted('peers')) {
  const parts = [(await benchPeers()).markdown];
  console.log(parts[0]);
  try {
    const on24 = await benchPeersOnNode24();
    if (on24 !== undefined) {
      console.log(on24.markdown);
      parts.push(on24.markdown);
    }
  } catch (error) {
    const note = `Not measured on Node 24: ${error instanceof Error ? error.message : String(error)}.\n`;
    console.log(note);
    parts.push(note);
  }
  peersSection = [PEERS_BEGIN, ...parts, PEERS_END, ''].join('\n');
  sections.push(peersSection);
}

let policiesSection: string | undefined;
if (wanted('policies')) {
  const result = await benchPolicies();
  console.log(result.markdown);
  sections.push(result.markdown);
  policiesSection = result.markdown;
}

let durableSection: string | undefined;
if (wanted('durable')) {
  const result = await benchDurable();
  console.log(result.markdown);
  sections.push(result.markdown);
  durableSection = result.markdown;
}

if (wanted('tracing')) {
  const result = await benchTracing();
  console.log(result.markdown);
  sections.push(result.markdown);
}

if (wanted('http')) {
  const result = await benchHttp();
  console.log(result.markdown);
  httpSection = result.markdown;
  sections.push(result.markdown);
}

if (wanted('startup')) {
  const result = await benchStartup();
  console.log(result.markdown);
  sections.push(result.markdown);
}

// Written to docs/data.md (its Figures), not to docs/benchmarks.md: needs PostgreSQL, takes minutes.
if (only.includes('data')) {
  const result = await benchData();
  console.log(result.markdown);
}

/** Where docs/performance.md explains what a section's time goes to, and what was cut: by the start of its heading. */
const PROFILES: readonly (readonly [heading: string, profile: string])[] = [
  ['In-process call', '"Why the unmet targets are unmet" and "In process, fourth round"'],
  ['Remote call over NATS', '"Why the unmet targets are unmet" and "Ninth round" (the caller and the callee by function)'],
  ['Notification events', '"Why the unmet targets are unmet" and "Eleventh round" (the subscriber by function)'],
  ['keel vs Moleculer', '"Why the unmet targets are unmet", "Fifth round", "Eighth round" and, in process, "Fourteenth round" and "Fifteenth round"'],
  ['Call policies', '"Why the unmet targets are unmet", "Fourteenth round" and "Fifteenth round" (by instructions the synchronous call reads 0.0 %, then 2.1 % after the fifteenth round\'s cut; the timed rows cannot resolve 5 %); the hedged rows: "Sixteenth round"'],
  ['HTTP gateway', '"Why the unmet targets are unmet" and "Gateway, sixth round"'],
];

/** Every section's `Target:` lines, under the heading they belong to: the verdicts at a glance. */
function targetsAtAGlance(markdown: readonly string[]): string[] {
  const lines: string[] = [];
  let heading = '';
  for (const line of markdown.join('\n').split('\n')) {
    if (line.startsWith('### ')) heading = line.slice(4);
    else if (line.startsWith('Target:')) {
      const profile = line.includes('NOT met') && !line.includes('performance.md') ? PROFILES.find(([start]) => heading.startsWith(start))?.[1] : undefined;
      const where = profile === undefined ? '' : ` What remains: docs/performance.md, ${profile}.`;
      lines.push(`- ${heading}: ${line.slice('Target:'.length).trim()}${where}`);
    }
  }
  if (lines.length === 0) return [];
  return [
    '## Targets at a glance',
    '',
    ...lines,
    '',
    'Where the time goes on the paths that miss their target, and what was cut: docs/performance.md.',
    '',
  ];
}

/** After one section was replaced: the file's "Targets at a glance" worked out again from every section in it. */
function refreshTargetsAtAGlance(path: string): void {
  const current = readFileSync(path, 'utf8');
  const from = current.indexOf('## Targets at a glance');
  const to = current.indexOf('\n### ', from);
  if (from < 0 || to < 0) return;
  const glance = targetsAtAGlance([current.slice(to)]).join('\n');
  write(path, `${current.slice(0, from)}${glance}\n${current.slice(to + 1)}`);
}

const report = [
  '# Benchmarks',
  '',
  'Written by `npm run bench`. Numbers are ratios against a baseline measured in the same run: on a',
  'shared 2-core machine absolute times are noise, ratios in one run are the signal.',
  '',
  `Machine: ${machine()}`,
  `Date: ${new Date().toISOString()}`,
  '',
  ...targetsAtAGlance(sections),
  ...sections,
].join('\n');
if (only.length === 0) write('docs/benchmarks.md', report);
else if (only.length === 1 && only[0] === 'peers' && peersSection !== undefined && peersAtFullScale()) {
  // The peers section alone replaces its part of docs/benchmarks.md (between its markers).
  replaceSection('docs/benchmarks.md', PEERS_BEGIN, PEERS_END, peersSection);
  refreshTargetsAtAGlance('docs/benchmarks.md');
  console.log('(peers run: its section of docs/benchmarks.md written)');
}
else if (only.length === 1 && only[0] === 'nats-client' && sections[0] !== undefined && natsClientAtFullScale()) {
  // Likewise the NATS client comparison alone.
  replaceSection('docs/benchmarks.md', NATS_CLIENT_BEGIN, NATS_CLIENT_END, sections[0]);
  refreshTargetsAtAGlance('docs/benchmarks.md');
  console.log('(nats-client run: its section of docs/benchmarks.md written)');
}
else if (only.length === 1 && only[0] === 'http' && httpSection !== undefined) {
  // And the HTTP gateway's: a few minutes, for a change on the gateway's path.
  replaceSection('docs/benchmarks.md', HTTP_BEGIN, HTTP_END, httpSection);
  refreshTargetsAtAGlance('docs/benchmarks.md');
  console.log('(http run: its section of docs/benchmarks.md written)');
}
else if (only.length === 1 && only[0] === 'policies' && policiesSection !== undefined) {
  // And the policies': a few minutes, for a change on a policy's path.
  replaceSection('docs/benchmarks.md', POLICIES_BEGIN, POLICIES_END, policiesSection);
  refreshTargetsAtAGlance('docs/benchmarks.md');
  console.log('(policies run: its section of docs/benchmarks.md written)');
}
else if (only.length === 1 && only[0] === 'durable' && durableSection !== undefined) {
  // And the outbox relay's: a minute, for a change on the durable path.
  replaceSection('docs/benchmarks.md', DURABLE_BEGIN, DURABLE_END, durableSection);
  console.log('(durable run: its section of docs/benchmarks.md written)');
}
else if (only.length === 1 && only[0] === 'data') console.log('(data run: docs/data.md written)');
else console.log('(partial run: docs/benchmarks.md not written)');
