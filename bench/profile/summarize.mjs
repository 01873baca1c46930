// Sums a V8 .cpuprofile (from `node --cpu-prof`) by self time: grouped by file, and by function.
// Usage: node bench/profile/summarize.mjs <file.cpuprofile> [--from-ms N] [--to-ms N] [--top N]
// `--from-ms`/`--to-ms` keep the samples between those times since the profile started (to leave
// out start-up and shutdown); shares are of the CPU time kept, `(idle)` left out. The last two
// tables count Node's built-ins (TextEncoder, socket writes, Buffer) for the script that called them.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { 'from-ms': { type: 'string', default: '0' }, 'to-ms': { type: 'string' }, top: { type: 'string', default: '25' } },
});
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'));
const fromUs = Number(values['from-ms']) * 1000;
const toUs = values['to-ms'] === undefined ? Number.POSITIVE_INFINITY : Number(values['to-ms']) * 1000;

const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
const parents = new Map();
for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
/** Node's built-ins and natives (no url, or node:) count for the nearest caller in a script. */
const isNode = (url) => url === '' || url.startsWith('node:');
function ownerOf(id) {
  for (let at = id; at !== undefined; at = parents.get(at)) {
    const { url, functionName } = nodes.get(at).callFrame;
    if (!isNode(url)) return { name: `${functionName || '(anonymous)'} ${fileOf(url)}:${nodes.get(at).callFrame.lineNumber + 1}`, file: fileOf(url) };
  }
  const { functionName } = nodes.get(id).callFrame;
  return { name: functionName, file: functionName };
}
/** A short name for a script: the package and path under node_modules, or the path under dist/. */
function fileOf(url) {
  if (url === '') return '';
  const modules = url.lastIndexOf('/node_modules/');
  if (modules >= 0) return url.slice(modules + '/node_modules/'.length);
  const dist = url.indexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\/.*\/bench\//, 'bench/');
}

const byFile = new Map();
const byFunction = new Map();
const byOwnerFile = new Map();
const byOwner = new Map();
let kept = 0;
let idle = 0;
let before = 0;
let at = 0;
for (let i = 0; i < profile.samples.length; i += 1) {
  at += profile.timeDeltas[i];
  const dt = profile.timeDeltas[i + 1] ?? 0; // a sample's time runs until the next sample
  const { callFrame } = nodes.get(profile.samples[i]);
  if (callFrame.functionName === '(idle)') {
    if (at >= fromUs && at < toUs) idle += dt;
    continue;
  }
  if (at < fromUs) {
    before += dt;
    continue;
  }
  if (at >= toUs) continue;
  kept += dt;
  const file = fileOf(callFrame.url) || callFrame.functionName;
  byFile.set(file, (byFile.get(file) ?? 0) + dt);
  const name = `${callFrame.functionName || '(anonymous)'}${callFrame.url ? ` ${file}:${callFrame.lineNumber + 1}` : ''}`;
  byFunction.set(name, (byFunction.get(name) ?? 0) + dt);
  const owner = ownerOf(profile.samples[i]);
  byOwner.set(owner.name, (byOwner.get(owner.name) ?? 0) + dt);
  byOwnerFile.set(owner.file, (byOwnerFile.get(owner.file) ?? 0) + dt);
}

const pct = (us) => `${((100 * us) / kept).toFixed(1).padStart(5)} %`;
const total = (profile.endTime - profile.startTime) / 1000;
console.log(`${positionals[0]}: profile ${total.toFixed(0)} ms; kept ${(kept / 1000).toFixed(0)} ms of CPU, ` +
  `idle ${(idle / 1000).toFixed(0)} ms, left out before ${values['from-ms']} ms: ${(before / 1000).toFixed(0)} ms of CPU ` +
  `(${((100 * before) / (before + kept)).toFixed(1)} % of all CPU)`);
console.log('\nself time by file:');
for (const [file, us] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)}  ${file}`);
console.log('\nself time by function:');
for (const [name, us] of [...byFunction].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)}  ${name}`);
console.log("\nself time by file, Node's built-ins counted for the script that called them:");
for (const [file, us] of [...byOwnerFile].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)}  ${file}`);
console.log("\nself time by function, Node's built-ins counted for the script function that called them:");
for (const [name, us] of [...byOwner].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${pct(us)}  ${name}`);
