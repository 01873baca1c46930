import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DeadlineScheduler, type DeadlineEntry } from '../kernel/deadline.js';
import type { CallContext } from 'keel';
import { timeoutError } from 'keel/transport';

/** Runs `body` as a script of its own (tsx), with `DeadlineScheduler` imported; resolves with its output and how long it lived. */
function script(body: string): Promise<{ output: string; ms: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'keel-deadline-'));
  const file = join(dir, 'script.mts');
  const source = pathToFileURL(resolve('kernel/deadline.ts')).href;
  writeFileSync(file, `import { DeadlineScheduler } from ${JSON.stringify(source)};\n${body}\n`);
  const started = Date.now();
  return new Promise((done, fail) => {
    execFile(resolve('node_modules/.bin/tsx'), [file], { timeout: 20_000 }, (error, stdout) => {
      if (error) fail(error);
      else done({ output: stdout.trim(), ms: Date.now() - started });
    });
  });
}

/** An entry that records when it expired, in the order entries expire. */
function entry(deadline: number, expired: string[], name: string, onExpire?: () => void): DeadlineEntry {
  return {
    deadline,
    expire: () => {
      expired.push(name);
      onExpire?.();
    },
  };
}

describe('DeadlineScheduler', () => {
  it('adds and deletes in any order: the entries left are the ones still pending, each once', () => {
    const deadlines = new DeadlineScheduler();
    const expired: string[] = [];
    const far = Date.now() + 60_000;
    const entries = Array.from({ length: 6 }, (_, index) => entry(far + index, expired, `e${index}`));
    for (const each of entries) deadlines.add(each);
    deadlines.add(entries[2] as DeadlineEntry); // already pending: still once
    expect(deadlines.size).toBe(6);
    deadlines.delete(entries[0] as DeadlineEntry); // the first: the last moves into its slot
    deadlines.delete(entries[5] as DeadlineEntry); // the one just moved
    deadlines.delete(entries[5] as DeadlineEntry); // not pending any more: nothing happens
    deadlines.delete(entry(far, expired, 'never added'));
    expect(deadlines.size).toBe(4);
    deadlines.delete(entries[3] as DeadlineEntry);
    deadlines.add(entries[0] as DeadlineEntry);
    expect(deadlines.size).toBe(4);
    deadlines.clear();
    expect(deadlines.size).toBe(0);
    expect(expired).toEqual([]);
  });

  it('expires the due entries, earliest deadline first, keeps the others, and lets an expiry add and delete entries', async () => {
    const deadlines = new DeadlineScheduler();
    const expired: string[] = [];
    const now = Date.now();
    const later = entry(now + 60_000, expired, 'later');
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => (done = resolve));
    const last = entry(now + 60, expired, 'added by an expiry', done);
    // Both already due when the timer fires, and pending in the other order: only sorting them
    // expires 'first' first.
    const second = entry(now - 1, expired, 'second', () => {
      deadlines.delete(later);
      deadlines.add(last);
    });
    const first = entry(now - 2, expired, 'first');
    const deleted = entry(now - 2, expired, 'deleted');
    deadlines.add(later);
    deadlines.add(second);
    deadlines.add(deleted);
    deadlines.add(first);
    deadlines.delete(deleted);
    await finished;
    expect(expired.slice(0, 2)).toEqual(['first', 'second']);
    expect(expired).toEqual(expect.arrayContaining(['added by an expiry']));
    expect(expired).not.toContain('deleted');
    expect(expired).not.toContain('later');
    expect(deadlines.size).toBe(0);
  });

  it('does not expire a due entry that an earlier expiry deleted', async () => {
    const deadlines = new DeadlineScheduler();
    const expired: string[] = [];
    const now = Date.now();
    let done: () => void = () => {};
    const finished = new Promise<void>((resolve) => (done = resolve));
    // All three due at the same firing, expired in deadline order: 'first' deletes 'deleted'.
    const deleted = entry(now - 2, expired, 'deleted');
    const first = entry(now - 3, expired, 'first', () => deadlines.delete(deleted));
    const last = entry(now - 1, expired, 'last', done);
    deadlines.add(last);
    deadlines.add(deleted);
    deadlines.add(first);
    await finished;
    expect(expired).toEqual(['first', 'last']);
    expect(deadlines.size).toBe(0);
  });

  it('keeps the process alive while an entry is pending, and lets it exit once none is', async () => {
    const waiting = script(`
      const deadlines = new DeadlineScheduler();
      deadlines.add({ deadline: Date.now() + 300, expire: () => console.log('expired') });
    `);
    const finished = script(`
      const deadlines = new DeadlineScheduler();
      for (let index = 0; index < 3; index += 1) {
        const entry = { deadline: Date.now() + 60_000, expire: () => console.log('expired') };
        deadlines.add(entry);
        await Promise.resolve();
        deadlines.delete(entry);
      }
      console.log('done');
    `);
    const [kept, exited] = await Promise.all([waiting, finished]);
    expect(kept.output).toBe('expired');
    expect(exited.output).toBe('done');
    expect(exited.ms).toBeLessThan(20_000);
  }, 30_000);
});


describe('timeoutError', () => {
  it("says how long the call had, and for a call sent with under a millisecond left says so instead of 'within 0 ms'", () => {
    const address = { contract: 'orders', version: '1.0.0', operation: 'placeOrder' };
    const context = { correlationId: 'c-1', caller: 'http', deadline: Date.now(), principal: undefined } as unknown as CallContext;
    expect(timeoutError(address, context, 1500.4).message).toMatch(/^orders\.placeOrder did not answer within 1500 ms; its outcome is unknown\./);
    expect(timeoutError(address, context, 0.3).message).toMatch(
      /^orders\.placeOrder did not answer before its deadline \(under 1 ms of it was left when it was sent\); its outcome is unknown\./,
    );
    expect(timeoutError(address, context, -2).message).not.toContain('within');
    expect(timeoutError(address, context).message).toMatch(/^orders\.placeOrder did not answer; its outcome is unknown\./);
  });
});
