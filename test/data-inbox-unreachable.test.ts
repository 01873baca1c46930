/**
 * A durable event from an outbox, in one process, whose subscriber cannot reach its database
 * (the network to it cut, the server restarting): the handler never ran, so the event is not the
 * handler's failure. It must wait in the outbox for the database to come back, not use up its
 * attempts in half a second (50, 100, 150, 200 ms apart) and be dead-lettered, its outbox row
 * marked sent: in one process a dead letter is gone.
 *
 * The watcher's database is reached through a TCP proxy to this file's PostgreSQL database that
 * the test cuts (every connection reset, new ones refused) and restores; the burst module, whose
 * outbox holds the events, reaches the same database directly.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { createKernel, silentLogger, type DatabaseEngine } from 'keel';
import { createPostgresDatabase } from 'keel/postgres';
import type { DeadLetter } from 'keel/transport';
import { createTestDatabase, type TestDatabase } from './support/databases.js';
import { LABELS, burst, burstModule, watcherModule, type Seen } from './support/inbox-kernel.js';

/** A TCP proxy to `target` on a port of its own, which the test can cut and restore. */
class CuttableProxy {
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;
  port = 0;

  constructor(readonly target: { host: string; port: number }) {}

  async open(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Resets every connection through it, and refuses new ones until {@link open}. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.resetAndDestroy();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  }
}

let database: TestDatabase | undefined;
const engines: DatabaseEngine[] = [];
let proxy: CuttableProxy | undefined;
afterAll(async () => {
  await proxy?.cut();
  for (const engine of engines) await engine.close().catch(() => undefined);
  await database?.drop();
});

describe('data - a durable event from an outbox, in one process, whose subscriber cannot reach its database', () => {
  it('waits in the outbox and is handled once the database is back: never dead-lettered, never marked sent unhandled', { timeout: 60_000 }, async () => {
    database = await createTestDatabase();
    const url = new URL(database.url);
    proxy = new CuttableProxy({ host: url.hostname, port: Number(url.port || 5432) });
    await proxy.open();
    const proxied = new URL(database.url);
    proxied.port = String(proxy.port);
    const direct = createPostgresDatabase({ url: database.url });
    const cuttable = createPostgresDatabase({ url: proxied.toString(), connectTimeoutMs: 1_000 });
    engines.push(direct, cuttable);
    const seen: Seen = new Map();
    const deadLetters: DeadLetter[] = [];
    const kernel = createKernel({
      modules: [burstModule, watcherModule(seen)],
      database: (module) => (module === 'watcher' ? cuttable : direct),
      logger: silentLogger,
      onDeadLetter: (deadLetter) => void deadLetters.push(deadLetter),
    });
    await kernel.start();
    try {
      await proxy.cut();
      await kernel.client(burst).write({ labels: LABELS });
      // Longer than the in-process transport's five attempts take (50 + 100 + 150 + 200 ms), and than the relay's first backoffs.
      await sleep(2_000);
      expect(deadLetters).toEqual([]);
      expect(seen.size).toBe(0);
      await proxy.open();
      await vi.waitFor(() => expect([...seen.keys()].sort()).toEqual([...LABELS].sort()), { timeout: 30_000, interval: 50 });
      expect(deadLetters).toEqual([]);
      // Each handled once (the watcher's entries have no unique label), and the outbox drained.
      const { rows } = await direct.connect('watcher').then(async (connection) => {
        try {
          return await connection.query<{ label: string }>('select label from entries order by label');
        } finally {
          await connection.close();
        }
      });
      expect(rows.map(({ label }) => label)).toEqual([...LABELS].sort());
      await vi.waitFor(async () => {
        const outbox = await direct.connect('burst');
        try {
          expect((await outbox.query<{ n: number }>('select count(*)::int as n from keel_outbox where sent_at is null')).rows).toEqual([{ n: 0 }]);
        } finally {
          await outbox.close();
        }
      }, { timeout: 20_000, interval: 100 });
    } finally {
      await kernel.stop();
    }
  });
});
