/**
 * The embedded database's folder is held by one process (adapters/databases/folder-lock.ts),
 * even when several processes find the same stale lock at once: real processes, released
 * together, race for a folder whose `keel.lock` names a process that has ended.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { holdDatabaseFolder } from 'keel/databases';
import { removeLeftOver } from '../adapters/databases/folder-lock.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const scratch = mkdtempSync(join(tmpdir(), 'keel-folder-lock-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A pid no process has any more. */
const endedPid = (): number => spawnSync(process.execPath, ['-e', '']).pid as number;

/**
 * `count` processes that each take `folder` once the `go` file exists (spinning, so that they
 * start within a scheduler tick of each other), hold it `holdMs`, and say `held` or `busy CODE`.
 */
async function race(folder: string, count: number, holdMs: number): Promise<string[]> {
  const go = join(folder, '..', `${Date.now()}-${Math.random()}.go`);
  const code = `
    import { existsSync } from 'node:fs';
    import { holdDatabaseFolder } from 'keel/databases';
    process.stdout.write('ready\\n');
    while (!existsSync(${JSON.stringify(go)})) {}
    try {
      const release = holdDatabaseFolder(${JSON.stringify(folder)});
      process.stdout.write('held\\n');
      setTimeout(release, ${holdMs});
    } catch (error) {
      process.stdout.write('busy ' + error.code + '\\n');
    }`;
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', '--input-type=module', '-e', code], { cwd: repository, stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  const outputs = children.map((child) => {
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    return () => text;
  });
  const exits = children.map((child) => once(child, 'exit'));
  // Every child loaded and spinning, then all released at once.
  await Promise.all(
    outputs.map(
      (output, index) =>
        new Promise<void>((resolve, reject) => {
          const check = () => (output().includes('ready') ? resolve() : children[index]!.exitCode !== null ? reject(new Error(output())) : setTimeout(check, 20));
          check();
        }),
    ),
  );
  writeFileSync(go, '');
  await Promise.all(exits);
  rmSync(go, { force: true });
  return outputs.map((output) => output().replace('ready\n', '').trim());
}

describe('databases - the embedded database folder lock', () => {
  it('databases - of 6 processes finding the same stale keel.lock at once, exactly one takes the folder, the others are refused UNAVAILABLE (3 rounds)', { timeout: 180_000 }, async () => {
    for (let round = 0; round < 3; round++) {
      const folder = join(scratch, `stale-${round}`);
      holdDatabaseFolder(folder)();
      writeFileSync(join(folder, 'keel.lock'), `${endedPid()}\n`);
      const results = await race(folder, 6, 2_000);
      expect(results.filter((result) => result === 'held'), results.join(' | ')).toHaveLength(1);
      expect(results.filter((result) => result === 'busy UNAVAILABLE'), results.join(' | ')).toHaveLength(5);
      expect(existsSync(join(folder, 'keel.lock')), 'released by its holder').toBe(false);
      expect(existsSync(join(folder, 'keel.lock.takeover')), 'no takeover file left').toBe(false);
      expect(readdirSync(folder), 'no file of the protocol left').toEqual([]);
    }
  });

  it('databases - a lock that names no number, or a takeover file left by an ended process, is taken over', () => {
    const folder = join(scratch, 'garbage');
    holdDatabaseFolder(folder)();
    writeFileSync(join(folder, 'keel.lock'), 'not a pid\n');
    writeFileSync(join(folder, 'keel.lock.takeover'), `${endedPid()}\n`);
    const release = holdDatabaseFolder(folder);
    expect(readFileSync(join(folder, 'keel.lock'), 'utf8')).toBe(`${process.pid}\n`);
    expect(() => holdDatabaseFolder(folder)).toThrow(/open in this process already/);
    release();
    expect(existsSync(join(folder, 'keel.lock'))).toBe(false);
    expect(existsSync(join(folder, 'keel.lock.takeover'))).toBe(false);
  });

  it('databases - a left-over file is removed only while it still names the ended process; one another process made meanwhile is put back', () => {
    const folder = join(scratch, 'left-over');
    holdDatabaseFolder(folder)();
    const takeover = join(folder, 'keel.lock.takeover');
    const ended = endedPid();
    writeFileSync(takeover, `${ended}\n`);
    removeLeftOver(takeover, ended);
    expect(existsSync(takeover), 'the ended process\'s file is removed').toBe(false);

    // Found naming the ended process, but replaced by a running one's before the removal.
    writeFileSync(takeover, `${process.ppid}\n`);
    removeLeftOver(takeover, ended);
    expect(readFileSync(takeover, 'utf8'), 'the running process\'s file is put back').toBe(`${process.ppid}\n`);
    expect(readdirSync(folder).sort()).toEqual(['keel.lock.takeover']);

    removeLeftOver(join(folder, 'gone'), ended);
    expect(readdirSync(folder).sort(), 'a file already gone is no error').toEqual(['keel.lock.takeover']);
  });
});
