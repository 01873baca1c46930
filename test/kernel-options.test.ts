/**
 * createKernel's options are checked once: an explicit `undefined` means the default, and a
 * wrong value (or an unknown key) is INVALID_CONFIG naming the field and what it takes.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, currentContext, defineContract, defineModule, isKeelError, operation, silentLogger, type KernelOptions } from 'keel';
import { loggerOption, parseOptions } from 'keel/transport';
import { nearestName } from '../kernel/nearest-name.js';

const clock = defineContract({
  name: 'clock',
  version: '1.0.0',
  operations: { deadline: operation({ input: z.object({}), output: z.object({ remainingMs: z.number() }) }) },
});

const clockModule = defineModule({
  contract: clock,
  create: () => ({ handlers: { deadline: () => ({ remainingMs: (currentContext()?.deadline ?? Number.NaN) - Date.now() }) } }),
});

function refusal(options: Partial<KernelOptions> & Record<string, unknown>): string {
  try {
    createKernel({ modules: [clockModule], logger: silentLogger, ...options } as KernelOptions);
  } catch (error) {
    expect(isKeelError(error, 'INVALID_CONFIG'), String(error)).toBe(true);
    return (error as Error).message;
  }
  throw new Error(`createKernel accepted ${JSON.stringify(options)}`);
}

describe('kernel - options', () => {
  it('kernel - an option given as undefined takes its default: a call gets the 10 s default deadline, not NaN', async () => {
    const kernel = createKernel({ modules: [clockModule], logger: silentLogger, defaultTimeoutMs: undefined, eventTimeoutMs: undefined });
    await kernel.start();
    try {
      const { remainingMs } = await kernel.client(clock).deadline({});
      expect(remainingMs).toBeGreaterThan(9_000);
      expect(remainingMs).toBeLessThanOrEqual(10_000);
    } finally {
      await kernel.stop();
    }
  });

  it('kernel - refuses a timeout that is not a number of milliseconds above 0, naming the field and the value', () => {
    expect(refusal({ defaultTimeoutMs: -5 })).toBe(
      'createKernel: defaultTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got -5.',
    );
    expect(refusal({ defaultTimeoutMs: Number.NaN })).toContain('defaultTimeoutMs must be a number of milliseconds above 0');
    expect(refusal({ eventTimeoutMs: '30s' as unknown as number })).toContain('eventTimeoutMs must be a number of milliseconds above 0 and at most 2147483647, got "30s"');
  });

  it('kernel - refuses wrong delivery attempts, outbox window, inbox batch, drain timeout, logger and dead-letter handler, every one named', () => {
    const message = refusal({
      maxDeliveryAttempts: 1.5,
      outboxWindow: 0,
      inboxBatch: 65,
      inboxBatchMs: 0,
      drainTimeoutMs: -1,
      logger: {} as never,
      onDeadLetter: 'log it' as never,
    });
    expect(message).toContain('maxDeliveryAttempts must be a whole number of deliveries, 1 or more, got 1.5');
    expect(message).toContain('outboxWindow must be a whole number of events, 1 to 1000, got 0');
    expect(message).toContain('inboxBatch must be a whole number of events, 1 to 64, got 65');
    expect(message).toContain('inboxBatchMs must be a number of milliseconds above 0, at most 60000, got 0');
    expect(refusal({ inboxBatch: 2.5, inboxBatchMs: Number.POSITIVE_INFINITY })).toMatch(
      /inboxBatch must be a whole number of events, 1 to 64, got 2\.5.*inboxBatchMs must be a number of milliseconds above 0, at most 60000, got Infinity/s,
    );
    expect(message).toContain('drainTimeoutMs must be a number of milliseconds, 0 (do not wait) to 2147483647, got -1');
    expect(message).toContain('logger must be a Logger (debug, info, warn, error, child)');
    expect(message).toContain('onDeadLetter must be a function of a DeadLetter, got "log it"');
  });

  it('kernel - refuses an unknown option (a misspelt one) and names what it takes', () => {
    expect(refusal({ defaultTimeout: 5_000 })).toBe(
      'createKernel: unknown option "defaultTimeout" (did you mean defaultTimeoutMs? it takes modules, topology, contracts, defaultTimeoutMs, eventTimeoutMs, maxDeliveryAttempts, outboxWindow, inboxBatch, inboxBatchMs, drainTimeoutMs, logger, onDeadLetter, database, databaseCheckMs, principal, retry, hedge, circuitBreaker, retryBudget, bulkhead, bulkheads).',
    );
  });

  it('kernel - refuses a wrong topology, naming the field: no object, a host that is no array of names, a transport that is none, a misspelt key', () => {
    // A misspelt "hosts" once hosted every module silently; a host string was read letter by letter.
    expect(refusal({ topology: { hosts: ['clock'] } as never })).toBe('createKernel: unknown option "topology.hosts" (did you mean host? it takes host, transport).');
    expect(refusal({ topology: 5 as never })).toContain('topology must be { host?, transport? }, got 5');
    expect(refusal({ topology: { host: 'clock' } as never })).toContain('topology.host must be an array of module names, such as ["orders", "payments"], got "clock"');
    expect(refusal({ topology: { transport: {} } as never })).toContain(
      'topology.transport must be a Transport (call, serve, publish, subscribe, status, close), such as await createNatsTransport(), got an object',
    );
    expect(() => createKernel({ modules: [clockModule], logger: silentLogger, topology: { host: undefined, transport: undefined } })).not.toThrow();
  });

  it('kernel - refuses a principal that is no zod schema, or one that could not cross a process as JSON, naming the field', () => {
    expect(refusal({ principal: { sub: 'string' } as never })).toContain('principal must be a zod schema of the principal');
    expect(refusal({ principal: z.object({ sub: z.string(), since: z.date() }) as never })).toBe(
      'createKernel: principal.since cannot cross a process boundary: Date does not survive JSON; use z.iso.datetime() (an ISO-8601 string). The principal travels as JSON in every call and event.',
    );
  });

  it('kernel - refuses a wrong bulkhead, naming the field, and a bulkheads entry that names no module of the manifest', () => {
    expect(refusal({ bulkhead: { maxConcurrent: 0 } })).toBe(
      'createKernel: bulkhead.maxConcurrent must be a whole number of handler runs, 1 or more, or Infinity (no limit), got 0.',
    );
    expect(refusal({ bulkheads: { clock: { maxQueued: -1 } } })).toContain(
      'bulkheads.clock.maxQueued must be a whole number of calls, 0 (refuse at once) or more, or Infinity (never refuse), got -1',
    );
    expect(refusal({ bulkhead: true as never })).toContain('bulkhead must be false (no bulkhead) or { maxConcurrent, maxQueued }, got true');
    expect(refusal({ bulkheads: { clok: { maxConcurrent: 4 } } })).toBe(
      "createKernel: bulkheads.clok names no module of the manifest (its modules: clock); use a module's name.",
    );
  });

  it('kernel - a bulkhead field left out takes the kernel-wide value, then the default (1024 running, 4096 queued); false or an Infinity maxConcurrent turns it off', () => {
    const bulkheads = (options: Partial<KernelOptions>) => createKernel({ modules: [clockModule], logger: silentLogger, ...options }).status().bulkheads;
    const idle = { module: 'clock', running: 0, queued: 0, rejected: 0 };
    expect(bulkheads({})).toEqual([{ ...idle, maxConcurrent: 1024, maxQueued: 4096 }]);
    expect(bulkheads({ bulkhead: { maxQueued: 5 }, bulkheads: { clock: { maxConcurrent: 3 } } })).toEqual([{ ...idle, maxConcurrent: 3, maxQueued: 5 }]);
    expect(bulkheads({ bulkhead: false, bulkheads: { clock: { maxConcurrent: 2 } } })).toEqual([{ ...idle, maxConcurrent: 2, maxQueued: 4096 }]);
    expect(bulkheads({ bulkhead: { maxQueued: Number.POSITIVE_INFINITY } })).toEqual([{ ...idle, maxConcurrent: 1024, maxQueued: Number.POSITIVE_INFINITY }]);
    expect(bulkheads({ bulkhead: false })).toEqual([]);
    expect(bulkheads({ bulkheads: { clock: false } })).toEqual([]);
    expect(bulkheads({ bulkhead: { maxConcurrent: Number.POSITIVE_INFINITY } })).toEqual([]);
  });

  it('kernel - refuses a wrong retry budget, naming the field, and a retry budget without the circuit breaker it counts in', () => {
    expect(refusal({ retryBudget: { ratio: 1.5 } })).toContain('retryBudget.ratio must be a ratio from 0 to 1, got 1.5');
    expect(refusal({ retryBudget: { minRetries: -1 } })).toContain('retryBudget.minRetries must be a whole number of retries, 0 or more, got -1');
    expect(refusal({ retryBudget: { ratio: 0.2, retries: 3 } as never })).toContain('retryBudget');
    expect(refusal({ retryBudget: {}, circuitBreaker: false })).toBe(
      "createKernel: retryBudget is counted in each dependency's circuit breaker, and circuitBreaker is false: turn the breaker on, or set retryBudget: false.",
    );
    expect(() => createKernel({ modules: [clockModule], logger: silentLogger, retryBudget: false, circuitBreaker: false })).not.toThrow();
  });

  it('kernel - accepts 0 as drainTimeoutMs (do not wait) and a whole number of delivery attempts', () => {
    expect(() => createKernel({ modules: [clockModule], logger: silentLogger, drainTimeoutMs: 0, maxDeliveryAttempts: 1 })).not.toThrow();
  });
});

describe('parseOptions - the one way every factory checks its options', () => {
  const Schema = z
    .object({
      port: z.number({ error: 'must be a TCP port' }).optional(),
      tls: z.object({ certFile: z.string().optional(), keyFile: z.string().optional() }).strict().optional(),
      password: z.string({ error: 'must be a string' }).optional(),
      logger: loggerOption().optional(),
    })
    .strict();
  const refusal = (options: object): string => {
    try {
      parseOptions('createThing', Schema, options, ['password']);
    } catch (error) {
      expect(isKeelError(error, 'INVALID_CONFIG')).toBe(true);
      return (error as Error).message;
    }
    throw new Error(`parseOptions accepted ${JSON.stringify(options)}`);
  };

  it('names an unknown key inside a nested option by its full path, with the keys that level takes', () => {
    expect(refusal({ tls: { certfile: 'a.pem' } })).toBe(
      'createThing: unknown option "tls.certfile" (did you mean certFile? it takes certFile, keyFile).',
    );
  });

  it('names several unknown keys of one level in one refusal, with what it takes once and the guess for each key that has one', () => {
    expect(refusal({ prot: 80, colour: 'red', pasword: 'x' })).toBe(
      'createThing: unknown options "prot", "colour", "pasword" (did you mean port for "prot", password for "pasword"? it takes port, tls, password, logger).',
    );
    expect(refusal({ tls: { certfile: 'a.pem', ca: 'b.pem' } })).toBe(
      'createThing: unknown options "tls.certfile", "tls.ca" (did you mean certFile for "tls.certfile"? it takes certFile, keyFile).',
    );
  });

  it('names the wrong field inside an option that is false or an object, not only the option', () => {
    const Either = z
      .object({
        limit: z.union([z.literal(false), z.object({ max: z.number({ error: 'must be a number' }).optional() }).strict()], { error: 'must be false or { max }' }).optional(),
      })
      .strict();
    const message = (options: object): string => {
      try {
        parseOptions('createThing', Either, options);
      } catch (error) {
        return (error as Error).message;
      }
      return 'accepted';
    };
    expect(message({ limit: { max: 'ten' } })).toBe('createThing: limit.max must be a number, got "ten".');
    expect(message({ limit: true })).toBe('createThing: limit must be false or { max }, got true.');
    expect(message({ limit: [] })).toBe('createThing: limit must be false or { max }, got an array.');
  });

  it('never repeats the value of a secret, only its kind', () => {
    const message = refusal({ password: 20250101 });
    expect(message).toBe('createThing: password must be a string, got a number (not shown: it is a secret).');
    expect(message).not.toContain('20250101');
    // A required secret left out once read "got a undefined".
    expect(() => parseOptions('createThing', z.object({ password: z.string({ error: 'must be a string' }) }).strict(), {}, ['password'])).toThrow(
      'createThing: password must be a string, got undefined.',
    );
  });

  it('refuses a logger without the Logger methods, naming them', () => {
    expect(refusal({ logger: { info: () => {} } })).toMatch(/logger must be a Logger \(debug, info, warn, error, child\)/);
  });

  it('drops options given as undefined so that defaults spread over them', () => {
    expect(parseOptions('createThing', Schema, { port: undefined, password: 'x' })).toEqual({ password: 'x' });
  });
});

describe('kernel - the name a misspelt key most likely meant (every "did you mean")', () => {
  it('kernel - suggests the same name in another case, then the fewest edits within a limit growing with the length (a swap is one), then a name the key begins, then a shared four-letter stem; none when nothing is close', () => {
    expect(nearestName('certfile', ['certFile', 'keyFile'])).toBe('certFile');
    expect(nearestName('prot', ['kernel', 'port', 'host'])).toBe('port');
    expect(nearestName('gatway', ['gateway', 'principal'])).toBe('gateway');
    expect(nearestName('timeout', ['timeoutMs', 'signal'])).toBe('timeoutMs');
    expect(nearestName('hosts', ['host', 'transport'])).toBe('host');
    expect(nearestName('sig', ['timeoutMs', 'signal'])).toBe('signal');
    expect(nearestName('timeoutMillis', ['signal', 'timeoutMs'])).toBe('timeoutMs');
    // On a tie, the first of the known names.
    expect(nearestName('pot', ['port', 'pit'])).toBe('port');
    // Nothing close: no guess.
    expect(nearestName('colour', ['level', 'format'])).toBeUndefined();
    expect(nearestName('deadline', ['timeoutMs', 'signal', 'retry', 'hedge'])).toBeUndefined();
    expect(nearestName('ab', ['signal'])).toBeUndefined();
    // A shared beginning counts when it is half the longer name: a plural, another unit, a longer word.
    expect(nearestName('retries', ['hedge', 'retry'])).toBe('retry');
    expect(nearestName('password', ['user', 'pass'])).toBe('pass');
    // A shared first word is no misspelling: no guess among the NATS transport's or the gateway's options.
    const nats = ['timeoutMs', 'maxRedeliveryDelayMs', 'maxAckPending', 'publishAttempts', 'publishRetryDelayMs', 'deadLetterMaxAgeMs'];
    expect(nearestName('deadline', nats)).toBeUndefined();
    expect(nearestName('publishTimeout', nats)).toBeUndefined();
    expect(nearestName('maxRetries', nats)).toBeUndefined();
    expect(nearestName('maxAge', nats)).toBeUndefined();
    expect(nearestName('requestIdHeader', ['port', 'bodyLimit', 'requestTimeoutMs', 'headersTimeoutMs'])).toBeUndefined();
    expect(nearestName('x', [])).toBeUndefined();
  });
});
