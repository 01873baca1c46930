// Prints, as one JSON line, every module a process loaded after importing the entries named on its
// command line: the ESM URLs (seen by a loader hook) and the CommonJS files (require.cache).
// node --import tsx --conditions=keel-source test/support/loaded-modules.mjs keel keel/http ...
import { createRequire, register } from 'node:module';
import { MessageChannel } from 'node:worker_threads';

const channel = new MessageChannel();
register(
  `data:text/javascript,${encodeURIComponent(
    'let port; export function initialize(data) { port = data.port; } export async function load(url, context, next) { port.postMessage(url); return next(url, context); }',
  )}`,
  { data: { port: channel.port2 }, transferList: [channel.port2] },
);
const esm = [];
// The hook's messages arrive asynchronously: a last load, after every one above, says they all have.
const last = `data:text/javascript,export default ${Date.now()}`;
const seenLast = new Promise((resolve) => {
  channel.port1.on('message', (url) => (url === last ? resolve() : esm.push(url)));
});
for (const entry of process.argv.slice(2)) await import(entry);
await import(last);
await seenLast;
channel.port1.close();
const commonjs = Object.keys(createRequire(import.meta.url).cache);
process.stdout.write(`${JSON.stringify({ esm, commonjs })}\n`);
