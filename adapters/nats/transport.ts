/**
 * The NATS transport: keel calls as NATS requests over one shared reply subscription, modules
 * served as NATS services (discoverable with `$SRV.PING/INFO/STATS`), notification events on
 * core NATS and durable events on JetStream. This file composes the parts, each in its own file:
 * the connection (connection.ts), the calling side (caller.ts), the serving side
 * (responder.ts), notification events (events.ts) and durable events (jetstream.ts,
 * durable-events.ts).
 */
import type { CallContext } from 'keel';
import {
  createLogger,
  type EventSubscription,
  type OperationAddress,
  type PublishedEvent,
  type Registration,
  type ServedModule,
  type Transport,
  type TransportCallOptions,
  type TransportStatus,
} from 'keel/transport';
import { Caller } from './caller.js';
import { openConnection, type Connection } from './connection.js';
import { DurableEvents } from './durable-events.js';
import { Notifications } from './events.js';
import { JetStream } from './jetstream.js';
import { resolveOptions } from './option-checks.js';
import type { NatsTransportOptions } from './options.js';
import { Responder } from './responder.js';

/**
 * Connects to NATS and returns a {@link Transport} for a kernel's topology. Rejects with a
 * `KeelError` (`INVALID_CONFIG` for bad options, `UNAVAILABLE` when no server answers or the
 * servers refuse its credentials: its `details.nats` says which, a `NatsConnectFailure`).
 *
 * @example
 * ```ts
 * const transport = await createNatsTransport({ servers: 'nats://127.0.0.1:4222' });
 * const kernel = createKernel({ modules, topology: { host: ['orders'], transport } });
 * await kernel.start();
 * // ... on shutdown:
 * await kernel.stop();
 * await transport.close();
 * ```
 */
export async function createNatsTransport(options: NatsTransportOptions = {}): Promise<Transport> {
  const resolved = resolveOptions(options);
  const logger = resolved.logger ?? createLogger({ name: 'keel-nats' });
  const transport = new NatsTransport(await openConnection(resolved, logger));
  await transport.init();
  await transport.refuseWithoutReplies();
  return transport;
}

class NatsTransport implements Transport {
  readonly name = 'nats';
  readonly inProcess = false;
  readonly #connection: Connection;
  readonly #caller: Caller;
  readonly #responder: Responder;
  readonly #notifications: Notifications;
  readonly #jetStream: JetStream;
  readonly #durable: DurableEvents;

  constructor(connection: Connection) {
    this.#connection = connection;
    this.#caller = new Caller(connection);
    this.#responder = new Responder(connection);
    this.#notifications = new Notifications(connection);
    this.#jetStream = new JetStream(connection);
    this.#durable = new DurableEvents(connection, this.#jetStream);
  }

  async init(): Promise<void> {
    this.#caller.listen();
    this.#connection.onRefusedPublish = (subject, error) => this.#caller.refusedPublish(subject, error);
    await this.#connection.start(
      (error) => this.#caller.interrupt('the NATS connection closed', error),
      // A reply published while this connection is down is lost (NATS keeps no message for a
      // subscriber that is not there); one published after the client reconnected and
      // subscribed again still arrives. So the calls in flight wait for the reconnect grace: if
      // the connection is not back by then, they end INTERRUPTED (outcome unknown) rather than
      // at their deadline, and an idempotent or keyed one is retried at once.
      () => {
        const connection = this.#connection;
        void connection.waitForConnection(connection.options.reconnectGraceMs, undefined).then((outcome) => {
          if (outcome === 'gave-up') this.#caller.interrupt('the NATS connection dropped and was not back within the reconnect grace');
        });
      },
    );
  }

  /** Refuses the transport when the server refused its reply subscription during {@link init}: every call would wait out its deadline. */
  async refuseWithoutReplies(): Promise<void> {
    const refused = this.#caller.repliesRefused;
    if (refused === undefined) return;
    await this.close();
    throw refused;
  }

  status(): TransportStatus {
    const refused = this.#caller.repliesRefused;
    // Connected, but no call could get its answer: not ready, saying why.
    if (refused !== undefined) return { name: this.name, ready: false, detail: refused.message };
    return this.#connection.status(this.name);
  }

  call(address: OperationAddress, input: unknown, context: CallContext, options?: TransportCallOptions): Promise<unknown> {
    return this.#caller.call(address, input, context, options);
  }

  serve(module: ServedModule): Promise<Registration> {
    return this.#responder.serve(module);
  }

  publish(event: PublishedEvent): Promise<void> {
    return event.delivery === 'durable' ? this.#jetStream.publish(event) : this.#notifications.publish(event);
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const connection = this.#connection;
    if (connection.closing) {
      throw connection.unavailable(`Cannot subscribe module "${subscription.subscriber}" to ${subscription.contract}.${subscription.event}`);
    }
    return subscription.delivery === 'durable' ? this.#durable.subscribe(subscription) : this.#notifications.subscribe(subscription);
  }

  close(): Promise<void> {
    return this.#connection.closeOnce(() => this.#shutdown());
  }

  async #shutdown(): Promise<void> {
    await this.#connection.stopRegistrations();
    // Naks of stopped subscriptions, held until their last pull request expired (late-naks.ts).
    await this.#durable.lateNaks.settled();
    await this.#caller.close();
    if (await this.#connection.drain()) return;
    this.#caller.stopReplies();
    await this.#connection.end();
  }
}
