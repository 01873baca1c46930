// Names the JIT code of a callgrind dump: callgrind knows V8's generated code only by address;
// node's --perf-basic-prof writes /tmp/perf-<pid>.map (start, size, name per code object), which
// nats-instructions.sh (NODE_ARGS=--perf-basic-prof) moves to <out>/perf.map. Prints the self
// instructions of every function (per call when [calls] is given), JIT code by its V8 name
// (`JS:*name file:line` optimized, `JS:~` interpreted/baseline, `Builtin:` ...), the rest by
// callgrind's own name.
//   node bench/profile/callgrind-jit.mjs <callgrind dump, e.g. <out>/cg.1-01> <perf.map> [calls] [top=60]
import { readFileSync } from 'node:fs';

const [dumpPath, mapPath, callsArg, topArg = '60'] = process.argv.slice(2);
if (dumpPath === undefined || mapPath === undefined) {
  console.error('usage: callgrind-jit.mjs <callgrind dump> <perf.map> [calls] [top]');
  process.exit(2);
}
const calls = callsArg === undefined ? 1 : Number(callsArg);

// perf map: "<hex start> <hex size> <name>"; a later entry at the same address replaces an earlier one.
const ranges = [];
for (const line of readFileSync(mapPath, 'utf8').split('\n')) {
  const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
  if (match) ranges.push({ start: Number.parseInt(match[1], 16), end: Number.parseInt(match[1], 16) + Number.parseInt(match[2], 16), name: match[3] });
}
ranges.sort((a, b) => a.start - b.start);
function nameOf(address) {
  let low = 0;
  let high = ranges.length - 1;
  let found;
  while (low <= high) {
    const mid = (low + high) >> 1;
    if (ranges[mid].start <= address) {
      found = ranges[mid];
      low = mid + 1;
    } else high = mid - 1;
  }
  // The last code object starting at or below the address, if it spans it.
  return found !== undefined && address < found.end ? found.name : undefined;
}

// Self cost per function from the dump (name compression "(id) name", shared by fn= and cfn=; a "calls=" line's next
// cost line is the callee's inclusive cost, not this function's).
const names = new Map();
const self = new Map();
let current = '?';
let skipNext = false;
let total = 0;
for (const line of readFileSync(dumpPath, 'utf8').split('\n')) {
  if (line.startsWith('fn=')) {
    const match = /^fn=\((\d+)\)(?: (.*))?$/.exec(line);
    if (match) {
      if (match[2] !== undefined) names.set(match[1], match[2]);
      current = names.get(match[1]);
    } else current = line.slice(3);
    continue;
  }
  if (line.startsWith('cfn=')) {
    // Names are compressed across fn= and cfn= alike: a callee may define one.
    const match = /^cfn=\((\d+)\) (.*)$/.exec(line);
    if (match) names.set(match[1], match[2]);
    continue;
  }
  if (line.startsWith('calls=')) {
    skipNext = true;
    continue;
  }
  if (/^[+\-*\d]/.test(line)) {
    if (skipNext) {
      skipNext = false;
      continue;
    }
    const cost = Number(line.split(' ')[1] ?? 0);
    if (Number.isFinite(cost)) {
      self.set(current, (self.get(current) ?? 0) + cost);
      total += cost;
    }
  }
}

const byName = new Map();
for (const [fn, cost] of self) {
  let name = fn;
  const hex = /^0x([0-9a-f]+)$/.exec(fn);
  if (hex) name = nameOf(Number.parseInt(hex[1], 16)) ?? 'JIT (unnamed)';
  byName.set(name, (byName.get(name) ?? 0) + cost);
}
const rows = [...byName].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg));
console.log(`total ${Math.round(total / calls)} per call (${total})`);
for (const [name, cost] of rows) console.log(`${String(Math.round(cost / calls)).padStart(7)}  ${(100 * cost / total).toFixed(1).padStart(5)}%  ${name}`);
