import { AsyncLocalStorage } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, createContextKey, type Context } from '@opentelemetry/api';
import { contextStorage, handlerEntry } from '../kernel/otel-context.js';

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

  it("runs on the async context of when the entry was made, not the caller's: another AsyncLocalStorage reads its value of then", async () => {
    const other = new AsyncLocalStorage<string>();
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
    expect(seen).toEqual(['where the module was served', 'handler', 'where the module was served', 'handler', "the caller's", 'caller']);
  });
});
