import { describe, expect, it } from 'vitest';
import { ROOT_CONTEXT, createContextKey, type Context } from '@opentelemetry/api';
import { contextStorage, runInStore } from '../kernel/otel-context.js';

const KEY = createContextKey('test value');
const store = (value: string): Context => ROOT_CONTEXT.setValue(KEY, value);
const current = (): unknown => contextStorage.getStore()?.getValue(KEY);

describe('runInStore (a handler entering its call context)', () => {
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
});
