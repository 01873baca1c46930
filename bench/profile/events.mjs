// Events over NATS, both sides in their own process: a nats-server on a free port, a subscriber and
// a publisher (events-side.mjs), `rounds` rounds of `count` events; prints per round the rate
// (events received per second, first publish to last receipt) and CPU per event at each side, then
// the medians of the rounds after the first (warm-up). With --prof, both sides run under
// --cpu-prof and their profiles are summarised (summarize.mjs) over the rounds. Run after `npm run build`:
//   node bench/profile/events.mjs [keel|raw|raw-bytes|raw-headers] [count=40000] [rounds=4] [batched|each] [--prof outDir]
// raw-bytes: raw events carrying keel's header block, built once; raw-headers: the same headers set
// through nats.js per event (event-sides.mjs).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startLocalNatsServer } from './local-nats.mjs';

const args = process.argv.slice(2);
const profAt = args.indexOf('--prof');
const profDir = profAt >= 0 ? args.splice(profAt, 2)[1] : undefined;
const [mode = 'keel', count = '40000', rounds = '4', style = 'batched'] = args;
const here = import.meta.dirname;
const { url, nats } = await startLocalNatsServer();

function run(side, onLine) {
  const flags = [];
  if (profDir !== undefined) {
    const dir = join(profDir, side);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    flags.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  const child = spawn(process.execPath, [...flags, join(here, 'events-side.mjs'), url, side, mode, count, rounds, style], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  createInterface({ input: child.stdout }).on('line', (line) => onLine(line.split(' ')));
  return child;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
try {
  const sub = [];
  let ready;
  const isReady = new Promise((resolve) => (ready = resolve));
  let publisher;
  const subscriber = run('subscriber', ([word, index, ms, cpu]) => {
    if (word === 'ready') ready();
    if (word === 'round') {
      sub[Number(index)] = { ms: Number(ms), cpu: Number(cpu) };
      publisher.stdin.write('next\n');
    }
  });
  await isReady;
  const pub = [];
  publisher = run('publisher', ([word, index, ms, cpu]) => {
    const at = Number(index);
    pub[at] ??= {};
    if (word === 'start') Object.assign(pub[at], { start: Number(ms), cpu0: Number(cpu) });
    if (word === 'cpu') pub[at].cpu1 = Number(ms); // cpu <i> <µs>
    if (word === 'cpu' && at === Number(rounds) - 1) publisher.stdin.end();
  });
  const timer = setTimeout(() => {
    console.error('timed out: events lost?', JSON.stringify({ sub, pub }));
    publisher.kill();
    subscriber.kill();
  }, 60_000);
  await once(publisher, 'exit');
  clearTimeout(timer);
  subscriber.stdin.end();
  await once(subscriber, 'exit');
  const results = [];
  for (let index = 0; index < Number(rounds); index += 1) {
    const rate = Number(count) / ((sub[index].ms - pub[index].start) / 1000);
    const pubCpu = (pub[index].cpu1 - pub[index].cpu0) / Number(count);
    const subCpu = (sub[index].cpu - (index === 0 ? sub[index].cpu : sub[index - 1].cpu)) / Number(count);
    results.push({ rate, pubCpu, subCpu });
    console.log(`round ${index}: ${(rate / 1000).toFixed(1)} k/s, CPU per event ${pubCpu.toFixed(2)} + ${index === 0 ? '?' : subCpu.toFixed(2)} µs`);
  }
  const kept = results.slice(1);
  console.log(
    `${mode} ${style} median: ${(median(kept.map((r) => r.rate)) / 1000).toFixed(1)} k/s, CPU per event ${median(kept.map((r) => r.pubCpu)).toFixed(2)} + ${median(kept.map((r) => r.subCpu)).toFixed(2)} µs` +
      `; best: ${(Math.max(...kept.map((r) => r.rate)) / 1000).toFixed(1)} k/s, ${Math.min(...kept.map((r) => r.pubCpu)).toFixed(2)} + ${Math.min(...kept.map((r) => r.subCpu)).toFixed(2)} µs`,
  );
  if (profDir !== undefined) {
    for (const side of ['publisher', 'subscriber']) {
      const dir = join(profDir, side);
      const file = join(dir, readdirSync(dir).find((name) => name.endsWith('.cpuprofile')));
      console.log(`\n== ${side}`);
      spawnSync(process.execPath, [join(here, 'summarize.mjs'), file, '--from-ms', '1500'], { stdio: 'inherit' });
    }
  }
} finally {
  nats.kill();
}
