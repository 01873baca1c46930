// Self instructions of a callgrind dump by function, with V8's JIT code named by the perf map
// that node writes under --perf-basic-prof (/tmp/perf-<pid>.map): callgrind names code it has no
// symbol for by its hex address, and the map gives the JS function (or stub) that address is in.
// Usage:
//   node bench/profile/callgrind-jit.mjs <callgrind dump> <perf map> [calls=1] [top=60]
//   node bench/profile/callgrind-jit.mjs <dump A> <map A> <dump B> <map B> [calls=1] [top=60]
// Prints, per function, instructions (per call when `calls` is given) and the share of the dump,
// highest first; with two dumps (say keel's callee and the raw responder's), each function's
// count in A and in B and their difference, largest difference first. Run the measured end with NODE_OPTIONS=--perf-basic-prof under
// nats-instructions.sh: the dump is <out>/cg.1-01 (main thread), the map that of the callee's pid
// (`pid:` in the dump).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const pair = args.length >= 4 && !/^\d+$/.test(args[2]);
const [dumpA, mapA] = args;
const [dumpB, mapB] = pair ? args.slice(2, 4) : [];
const [callsArg = '1', topArg = '60'] = args.slice(pair ? 4 : 2);
if (dumpA === undefined || mapA === undefined) {
  console.error('usage: callgrind-jit.mjs <callgrind dump> <perf map> [<dump B> <map B>] [calls] [top]');
  process.exit(2);
}
const calls = Number(callsArg);
const top = Number(topArg);

/** A perf map's lookup: the name of the code region an address is in, or undefined. */
function perfMap(mapFile) {
  // `start size name`, hex; a later entry for the same start replaces an earlier one (code
  // space is reused after a GC), so keep the last entry of each start.
  const regions = new Map();
  for (const line of readFileSync(mapFile, 'utf8').split('\n')) {
    const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (match === null) continue;
    regions.set(parseInt(match[1], 16), { size: parseInt(match[2], 16), name: match[3] });
  }
  const starts = [...regions.keys()].sort((a, b) => a - b);
  return (address) => {
    let low = 0;
    let high = starts.length - 1;
    let found = -1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      if (starts[middle] <= address) {
        found = middle;
        low = middle + 1;
      } else high = middle - 1;
    }
    if (found < 0) return undefined;
    const region = regions.get(starts[found]);
    return address < starts[found] + region.size ? region.name : undefined;
  };
}

/** Self instructions by function name of one dump, JIT addresses named by the map; and the total. */
function selfByName(dumpFile, mapFile) {
  const nameAt = perfMap(mapFile);
  // `fn=(id) name` opens a function; `calls=` lines are followed by a line of inclusive cost
  // (skipped: self cost only); other cost lines are `position Ir`.
  const names = new Map();
  const self = new Map();
  let current = '?';
  let skipNext = false;
  for (const line of readFileSync(dumpFile, 'utf8').split('\n')) {
    if (skipNext) {
      skipNext = false;
      continue;
    }
    if (line.startsWith('fn=') || line.startsWith('cfn=')) {
      // Names are compressed across fn= and cfn= lines: a function's name may first appear in either.
      const match = /^c?fn=\((\d+)\)(?: (.*))?$/.exec(line);
      if (match !== null && match[2] !== undefined) names.set(match[1], match[2]);
      if (line.startsWith('fn=')) current = match === null ? line.slice(3) : names.get(match[1]);
      continue;
    }
    if (line.startsWith('calls=')) {
      skipNext = true;
      continue;
    }
    const cost = /^[+-]?(?:\d+|\*)\s+(\d+)/.exec(line);
    if (cost === null) continue;
    self.set(current, (self.get(current) ?? 0) + Number(cost[1]));
  }
  const byName = new Map();
  let total = 0;
  for (const [fn, ir] of self) {
    total += ir;
    const hex = /^0x([0-9a-f]+)$/.exec(fn);
    const name = hex === null ? fn.replace(/'2$/, '') : (nameAt(parseInt(hex[1], 16)) ?? '(JIT, not in map)');
    byName.set(name, (byName.get(name) ?? 0) + ir);
  }
  return { byName, total };
}

const perCall = (ir) => (ir / calls).toFixed(1).padStart(9);
const a = selfByName(dumpA, mapA);
if (dumpB === undefined) {
  console.log(`total ${a.total} (${(a.total / calls).toFixed(0)} per call)`);
  for (const [name, ir] of [...a.byName].sort((x, y) => y[1] - x[1]).slice(0, top)) {
    console.log(`${perCall(ir)} ${((100 * ir) / a.total).toFixed(2).padStart(6)}%  ${name}`);
  }
} else {
  const b = selfByName(dumpB, mapB);
  console.log(`total A ${(a.total / calls).toFixed(0)}, B ${(b.total / calls).toFixed(0)}, A - B ${((a.total - b.total) / calls).toFixed(0)} per call`);
  console.log(`${'A'.padStart(9)} ${'B'.padStart(9)} ${'A - B'.padStart(9)}`);
  const rows = [...new Set([...a.byName.keys(), ...b.byName.keys()])].map((name) => [name, a.byName.get(name) ?? 0, b.byName.get(name) ?? 0]);
  rows.sort((x, y) => Math.abs(y[1] - y[2]) - Math.abs(x[1] - x[2]));
  for (const [name, inA, inB] of rows.slice(0, top)) console.log(`${perCall(inA)} ${perCall(inB)} ${perCall(inA - inB)}  ${name}`);
}
