/**
 * A TCP proxy to a server on a port of its own, which a test can cut (every connection reset, new
 * ones refused), black-hole (nothing forwarded any more, nothing closed) and restore: a
 * database's network gone and back, without touching the server.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** A TCP proxy to `target` on a port of its own, which the test can cut, black-hole and restore. */
export class CuttableProxy {
  readonly #sockets = new Set<Socket>();
  /** The client sides of the connections that were forwarding when the black hole began, while they are open. */
  readonly #silenced = new Set<Socket>();
  /** Each open connection's way to stop forwarding, by its client side. */
  readonly #silencers = new Map<Socket, () => void>();
  #server: Server | undefined;
  #blackHole = false;
  port = 0;
  /** Connections the proxy took since it was made, forwarded or swallowed. */
  accepted = 0;

  constructor(readonly target: { host: string; port: number }) {}

  /**
   * How many of the connections that were forwarding when {@link blackHole} began are still open:
   * the black hole closes none of them, so each one fewer is one its client closed.
   */
  get silenced(): number {
    return this.#silenced.size;
  }

  /** Forwards connections (again); after {@link blackHole}, to new connections only: the swallowed ones stay silent. */
  async open(): Promise<void> {
    this.#blackHole = false;
    if (this.#server !== undefined) return;
    const server = createServer((client) => {
      this.accepted += 1;
      this.#track(client);
      if (this.#blackHole) {
        this.#swallow(client);
        return;
      }
      const upstream = connect(this.target.port, this.target.host);
      this.#track(upstream);
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
      this.#silencers.set(client, () => {
        client.unpipe(upstream);
        upstream.unpipe(client);
        upstream.on('data', () => undefined).resume();
        this.#swallow(client);
        this.#silenced.add(client);
        client.on('close', () => this.#silenced.delete(client));
      });
      client.on('close', () => this.#silencers.delete(client));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /**
   * A network that drops every packet, as a lost route or a frozen host does: what each open
   * connection carries from now on is discarded both ways and nothing is closed, and new
   * connections are accepted and get no answer. Only the client closing a connection ends it.
   * {@link open} forwards new connections again; the swallowed ones stay silent.
   */
  blackHole(): void {
    this.#blackHole = true;
    for (const silence of [...this.#silencers.values()]) silence();
    this.#silencers.clear();
  }

  /** Resets every connection through it, and refuses new ones until {@link open}. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const socket of this.#sockets) socket.resetAndDestroy();
    await new Promise<void>((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
  }

  #track(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
  }

  /** Reads and drops what `client` sends, until it closes. */
  #swallow(client: Socket): void {
    client.on('data', () => undefined).resume();
  }
}
