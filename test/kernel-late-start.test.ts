/**
 * A handler never starts once its call's deadline has passed, also when the deadline passed
 * while the in-process client was still validating the input (the served module trusts the
 * client's deadline check and does not read the clock again).
 */
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, isKeelError, operation, silentLogger } from 'keel';

/** Holds the thread for `ms` milliseconds, as a large input's validation would. */
function busy(ms: number): true {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // validating
  }
  return true;
}

const slowInput = defineContract({
  name: 'slow-input',
  version: '1.0.0',
  operations: {
    take: operation({
      input: z.object({ waitMs: z.number().int() }).refine((input) => busy(input.waitMs)),
      output: z.object({ ok: z.boolean() }),
    }),
  },
});

const front = defineContract({
  name: 'front',
  version: '1.0.0',
  operations: { relay: operation({ input: z.object({ waitMs: z.number().int() }), output: z.object({ nested: z.string() }) }) },
});

describe('kernel - deadline checked after input validation', () => {
  it('kernel - a handler never starts once its deadline passed during input validation: the caller gets TIMEOUT', async () => {
    let runs = 0;
    const nested: string[] = [];
    const target = defineModule({
      contract: slowInput,
      create: () => ({
        handlers: {
          take: () => {
            runs += 1;
            return { ok: true };
          },
        },
      }),
    });
    const relay = defineModule({
      contract: front,
      dependsOn: [slowInput],
      create: ({ get }) => ({
        handlers: {
          relay: async ({ waitMs }) => {
            // The nested call inherits this call's deadline, which passes while its input is validated.
            const outcome = await get(slowInput).take({ waitMs }).then(
              () => 'ok',
              (error: unknown) => (isKeelError(error) ? error.code : String(error)),
            );
            nested.push(outcome);
            return { nested: outcome };
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [target, relay], logger: silentLogger });
    await kernel.start();
    try {
      // Within its deadline: the handler runs (and the schema is compiled by this first call).
      expect(await kernel.client(front).relay({ waitMs: 0 }, { timeoutMs: 5_000 })).toEqual({ nested: 'ok' });
      expect(runs).toBe(1);
      // Validation outlasts the 5 ms the outer call leaves: refused with TIMEOUT, the handler never runs.
      await kernel.client(front).relay({ waitMs: 30 }, { timeoutMs: 5 }).catch(() => undefined);
      await vi.waitFor(() => expect(nested).toHaveLength(2));
      expect(nested[1]).toBe('TIMEOUT');
      expect(runs).toBe(1);
    } finally {
      await kernel.stop();
    }
  });

  it("kernel - a call's own timeout counts from after its input was validated", async () => {
    let runs = 0;
    const target = defineModule({
      contract: slowInput,
      create: () => ({
        handlers: {
          take: () => {
            runs += 1;
            return { ok: true };
          },
        },
      }),
    });
    const kernel = createKernel({ modules: [target], logger: silentLogger });
    await kernel.start();
    try {
      // 250 ms of validation, 200 ms of budget: the budget starts once the input is checked, and the
      // synchronous handler answers within it (a budget of a few ms could pass in a stall of a loaded machine).
      expect(await kernel.client(slowInput).take({ waitMs: 250 }, { timeoutMs: 200 })).toEqual({ ok: true });
      expect(runs).toBe(1);
    } finally {
      await kernel.stop();
    }
  });
});
