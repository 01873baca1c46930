// CPU per call at the callee of a keel call over NATS, against a raw responder: starts a
// nats-server on a free port, a callee (nats-callee.mjs, or nats-raw-callee.mjs: a plain queue
// subscription that parses the request JSON and answers, with the same client) and the caller
// (nats-caller.mjs), without a profiler, and reads the callee's user + system CPU time from
// /proc between the first and the last call. Usage:
//   node bench/profile/nats-cpu.mjs [count=200000] [inFlight=64] [runs=1] [sides=keel,raw]
// Prints one line per run and side: calls/s, the callee's and the caller's CPU µs per call. Linux only.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startLocalNatsServer } from './local-nats.mjs';

const [count = '200000', inFlight = '64', runs = '1', sides = 'keel,raw'] = process.argv.slice(2);
const here = import.meta.dirname;
const { url, nats } = await startLocalNatsServer();

const TICKS_PER_SECOND = 100; // USER_HZ on Linux
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND; // utime, stime
}

async function once1(side) {
  const callee = spawn(process.execPath, [join(here, side === 'raw' ? 'nats-raw-callee.mjs' : 'nats-callee.mjs'), url], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  await new Promise((resolve) => createInterface({ input: callee.stdout }).on('line', (line) => line.startsWith('ready') && resolve()));
  let start = 0;
  let result = '';
  const caller = spawn(process.execPath, [join(here, 'nats-caller.mjs'), url, count, inFlight], { stdio: ['ignore', 'pipe', 'inherit'] });
  createInterface({ input: caller.stdout }).on('line', (line) => {
    const [word, , rate, callerCpu] = line.split(' ');
    if (word === 'load') start = cpuSeconds(callee.pid);
    if (word === 'done') {
      const used = cpuSeconds(callee.pid) - start;
      result = `${side}: ${rate} calls/s, callee ${((used * 1e6) / Number(count)).toFixed(2)} µs CPU per call, caller ${callerCpu} µs`;
    }
  });
  await once(caller, 'exit');
  callee.stdin.end();
  await once(callee, 'exit');
  return result;
}

try {
  for (let run = 0; run < Number(runs); run += 1) {
    for (const side of sides.split(',')) console.log(await once1(side));
  }
} finally {
  nats.kill();
}
