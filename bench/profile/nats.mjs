// Profiles both sides of a keel call over NATS: starts a nats-server on a free port, a callee
// (nats-callee.mjs) and a caller (nats-caller.mjs), each under `--cpu-prof`, then summarises both
// profiles (summarize.mjs) from the moment the calls began. Run after `npm run build`:
//   node bench/profile/nats.mjs [outDir=/tmp/keel-prof-nats] [count=300000] [inFlight=64]
// Uses the node running it for the two processes, and `nats-server` from PATH (or /usr/sbin).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startLocalNatsServer } from './local-nats.mjs';

const [outDir = '/tmp/keel-prof-nats', count = '300000', inFlight = '64'] = process.argv.slice(2);
const here = import.meta.dirname;
const { url, nats } = await startLocalNatsServer();

/** Runs `script` under --cpu-prof into `outDir/side`; resolves each stdout line to `onLine`. */
function run(side, script, args, onLine) {
  const dir = join(outDir, side);
  mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, join(here, script), url, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  createInterface({ input: child.stdout }).on('line', (line) => onLine(line, child));
  return { child, dir };
}

try {
  const times = {};
  let calleeReady;
  const ready = new Promise((resolve) => (calleeReady = resolve));
  const callee = run('callee', 'nats-callee.mjs', [], (line) => {
    const [word, ms] = line.split(' ');
    if (word === 'ready') calleeReady(Number(ms));
  });
  const calleeReadyMs = await ready;
  const caller = run('caller', 'nats-caller.mjs', [count, inFlight], (line) => {
    const [word, ms, rate] = line.split(' ');
    times[word] = Number(ms);
    if (word === 'done') console.log(`${count} calls, ${inFlight} in flight: ${rate} calls/s`);
  });
  await once(caller.child, 'exit');
  callee.child.stdin.end();
  await once(callee.child, 'exit');
  // The caller started once the callee was ready: in the callee's clock the calls began about
  // the callee's ready time plus the caller's own time to its first call.
  for (const { dir } of [caller, callee]) {
    const file = join(dir, readdirSync(dir).find((name) => name.endsWith('.cpuprofile')));
    const window = dir === caller.dir ? [times.load, times.done] : [calleeReadyMs + times.load, calleeReadyMs + times.done];
    console.log();
    spawnSync(process.execPath, [join(here, 'summarize.mjs'), file, '--from-ms', String(window[0]), '--to-ms', String(window[1])], { stdio: 'inherit' });
  }
} finally {
  nats.kill();
}
