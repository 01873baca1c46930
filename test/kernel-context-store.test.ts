import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, createContextKey, type Context } from '@opentelemetry/api';
import { HANDLER_ENTRY_PATH, contextStorage, detached, handlerEntry } from '../kernel/otel-context.js';

const KEY = createContextKey('test value');
const store = (value: string): Context => ROOT_CONTEXT.setValue(KEY, value);
const current = (): unknown => contextStorage.getStore()?.getValue(KEY);

describe('handlerEntry (a handler entering its call context)', () => {
  const runInStore = handlerEntry();

  it('runs with the store, through awaits and timers, and gives the caller its own back', async () => {
    await contextStorage.run(store('caller'), async () => {
      const seen: unknown[] = [];
      const handler = async (first: string, second: number): Promise<string> => {
        seen.push(current(), first, second);
        await null;
        seen.push(current());
        await new Promise((resolve) => setTimeout(resolve, 1));
        seen.push(current());
        return 'done';
      };
      const pending = runInStore(store('handler'), handler, 'a', 2);
      expect(current()).toBe('caller');
      await expect(pending).resolves.toBe('done');
      expect(current()).toBe('caller');
      expect(seen).toEqual(['handler', 'a', 2, 'handler', 'handler']);
    });
  });

  it('gives the caller its store back when the function throws', () => {
    contextStorage.run(store('caller'), () => {
      expect(() =>
        runInStore(store('handler'), () => {
          expect(current()).toBe('handler');
          throw new Error('boom');
        }, undefined, undefined),
      ).toThrow('boom');
      expect(current()).toBe('caller');
    });
  });

  it('nests: an inner store is the inner function’s only', () => {
    const seen = runInStore(store('outer'), () => {
      const inner = runInStore(store('inner'), () => current(), undefined, undefined);
      return [inner, current()];
    }, undefined, undefined);
    expect(seen).toEqual(['inner', 'outer']);
  });

  it('nests through one entry (a module calling itself): each call has its own store, the outer gets its own back', () => {
    const seen = runInStore(store('outer'), () => {
      const inner = runInStore(store('inner'), () => runInStore(store('innermost'), () => current(), undefined, undefined), undefined, undefined);
      return [inner, current()];
    }, undefined, undefined);
    expect(seen).toEqual(['innermost', 'outer']);
  });

  it("runs on an async context of its own: another AsyncLocalStorage reads neither the caller's value nor the one where the entry was made", async () => {
    const other = new AsyncLocalStorage<string>();
    // As for a kernel started lazily inside a first request: that request's values are no later call's.
    const entry = other.run('where the module was served', () => handlerEntry());
    const seen = await other.run("the caller's", () =>
      contextStorage.run(store('caller'), async () => {
        const inside = await entry(
          store('handler'),
          async () => {
            const before = [other.getStore(), current()];
            await null;
            return [...before, other.getStore(), current()];
          },
          undefined,
          undefined,
        );
        return [...inside, other.getStore(), current()];
      }),
    );
    expect(seen).toEqual([undefined, 'handler', undefined, 'handler', "the caller's", 'caller']);
  });

  it("keeps what a handler enters with another AsyncLocalStorage's enterWith to that call: the next call of the module reads nothing", () => {
    const other = new AsyncLocalStorage<string>();
    const entry = handlerEntry();
    const first = entry(store('first'), () => {
      const before = other.getStore();
      other.enterWith('entered by the first call'); // as some tracing and logging libraries do
      return before;
    }, undefined, undefined);
    const second = entry(store('second'), () => other.getStore(), undefined, undefined);
    expect([first, second, other.getStore()]).toEqual([undefined, undefined, undefined]);
  });

  it("keeps what a nested call enters with another AsyncLocalStorage's enterWith to that call, and what a handler enters to what it starts", async () => {
    const other = new AsyncLocalStorage<string>();
    const entry = handlerEntry();
    const seen = await entry(
      store('outer'),
      async () => {
        other.enterWith('entered by the outer call');
        const inner = entry(store('inner'), () => {
          const before = other.getStore();
          other.enterWith('entered by the inner call');
          return [before, other.getStore()];
        }, undefined, undefined);
        const afterInner = other.getStore();
        const inTimer = await new Promise<unknown[]>((resolve) => setTimeout(() => resolve([other.getStore(), current()]), 1));
        return [...inner, afterInner, ...inTimer];
      },
      undefined,
      undefined,
    );
    const later = entry(store('later'), () => other.getStore(), undefined, undefined);
    expect([...seen, later, other.getStore()]).toEqual([
      undefined,
      'entered by the inner call',
      'entered by the outer call',
      'entered by the outer call',
      'outer',
      undefined,
      undefined,
    ]);
  });

  it('finds by trying the way in meant for each Node line: frames on 24 and later (and 22 with the flag), an own scope per call on the async_hooks of 20 and 22, a resource per call on 24 without frames', () => {
    const major = Number(process.versions.node.split('.')[0]);
    const flags = `${process.execArgv.join(' ')} ${process.env['NODE_OPTIONS'] ?? ''}`;
    const frames = major >= 24 ? !flags.includes('--no-async-context-frame') : flags.includes('--experimental-async-context-frame');
    expect(HANDLER_ENTRY_PATH).toBe(frames ? 'frame' : major < 24 ? 'own-scope' : 'resource-per-call');
  });

  it("leaves no carried value behind: a call made without one, after a call made with one, reads none", () => {
    const carried = new AsyncLocalStorage<string>();
    const entry = handlerEntry(carried as AsyncLocalStorage<unknown>);
    const read = (): unknown => [current(), carried.getStore()];
    const first = carried.run('the first caller\'s transaction', () => entry(store('first'), read, undefined, undefined));
    const second = entry(store('second'), read, undefined, undefined);
    const nested = carried.run('outer', () =>
      entry(store('outer'), () => carried.run('inner', () => entry(store('inner'), read, undefined, undefined)), undefined, undefined),
    );
    const after = entry(store('after'), read, undefined, undefined);
    expect([first, second, nested, after]).toEqual([
      ['first', "the first caller's transaction"],
      ['second', undefined],
      ['inner', 'inner'],
      ['after', undefined],
    ]);
  });

  it('gives calls interleaved through one entry, with nested calls, awaits and timers, each its own store and carried value; the caller keeps its own', async () => {
    const carried = new AsyncLocalStorage<string>();
    const entry = handlerEntry(carried as AsyncLocalStorage<unknown>);
    const seen: string[] = [];
    const handler = async (name: string, depth: number): Promise<void> => {
      for (let round = 0; round < 3; round += 1) {
        seen.push(`${name}|${String(current())}|${String(carried.getStore())}`);
        await (round % 2 === 0 ? null : new Promise((resolve) => setTimeout(resolve, 1)));
        if (depth > 0) {
          await entry(store(`${name}/inner`), handler, `${name}/inner`, depth - 1);
          seen.push(`${name}|${String(current())}|${String(carried.getStore())}`);
        }
      }
    };
    await contextStorage.run(store('caller'), async () => {
      const calls = ['a', 'b', 'c'].map((name) => carried.run(`carried by ${name}`, () => entry(store(name), handler, name, 1)));
      expect(current()).toBe('caller');
      await Promise.all(calls);
      expect(current()).toBe('caller');
    });
    expect(seen.length).toBeGreaterThan(20);
    for (const line of seen) {
      const [name, active, value] = line.split('|') as [string, string, string];
      expect(active).toBe(name);
      expect(value).toBe(`carried by ${name.slice(0, 1)}`);
    }
  });
});

describe('detached (what keel starts that outlives its caller: connections, shared timers, the outbox relay)', () => {
  it("runs with neither keel's store nor another AsyncLocalStorage's value of its caller, and so do the timers it starts", async () => {
    const other = new AsyncLocalStorage<string>();
    const seen = await other.run("the caller's", () =>
      contextStorage.run(store('caller'), () =>
        detached(
          () =>
            new Promise<unknown[]>((resolve) => {
              const now = [other.getStore(), current()];
              setTimeout(() => resolve([...now, other.getStore(), current()]), 1);
            }),
        ),
      ),
    );
    expect(seen).toEqual([undefined, undefined, undefined, undefined]);
  });
});
