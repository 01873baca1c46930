/**
 * The `keel` command line, loaded by `bin.ts`: runs {@link main} with this process's arguments, streams and signals.
 * The first Ctrl-C, SIGTERM or SIGHUP (the terminal closed) asks a long-running command to
 * drain: `keel up` and `keel dev` then stop every process, and the nats-server they started
 * last. A second Ctrl-C, or a signal while no command listens, exits at once; a repeated
 * SIGTERM or SIGHUP (process managers and npm/npx wrappers often relay signals twice) does not
 * cut a drain short, nor does a SIGINT within {@link RELAYED_WITHIN_MS} of a first SIGINT: one
 * Ctrl-C reaches a process under `npm run` or `npx` twice (the terminal signals the whole
 * process group, and npm forwards what it receives).
 *
 * When whoever reads stdout goes away (`keel graph | head -1`), writing fails with EPIPE. That
 * is not a failure of the command: further output is dropped, a long-running command drains as
 * on SIGTERM, and the exit code is the command's own. When stderr's reader goes away, what is
 * written there is dropped and the command carries on.
 *
 * While the command logs JSON (`keel up`, `keel dev`, `keel start` in JSON format), this
 * process's own notices are records of its log too: the "Ctrl-C again" notice, and the warnings
 * Node emits (which Node would print as text on stderr; `--no-warnings` still silences them).
 */
import { getEventListeners } from 'node:events';
import { runCli, type SupervisorChannel } from './command.js';
import { processNotice, routeProcessWarnings } from './command-log.js';
import { main } from './main.js';

const controller = new AbortController();

/** A SIGINT this soon after a first SIGINT is the same Ctrl-C relayed (within milliseconds), not a second press. */
const RELAYED_WITHIN_MS = 500;
/** When the first signal was a SIGINT: a Ctrl-C after a SIGTERM, or after an abort that was no signal, is a second one. */
let firstSigintAt: number | undefined;

function onSignal(signal: NodeJS.Signals): void {
  const exitCode = 128 + (signal === 'SIGINT' ? 2 : signal === 'SIGHUP' ? 1 : 15);
  if (!controller.signal.aborted) {
    if (getEventListeners(controller.signal, 'abort').length === 0) process.exit(exitCode);
    if (signal === 'SIGINT') firstSigintAt = performance.now();
    controller.abort(signal);
  } else if (signal === 'SIGINT' && (firstSigintAt === undefined || performance.now() - firstSigintAt >= RELAYED_WITHIN_MS)) {
    processNotice('Ctrl-C again, exiting without waiting for work in flight.');
    process.exit(exitCode);
  }
}

/** A write failed because its reader went away (EIO: the terminal it wrote to was closed, SIGHUP comes with it). */
const readerGone = (error: NodeJS.ErrnoException) => error.code === 'EPIPE' || error.code === 'EIO' || error.code === 'ERR_STREAM_DESTROYED';

process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (!readerGone(error)) throw error;
  if (!controller.signal.aborted) controller.abort('EPIPE');
});
// Diagnostics nobody reads any more are dropped; the command goes on, and its exit code stays its own.
process.stderr.on('error', (error: NodeJS.ErrnoException) => {
  if (!readerGone(error)) throw error;
});

routeProcessWarnings();
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);
// Without a listener, SIGHUP ends Node at once, with no 'exit' event: the nats-server keel up
// started (in its own session) would be left running.
process.on('SIGHUP', onSignal);
// Started by `keel up`: stop when it goes away, and tell it when this process is ready.
process.on('disconnect', () => controller.abort('disconnect'));
/** Every message sent, once written to the channel: disconnecting first could drop the last (a failure, just before the exit). */
let sent: Promise<unknown> = Promise.resolve();
const supervisor: SupervisorChannel | undefined =
  process.send === undefined
    ? undefined
    : {
        send: (message) => {
          if (!process.connected) return;
          const written = new Promise<void>((resolve) => process.send?.(message, undefined, undefined, () => resolve()));
          sent = Promise.all([sent, written]);
        },
      };

process.exitCode = await runCli(main, process.argv.slice(2), { signal: controller.signal, supervisor, ownsProcess: true });
// Bounded: a channel whose other end is gone may never call back.
await Promise.race([sent, new Promise((resolve) => setTimeout(resolve, 2_000))]);
if (process.connected) process.disconnect();
// The command is done (a long-running one returns once it has stopped). A handle the application's code left
// open, such as a timer or a socket opened when a module is imported (keel warm imports them and starts
// nothing), must not keep the process alive: exit once what was written to stdout and stderr is out.
await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
process.exit();
