import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fixedBySave, gaveUpReason, gaveUpRemedy } from '../cli/give-up.js';
import { createSupervisor, type ProcessFailure, type ProcessSpec } from '../cli/supervisor.js';
import { collector } from './support/cli.js';

const folder = mkdtempSync(join(tmpdir(), 'keel-supervisor-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

/** A child that behaves like `keel start`: reports ready over IPC, drains and exits 0 on SIGTERM. */
const WELL_BEHAVED = `
  process.on('SIGTERM', () => { console.log('draining'); process.exit(0); });
  console.log('starting');
  console.error('a warning');
  process.send({ type: 'ready', modules: [] });
  setInterval(() => {}, 1000);
`;

/** Crashes the first time (leaving a marker file), then behaves. */
const CRASHES_ONCE = `
  const fs = require('node:fs');
  const marker = process.env.MARKER;
  if (!fs.existsSync(marker)) { fs.writeFileSync(marker, ''); console.log('crashing'); process.exit(3); }
  ${WELL_BEHAVED}
`;

function spec(name: string, script: string, env: Record<string, string> = {}): ProcessSpec {
  return { name, command: process.execPath, args: ['-e', script], cwd: folder, env: { ...process.env, ...env } };
}

describe('cli - supervisor', () => {
  it('cli - prefixes output, restarts a crashed process with backoff, reports readiness and drains', async () => {
    const output = collector();
    const log: string[] = [];
    let allReady!: () => void;
    const ready = new Promise<void>((resolve) => (allReady = resolve));
    const supervisor = createSupervisor({
      processes: [spec('steady', WELL_BEHAVED), spec('flaky', CRASHES_ONCE, { MARKER: join(folder, 'crashed-once') })],
      output,
      log: (line) => log.push(line),
      onAllReady: () => allReady(),
      initialBackoffMs: 10,
    });
    await ready;
    expect(supervisor.ready).toBe(true);
    const exits = await supervisor.stop();

    expect(exits).toEqual([
      { name: 'steady', code: 0, signal: null },
      { name: 'flaky', code: 0, signal: null },
    ]);
    expect(log).toContain('flaky exited (exit code 3); restarting in 10 ms.');
    expect(output.text).toContain('flaky  | crashing\n');
    expect(output.text).toContain('steady | starting\n');
    expect(output.text).toContain('steady | a warning\n');
    expect(output.text).toContain('steady | draining\n');
  });

  it('cli - restarts only the processes named: drains each, then starts it again, and counts no crash', async () => {
    const output = collector();
    const log: string[] = [];
    let readyCount = 0;
    let onReady: () => void = () => {};
    const supervisor = createSupervisor({
      processes: [spec('changed', WELL_BEHAVED), spec('kept', WELL_BEHAVED)],
      output,
      log: (line) => log.push(line),
      onAllReady: () => {
        readyCount++;
        onReady();
      },
    });
    await new Promise<void>((resolve) => (onReady = resolve));
    const readyAgain = new Promise<void>((resolve) => (onReady = resolve));
    await supervisor.restart(['changed']);
    await readyAgain;
    const exits = await supervisor.stop();
    expect(exits).toEqual([
      { name: 'changed', code: 0, signal: null },
      { name: 'kept', code: 0, signal: null },
    ]);
    expect(readyCount).toBe(2);
    const lines = output.text.split('\n');
    expect(lines.filter((line) => line === 'changed | starting')).toHaveLength(2);
    // Drained before it started again.
    expect(lines.indexOf('changed | draining')).toBeLessThan(lines.lastIndexOf('changed | starting'));
    expect(lines.filter((line) => line === 'kept    | starting')).toHaveLength(1);
    expect(log).toEqual([]);
  });

  it('cli - in JSON format writes every line as a JSON object naming its process: records as they are, other lines wrapped', async () => {
    const output = collector();
    let allReady!: () => void;
    const ready = new Promise<void>((resolve) => (allReady = resolve));
    const script = `
      process.on('SIGTERM', () => process.exit(0));
      console.log(JSON.stringify({ level: 30, process: 'named', msg: 'a record' }));
      console.log(JSON.stringify({ level: 40, msg: 'a record without process' }));
      console.log('{"level":30,"big":12345678901234567890123,"msg":"kept as written"}');
      console.log('{"not":"closed"');
      console.log('');
      console.error('Error: boom\\n    at one\\n    at two');
      process.send({ type: 'ready', modules: [] });
      setInterval(() => {}, 1000);
    `;
    const supervisor = createSupervisor({ processes: [spec('web#2', script)], output, format: 'json', log: () => {}, onAllReady: () => allReady() });
    await ready;
    await output.waitFor('at two');
    await supervisor.stop();
    const lines = output.text.split('\n').filter((line) => line !== '');
    expect(lines).toContain('{"level":30,"process":"named","msg":"a record"}');
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(records).toContainEqual({ level: 40, msg: 'a record without process', process: 'web#2' });
    // process is added as text: a number JSON.parse would round stays as the process wrote it.
    expect(lines).toContain('{"level":30,"big":12345678901234567890123,"msg":"kept as written","process":"web#2"}');
    const wrapped = (stream: string, level: number, msg: string) =>
      expect.objectContaining({ level, time: expect.any(Number), pid: expect.any(Number), hostname: expect.any(String), process: 'web#2', stream, msg });
    expect(records.filter((record) => record['stream'] === 'stdout')).toEqual([wrapped('stdout', 30, '{"not":"closed"'), wrapped('stdout', 30, '')]);
    expect(records.filter((record) => record['stream'] === 'stderr')).toEqual([
      wrapped('stderr', 50, 'Error: boom'),
      wrapped('stderr', 50, '    at one'),
      wrapped('stderr', 50, '    at two'),
    ]);
    expect(records).toHaveLength(8);
  });

  it('cli - a stop that ends a process still starting says so (beforeReady); the same exit code once it was ready does not', async () => {
    const output = collector();
    // Each prints "up" once its SIGTERM handler is set (the default action for "default").
    const starting = createSupervisor({
      processes: [
        spec('handler', `process.on('SIGTERM', () => process.exit(143)); console.log('up'); setInterval(() => {}, 1000);`),
        spec('default', `console.log('up'); setInterval(() => {}, 1000);`),
        spec('crashing', `process.on('SIGTERM', () => process.exit(1)); console.log('up'); setInterval(() => {}, 1000);`),
      ],
      output,
      log: () => {},
    });
    const deadline = Date.now() + 20_000;
    while (['handler', 'default', 'crashing'].some((name) => !output.text.includes(`${name.padEnd(8)} | up\n`))) {
      if (Date.now() > deadline) throw new Error(`not every process started within 20 s: ${output.text}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(await starting.stop()).toEqual([
      { name: 'handler', code: 143, signal: null, beforeReady: true },
      { name: 'default', code: null, signal: 'SIGTERM', beforeReady: true },
      { name: 'crashing', code: 1, signal: null },
    ]);

    let allReady!: () => void;
    const ready = new Promise<void>((resolve) => (allReady = resolve));
    const started = createSupervisor({
      processes: [spec('ready', `process.on('SIGTERM', () => process.exit(143)); process.send({ type: 'ready', modules: [] }); setInterval(() => {}, 1000);`)],
      output,
      log: () => {},
      onAllReady: () => allReady(),
    });
    await ready;
    expect(await started.stop()).toEqual([{ name: 'ready', code: 143, signal: null }]);
  });

  it("cli - kills a process that ignores SIGTERM after its own spec's drainTimeoutMs, not the supervisor's", { timeout: 30_000 }, async () => {
    const log: string[] = [];
    let allReady!: () => void;
    const ready = new Promise<void>((resolve) => (allReady = resolve));
    const supervisor = createSupervisor({
      processes: [
        { ...spec('stubborn', `process.on('SIGTERM', () => console.log('ignored')); process.send({ type: 'ready', modules: [] }); setInterval(() => {}, 1000);`), drainTimeoutMs: 300 },
        spec('steady', WELL_BEHAVED),
      ],
      output: collector(),
      log: (line) => log.push(line),
      onAllReady: () => allReady(),
      // Longer than the test's timeout: the stop ends in time only if the spec's 300 ms is used.
      drainTimeoutMs: 120_000,
    });
    await ready;
    expect(await supervisor.stop()).toEqual([
      { name: 'stubborn', code: null, signal: 'SIGKILL' },
      { name: 'steady', code: 0, signal: null },
    ]);
    expect(log).toContain('stubborn did not drain within 300 ms; killing it.');
  });

  it("cli - a spec's drainTimeoutMs past the longest timer (a gateway whose operation declares timeoutMs MAX_TIMEOUT_MS) is not a SIGKILL with the SIGTERM", async () => {
    // stopGraceSecondsOf adds 76 s to the longest timeoutMs (75 s, and the gateway's 1 s of margin): past 2^31 - 1 ms, Node fires the timer at once.
    let allReady!: () => void;
    const ready = new Promise<void>((resolve) => (allReady = resolve));
    const supervisor = createSupervisor({
      processes: [
        {
          ...spec('draining', `process.on('SIGTERM', () => setTimeout(() => process.exit(0), 300)); process.send({ type: 'ready', modules: [] }); setInterval(() => {}, 1000);`),
          drainTimeoutMs: (76 + Math.ceil((2 ** 31 - 1) / 1000)) * 1000,
        },
      ],
      output: collector(),
      log: () => {},
      onAllReady: () => allReady(),
    });
    await ready;
    // It drains for 300 ms and exits 0: killed at once, it ended with SIGKILL.
    expect(await supervisor.stop()).toEqual([{ name: 'draining', code: 0, signal: null }]);
  });

  it('cli - gives up on a process that never becomes ready', async () => {
    const log: string[] = [];
    let gaveUp!: (name: string) => void;
    const given = new Promise<string>((resolve) => (gaveUp = resolve));
    const supervisor = createSupervisor({
      processes: [spec('broken', 'process.exit(1)')],
      output: collector(),
      log: (line) => log.push(line),
      onGiveUp: (name) => gaveUp(name),
      initialBackoffMs: 1,
      maxFailedStarts: 3,
    });
    expect(await given).toBe('broken');
    expect(log).toEqual([
      'broken exited (exit code 1); restarting in 1 ms.',
      'broken exited (exit code 1); restarting in 2 ms.',
      'broken exited (exit code 1) 3 times in a row before becoming ready; giving up.',
    ]);
    await supervisor.stop();
  });

  /** Supervises `name`, a child that reports `failure` as keel start does, then exits 1: what it logs, and what it gives up with. */
  function superviseFailing(name: string, failure: ProcessFailure, maxFailedStarts?: number) {
    const log: string[] = [];
    let gaveUp!: (given: [string, unknown]) => void;
    const given = new Promise<[string, unknown]>((resolve) => (gaveUp = resolve));
    const supervisor = createSupervisor({
      processes: [spec(name, `process.send(${JSON.stringify({ type: 'failed', ...failure })}, () => process.exit(1))`)],
      output: collector(),
      log: (line) => log.push(line),
      onGiveUp: (gaveUpOn, reported) => gaveUp([gaveUpOn, reported]),
      initialBackoffMs: 1,
      maxFailedStarts,
    });
    return { log, given, supervisor };
  }

  it('cli - does not restart a process that failed with what a restart would meet again, and hands on the failure it reported', async () => {
    const failure = { code: 'E_USAGE', message: 'KEEL_HTTP_OPERATIONS "bogus" is not all, hosted or none.', retry: false };
    const { log, given, supervisor } = superviseFailing('misconfigured', failure);
    expect(await given).toEqual(['misconfigured', failure]);
    expect(log).toEqual(['misconfigured exited (exit code 1) before becoming ready, with E_USAGE, which a restart would meet again; not restarting it.']);
    await supervisor.stop();
    expect(gaveUpReason('misconfigured', failure)).toBe(
      'misconfigured cannot start, and a restart would not change that: E_USAGE: KEEL_HTTP_OPERATIONS "bogus" is not all, hosted or none',
    );
  });

  it('cli - restarts a process whose failure may pass (the broker not up yet), and names its last failure when it gives up', async () => {
    const failure = { code: 'UNAVAILABLE', message: 'Could not connect to NATS at nats://127.0.0.1:1.', retry: true };
    const { log, given, supervisor } = superviseFailing('early', failure, 3);
    expect(await given).toEqual(['early', failure]);
    expect(log).toHaveLength(3);
    expect(log[2]).toBe('early exited (exit code 1) 3 times in a row before becoming ready; giving up.');
    await supervisor.stop();
    expect(gaveUpReason('early', failure)).toBe('early kept exiting before it became ready, last with UNAVAILABLE: Could not connect to NATS at nats://127.0.0.1:1');
    expect(gaveUpReason('silent', undefined)).toBe('silent kept exiting before it became ready');
  });

  it('cli - hands on the hint and details a process reported, from which the give-up says what to do: the port, the NATS URL, or the hint itself', async () => {
    const failure = {
      code: 'E_HTTP_LISTEN',
      message: 'The HTTP gateway cannot listen on 127.0.0.1:3000: another process listens there (EADDRINUSE).',
      retry: false,
      hint: 'Free port 3000 (stop the process that listens there), or set PORT to another (0 picks a free one).',
      details: { errno: 'EADDRINUSE', port: 3000 },
    };
    const { given, supervisor } = superviseFailing('gateway', failure);
    expect(await given).toEqual(['gateway', failure]);
    await supervisor.stop();
    expect(gaveUpRemedy(failure, { topology: false })).toBe(failure.hint);
    expect(gaveUpRemedy(failure, { topology: true })).toBe(
      'Free port 3000 (stop the process that listens there), or give the process another http port in the topology (http: 0 picks a free one).',
    );
    const unreachable = { code: 'UNAVAILABLE', message: 'Could not connect to NATS at nats://127.0.0.1:1.', retry: true, details: { nats: 'unreachable', servers: ['nats://127.0.0.1:1'] } };
    expect(gaveUpRemedy(unreachable, { topology: false })).toBe("Start a NATS server at nats://127.0.0.1:1, or give the URL of a running one (--nats, KEEL_NATS_URL or the topology's nats.url).");
    expect(gaveUpRemedy({ ...unreachable, details: { ...unreachable.details, nats: 'credentials-refused' } }, { topology: false })).toMatch(
      /^Give it credentials the NATS server at nats:\/\/127\.0\.0\.1:1 accepts: KEEL_NATS_TOKEN/,
    );
    expect(gaveUpRemedy(undefined, { topology: true })).toBeUndefined();
    expect([failure, unreachable, { code: 'E_USAGE', message: '', retry: false }].map(fixedBySave)).toEqual([false, false, false]);
    expect([undefined, { code: 'E_MANIFEST', message: '', retry: true }, { code: 'E_CONFIG', message: '', retry: false }].map(fixedBySave)).toEqual([true, true, true]);
  });

  it('cli - a ready process stopped from outside (it says stopping, then exits) is restarted, counts no failed start, and drains as started', async () => {
    const log: string[] = [];
    let gaveUp = false;
    let readyTwice!: () => void;
    const ready = new Promise<void>((resolve) => (readyTwice = resolve));
    let readies = 0;
    // The first run: ready, then stopping and out, as keel start is on a SIGTERM it did not get from keel up.
    const STOPPED_ONCE = `
      const fs = require('node:fs');
      if (!fs.existsSync(process.env.MARKER)) {
        fs.writeFileSync(process.env.MARKER, '');
        process.send({ type: 'ready', modules: [] });
        process.send({ type: 'stopping' }, () => process.exit(0));
      } else {
        process.on('SIGTERM', () => process.exit(0));
        process.send({ type: 'ready', modules: [] });
        setInterval(() => {}, 1000);
      }
    `;
    const supervisor = createSupervisor({
      processes: [spec('stopped', STOPPED_ONCE, { MARKER: join(folder, 'stopped-once') })],
      output: collector(),
      log: (line) => log.push(line),
      onAllReady: () => {
        if (++readies === 2) readyTwice();
      },
      onGiveUp: () => (gaveUp = true),
      initialBackoffMs: 1,
      maxFailedStarts: 1,
    });
    await ready;
    expect(gaveUp).toBe(false);
    expect(log).toEqual(['stopped exited (exit code 0); restarting in 1 ms.']);
    expect(await supervisor.stop()).toEqual([{ name: 'stopped', code: 0, signal: null }]);
  });
});
