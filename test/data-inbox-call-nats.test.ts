/**
 * A durable event handler of a module that owns data runs in its inbox transaction; over NATS,
 * what it may call depends on where the callee's database is (docs/data.md, "Call other modules
 * outside transactions"). The watcher's handler calls the ledger back, on a nats-server of this
 * file's own:
 *
 * - one process, one PGlite: the call crosses NATS, but the ledger's query would still wait for
 *   the watcher's transaction on the same embedded database, so it is refused as it is in
 *   process (test/data.test.ts), naming the event, rather than waiting out its deadline;
 * - two processes, a PGlite each: the ledger's database is not held, and the call works.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKernel, silentLogger, type AnyModule, type DatabaseEngine, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { createPGliteDatabase } from 'keel/pglite';
import type { DeadLetter } from 'keel/transport';
import { auditModule, ledger, ledgerModule, makeLedgerWatcher } from './fixtures/data/modules.js';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

let server: NatsServer;
beforeAll(async () => {
  server = await startNatsServer();
});
afterAll(async () => {
  await server?.stop();
});

/** Processes started by one test, stopped in reverse order by `stopAll`. */
class Processes {
  readonly #stops: (() => Promise<void>)[] = [];

  async start(prefix: string, host: string[], modules: AnyModule[], letters: DeadLetter[]): Promise<Kernel> {
    const transport: Transport = await createNatsTransport({ servers: server.url, prefix, logger: silentLogger });
    this.#stops.push(() => transport.close());
    const database: DatabaseEngine = await createPGliteDatabase();
    this.#stops.push(() => database.close());
    // A deadline well under the wait below: a call left waiting on the held database ends as a TIMEOUT letter, not as this test's timeout.
    const kernel = createKernel({ modules, topology: { host, transport }, database, logger: silentLogger, defaultTimeoutMs: 2_000, onDeadLetter: (letter) => letters.push(letter) });
    await kernel.start();
    this.#stops.push(() => kernel.stop());
    return kernel;
  }

  async stopAll(): Promise<void> {
    for (const stop of this.#stops.reverse()) await stop();
  }
}

async function until<T>(probe: () => T | undefined, what: string): Promise<T> {
  const end = Date.now() + 10_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('data over NATS - a call from a durable event handler, in its inbox transaction', () => {
  it('refuses with INVALID_STATE naming the event, not a TIMEOUT, a call to a module on the same PGlite in the same process', async () => {
    const seen: string[][] = [];
    const letters: DeadLetter[] = [];
    const processes = new Processes();
    try {
      const modules = [auditModule, ledgerModule, makeLedgerWatcher(seen)];
      const kernel = await processes.start('one', ['audit', 'ledger', 'watcher'], modules, letters);
      await kernel.client(ledger).add({ label: 'watched' });
      const [letter] = await until(() => (letters.length > 0 ? letters : undefined), "the watcher's dead letter");
      expect(letter?.subscriber).toBe('watcher');
      expect((letter?.error as { code?: string }).code).toBe('INVALID_STATE');
      const message = String((letter?.error as Error | undefined)?.message);
      expect(message).toContain(
        'Module "ledger" used its database while module "watcher", which called it (directly or through other modules), handles durable event ledger.entryAdded',
      );
      expect(seen).toEqual([]);
    } finally {
      await processes.stopAll();
    }
  });

  it('lets the handler call a module hosted in another process, each process on a PGlite of its own', async () => {
    const seen: string[][] = [];
    const letters: DeadLetter[] = [];
    const processes = new Processes();
    try {
      const modules = [auditModule, ledgerModule, makeLedgerWatcher(seen)];
      const ledgerProcess = await processes.start('two', ['audit', 'ledger'], modules, letters);
      await processes.start('two', ['watcher'], modules, letters);
      await ledgerProcess.client(ledger).add({ label: 'watched' });
      expect(await until(() => (seen.length > 0 ? seen : undefined), 'the watcher to read the ledger')).toEqual([['watched']]);
      expect(letters).toEqual([]);
    } finally {
      await processes.stopAll();
    }
  });
});
