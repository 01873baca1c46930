/**
 * The conformance suite's part on calls: value semantics, validation at the boundary, errors,
 * deadlines and the call context (DESIGN.md "Semantics" 1 to 4 and 6), against the application
 * conformance.ts boots once for them.
 */
import { getEventListeners } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { KeelError, defineContract, isKeelError, operation, type Transport } from 'keel';
import { ContractError, RemoteFailure, createClient } from 'keel/transport';
import {
  type Booted,
  type ConformanceTarget,
  type LogEntry,
  Rejected,
  WAIT,
  boot,
  capturingLogger,
  expectRejection,
  foreignStorage,
  gateOf,
  ghost,
  pingAndAwaitMarker,
  probe,
  relay,
  shutdown,
  uniqueTag,
} from './conformance-app.js';

/** Registers the part for `target`; `booted` gives the application the suite booted for it. */
export function describeCallConformance(target: ConformanceTarget, booted: () => Booted): void {
  describe('value semantics', () => {
    it('gives the callee a copy of the input: mutating the caller object afterwards changes nothing', async () => {
      const item = { id: uniqueTag('v'), tags: ['x'], nested: { count: 1 } };
      const probeClient = booted().client.client(probe);
      const answer = await probeClient.echo({ item });
      item.tags.push('mutated');
      item.nested.count = 99;
      const { item: stored } = await probeClient.stored({});
      expect(stored).toEqual({ id: item.id, tags: ['x'], nested: { count: 1 } });
      expect(answer.item).not.toBe(item);
      expect(answer.item.nested).not.toBe(item.nested);
    });

    it('gives the caller a copy of the output: mutating a result never reaches the callee', async () => {
      const probeClient = booted().client.client(probe);
      const first = await probeClient.shared({});
      first.item.tags.push('mutated');
      first.item.nested.count = 42;
      const second = await probeClient.shared({});
      expect(second.item).toEqual({ id: 'shared', tags: ['a'], nested: { count: 1 } });
    });

    it('applies schema defaults on the callee side', async () => {
      expect(await booted().client.client(probe).withDefault({ name: 'ada' })).toEqual({ text: 'hello ada' });
    });
  });

  describe('validation at the boundary', () => {
    it('refuses invalid input with INVALID_INPUT naming contract, operation and field', async () => {
      const error = await expectRejection(
        booted().client.client(probe).echo({ item: { id: 7, tags: [], nested: { count: 1 } } } as never),
      );
      expect(isKeelError(error, 'INVALID_INPUT')).toBe(true);
      expect(error.message).toContain('probe.echo');
      expect(error.message).toContain('item.id');
      expect((error as KeelError).details).toMatchObject({ contract: 'probe', operation: 'echo' });
      expect(((error as KeelError).details?.['issues'] as unknown[]).length).toBeGreaterThan(0);
    });

    it('settles a handler that returns a thenable (not a native promise) with its value, or its declared error', async () => {
      const probeClient = booted().client.client(probe);
      expect(await probeClient.fail({ mode: 'thenable-ok' })).toEqual({ ok: true });
      const error = await expectRejection(probeClient.fail({ mode: 'thenable-declared' }));
      expect(error).toBeInstanceOf(Rejected);
      expect((error as InstanceType<typeof Rejected>).data).toEqual({ reason: 'from a thenable', limit: 1 });
    });

    it('refuses at emit an event payload that breaks its contract, notification or durable, with INVALID_EVENT naming the event and the field, and delivers nothing', async () => {
      const app = booted();
      const tag = uniqueTag('invalid-event');
      const probeClient = app.client.client(probe);
      for (const [event, field] of [['pinged', 'explode'], ['recorded', 'failTimes']] as const) {
        const refused = await probeClient.emitInvalid({ tag, event });
        expect(refused).toMatchObject({ code: 'INVALID_EVENT', details: { contract: 'probe', event } });
        expect(refused.message).toContain(`probe.${event}`);
        expect(refused.message).toContain(field);
        expect(refused.details?.['issues']).toContainEqual(expect.objectContaining({ path: [field] }));
      }
      // Nothing was published: a notification would have reached both subscribers before a later
      // one from the same publisher does, and a durable one would be delivered or waiting.
      await pingAndAwaitMarker(app, ['auditor', 'listener']);
      await target.durableSettled(app.namespace);
      expect(app.received.filter((r) => r.tag === tag)).toEqual([]);
      expect(app.deadLetters.filter((letter) => letter.tag === tag)).toEqual([]);
    });

    it('reports a handler output that breaks the contract as INVALID_OUTPUT', async () => {
      const error = await expectRejection(booted().client.client(probe).fail({ mode: 'bad-output' }));
      expect(isKeelError(error, 'INVALID_OUTPUT')).toBe(true);
      expect(error.message).toContain('probe.fail');
    });
  });

  describe('errors', () => {
    it('rebuilds a declared error as the declared class with code and data', async () => {
      const error = await expectRejection(booted().client.client(probe).fail({ mode: 'declared' }));
      expect(error).toBeInstanceOf(Rejected);
      expect(error).toBeInstanceOf(ContractError);
      expect(Rejected.is(error)).toBe(true);
      const rejected = error as InstanceType<typeof Rejected>;
      expect(rejected.code).toBe('REJECTED');
      expect(rejected.data).toEqual({ reason: 'over limit', limit: 3 });
      expect(rejected.message).toBe('rejected: over limit');
      expect(rejected.correlationId).toEqual(expect.any(String));
    });

    it('propagates a declared error through a module that re-declares it', async () => {
      const error = await expectRejection(booted().client.client(relay).forward({ mode: 'declared' }));
      expect(error).toBeInstanceOf(Rejected);
    });

    it('turns an undeclared throw into INTERNAL with a correlation id and no stack, and keeps serving', async () => {
      const probeClient = booted().client.client(probe);
      const error = await expectRejection(probeClient.fail({ mode: 'undeclared' }, { correlationId: 'corr-internal-1' }));
      expect(isKeelError(error, 'INTERNAL')).toBe(true);
      expect((error as KeelError).correlationId).toBe('corr-internal-1');
      expect(error.message).toContain('corr-internal-1');
      expect(error.message).not.toContain('secret stack trace');
      expect(await probeClient.withDefault({ name: 'still alive' })).toEqual({ text: 'hello still alive' });
    });

    it("logs an undeclared throw on the callee's logger, once, at error level, with its message, its stack, and the correlation id the caller got and the call's trace id as a handler's lines carry them", async () => {
      const entries: LogEntry[] = [];
      const app = await boot(target, [{ name: 'probe-log', host: ['probe'] }], { logger: capturingLogger(entries) });
      try {
        // No correlation id given: the one the kernel made is the one the caller got.
        const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
        const error = await expectRejection(app.client.client(probe).fail({ mode: 'undeclared' }, { traceparent }));
        expect(isKeelError(error, 'INTERNAL')).toBe(true);
        const { correlationId } = error as KeelError;
        expect(correlationId).toMatch(/\S{8,}/);
        // Only the callee's kernel logs to `entries` (the caller's is silent). Its fields are those of logFields().
        const logged = entries.filter((entry) => entry.record['correlation_id'] === correlationId && entry.level !== 'debug');
        expect(logged).toHaveLength(1);
        expect(logged[0]).toMatchObject({ level: 'error', record: { operation: 'fail', trace_id: '4bf92f3577b34da6a3ce929d0e0e4736' } });
        expect(logged[0]?.record).not.toHaveProperty('correlationId');
        const err = logged[0]?.record['err'] as Error;
        expect(err).toBeInstanceOf(Error);
        expect(err.message).toBe('boom: a secret stack trace');
        expect(err.stack).toContain('boom: a secret stack trace');
        expect(err.stack).toMatch(/\n\s+at /);
      } finally {
        await shutdown(target, app);
      }
    });

    it('turns a contract error the operation does not declare into INTERNAL', async () => {
      const error = await expectRejection(booted().client.client(probe).fail({ mode: 'undeclared-contract-error' }));
      expect(isKeelError(error, 'INTERNAL')).toBe(true);
    });

    it('reports a dependency failure the handler lets through as INTERNAL, never as retryable NO_RESPONDERS', async () => {
      const error = await expectRejection(
        booted().client.client(relay).nestedFailure({ kind: 'no-responders' }, { correlationId: 'corr-nested-1' }),
      );
      expect(isKeelError(error, 'INTERNAL')).toBe(true);
      expect((error as KeelError).retryable).toBe(false);
      expect((error as KeelError).correlationId).toBe('corr-nested-1');
    });

    it('reports invalid input the handler sent to a dependency as INTERNAL, not as the caller\'s INVALID_INPUT', async () => {
      const error = await expectRejection(booted().client.client(relay).nestedFailure({ kind: 'invalid-input' }));
      expect(isKeelError(error, 'INTERNAL')).toBe(true);
    });

    it('answers NO_RESPONDERS, retryable, when nothing serves the module', async () => {
      const error = await expectRejection(booted().client.client(ghost).boo({}, { timeoutMs: 3_000 }));
      expect(isKeelError(error, 'NO_RESPONDERS')).toBe(true);
      expect((error as KeelError).retryable).toBe(true);
    });

    it('refuses a caller whose contract major version differs with VERSION_MISMATCH', async () => {
      const probeV2 = defineContract({ ...probe, version: '2.0.0' });
      const transport = await target.createTransport(booted().namespace);
      try {
        const client = createClient(probeV2, transport, { caller: 'external', defaultTimeoutMs: 3_000 });
        const error = await expectRejection(client.withDefault({ name: 'x' }));
        expect(isKeelError(error, 'VERSION_MISMATCH')).toBe(true);
        const minor = createClient(defineContract({ ...probe, version: '1.9.0' }), transport, {
          caller: 'external',
          defaultTimeoutMs: 3_000,
        });
        expect(await minor.withDefault({ name: 'x' })).toEqual({ text: 'hello x' });
      } finally {
        await target.closeTransport(transport);
      }
    });

    it('answers UNKNOWN_OPERATION, not retryable, to a newer minor asking for an operation the module lacks; VERSION_MISMATCH on another major', async () => {
      const extra = operation({ input: z.object({}), output: z.object({}) });
      const newer = defineContract({ ...probe, version: '1.9.0', operations: { ...probe.operations, purge: extra } });
      const nextMajor = defineContract({ ...probe, version: '2.0.0', operations: { ...probe.operations, purge: extra } });
      const transport = await target.createTransport(booted().namespace);
      try {
        const options = { caller: 'external', defaultTimeoutMs: 3_000 } as const;
        const unknown = await expectRejection(createClient(newer, transport, options).purge({}));
        expect(isKeelError(unknown, 'UNKNOWN_OPERATION')).toBe(true);
        expect((unknown as KeelError).retryable).toBe(false);
        expect(unknown.message).toContain(`Module "probe" ${probe.version} has no operation "purge"`);
        expect(await createClient(newer, transport, options).withDefault({ name: 'y' })).toEqual({ text: 'hello y' });
        const mismatch = await expectRejection(createClient(nextMajor, transport, options).purge({}));
        expect(isKeelError(mismatch, 'VERSION_MISMATCH')).toBe(true);
        expect(mismatch.message).toContain('probe 2.0.0');
      } finally {
        await target.closeTransport(transport);
      }
    });
  });

  describe('deadlines', () => {
    it('times out a slow call at the per-call deadline with TIMEOUT, not retryable', async () => {
      const error = await expectRejection(booted().client.client(probe).slow({ ms: 1_500 }, { timeoutMs: 100 }));
      expect(isKeelError(error, 'TIMEOUT')).toBe(true);
      expect((error as KeelError).retryable).toBe(false);
    });

    it('applies the operation timeout when the call sets none', async () => {
      const error = await expectRejection(booted().client.client(probe).slowWithTimeout({ ms: 1_500 }));
      expect(isKeelError(error, 'TIMEOUT')).toBe(true);
    });

    it('applies the kernel default when neither call nor operation sets one', async () => {
      const quick = await boot(target, [{ name: 'probe-quick', host: ['probe'] }], { defaultTimeoutMs: 150 });
      try {
        const error = await expectRejection(quick.client.client(probe).slow({ ms: 1_500 }));
        expect(isKeelError(error, 'TIMEOUT')).toBe(true);
      } finally {
        await shutdown(target, quick);
      }
    });

    it('cancels a call with CANCELLED, not retryable, when the caller aborts it while its handler runs, and keeps serving', async () => {
      const app = booted();
      const key = uniqueTag('cancel');
      const controller = new AbortController();
      try {
        const pending = expectRejection(app.client.client(probe).hold({ key }, { signal: controller.signal }));
        await vi.waitFor(() => expect(app.shared.started).toContain(`probe-1:${key}`), WAIT);
        controller.abort();
        const error = await pending;
        expect(isKeelError(error, 'CANCELLED')).toBe(true);
        expect((error as KeelError).retryable).toBe(false);
        expect(await app.client.client(probe).withDefault({ name: 'after cancel' })).toEqual({ text: 'hello after cancel' });
      } finally {
        gateOf(app.shared, key).open();
      }
    });

    it('cancels every call waiting on one signal when it aborts (one signal for many calls, as a gateway connection\'s), each with CANCELLED', async () => {
      const app = booted();
      const keys = [1, 2, 3].map((index) => uniqueTag(`shared-signal-${index}`));
      const controller = new AbortController();
      try {
        const pending = keys.map((key) => expectRejection(app.client.client(probe).hold({ key }, { signal: controller.signal })));
        await vi.waitFor(() => expect(app.shared.started).toEqual(expect.arrayContaining(keys.map((key) => `probe-1:${key}`))), WAIT);
        controller.abort();
        for (const error of await Promise.all(pending)) expect(isKeelError(error, 'CANCELLED'), String(error)).toBe(true);
      } finally {
        for (const key of keys) gateOf(app.shared, key).open();
      }
    });

    it('leaves a plain signal that many calls used one after another with one abort listener, and still cancels the next call with it', async () => {
      const app = booted();
      const controller = new AbortController();
      for (let index = 0; index < 50; index += 1) {
        expect(await app.client.client(probe).slow({ ms: 0 }, { signal: controller.signal })).toEqual({ slept: 0 });
      }
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      const key = uniqueTag('after-many');
      try {
        const pending = expectRejection(app.client.client(probe).hold({ key }, { signal: controller.signal }));
        await vi.waitFor(() => expect(app.shared.started).toContain(`probe-1:${key}`), WAIT);
        controller.abort();
        expect(isKeelError(await pending, 'CANCELLED')).toBe(true);
      } finally {
        gateOf(app.shared, key).open();
      }
    });

    it('leaves no abort listener on a timeout or composite signal once its call answered: Node keeps such a signal alive while listened to', async () => {
      const app = booted();
      const timeout = AbortSignal.timeout(600_000);
      const composite = AbortSignal.any([new AbortController().signal]);
      for (const signal of [timeout, composite]) {
        expect(await app.client.client(probe).slow({ ms: 0 }, { signal })).toEqual({ slept: 0 });
        expect(getEventListeners(signal, 'abort')).toHaveLength(0);
      }
    });

    it('lets a call finish when it is within its deadline', async () => {
      expect(await booted().client.client(probe).slow({ ms: 20 }, { timeoutMs: 3_000 })).toEqual({ slept: 20 });
    });

    it('gives a nested call no more than what is left of the outer deadline', async () => {
      // 4 s is less than every default in play (5 s in the suite, 10 s in the kernel), so a lost
      // deadline would show as a later one on either side.
      const before = Date.now();
      const answer = await booted().client.client(relay).context({}, { timeoutMs: 4_000 });
      const after = Date.now();
      expect(answer.own.deadline).toBeGreaterThanOrEqual(before + 4_000);
      expect(answer.own.deadline).toBeLessThanOrEqual(after + 4_000);
      expect(answer.nested.deadline).toBeLessThanOrEqual(answer.own.deadline);
      expect(answer.nested.deadline).toBeLessThanOrEqual(after + 4_000);
    });

    it('refuses a call that arrives after its deadline with TIMEOUT, before its handler runs', async () => {
      const { client, transports } = booted();
      const transport = transports[0] as Transport;
      const item = (id: string) => ({ id, tags: ['deadline'], nested: { count: 1 } });
      const before = item(uniqueTag('before'));
      await client.client(probe).echo({ item: before });
      const address = (operation: string) => ({ contract: probe.name, version: probe.version, operation });
      const context = (correlationId: string, deadline: number) => ({ correlationId, traceparent: undefined, caller: 'external', deadline });
      // The transport itself, as a peer with a late clock or a replayed message would reach it:
      // a kernel client refuses to send such a call.
      const late = await expectRejection(transport.call(address('echo'), { item: item(uniqueTag('late')) }, context('late-1', Date.now() - 3_600_000)));
      expect(late instanceof RemoteFailure ? late.envelope.code : (late as KeelError).code).toBe('TIMEOUT');
      // A later call on the same transport reaches the module after the late one: the late echo stored nothing.
      expect(await transport.call(address('stored'), {}, context('late-2', Date.now() + 5_000))).toEqual({ item: before });
    });

    it('fails the outer call with TIMEOUT when the nested call runs out of the inherited budget', async () => {
      const error = await expectRejection(
        booted().client.client(relay).slowNested({ delayMs: 50, nestedMs: 2_000 }, { timeoutMs: 400 }),
      );
      expect(isKeelError(error, 'TIMEOUT')).toBe(true);
    });
  });

  describe('context', () => {
    it('carries correlation id, traceparent, caller and deadline into the callee', async () => {
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      const before = Date.now();
      const view = await booted().client.client(probe).context({}, { correlationId: 'corr-ctx-1', traceparent, timeoutMs: 3_000 });
      const after = Date.now();
      expect(view).toMatchObject({ correlationId: 'corr-ctx-1', traceparent, caller: 'external' });
      // The caller's deadline itself, not one the callee made up from its own default.
      expect(view.deadline).toBeGreaterThanOrEqual(before + 3_000);
      expect(view.deadline).toBeLessThanOrEqual(after + 3_000);
    });

    it('keeps correlation id and traceparent across nested calls and names the calling module', async () => {
      const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
      const answer = await booted().client.client(relay).context({}, { correlationId: 'corr-ctx-2', traceparent });
      expect(answer.own).toMatchObject({ correlationId: 'corr-ctx-2', traceparent, caller: 'external' });
      expect(answer.nested).toMatchObject({ correlationId: 'corr-ctx-2', traceparent, caller: 'relay' });
    });

    it("gives a handler keel's call context but none of the caller's own AsyncLocalStorage values, nor those of where the kernels were started, at the first call and the nested one", async () => {
      const view = await foreignStorage.run('the caller', () => booted().client.client(probe).context({}, { correlationId: 'corr-ctx-foreign' }));
      expect(view).toMatchObject({ correlationId: 'corr-ctx-foreign', foreign: null });
      const answer = await foreignStorage.run('the caller', () => booted().client.client(relay).context({}, { correlationId: 'corr-ctx-foreign-2' }));
      expect(answer.own).toMatchObject({ correlationId: 'corr-ctx-foreign-2', foreign: null });
      expect(answer.nested).toMatchObject({ correlationId: 'corr-ctx-foreign-2', caller: 'relay', foreign: null });
    });

    it('makes a correlation id when the caller gives none', async () => {
      const view = await booted().client.client(probe).context({});
      expect(view.correlationId).toMatch(/\S{8,}/);
    });

    it('carries a 128-character correlation id unchanged, and refuses one or a traceparent that a header could not carry, before calling', async () => {
      const longest = `id-${'x'.repeat(125)}`;
      expect((await booted().client.client(probe).context({}, { correlationId: longest })).correlationId).toBe(longest);
      for (const correlationId of ['with\nnewline', ' padded ', 'has space', '', 'x'.repeat(129), 'café']) {
        const error = await expectRejection(booted().client.client(probe).context({}, { correlationId }));
        expect(isKeelError(error, 'INVALID_INPUT'), `${JSON.stringify(correlationId)}: ${String(error)}`).toBe(true);
        expect(error.message).toContain(`correlationId for probe.context must be 1 to 128 visible ASCII characters`);
      }
      const traceparent = await expectRejection(booted().client.client(probe).context({}, { traceparent: 'not-a-traceparent' }));
      expect(isKeelError(traceparent, 'INVALID_INPUT')).toBe(true);
      expect(traceparent.message).toContain('traceparent for probe.context must be a W3C traceparent');
    });

    it('refuses before calling, with INVALID_INPUT naming the option, a timeoutMs that is no number, a signal that is no AbortSignal and options that are no object; and keeps serving', async () => {
      const client = booted().client.client(probe) as unknown as Record<string, (input: unknown, options?: unknown) => Promise<unknown>>;
      const slow = client['slow']!;
      // A string timeout once made a deadline of `now + '10'` (a string, so no deadline at all).
      for (const timeoutMs of ['10', true, [5]]) {
        const error = await expectRejection(slow({ ms: 300 }, { timeoutMs }));
        expect(isKeelError(error, 'INVALID_INPUT'), `${JSON.stringify(timeoutMs)}: ${String(error)}`).toBe(true);
        expect(error.message).toContain('timeoutMs for probe.slow must be a number of milliseconds above 0');
      }
      // A signal without addEventListener once threw a TypeError, after the answer, out of every promise: the process died.
      for (const signal of [{}, 'abort', { aborted: false }]) {
        const error = await expectRejection(slow({ ms: 20 }, { signal }));
        expect(isKeelError(error, 'INVALID_INPUT'), `${JSON.stringify(signal)}: ${String(error)}`).toBe(true);
        expect(error.message).toContain('signal for probe.slow must be an AbortSignal');
      }
      // A timeout given in place of the options was silently ignored.
      for (const options of [5_000, 'fast', null]) {
        const error = await expectRejection(slow({ ms: 20 }, options));
        expect(isKeelError(error, 'INVALID_INPUT'), `${JSON.stringify(options)}: ${String(error)}`).toBe(true);
        expect(error.message).toContain('options for probe.slow must be an object');
      }
      expect(await slow({ ms: 20 }, { timeoutMs: 3_000, signal: new AbortController().signal })).toEqual({ slept: 20 });
    });

    it('refuses, with INVALID_INPUT naming it, an option no call knows (a misspelt timeout was silently ignored), and an HTTP client\'s option saying whose it is, the option most likely meant (short and wrongly cased keys too); inherited keys are not options; and keeps serving', async () => {
      const client = booted().client.client(probe) as unknown as Record<string, (input: unknown, options?: unknown) => Promise<unknown>>;
      const slow = client['slow']!;
      const misspelt = await expectRejection(slow({ ms: 20 }, { timeout: 5 }));
      expect(isKeelError(misspelt, 'INVALID_INPUT')).toBe(true);
      expect(misspelt.message).toBe(
        'options for probe.slow have an unknown option "timeout"; a call takes timeoutMs, signal, correlationId, traceparent, idempotencyKey, principal, retry, hedge. Did you mean timeoutMs?',
      );
      // A short key and a key wrong only in case get their suggestion too.
      expect((await expectRejection(slow({ ms: 20 }, { sig: 5 }))).message).toMatch(/unknown option "sig"; .* Did you mean signal\?$/);
      expect((await expectRejection(slow({ ms: 20 }, { timeoutMS: 5 }))).message).toMatch(/unknown option "timeoutMS"; .* Did you mean timeoutMs\?$/);
      const other = await expectRejection(slow({ ms: 20 }, { timeoutMs: 3_000, deadline: 5 }));
      expect(isKeelError(other, 'INVALID_INPUT')).toBe(true);
      expect(other.message).toMatch(/^options for probe\.slow have an unknown option "deadline"; a call takes timeoutMs, .*, hedge\.$/);
      const headers = await expectRejection(slow({ ms: 20 }, { headers: { 'x-a': '1' } }));
      expect(isKeelError(headers, 'INVALID_INPUT')).toBe(true);
      expect(headers.message).toMatch(/unknown option "headers"; .* headers is an option of the HTTP client \(createHttpClient\)/);
      // A key on the options' prototype is not an option of the call.
      expect(await slow({ ms: 20 }, Object.create({ inherited: true }) as object)).toEqual({ slept: 20 });
      // Every known option, each left undefined, is accepted, and the call is served.
      const everyOption = { timeoutMs: undefined, signal: undefined, correlationId: undefined, traceparent: undefined, idempotencyKey: undefined, principal: undefined, retry: undefined, hedge: undefined };
      expect(await slow({ ms: 20 }, everyOption)).toEqual({ slept: 20 });
    });
  });

}
