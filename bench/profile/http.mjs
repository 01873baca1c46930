// Profiles the server of an HTTP request: starts bench/profile/http-server.mjs (`gateway` or
// `bare`) under `--cpu-prof`, loads it with autocannon (POSTs of the quote input), then
// summarises the profile (summarize.mjs) over the time the load ran. Run after `npm run build`:
//   node bench/profile/http.mjs [mode=gateway] [outDir=/tmp/keel-prof-http] [seconds=10] [connections=64]
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { QUOTE_INPUT } from './pricing.mjs';

const [mode = 'gateway', outDir = '/tmp/keel-prof-http', seconds = '10', connections = '64'] = process.argv.slice(2);
const here = import.meta.dirname;
const autocannon = join(here, '../../node_modules/autocannon/autocannon.js');
const dir = join(outDir, mode);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const server = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, join(here, 'http-server.mjs'), mode], { stdio: ['pipe', 'pipe', 'inherit'] });
const [readyMs, url] = await new Promise((resolve) => {
  createInterface({ input: server.stdout }).on('line', (line) => {
    const [word, ms, at] = line.split(' ');
    if (word === 'ready') resolve([Number(ms), at]);
  });
});
const started = performance.now();
const load = spawn(process.execPath, [autocannon, '-j', '-n', '-c', connections, '-d', seconds, '-m', 'POST',
  '-H', 'content-type=application/json', '-b', JSON.stringify(QUOTE_INPUT), url], { stdio: ['ignore', 'pipe', 'inherit'] });
let output = '';
load.stdout.setEncoding('utf8').on('data', (chunk) => (output += chunk));
await once(load, 'exit');
const loadMs = performance.now() - started;
const result = JSON.parse(output);
console.log(`${mode}: ${result.requests.average} requests/s, ${result.non2xx} non-2xx, ${result.errors} errors`);
server.stdin.end();
await once(server, 'exit');
const file = join(dir, readdirSync(dir).find((name) => name.endsWith('.cpuprofile')));
// The load's first and last half second left out (autocannon's own start and stop).
const from = readyMs + 500;
const to = readyMs + loadMs - 500;
spawnSync(process.execPath, [join(here, 'summarize.mjs'), file, '--from-ms', String(from), '--to-ms', String(to), '--top', '40'], { stdio: 'inherit' });
