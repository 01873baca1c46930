// A/B of HTTP gateway builds in one run: each server (a source tree and a bench/http-peer.ts
// mode) in its own process, loaded in rotating order by autocannon (64 connections, POSTs of the
// quote input), CPU per request from the server's own process.cpuUsage(). To compare a commit
// with the working tree, unpack it beside (`git archive <commit> | tar -x -C /tmp/before`, then
// `ln -s "$PWD/node_modules" /tmp/before/node_modules`):
//   node bench/profile/http-ab.mjs <rounds> <seconds> bare=.:bare before=/tmp/before:gateway after=.:gateway
// The first server is the base of the ratios. RATE=<n> caps each load at n requests/s.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { resolve } from 'node:path';
const [rounds, seconds, ...specs] = process.argv.slice(2);
const AUTOCANNON = new URL('../../node_modules/autocannon/autocannon.js', import.meta.url).pathname;
const BODY = JSON.stringify({ customerId: 'c-1', lines: [{ sku: 'KB-1', quantity: 2 }] });
async function start(tree, mode) {
  const root = resolve(tree);
  const child = spawn(`${root}/node_modules/.bin/tsx`, ['--conditions=keel-source', `${root}/bench/http-peer.ts`, mode], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const url = (await lines.next()).value;
  return { url, child, ask: async (c) => { child.stdin.write(c + '\n'); return (await lines.next()).value; } };
}
function load(url, secs) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [AUTOCANNON, '-j', '-n', '-c', '64', '-d', String(secs), ...(process.env.RATE ? ['-R', process.env.RATE] : []), '-m', 'POST', '-H', 'content-type=application/json', '-b', BODY, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = ''; c.stdout.on('data', (d) => (out += d));
    c.once('exit', () => { try { const r = JSON.parse(out); if (r.non2xx || r.errors) reject(new Error('errors')); resolve(r); } catch (e) { reject(e); } });
  });
}
const servers = [];
for (const spec of specs) { const [name, rest] = spec.split('='); const [tree, mode] = rest.split(':'); servers.push({ name, ...(await start(tree, mode)), rps: [], cpu: [] }); }
for (const s of servers) { const r = await fetch(s.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY }); console.log(s.name, r.status, await r.text()); await load(s.url, 1); }
for (let round = 0; round < Number(rounds); round++) {
  const line = [];
  for (let i = 0; i < servers.length; i++) {
    const s = servers[(i + round) % servers.length];
    const before = Number(await s.ask('cpu'));
    const r = await load(s.url, Number(seconds));
    const cpu = (Number(await s.ask('cpu')) - before) / r.requests.total;
    s.rps.push(r.requests.average); s.cpu.push(cpu); line.push(`${s.name} ${(r.requests.average / 1000).toFixed(1)}k ${cpu.toFixed(0)}µs`);
  }
  console.log(`round ${round}: ${line.join(' | ')}`);
}
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const base = servers[0];
for (const s of servers) console.log(`${s.name}: median ${(med(s.rps) / 1000).toFixed(1)} k/s, ${med(s.cpu).toFixed(1)} µs/req, vs ${base.name} ${(med(s.rps) / med(base.rps)).toFixed(2)}× (per-round ratios ${s.rps.map((v, i) => (v / base.rps[i]).toFixed(2)).join(' ')})`);
for (const s of servers) { s.child.stdin.end(); await once(s.child, 'exit'); }
