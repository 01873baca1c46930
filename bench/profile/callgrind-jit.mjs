// Names a callgrind dump's JIT code by JavaScript function: callgrind calls code it has no symbol
// for by a hex address, and node's --perf-basic-prof map (/tmp/perf-<pid>.map: start, size, name)
// says what was compiled there. Prints the functions by self instructions (per unit, e.g. per
// event), and the inclusive count of each (self + what it called, as callgrind recorded the calls).
//   node bench/profile/callgrind-jit.mjs <dump> <perf.map> [units=1] [rows=60] [--inclusive] [--grep=text]
//     [--vs=<dump>:<perf.map>[:units]]   two runs side by side, by difference (e.g. keel against raw)
//     [--calls=text]                     callers and callees of the functions whose name holds text
// An address compiled to more than once (code freed and reused) takes the map's last entry there,
// which is the code that ran last. Builtins and bytecode handlers are in the map too (`Builtin:`,
// `BytecodeHandler:`); C++ keeps its own symbol. `JS:*name` is optimised code (TurboFan/Maglev:
// what it inlined counts to it), `JS:~name` interpreted or baseline (Sparkplug).
import { readFileSync } from 'node:fs';

const args = process.argv.slice(2);
const flags = args.filter((arg) => arg.startsWith('--'));
const [dumpPath, mapPath, unitsArg = '1', rowsArg = '60'] = args.filter((arg) => !arg.startsWith('--'));
const units = Number(unitsArg);
const rows = Number(rowsArg);
const byInclusive = flags.includes('--inclusive');
const grep = flags.find((flag) => flag.startsWith('--grep='))?.slice(7);

function analyse(dumpPath, mapPath) {
  // The map: sorted starts, for a binary search; later entries at one start replace earlier ones.
  const entries = new Map();
  for (const line of readFileSync(mapPath, 'utf8').split('\n')) {
    const match = /^([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(line);
    if (match) entries.set(parseInt(match[1], 16), { size: parseInt(match[2], 16), name: match[3] });
  }
  const starts = [...entries.keys()].sort((a, b) => a - b);
  function jitName(address) {
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
    const entry = entries.get(starts[found]);
    return address < starts[found] + entry.size ? entry.name : undefined;
  }

  // The dump: names compressed as `(id) name` on first use, `(id)` after.
  const names = { fn: new Map(), ob: new Map() };
  function named(kind, text) {
    const match = /^\((\d+)\)(?: (.*))?$/.exec(text);
    if (!match) return text;
    if (match[2] !== undefined) names[kind].set(match[1], match[2]);
    return names[kind].get(match[1]);
  }
  const self = new Map();
  const inclusive = new Map();
  /** caller -> callee -> inclusive instructions of those calls */
  const edges = new Map();
  let ob = '';
  let cob;
  let callee;
  let inCall = false;
  let total = 0;
  const keyOf = (functionName, object) => {
    if (/^0x[0-9a-f]+$/.test(functionName) && (object === '???' || object === '')) {
      return jitName(parseInt(functionName, 16)) ?? `JIT? ${functionName}`;
    }
    return `${functionName} [${object.split('/').pop()}]`;
  };
  let key = '';
  for (const line of readFileSync(dumpPath, 'utf8').split('\n')) {
    if (line.startsWith('fn=')) {
      key = keyOf(named('fn', line.slice(3)), ob);
      continue;
    }
    if (line.startsWith('ob=')) {
      ob = named('ob', line.slice(3));
      continue;
    }
    if (line.startsWith('cob=')) {
      cob = named('ob', line.slice(4));
      continue;
    }
    if (line.startsWith('cfn=')) {
      callee = named('fn', line.slice(4));
      continue;
    }
    if (line.startsWith('calls=')) {
      inCall = true;
      continue;
    }
    if (!/^[0-9+\-*]/.test(line)) continue;
    const parts = line.trim().split(/\s+/);
    const cost = Number(parts[parts.length - 1]);
    if (!Number.isFinite(cost) || parts.length < 2) continue;
    if (inCall) {
      inCall = false;
      inclusive.set(key, (inclusive.get(key) ?? 0) + cost);
      const calleeKey = keyOf(callee, cob ?? ob);
      cob = undefined;
      let out = edges.get(key);
      if (out === undefined) edges.set(key, (out = new Map()));
      out.set(calleeKey, (out.get(calleeKey) ?? 0) + cost);
      continue;
    }
    total += cost;
    self.set(key, (self.get(key) ?? 0) + cost);
    inclusive.set(key, (inclusive.get(key) ?? 0) + cost);
  }
  return { total, self, inclusive, edges };
}

// A tree's path (…/dist/…) left out of JavaScript names, so that two builds' functions match.
const plain = (name) => name.replace(/(file:\/\/)?\/[^ ]*?\/(dist|node_modules|bench)\//, '$2/');
function merged(result) {
  const self = new Map();
  const inclusive = new Map();
  for (const [name, count] of result.self) self.set(plain(name), (self.get(plain(name)) ?? 0) + count);
  for (const [name, count] of result.inclusive) inclusive.set(plain(name), (inclusive.get(plain(name)) ?? 0) + count);
  const edges = new Map();
  for (const [from, out] of result.edges) {
    let merged = edges.get(plain(from));
    if (merged === undefined) edges.set(plain(from), (merged = new Map()));
    for (const [to, count] of out) merged.set(plain(to), (merged.get(plain(to)) ?? 0) + count);
  }
  return { total: result.total, self, inclusive, edges };
}
const per = (count) => (count / units).toFixed(units === 1 ? 0 : 1).padStart(10);
const a = merged(analyse(dumpPath, mapPath));
const names = (...results) => [...new Set(results.flatMap((result) => [...result.self.keys(), ...result.inclusive.keys()]))];
const around = flags.find((flag) => flag.startsWith('--calls='))?.slice(8);
if (around !== undefined) {
  // --calls=text: for each function whose name holds text, its callers and its callees (inclusive).
  for (const name of names(a).filter((name) => name.includes(around))) {
    console.log(`${per(a.self.get(name) ?? 0)} ${per(a.inclusive.get(name) ?? 0)}  ${name.slice(0, 160)}`);
    for (const [from, out] of a.edges) if (out.has(name)) console.log(`  from ${per(out.get(name))}  ${from.slice(0, 150)}`);
    for (const [to, count] of [...(a.edges.get(name) ?? new Map())].sort((x, y) => y[1] - x[1]).slice(0, 25)) {
      console.log(`  to   ${per(count)}  ${to.slice(0, 150)}`);
    }
  }
  process.exit(0);
}
const vs = flags.find((flag) => flag.startsWith('--vs='))?.slice(5);
if (vs === undefined) {
  const table = names(a)
    .map((name) => ({ name, self: a.self.get(name) ?? 0, inclusive: a.inclusive.get(name) ?? 0 }))
    .filter((row) => grep === undefined || row.name.includes(grep))
    .sort((x, y) => (byInclusive ? y.inclusive - x.inclusive : y.self - x.self));
  console.log(`total self ${per(a.total)} per unit (${a.total} instructions, ${units} units)`);
  console.log(`${'self'.padStart(10)} ${'inclusive'.padStart(10)}  function`);
  for (const row of table.slice(0, rows)) console.log(`${per(row.self)} ${per(row.inclusive)}  ${row.name.slice(0, 160)}`);
} else {
  // --vs=<dump>:<map>[:units]: the same table for a second run, and the difference, largest first.
  const [vsDump, vsMap, vsUnits = unitsArg] = vs.split(':');
  const b = merged(analyse(vsDump, vsMap));
  const scale = units / Number(vsUnits);
  const key = byInclusive ? 'inclusive' : 'self';
  const table = names(a, b)
    .map((name) => ({ name, a: a[key].get(name) ?? 0, b: (b[key].get(name) ?? 0) * scale }))
    .filter((row) => grep === undefined || row.name.includes(grep))
    .sort((x, y) => Math.abs(y.a - y.b) - Math.abs(x.a - x.b));
  console.log(`total self: ${per(a.total)} against ${per(b.total * scale)} per unit (${key} below)`);
  console.log(`${'first'.padStart(10)} ${'second'.padStart(10)} ${'first-2nd'.padStart(10)}  function`);
  for (const row of table.slice(0, rows)) console.log(`${per(row.a)} ${per(row.b)} ${per(row.a - row.b)}  ${row.name.slice(0, 160)}`);
}
