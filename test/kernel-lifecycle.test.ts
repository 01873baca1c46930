import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  KeelError,
  createKernel,
  defineContract,
  defineModule,
  isKeelError,
  operation,
  silentLogger,
  type AnyContract,
  type AnyModule,
  type Logger,
} from 'keel';
import { Fanout, createLocalTransport, type EventSubscription, type PublishedEvent } from 'keel/transport';
import { linesLogger, type LogLine } from './support/log-lines.js';
import { unreachableDatabaseError } from '../kernel/transport-failures.js';

const empty = z.object({});

function contractNamed<const Name extends string>(name: Name) {
  return defineContract({ name, version: '1.0.0', operations: { ping: operation({ input: empty, output: empty }) } });
}

function moduleOf(contract: AnyContract, dependsOn: AnyContract[] = [], journal: string[] = []): AnyModule {
  return defineModule({
    contract,
    dependsOn,
    create: () => ({
      handlers: { ping: () => ({}) },
      start: () => {
        journal.push(`start ${contract.name}`);
      },
      stop: () => {
        journal.push(`stop ${contract.name}`);
      },
    }),
  });
}

function topologyError(make: () => unknown): KeelError {
  try {
    make();
  } catch (error) {
    expect(isKeelError(error, 'INVALID_TOPOLOGY')).toBe(true);
    return error as KeelError;
  }
  throw new Error('expected INVALID_TOPOLOGY');
}

describe('kernel lifecycle - dependency graph', () => {
  const a = contractNamed('alpha');
  const b = contractNamed('beta');
  const c = contractNamed('gamma');

  it('refuses an unknown dependency, naming module and contract', () => {
    const error = topologyError(() => createKernel({ modules: [moduleOf(a, [b])], logger: silentLogger }));
    expect(error.message).toContain('Module "alpha" depends on "beta"');
    expect(error.message).toContain('no module in the manifest implements');
  });

  it('refuses a duplicate module', () => {
    expect(topologyError(() => createKernel({ modules: [moduleOf(a), moduleOf(a)], logger: silentLogger })).message).toContain(
      '"alpha" appears twice',
    );
  });

  it('refuses a dependency cycle, naming the whole chain', () => {
    const error = topologyError(() =>
      createKernel({ modules: [moduleOf(a, [b]), moduleOf(b, [c]), moduleOf(c, [a])], logger: silentLogger }),
    );
    expect(error.message).toContain('alpha → beta → gamma → alpha');
  });

  it('refuses to host a module that is not in the manifest', () => {
    expect(
      topologyError(() => createKernel({ modules: [moduleOf(a)], topology: { host: ['alhpa'] }, logger: silentLogger })).message,
    ).toContain('"alhpa", which is not in the manifest');
  });

  it('refuses a split topology without a transport to reach the rest', () => {
    expect(
      topologyError(() =>
        createKernel({ modules: [moduleOf(a, [b]), moduleOf(b)], topology: { host: ['alpha'] }, logger: silentLogger }),
      ).message,
    ).toContain('no transport');
  });

  it('refuses a dependency on another major version than the manifest implements', () => {
    const b2 = defineContract({ name: 'beta', version: '2.0.0', operations: { ping: operation({ input: empty, output: empty }) } });
    expect(topologyError(() => createKernel({ modules: [moduleOf(a, [b]), moduleOf(b2)], logger: silentLogger })).message).toContain(
      'major versions differ',
    );
  });
});

describe('kernel lifecycle - start and stop', () => {
  it('starts in dependency order, stops in reverse, and reports readiness', async () => {
    const journal: string[] = [];
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const c = contractNamed('gamma');
    const kernel = createKernel({
      modules: [moduleOf(a, [b, c], journal), moduleOf(b, [c], journal), moduleOf(c, [], journal)],
      logger: silentLogger,
    });
    expect(kernel.hosted).toEqual(['gamma', 'beta', 'alpha']);
    expect(kernel.ready()).toBe(false);
    await kernel.start();
    expect(kernel.ready()).toBe(true);
    expect(kernel.status().modules.map((m) => m.state)).toEqual(['started', 'started', 'started']);
    await kernel.stop();
    expect(kernel.ready()).toBe(false);
    expect(journal).toEqual(['start gamma', 'start beta', 'start alpha', 'stop alpha', 'stop beta', 'stop gamma']);
    await kernel.stop();
  });

  it('stops the modules already started when one fails to start, and reports why', async () => {
    const journal: string[] = [];
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const failing = defineModule({
      contract: a,
      dependsOn: [b],
      create: () => ({
        handlers: { ping: () => ({}) },
        start: () => {
          throw new Error('database unreachable');
        },
      }),
    });
    const kernel = createKernel({ modules: [failing, moduleOf(b, [], journal)], logger: silentLogger });
    await expect(kernel.start()).rejects.toThrow('database unreachable');
    expect(kernel.state).toBe('failed');
    expect(journal).toEqual(['start beta', 'stop beta']);
  });

  it('refuses a module whose handlers do not match its contract', async () => {
    const a = contractNamed('alpha');
    const broken = defineModule({
      contract: a,
      create: () => ({ handlers: { ping: () => ({}), pong: () => ({}) } }) as never,
    });
    const kernel = createKernel({ modules: [broken], logger: silentLogger });
    const error = await kernel.start().catch((e: unknown) => e);
    expect(isKeelError(error, 'INVALID_MODULE')).toBe(true);
    expect((error as Error).message).toContain('pong');
  });

  it('refuses a module spec of the wrong shape, naming the field: dependsOn or subscribesTo no array, providers no function, a misspelt key, a start hook no function', async () => {
    const a = contractNamed('alpha');
    const create = () => ({ handlers: { ping: () => ({}) } });
    const refusal = (spec: unknown): string => {
      try {
        defineModule(spec as never);
      } catch (error) {
        expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
        return (error as Error).message;
      }
      throw new Error('defineModule accepted it');
    };
    expect(refusal(undefined)).toBe('defineModule takes an object such as { contract, create }, got undefined.');
    expect(refusal({ contract: a, create, dependsOn: contractNamed('beta') })).toBe('Module "alpha": `dependsOn` must be an array of contracts, got an object.');
    expect(refusal({ contract: a, create, subscribesTo: 'beta' })).toBe('Module "alpha": `subscribesTo` must be an array of contracts, got "beta".');
    expect(refusal({ contract: a, create, providers: {} })).toBe('Module "alpha": `providers` must be a function of bind, got an object.');
    // A misspelt dependsOn was dropped silently: the module started, and its first get() failed.
    expect(refusal({ contract: a, create, dependOn: [] })).toBe(
      'Module "alpha": unknown field "dependOn" (did you mean dependsOn? it takes contract, dependsOn, subscribesTo, providers, data, create).',
    );
    expect(refusal({ contract: a, create, dependOn: [], subscribeTo: [], colour: 'red' })).toBe(
      'Module "alpha": unknown fields "dependOn", "subscribeTo", "colour" (did you mean dependsOn for "dependOn", subscribesTo for "subscribeTo"? it takes contract, dependsOn, subscribesTo, providers, data, create).',
    );
    const hooked = defineModule({ contract: a, create: () => ({ ...create(), start: 'soon' }) as never });
    const kernel = createKernel({ modules: [hooked], logger: silentLogger });
    const error = await kernel.start().catch((e: unknown) => e);
    expect(isKeelError(error, 'INVALID_MODULE'), String(error)).toBe(true);
    expect((error as Error).message).toBe('Module "alpha": create() returned a `start` that is not a function; return start: async () => { ... }, or leave it out.');
  });

  it('lets a module reach only the clients it declared', async () => {
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const c = contractNamed('gamma');
    let caught: unknown;
    const nosy = defineModule({
      contract: a,
      dependsOn: [b],
      create: ({ get }) => {
        try {
          get(c as never);
        } catch (error) {
          caught = error;
        }
        return { handlers: { ping: () => ({}) } };
      },
    });
    const kernel = createKernel({ modules: [nosy, moduleOf(b), moduleOf(c)], logger: silentLogger });
    await kernel.start();
    expect(isKeelError(caught, 'UNDECLARED_DEPENDENCY')).toBe(true);
    expect((caught as Error).message).toContain('Add it to dependsOn');
    await kernel.stop();
  });

  it('resolves private providers from the module container with explicit tokens', async () => {
    const a = contractNamed('alpha');
    const Greeting = Symbol('Greeting');
    const withProvider = defineModule({
      contract: a,
      providers: (bind) => {
        bind<string>(Greeting).toConstantValue('hello');
      },
      create: ({ get }) => {
        const greeting = get<string>(Greeting);
        return {
          handlers: {
            ping: () => {
              if (greeting !== 'hello') throw new Error(`provider resolved to ${greeting}`);
              return {};
            },
          },
        };
      },
    });
    const kernel = createKernel({ modules: [withProvider], logger: silentLogger });
    await kernel.start();
    expect(await kernel.client(a).ping({})).toEqual({});
    await kernel.stop();
  });

  it("keeps a module's providers private: a module depending on it cannot resolve them", async () => {
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const AlphaSecret = Symbol('AlphaSecret');
    let resolvedInAlpha: unknown;
    let caught: unknown;
    const owner = defineModule({
      contract: a,
      providers: (bind) => {
        bind<string>(AlphaSecret).toConstantValue('alpha only');
      },
      create: ({ get }) => {
        resolvedInAlpha = get<string>(AlphaSecret);
        return { handlers: { ping: () => ({}) } };
      },
    });
    // beta depends on alpha, so alpha (and its container) is up before beta asks.
    const nosy = defineModule({
      contract: b,
      dependsOn: [a],
      create: ({ get }) => {
        try {
          get<string>(AlphaSecret);
        } catch (error) {
          caught = error;
        }
        return { handlers: { ping: () => ({}) } };
      },
    });
    const kernel = createKernel({ modules: [nosy, owner], logger: silentLogger });
    await kernel.start();
    try {
      expect(kernel.hosted).toEqual(['alpha', 'beta']);
      expect(resolvedInAlpha).toBe('alpha only');
      expect(isKeelError(caught, 'INVALID_MODULE')).toBe(true);
      expect((caught as Error).message).toContain('Module "beta" asked for Symbol(AlphaSecret), which nothing in its container provides');
    } finally {
      await kernel.stop();
    }
  });

  it('reports an undeclared failure to the callee logger with the correlation id', async () => {
    const records: { record: Record<string, unknown>; message: string }[] = [];
    const capture: Logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (record, message) => records.push({ record, message }),
      child: () => capture,
    };
    const a = contractNamed('alpha');
    const kernel = createKernel({
      modules: [
        defineModule({
          contract: a,
          create: () => ({
            handlers: {
              ping: () => {
                throw new Error('kaboom');
              },
            },
          }),
        }),
      ],
      logger: capture,
    });
    await kernel.start();
    await expect(kernel.client(a).ping({}, { correlationId: 'corr-log' })).rejects.toThrow(/internal error/);
    expect(records.some((r) => r.record['correlation_id'] === 'corr-log' && String(r.record['err']).includes('kaboom'))).toBe(true);
    await kernel.stop();
  });
});

describe('kernel lifecycle - misuse and edge cases', () => {
  it('refuses to start twice with INVALID_STATE', async () => {
    const kernel = createKernel({ modules: [moduleOf(contractNamed('alpha'))], logger: silentLogger });
    await kernel.start();
    const error = await kernel.start().catch((e: unknown) => e);
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    await kernel.stop();
  });

  it('stopped while starting, ends stopped with every started module stopped', async () => {
    const journal: string[] = [];
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const slowStart = defineModule({
      contract: b,
      create: () => ({
        handlers: { ping: () => ({}) },
        start: async () => {
          await sleep(100);
          journal.push('start beta');
        },
        stop: () => {
          journal.push('stop beta');
        },
      }),
    });
    const kernel = createKernel({ modules: [moduleOf(a, [b], journal), slowStart], logger: silentLogger });
    const starting = kernel.start();
    await sleep(10);
    await kernel.stop();
    const error = await starting.catch((e: unknown) => e);
    expect(isKeelError(error, 'INVALID_STATE')).toBe(true);
    expect(kernel.state).toBe('stopped');
    expect(kernel.ready()).toBe(false);
    expect(journal).toEqual(['start beta', 'stop beta']);
  });

  it('does not run the stop hook of a module whose start hook failed', async () => {
    const journal: string[] = [];
    const kernel = createKernel({
      modules: [
        defineModule({
          contract: contractNamed('alpha'),
          create: () => ({
            handlers: { ping: () => ({}) },
            start: () => {
              throw new Error('no database');
            },
            stop: () => {
              journal.push('stop alpha');
            },
          }),
        }),
      ],
      logger: silentLogger,
    });
    await expect(kernel.start()).rejects.toThrow('no database');
    expect(journal).toEqual([]);
  });

  it('stops after drainTimeoutMs when a handler never settles', async () => {
    const a = contractNamed('alpha');
    const kernel = createKernel({
      modules: [defineModule({ contract: a, create: () => ({ handlers: { ping: () => new Promise<never>(() => {}) } }) })],
      logger: silentLogger,
      drainTimeoutMs: 100,
    });
    await kernel.start();
    const hung = kernel.client(a).ping({}, { timeoutMs: 5_000 }).catch((e: unknown) => e);
    await sleep(10);
    await kernel.stop();
    expect(kernel.state).toBe('stopped');
    void hung;
  });

  it("stops after drainTimeoutMs when a module's stop hook never settles, with an error line naming the module; a hook that throws at once is logged and the stop goes on", async () => {
    const lines: LogLine[] = [];
    const journal: string[] = [];
    const kernel = createKernel({
      modules: [
        // Stopped first (reverse order): its hook never ends.
        defineModule({ contract: contractNamed('beta'), create: () => ({ handlers: { ping: () => ({}) }, stop: () => new Promise<never>(() => {}) }) }),
        defineModule({
          contract: contractNamed('alpha'),
          create: () => ({
            handlers: { ping: () => ({}) },
            stop: () => {
              journal.push('stop alpha');
              throw new Error('flush failed');
            },
          }),
        }),
      ],
      logger: linesLogger(lines),
      drainTimeoutMs: 100,
    });
    await kernel.start();
    await kernel.stop();
    expect(kernel.state).toBe('stopped');
    expect(journal).toEqual(['stop alpha']);
    const errors = lines.filter((line) => line.level === 'error');
    expect(errors.map((line) => [line.record['module'], line.message.split(';')[0]])).toEqual([
      ['alpha', 'module stop hook failed'],
      ['beta', "module stop hook still running at the end of the stop's time (drainTimeoutMs and 5 s, for every module of the process)"],
    ]);
    expect(errors[1]?.record).toMatchObject({ drainTimeoutMs: 100 });
  });

  it("gives a module's stop hook its floor of drainTimeoutMs even when the drain used all of it: a hook flushing after a handler that never settles still ends", async () => {
    const lines: LogLine[] = [];
    const journal: string[] = [];
    const a = contractNamed('alpha');
    const kernel = createKernel({
      modules: [
        defineModule({
          contract: a,
          create: () => ({
            handlers: { ping: () => new Promise<never>(() => {}) },
            stop: async () => {
              await sleep(150);
              journal.push('flushed');
            },
          }),
        }),
      ],
      logger: linesLogger(lines),
      drainTimeoutMs: 300,
    });
    await kernel.start();
    void kernel.client(a).ping({}, { timeoutMs: 5_000 }).catch(() => undefined);
    await sleep(10);
    await kernel.stop();
    expect(journal).toEqual(['flushed']);
    expect(lines.filter((line) => line.message.startsWith('module stop hook still running')), JSON.stringify(lines)).toEqual([]);
  });

  it("bounds a kernel's whole stop by drainTimeoutMs and the stop hooks' 5 s, however many modules it hosts: four modules whose handlers and stop hooks never settle", async () => {
    const lines: LogLine[] = [];
    const drainTimeoutMs = 1_000;
    const names = ['alpha', 'beta', 'gamma', 'delta'] as const;
    const contracts = names.map((name) => contractNamed(name));
    const kernel = createKernel({
      modules: contracts.map((contract) =>
        defineModule({ contract, create: () => ({ handlers: { ping: () => new Promise<never>(() => {}) }, stop: () => new Promise<never>(() => {}) }) }),
      ),
      logger: linesLogger(lines),
      drainTimeoutMs,
    });
    await kernel.start();
    for (const contract of contracts) void kernel.client(contract).ping({}, { timeoutMs: 60_000 }).catch(() => undefined);
    await sleep(10);
    const began = performance.now();
    await kernel.stop();
    const tookMs = performance.now() - began;
    expect(kernel.state).toBe('stopped');
    // The bound is drainTimeoutMs + min(5 s, drainTimeoutMs) = 2 s for the whole process; each
    // module stopping on its own clock took 4 × 2 s = 8 s. The limit sits far from both.
    expect(tookMs, JSON.stringify(lines.map((line) => line.message))).toBeLessThan(5_000);
    const hooks = lines.filter((line) => line.message.startsWith('module stop hook still running'));
    expect(hooks.map((line) => line.record['module'])).toEqual(['delta', 'gamma', 'beta', 'alpha']);
  }, 20_000);

  it('lets a module stopped after drainTimeoutMs is used up still finish what it took meanwhile, within 1 s taken from the stop hooks\' time', async () => {
    const lines: LogLine[] = [];
    const alpha = contractNamed('alpha');
    const beta = contractNamed('beta');
    const kernel = createKernel({
      modules: [
        // Stopped last: it serves while beta drains, and takes a call that ends at least 200 ms past drainTimeoutMs
        // (it starts 1 s into the stop), 800 ms before the late drain's 1 s runs out: room for a loaded host's timers.
        defineModule({ contract: alpha, create: () => ({ handlers: { ping: async () => (await sleep(1_200), {}) } }) }),
        // Stopped first: its drain uses all of drainTimeoutMs.
        defineModule({ contract: beta, create: () => ({ handlers: { ping: () => new Promise<never>(() => {}) } }) }),
      ],
      logger: linesLogger(lines),
      drainTimeoutMs: 2_000,
    });
    await kernel.start();
    void kernel.client(beta).ping({}, { timeoutMs: 60_000 }).catch(() => undefined);
    await sleep(10);
    const stopped = kernel.stop();
    await sleep(1_000);
    await kernel.client(alpha).ping({}, { timeoutMs: 60_000 });
    await stopped;
    const cut = lines.filter((line) => line.message.startsWith('work in flight did not finish'));
    expect(cut.map((line) => line.record['module'])).toEqual(['beta']);
  }, 20_000);

  it('waits for a stop hook with drainTimeoutMs at its largest, 2147483647: the stop bound past it is no timer that fires at once', async () => {
    const lines: LogLine[] = [];
    const alpha = contractNamed('alpha');
    let hookEnded = false;
    const kernel = createKernel({
      modules: [
        defineModule({
          contract: alpha,
          create: () => ({
            handlers: { ping: () => ({}) },
            stop: async () => {
              await sleep(100);
              hookEnded = true;
            },
          }),
        }),
      ],
      logger: linesLogger(lines),
      drainTimeoutMs: 2_147_483_647,
    });
    await kernel.start();
    await kernel.stop();
    expect(hookEnded).toBe(true);
    expect(lines.filter((line) => line.message.startsWith('module stop hook still running')), JSON.stringify(lines)).toEqual([]);
  });

  it('refuses a client of a module this process cannot reach, when it is made', () => {
    const a = contractNamed('alpha');
    const b = contractNamed('beta');
    const kernel = createKernel({ modules: [moduleOf(a), moduleOf(b)], topology: { host: ['alpha'] }, logger: silentLogger });
    expect(() => kernel.client(b)).toThrow(/does not host "beta" and has no transport/);
  });

  it.each([Number.NaN, 0, -5, 2 ** 31, Number.POSITIVE_INFINITY])('refuses a call timeout of %s with INVALID_INPUT', async (timeoutMs) => {
    const a = contractNamed('alpha');
    const kernel = createKernel({ modules: [moduleOf(a)], logger: silentLogger });
    await kernel.start();
    const error = await kernel.client(a).ping({}, { timeoutMs }).catch((e: unknown) => e);
    expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
    expect((error as Error).message).toContain('timeoutMs');
    await kernel.stop();
  });

  it('lets a served registration of the local transport be stopped twice while work is in flight', async () => {
    const a = contractNamed('alpha');
    const bus = createLocalTransport();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const registration = await bus.serve({
      contract: a,
      handle: (_address, _input, _context, _trusted, answer) => void gate.then(() => answer.ok({})),
      dropped: () => undefined,
    });
    const context = { correlationId: 'c', traceparent: undefined, caller: 'test', deadline: Date.now() + 5_000 };
    const call = bus.call({ contract: 'alpha', version: '1.0.0', operation: 'ping' }, {}, context);
    const first = registration.stop();
    const second = registration.stop();
    release();
    await Promise.all([first, second]);
    expect(await call).toEqual({});
    await bus.close();
  });
});

describe('local transport - durable events kept while the subscribing module is stopped', () => {
  /** A bound, not a timing: vi.waitFor's 1 s default can pass during an event-loop stall on a loaded machine. */
  const SOON = { timeout: 10_000, interval: 5 } as const;
  const sold = (n: string): PublishedEvent => ({
    contract: 'shop',
    version: '1.0.0',
    event: 'sold',
    delivery: 'durable',
    payload: { n },
    metadata: { id: `sold-${n}`, correlationId: `corr-${n}`, traceparent: undefined, publisher: 'shop', publishedAt: Date.now() },
  });
  const ledger = (handled: string[], failFirst = false): EventSubscription => ({
    subscriber: 'ledger',
    contract: 'shop',
    version: '1.0.0',
    event: 'sold',
    delivery: 'durable',
    fanout: Fanout.BALANCED,
    maxAttempts: 3,
    handle: async (payload, metadata) => {
      handled.push(`${(payload as { n: string }).n}#${metadata.attempt}`);
      if (failFirst && metadata.attempt === 1) throw new Error('failing the first attempt on purpose');
    },
    deadLetter: () => {},
  });

  it('keeps at most durableBacklogLimit events per module, dropping the oldest with an error naming the module and count', async () => {
    const errors: { record: Record<string, unknown>; message: string }[] = [];
    const capture: Logger = { ...silentLogger, error: (record, message) => errors.push({ record, message }), child: () => capture };
    const bus = createLocalTransport({ durableBacklogLimit: 3, logger: capture });
    await bus.publish(sold('0')); // nobody ever subscribed: not kept, as over NATS before the consumer exists
    const first: string[] = [];
    const registration = await bus.subscribe(ledger(first));
    await bus.publish(sold('1'));
    await vi.waitFor(() => expect(first).toEqual(['1#1']), SOON);
    await registration.stop();
    for (const n of ['2', '3', '4', '5', '6']) await bus.publish(sold(n));
    expect(errors).toHaveLength(1);
    expect(errors[0]?.record).toMatchObject({ event: 'shop.sold', subscriber: 'ledger', dropped: 1, limit: 3 });
    expect(errors[0]?.message).toContain('"ledger"');
    const second: string[] = [];
    await bus.subscribe(ledger(second));
    await vi.waitFor(() => expect(second).toEqual(['4#1', '5#1', '6#1']), SOON);
    expect(errors).toHaveLength(2);
    expect(errors[1]?.record).toMatchObject({ event: 'shop.sold', subscriber: 'ledger', dropped: 2, delivered: 3 });
    expect(errors[1]?.message).toContain('2 durable events were dropped');
    expect(first).toEqual(['1#1']);
    await bus.close();
  });

  it('says in one line per module and event how many events held for an unreachable database the close lost, not one line per event', async () => {
    const warnings: { record: Record<string, unknown>; message: string }[] = [];
    const capture: Logger = { ...silentLogger, warn: (record, message) => warnings.push({ record, message }), child: () => capture };
    // Held for 1 s at least: the close below comes first.
    const bus = createLocalTransport({ redeliveryDelayMs: 1_000, logger: capture });
    const tried: string[] = [];
    const deadLetters: string[] = [];
    await bus.subscribe({
      ...ledger(tried),
      handle: async (payload, metadata) => {
        tried.push(`${(payload as { n: string }).n}#${metadata.attempt}`);
        throw unreachableDatabaseError('ledger', new Error('connect ECONNREFUSED'));
      },
      deadLetter: (payload) => void deadLetters.push((payload as { n: string }).n),
    });
    for (const n of ['1', '2', '3']) await bus.publish(sold(n));
    await vi.waitFor(() => expect(tried.sort()).toEqual(['1#1', '2#1', '3#1']), SOON);
    await bus.close();
    expect(deadLetters).toEqual([]);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.record).toEqual({ event: 'shop.sold', subscriber: 'ledger', lost: 3 });
    expect(warnings[0]?.message).toContain('"ledger"\'s database');
  });

  it('keeps a failed event whose redelivery finds the module stopped, and redelivers it as the next attempt', async () => {
    const kept: Record<string, unknown>[] = [];
    const capture: Logger = { ...silentLogger, debug: (record) => void kept.push(record), child: () => capture };
    // The retry must come due after the stop below: a delay longer than an event-loop stall on a loaded machine.
    const bus = createLocalTransport({ redeliveryDelayMs: 1_000, logger: capture });
    const first: string[] = [];
    const registration = await bus.subscribe(ledger(first, true));
    await bus.publish(sold('1'));
    await vi.waitFor(() => expect(first).toEqual(['1#1']), SOON);
    await registration.stop();
    // The retry came due, found nobody running, and kept the event (its own record says so).
    await vi.waitFor(() => expect(kept).toContainEqual({ event: 'shop.sold', subscriber: 'ledger', attempt: 2 }), SOON);
    expect(first).toEqual(['1#1']);
    const second: string[] = [];
    await bus.subscribe(ledger(second));
    await vi.waitFor(() => expect(second).toEqual(['1#2']), SOON);
    await bus.close();
  });

  it('checks createLocalTransport options once: undefined takes the default, a wrong value or unknown key is INVALID_CONFIG naming it', () => {
    const refusal = (options: object): string => {
      try {
        createLocalTransport(options as never);
      } catch (error) {
        expect(isKeelError(error, 'INVALID_CONFIG')).toBe(true);
        return (error as Error).message;
      }
      throw new Error(`createLocalTransport accepted ${JSON.stringify(options)}`);
    };
    expect(() => createLocalTransport({ redeliveryDelayMs: undefined, durableBacklogLimit: undefined })).not.toThrow();
    expect(refusal({ redeliveryDelayMs: -1 })).toMatch(/createLocalTransport: redeliveryDelayMs must be a number of milliseconds, 0 to 3600000, got -1/);
    expect(refusal({ redeliveryDelayMs: '50' })).toContain('redeliveryDelayMs must be a number of milliseconds');
    expect(refusal({ logger: console.log })).toContain('logger must be a Logger');
    expect(refusal({ redeliveryDelay: 10 })).toMatch(/unknown option "redeliveryDelay" \(did you mean redeliveryDelayMs\? it takes logger, redeliveryDelayMs, durableBacklogLimit\)/);
  });

  it('refuses a durableBacklogLimit that is not a whole number of events with INVALID_CONFIG', () => {
    for (const durableBacklogLimit of [-1, 1.5, Number.NaN]) {
      let caught: unknown;
      try {
        createLocalTransport({ durableBacklogLimit });
      } catch (error) {
        caught = error;
      }
      expect(isKeelError(caught, 'INVALID_CONFIG')).toBe(true);
      expect((caught as Error).message).toContain('durableBacklogLimit');
    }
  });
});
