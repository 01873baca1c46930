/**
 * The embedded database's folder is held by one process (adapters/databases/folder-lock.ts),
 * even when several processes find the same stale lock at once: real processes, released
 * together, race for a folder whose `keel.lock` names a process that has ended, some rounds with
 * random pauses in the protocol's windows (`KEEL_TEST_LOCK_PAUSE_MS`), which widen them enough
 * that an unsafe step shows: with them, the lock of 5103d39 let six processes of six hold the
 * folder, and that of dc658aa two, once a takeover file of a dead process was there.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs, { mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { holdDatabaseFolder } from 'keel/databases';
import { firstTakeover, nextTakeover, read } from '../adapters/databases/folder-lock.js';

const require = createRequire(import.meta.url);
const repository = dirname(require.resolve('keel/package.json'));
const tsxLoader = pathToFileURL(require.resolve('tsx')).href;
const scratch = mkdtempSync(join(tmpdir(), 'keel-folder-lock-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A pid no process has any more. */
const endedPid = (): number => spawnSync(process.execPath, ['-e', '']).pid as number;

/**
 * `count` processes that each take `folder` once the `go` file exists, hold it `holdMs`, and say
 * `held` or `busy CODE`. Each looks for the file every millisecond, asleep in `Atomics.wait`
 * between looks: they start within about a millisecond of each other, and do not spin the CPU
 * that the test file running beside this one needs.
 */
async function race(folder: string, count: number, holdMs: number, pauseMs = 0): Promise<string[]> {
  const go = join(folder, '..', `${Date.now()}-${Math.random()}.go`);
  const code = `
    import { existsSync } from 'node:fs';
    import { holdDatabaseFolder } from 'keel/databases';
    process.stdout.write('ready\\n');
    const nap = new Int32Array(new SharedArrayBuffer(4));
    while (!existsSync(${JSON.stringify(go)})) Atomics.wait(nap, 0, 0, 1);
    try {
      const release = holdDatabaseFolder(${JSON.stringify(folder)});
      process.stdout.write('held\\n');
      setTimeout(release, ${holdMs});
    } catch (error) {
      process.stdout.write('busy ' + error.code + '\\n');
    }`;
  const children = Array.from({ length: count }, () =>
    spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', '--input-type=module', '-e', code], {
      cwd: repository,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, KEEL_TEST_LOCK_PAUSE_MS: String(pauseMs) },
    }),
  );
  const outputs = children.map((child) => {
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    return () => text;
  });
  const exits = children.map((child) => once(child, 'exit'));
  // Every child loaded and waiting, then all released at once.
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

/** The name of the takeover file made for the lock `lock` is now. */
const takeoverFor = (lock: string): string => firstTakeover(dirname(lock), read(lock)!);

/** This process's start, as folder-lock.ts writes it in a lock: read from one it wrote. */
function started(folder: string): string {
  const release = holdDatabaseFolder(folder);
  const [, start] = readFileSync(join(folder, 'keel.lock'), 'latin1').split('\n');
  release();
  return start!;
}

/** Asserts one of six held the folder, the others were refused, and nothing was left in it. */
function expectOneHolder(folder: string, results: string[]): void {
  expect(results.filter((result) => result === 'held'), results.join(' | ')).toHaveLength(1);
  expect(results.filter((result) => result === 'busy UNAVAILABLE'), results.join(' | ')).toHaveLength(5);
  expect(readdirSync(folder), 'released by its holder, and no file of the protocol left').toEqual([]);
}

describe('databases - the embedded database folder lock', () => {
  it('databases - of 6 processes finding the same stale keel.lock at once, exactly one takes the folder, the others are refused UNAVAILABLE (2 rounds, 3 with random pauses)', { timeout: 240_000 }, async () => {
    for (let round = 0; round < 5; round++) {
      const folder = join(scratch, `stale-${round}`);
      holdDatabaseFolder(folder)();
      writeFileSync(join(folder, 'keel.lock'), `${endedPid()}\n`);
      expectOneHolder(folder, await race(folder, 6, 2_000, round < 2 ? 0 : 3));
    }
  });

  it('databases - of 6 processes finding a stale keel.lock and the takeover file of a process that died taking it over, exactly one takes the folder (3 rounds with random pauses)', { timeout: 180_000 }, async () => {
    for (let round = 0; round < 3; round++) {
      const folder = join(scratch, `stale-takeover-${round}`);
      holdDatabaseFolder(folder)();
      const lock = join(folder, 'keel.lock');
      writeFileSync(lock, `${endedPid()}\n`);
      writeFileSync(takeoverFor(lock), `${endedPid()}\n`);
      expectOneHolder(folder, await race(folder, 6, 2_000, 10));
    }
  });

  it('databases - a lock that names no number, an old lock with a pid alone, and takeover files left by ended processes are taken over, and nothing is left', () => {
    const folder = join(scratch, 'garbage');
    holdDatabaseFolder(folder)();
    const lock = join(folder, 'keel.lock');
    writeFileSync(lock, 'not a pid\n');
    const left = takeoverFor(lock);
    writeFileSync(left, `${endedPid()}\n`);
    // The takeover file made in turn for that one, its process dead too.
    writeFileSync(nextTakeover(folder, left, read(left)!), `${endedPid()}\n`);
    writeFileSync(join(folder, 'keel.lock.takeover-of-a-lock-gone'), `${endedPid()}\n`);
    const release = holdDatabaseFolder(folder);
    expect(readFileSync(lock, 'utf8')).toMatch(new RegExp(`^${process.pid}\n[0-9a-z.-]+\n[0-9a-f]+\n[0-9a-f]+\n$`));
    expect(() => holdDatabaseFolder(folder)).toThrow(/open in this process already/);
    expect(readdirSync(folder)).toEqual(['keel.lock']);
    release();
    expect(readdirSync(folder)).toEqual([]);

    writeFileSync(lock, `${endedPid()}\n`);
    holdDatabaseFolder(folder)();
    expect(readdirSync(folder)).toEqual([]);

    // No lock, but a takeover file of a lock gone: the folder is taken fresh, and it is removed.
    writeFileSync(join(folder, 'keel.lock.takeover-of-a-lock-gone'), `${endedPid()}\n`);
    holdDatabaseFolder(folder)();
    expect(readdirSync(folder)).toEqual([]);
  });

  it("databases - a lock with this process's pid is another thread's when it names this process's start (refused), and a previous process's when it does not (taken over)", async () => {
    const folder = join(scratch, 'same-pid');
    const start = started(folder);
    const lock = join(folder, 'keel.lock');
    writeFileSync(lock, `${process.pid}\n${start}\nanotherthread\n`);
    expect(() => holdDatabaseFolder(folder)).toThrow(/open in this process already/);
    writeFileSync(lock, `${process.pid}\n${start}0\naformerprocess\n`);
    holdDatabaseFolder(folder)();
    expect(readdirSync(folder)).toEqual([]);
    // A former process's lock written with the wall-clock estimate of its start (another system, or an older keel):
    // a minute before this process started (a minute before now was this process's start when its worker had run that long).
    writeFileSync(lock, `${process.pid}\n${Math.round(Date.now() - process.uptime() * 1000 - 60_000)}\naformerprocess\n`);
    holdDatabaseFolder(folder)();
    expect(readdirSync(folder)).toEqual([]);

    // A worker thread of a process whose main thread holds the folder.
    const code = `
      import { Worker } from 'node:worker_threads';
      import { holdDatabaseFolder } from 'keel/databases';
      holdDatabaseFolder(${JSON.stringify(folder)});
      const worker = new Worker(\`
        // Loader hooks do not reach a worker on every Node line: it registers tsx itself.
        import('tsx/esm/api').then(({ register }) => register()).then(() => Promise.all([import('node:worker_threads'), import('keel/databases')])).then(([{ parentPort }, { holdDatabaseFolder }]) => {
          try { holdDatabaseFolder(${JSON.stringify(folder)}); parentPort.postMessage('held'); } catch (error) { parentPort.postMessage('busy ' + error.code + ' ' + error.message); }
        }, (error) => console.error(error));\`, { eval: true });
      worker.on('message', (answer) => { process.stdout.write(answer); process.exit(0); });`;
    const child = spawn(process.execPath, ['--import', tsxLoader, '--conditions=keel-source', '--input-type=module', '-e', code], { cwd: repository, stdio: ['ignore', 'pipe', 'inherit'] });
    let answer = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (answer += chunk));
    await once(child, 'exit');
    expect(answer).toMatch(/^busy UNAVAILABLE .*open in this process already/);
    expect(readdirSync(folder), 'the lock of the ended process left behind').toEqual(['keel.lock']);
  });

  it('databases - on a file system without hard links the lock is made by an exclusive create, taken, refused and taken over as with them', () => {
    const folder = join(scratch, 'no-links');
    const link = fs.linkSync;
    fs.linkSync = () => {
      throw Object.assign(new Error('operation not permitted, link'), { code: 'EPERM' });
    };
    syncBuiltinESMExports();
    try {
      const release = holdDatabaseFolder(folder);
      expect(() => holdDatabaseFolder(folder)).toThrow(/open in this process already/);
      release();
      writeFileSync(join(folder, 'keel.lock'), `${endedPid()}\n`);
      holdDatabaseFolder(folder)();
      writeFileSync(join(folder, 'keel.lock'), `${process.ppid}\n`);
      expect(() => holdDatabaseFolder(folder)).toThrow(new RegExp(`open in process ${process.ppid}`));
      rmSync(join(folder, 'keel.lock'));
      expect(readdirSync(folder)).toEqual([]);
    } finally {
      fs.linkSync = link;
      syncBuiltinESMExports();
    }
  });

  it('databases - a takeover that fails after its check leaves its takeover file while the lock is still the stale one, and a later takeover passes it', () => {
    const folder = join(scratch, 'failed-takeover');
    holdDatabaseFolder(folder)();
    const lock = join(folder, 'keel.lock');
    writeFileSync(lock, `${endedPid()}\n`);
    const takeover = takeoverFor(lock);
    const rename = fs.renameSync;
    fs.renameSync = () => {
      throw Object.assign(new Error('operation not permitted, rename'), { code: 'EPERM' });
    };
    syncBuiltinESMExports();
    try {
      expect(() => holdDatabaseFolder(folder)).toThrow(/operation not permitted, rename/);
    } finally {
      fs.renameSync = rename;
      syncBuiltinESMExports();
    }
    // Removed, another process could make it again and replace the lock while a third passes this one.
    expect(readdirSync(folder).sort()).toEqual(['keel.lock', takeover.slice(folder.length + 1)].sort());
    const release = holdDatabaseFolder(folder);
    expect(readdirSync(folder)).toEqual(['keel.lock']);
    release();
    expect(readdirSync(folder)).toEqual([]);
  });

  it('databases - a folder this thread holds is refused when reached by another path (a symbolic link)', () => {
    const folder = join(scratch, 'linked');
    const release = holdDatabaseFolder(folder);
    symlinkSync(folder, join(scratch, 'link-to-linked'));
    try {
      expect(() => holdDatabaseFolder(join(scratch, 'link-to-linked'))).toThrow(/open in this process already/);
      expect(readdirSync(folder)).toEqual(['keel.lock']);
    } finally {
      release();
    }
    expect(readdirSync(folder)).toEqual([]);
  });

  it("databases - a release leaves a keel.lock that is no longer its own", () => {
    const folder = join(scratch, 'not-its-own');
    const release = holdDatabaseFolder(folder);
    writeFileSync(join(folder, 'keel.lock'), `${process.ppid}\nsomeone\nelse\nx\n`);
    release();
    expect(readFileSync(join(folder, 'keel.lock'), 'utf8')).toBe(`${process.ppid}\nsomeone\nelse\nx\n`);
    rmSync(join(folder, 'keel.lock'));
  });

  it('databases - a lock still being written (no line break yet) is waited for, and taken over once it is old enough to be a dead writer\'s', () => {
    const folder = join(scratch, 'unfinished');
    holdDatabaseFolder(folder)();
    // A running process's pid, unfinished: were it read as finished, the folder would be refused naming it.
    writeFileSync(join(folder, 'keel.lock'), `${process.ppid}`);
    const release = holdDatabaseFolder(folder);
    expect(readFileSync(join(folder, 'keel.lock'), 'utf8')).toMatch(new RegExp(`^${process.pid}\n`));
    release();
    expect(readdirSync(folder)).toEqual([]);
  });
});
