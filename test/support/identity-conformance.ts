/**
 * The conformance suite's part on caller identity: the principal a caller gives travels, on the
 * transport under test, into the callee, into the calls the callee makes, into the durable events
 * it emits in a transaction (through its outbox) and into the calls their handlers make; an
 * operation's `auth` refuses a call without a principal (UNAUTHENTICATED) or one its predicate does
 * not allow (FORBIDDEN). Each module runs in a kernel of its own, as in separate processes; the
 * desk owns data (a PGlite of its own), so its events leave through its outbox.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import {
  createKernel,
  currentContext,
  defineContract,
  defineModule,
  event,
  isKeelError,
  operation,
  silentLogger,
  type AnyModule,
  type DatabaseEngine,
  type Kernel,
  type Transport,
} from 'keel';
import { createPGliteDatabase } from 'keel/pglite';
import type { ConformanceTarget } from './conformance.js';

/** The application's principal schema (the shop registers this shape with keel, app/principal.ts). */
export const TestPrincipal = z.object({ sub: z.string().min(1), roles: z.array(z.string()) });

const Seen = z.object({ sub: z.string(), roles: z.array(z.string()) }).nullable();

export const vault = defineContract({
  name: 'vault',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ principal: Seen, frozen: z.boolean() }), idempotent: true }),
    open: operation({ input: z.object({}), output: z.object({ openedBy: z.string() }), auth: 'required' }),
    unlock: operation({
      input: z.object({ shelf: z.string() }),
      output: z.object({ unlockedBy: z.string() }),
      auth: (principal, { shelf }) => principal.roles.includes('admin') && shelf !== 'sealed',
    }),
  },
});

export const desk = defineContract({
  name: 'desk',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({}), output: z.object({ own: Seen, nested: Seen }), idempotent: true }),
    file: operation({ input: z.object({ label: z.string() }), output: z.object({}) }),
  },
  events: {
    filed: event({ payload: z.object({ label: z.string() }), delivery: 'durable' }),
  },
});

export const watcher = defineContract({
  name: 'watcher',
  version: '1.0.0',
  operations: {
    seen: operation({ input: z.object({ label: z.string() }), output: z.object({ handler: Seen, nested: Seen }).nullable(), idempotent: true }),
  },
});

const viewOf = (principal: unknown): z.infer<typeof Seen> => (principal === undefined ? null : Seen.parse(principal));

function identityModules(): AnyModule[] {
  const vaultModule = defineModule({
    contract: vault,
    create: () => ({
      handlers: {
        whoami: (_input, context) => ({ principal: viewOf(context.principal), frozen: Object.isFrozen(context.principal) }),
        open: (_input, context) => ({ openedBy: context.principal?.sub ?? 'nobody' }),
        unlock: (_input, context) => ({ unlockedBy: context.principal?.sub ?? 'nobody' }),
      },
    }),
  });
  const deskModule = defineModule({
    contract: desk,
    dependsOn: [vault],
    // No migrations of its own: keel's tables (the outbox) are all it needs.
    data: { migrations: new URL('./identity-desk-migrations/', import.meta.url) },
    create: ({ get, db, emit }) => {
      const vaultClient = get(vault);
      return {
        handlers: {
          whoami: async (_input, context) => ({ own: viewOf(context.principal), nested: (await vaultClient.whoami({})).principal }),
          file: ({ label }) =>
            db.transaction(async () => {
              await emit('filed', { label });
              return {};
            }),
        },
      };
    },
  });
  const seen = new Map<string, { handler: z.infer<typeof Seen>; nested: z.infer<typeof Seen> }>();
  const watcherModule = defineModule({
    contract: watcher,
    dependsOn: [vault],
    subscribesTo: [desk],
    create: ({ get }) => {
      const vaultClient = get(vault);
      return {
        handlers: { seen: ({ label }) => seen.get(label) ?? null },
        events: {
          desk: {
            filed: async ({ label }, context) => {
              if (currentContext()?.principal !== context.principal) throw new Error('the ambient context lost the principal');
              seen.set(label, { handler: viewOf(context.principal), nested: (await vaultClient.whoami({})).principal });
            },
          },
        },
      };
    },
  });
  return [vaultModule, deskModule, watcherModule];
}

interface IdentityApp {
  readonly client: Kernel;
  readonly kernels: Kernel[];
  readonly transports: Transport[];
  readonly engines: DatabaseEngine[];
}

const WAIT = { timeout: 10_000, interval: 20 } as const;

async function bootIdentity(target: ConformanceTarget, namespace: string): Promise<IdentityApp> {
  const app: IdentityApp = { client: undefined as unknown as Kernel, kernels: [], transports: [], engines: [] };
  const start = async (host: string[], database?: DatabaseEngine): Promise<Kernel> => {
    const transport = await target.createTransport(namespace);
    app.transports.push(transport);
    const kernel = createKernel({
      modules: identityModules(),
      topology: { host, transport },
      principal: TestPrincipal,
      logger: silentLogger,
      ...(database === undefined ? {} : { database }),
    });
    app.kernels.push(kernel);
    await kernel.start();
    return kernel;
  };
  const deskDatabase = await createPGliteDatabase();
  app.engines.push(deskDatabase);
  await start(['vault']);
  // The subscriber before the publisher: a JetStream consumer made after an event was published does not get it.
  await start(['watcher']);
  await start(['desk'], deskDatabase);
  (app as { client: Kernel }).client = await start([]);
  return app;
}

async function shutdownIdentity(target: ConformanceTarget, app: IdentityApp | undefined): Promise<void> {
  if (app === undefined) return;
  for (const kernel of [...app.kernels].reverse()) await kernel.stop();
  for (const transport of app.transports) await target.closeTransport(transport);
  for (const engine of app.engines) await engine.close();
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the call to fail, but it succeeded');
    },
    (error: unknown) => error,
  );
}

const ada = { sub: 'ada', roles: ['admin'] };
const bob = { sub: 'bob', roles: ['customer'] };

/** Registers the caller identity conformance tests for `target`, inside its suite. */
export function describeIdentityConformance(target: ConformanceTarget): void {
  describe('caller identity', () => {
    let app: IdentityApp | undefined;
    const client = (): Kernel => {
      if (app === undefined) throw new Error('identity application not booted');
      return app.client;
    };

    // Four kernels and a PGlite: allow for a loaded machine.
    beforeAll(async () => {
      app = await bootIdentity(target, `identity${process.pid}`);
    }, 120_000);
    afterAll(async () => {
      await shutdownIdentity(target, app);
    });

    it("carries the caller's principal into the callee and into the callee's nested call, frozen; an anonymous call has none", async () => {
      expect(await client().client(desk).whoami({}, { principal: ada })).toEqual({ own: ada, nested: ada });
      expect(await client().client(vault).whoami({}, { principal: bob })).toEqual({ principal: bob, frozen: true });
      expect(await client().client(desk).whoami({})).toEqual({ own: null, nested: null });
    });

    it("carries the principal with a durable event emitted in a transaction, through the outbox, into its handler and the handler's nested call", async () => {
      const label = `filed-${Math.random().toString(36).slice(2, 10)}`;
      await client().client(desk).file({ label }, { principal: bob });
      const anonymous = `${label}-anonymous`;
      await client().client(desk).file({ label: anonymous });
      await vi.waitFor(async () => expect(await client().client(watcher).seen({ label: anonymous })).not.toBeNull(), WAIT);
      expect(await client().client(watcher).seen({ label })).toEqual({ handler: bob, nested: bob });
      expect(await client().client(watcher).seen({ label: anonymous })).toEqual({ handler: null, nested: null });
    });

    it("refuses a call without a principal to an operation whose auth is 'required' with UNAUTHENTICATED; serves one with a principal", async () => {
      const refused = await rejection(client().client(vault).open({}));
      expect(isKeelError(refused, 'UNAUTHENTICATED')).toBe(true);
      expect((refused as Error).message).toContain('vault.open needs a caller identity');
      expect(await client().client(vault).open({}, { principal: bob })).toEqual({ openedBy: 'bob' });
    });

    it('refuses a call its auth predicate does not allow with FORBIDDEN (by principal and by input), and one without a principal with UNAUTHENTICATED', async () => {
      expect(isKeelError(await rejection(client().client(vault).unlock({ shelf: 'a' }, { principal: bob })), 'FORBIDDEN')).toBe(true);
      expect(isKeelError(await rejection(client().client(vault).unlock({ shelf: 'sealed' }, { principal: ada })), 'FORBIDDEN')).toBe(true);
      expect(isKeelError(await rejection(client().client(vault).unlock({ shelf: 'a' })), 'UNAUTHENTICATED')).toBe(true);
      expect(await client().client(vault).unlock({ shelf: 'a' }, { principal: ada })).toEqual({ unlockedBy: 'ada' });
    });

    it("keeps an idempotency key to its principal: another principal's request with the same key and input is IDEMPOTENCY_KEY_REUSED naming another principal, not a replay of the first answer", async () => {
      const idempotencyKey = `key-${Math.random().toString(36).slice(2, 10)}`;
      expect(await client().client(vault).open({}, { principal: bob, idempotencyKey })).toEqual({ openedBy: 'bob' });
      expect(await client().client(vault).open({}, { principal: bob, idempotencyKey })).toEqual({ openedBy: 'bob' });
      const reused = await rejection(client().client(vault).open({}, { principal: ada, idempotencyKey }));
      expect(isKeelError(reused, 'IDEMPOTENCY_KEY_REUSED')).toBe(true);
      // The same input from another caller: the message names that possibility, not only another input.
      expect((reused as Error).message).toContain('or by another principal');
    });

    it("refuses, before calling, a principal option that does not match the application's schema, with UNAUTHENTICATED", async () => {
      const refused = await rejection(client().client(vault).whoami({}, { principal: { sub: '' } as never }));
      expect(isKeelError(refused, 'UNAUTHENTICATED')).toBe(true);
      expect((refused as { details?: { issues?: unknown[] } }).details?.issues).toHaveLength(2);
    });
  });
}
