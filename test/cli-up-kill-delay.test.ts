/**
 * How long keel up and keel dev let a process drain before SIGKILL: as long as keel deploy gives
 * its group (cli/deploy/grace.ts), so a gateway whose operation declares a longer timeoutMs is
 * not killed while it answers it, nor one whose keel.config.ts raises the gateway's maxTimeoutMs. They used
 * to wait 85 s for every process, whatever its operations.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { prepareLocalRun } from '../cli/local-run.js';
import { STOP_GRACE } from '../cli/deploy/grace.js';
import { collector, copyFixtureApp, copyWhoamiApp } from './support/cli.js';

const parent = mkdtempSync(join(tmpdir(), 'keel-kill-delay-'));
afterAll(() => rmSync(parent, { recursive: true, force: true }));

/** The processes keel dev would start in `root`, one process, with `http` or without, hosting `modules` (default: every one). */
async function processesOf(root: string, http: string | undefined, modules?: string[], env: Record<string, string> = {}) {
  // Without the shell's ports and modules: keel start reads them (PORT=8080 serves a gateway).
  const { PORT: _port, KEEL_HTTP_PORT: _httpPort, KEEL_MODULES: _modules, ...shell } = process.env;
  const run = await prepareLocalRun({
    cli: { cwd: root, env: { ...shell, ...env }, stdout: collector(), stderr: collector(), signal: new AbortController().signal, self: { command: process.execPath, args: [] } },
    command: 'keel dev',
    log: () => {},
    single: { http, modules },
    lockDown: false,
  });
  await run.stopNats();
  return run.processes;
}

describe('cli - keel up and keel dev kill a process that does not drain after its group\'s grace period, as keel deploy writes it', () => {
  it("waits 75 s for a process without a gateway, 86 s for one with, and with a gateway the longest timeoutMs an operation declares in place of the requests' 10 s", { timeout: 60_000 }, async () => {
    const root = copyWhoamiApp(parent);
    const withoutGateway = [STOP_GRACE.seconds * 1000];
    const withGateway = [(STOP_GRACE.seconds + STOP_GRACE.gatewaySeconds) * 1000];
    expect((await processesOf(root, 'off')).map((spec) => spec.drainTimeoutMs)).toEqual(withoutGateway);
    expect((await processesOf(root, undefined, ['whoami'])).map((spec) => spec.drainTimeoutMs)).toEqual(withoutGateway);
    expect((await processesOf(root, '0')).map((spec) => spec.drainTimeoutMs)).toEqual(withGateway);
    // Plain keel dev: keel start serves every module's gateway on 3000, and was given 75 s.
    expect((await processesOf(root, undefined)).map((spec) => spec.drainTimeoutMs)).toEqual(withGateway);
    // Its port from the shell, as keel start takes it.
    expect((await processesOf(root, undefined, ['whoami'], { PORT: '8080' })).map((spec) => spec.drainTimeoutMs)).toEqual(withGateway);
    expect((await processesOf(root, undefined, undefined, { KEEL_HTTP_PORT: 'off', PORT: '8080' })).map((spec) => spec.drainTimeoutMs)).toEqual(withoutGateway);
    // Another copy: the first's manifest stays imported as it was.
    const slow = copyFixtureApp('up-replicas', parent, 'slow');
    const contract = join(slow, 'modules/whoami/contract.ts');
    writeFileSync(contract, readFileSync(contract, 'utf8').replace('idempotent: true,', 'idempotent: true,\n      timeoutMs: 60_000,'));
    expect((await processesOf(slow, '0')).map((spec) => spec.drainTimeoutMs)).toEqual([(STOP_GRACE.seconds + 61) * 1000]);
    expect((await processesOf(slow, undefined)).map((spec) => spec.drainTimeoutMs)).toEqual([(STOP_GRACE.seconds + 61) * 1000]);
  });

  it("waits as much longer for a process with a gateway as keel.config.ts raises the gateway's maxTimeoutMs over its default, and no longer for one without", { timeout: 60_000 }, async () => {
    // It once waited 85 s whatever the file said: a request given 60 s by its timeout header was killed 50 s before its deadline.
    const root = copyFixtureApp('up-replicas', parent, 'configured');
    writeFileSync(join(root, 'keel.config.ts'), "import { defineConfig } from 'keel/config';\n\nexport default defineConfig({ gateway: { maxTimeoutMs: 60_000 } });\n");
    expect((await processesOf(root, '0')).map((spec) => spec.drainTimeoutMs)).toEqual([(STOP_GRACE.seconds + 61) * 1000]);
    expect((await processesOf(root, 'off')).map((spec) => spec.drainTimeoutMs)).toEqual([STOP_GRACE.seconds * 1000]);
  });
});
