/**
 * Events in one process: delivered asynchronously, once per subscribing module (balanced across
 * its instances) or to every instance; durable events retried with a growing delay, dead-lettered
 * after their last attempt, and kept in a bounded backlog while no instance of the subscribing
 * module runs. The durable events an outbox relay publishes, which wait in their outbox until
 * handled, are delivered by {@link ConfirmedDeliveries} (local-confirmed.ts).
 */
import { KeelErrorCode, isKeelError } from './errors.js';
import { InFlight } from './in-flight.js';
import { isDatabaseUnreachable, isGivenBack } from './transport-failures.js';
import { detached } from './otel-context.js';
import type { Logger } from './logger.js';
import { Fanout, type EventMetadata, type EventSubscription, type PublishedEvent, type Registration } from './transport.js';
import { ConfirmedDeliveries } from './local-confirmed.js';

/** An instance of a subscribing module: its subscription, and its deliveries in flight. */
export class Subscriber extends InFlight {
  stopped = false;
  constructor(readonly subscription: EventSubscription) {
    super();
  }
}

/** A durable event waiting for its subscribing module to run again, and the attempt it will be. */
interface Pending {
  readonly event: PublishedEvent;
  readonly attempt: number;
}

/** The instances of one subscribing module for one event. */
export interface Group {
  readonly subscriber: string;
  members: Subscriber[];
  next: number;
  /** Durable events that arrived while no member ran, oldest first. */
  backlog: Pending[];
  /** Backlogged events dropped since the backlog last emptied, because it was full. */
  dropped: number;
  /** Durable events waiting, uncounted, for this module's database to answer again (see {@link LocalEvents.#hold}). */
  held: number;
}

/** The longest pause between two tries of an event held for its subscriber's database. */
const HELD_RETRY_MAX_MS = 5_000;
/** The pause a held event's tries grow by when `redeliveryDelayMs` is shorter (0 is allowed): never a busy loop through an outage. */
const HELD_RETRY_MIN_MS = 10;

/** The event side of the in-process transport. */
export class LocalEvents {
  readonly #groups = new Map<string, Map<string, Group>>();
  /** Each retry's timer and what stops it when the transport closes. */
  readonly #retries = new Map<NodeJS.Timeout, () => void>();
  /** Deliveries scheduled or running, and retries waiting for their timer: what {@link settled} waits for. */
  readonly #outstanding = new InFlight();
  /** Closed: a delivery that fails from now on is retried no more (its retry would outlive the bus). */
  #closed = false;
  /** The durable events of outbox relays (local-confirmed.ts). */
  readonly #confirmed: ConfirmedDeliveries;

  constructor(
    readonly logger: Logger,
    readonly redeliveryDelayMs: number,
    readonly durableBacklogLimit: number,
  ) {
    this.#confirmed = new ConfirmedDeliveries({
      groups: this.#groups,
      outstanding: this.#outstanding,
      retries: this.#retries,
      closed: () => this.#closed,
      redeliveryDelayMs,
    });
  }

  publish(event: PublishedEvent): Promise<void> {
    const groups = this.#groups.get(`${event.contract}.${event.event}`);
    if (groups !== undefined) {
      for (const group of groups.values()) {
        if (group.members.length === 0) {
          if (event.delivery === 'durable') this.#keep(group, event, 1);
          continue;
        }
        const first = group.members[0] as Subscriber;
        if (first.subscription.fanout === Fanout.EVERY_INSTANCE) {
          for (const member of group.members) this.#schedule(member, event, 1);
        } else {
          this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, 1);
        }
      }
    }
    return Promise.resolve();
  }

  /** {@link ConfirmedDeliveries.publish}: a durable event from an outbox, resolved once every subscribing module handled it. */
  publishConfirmed(event: PublishedEvent): Promise<void> {
    return this.#confirmed.publish(event);
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const key = `${subscription.contract}.${subscription.event}`;
    let groups = this.#groups.get(key);
    if (groups === undefined) {
      groups = new Map();
      this.#groups.set(key, groups);
    }
    let group = groups.get(subscription.subscriber);
    if (group === undefined) {
      group = { subscriber: subscription.subscriber, members: [], next: 0, backlog: [], dropped: 0, held: 0 };
      groups.set(subscription.subscriber, group);
    }
    const member = new Subscriber(subscription);
    group.members.push(member);
    const owner = group;
    if (group.backlog.length > 0 || group.dropped > 0) this.#deliverBacklog(key, group);
    return {
      stop: async () => {
        member.stopped = true;
        owner.members = owner.members.filter((candidate) => candidate !== member);
        await member.idle();
      },
    };
  }

  /** See {@link LocalTransport.settled}. */
  settled(): Promise<void> {
    return this.#outstanding.idle();
  }

  /**
   * Counts work that will publish events here toward {@link settled} until the returned release
   * is called (once; later calls do nothing): an outbox relay's round, from the commit that
   * kicks it.
   */
  hold(): () => void {
    this.#outstanding.begin();
    let held = true;
    return () => {
      if (!held) return;
      held = false;
      this.#outstanding.end();
    };
  }

  /** Stops redeliveries and reports the durable events that no member will ever get. */
  close(): void {
    this.#closed = true;
    // Counted before their timers are cancelled, which releases them: a long outage can hold
    // durableBacklogLimit events per group, and the close says so in one line per group.
    const held = [...this.#groups].flatMap(([key, groups]) =>
      [...groups.values()].filter((group) => group.held > 0).map((group) => ({ key, subscriber: group.subscriber, lost: group.held })),
    );
    const retries = [...this.#retries];
    this.#retries.clear();
    for (const [timer, cancel] of retries) {
      clearTimeout(timer);
      cancel();
    }
    for (const { key, subscriber, lost } of held) {
      this.logger.warn(
        { event: key, subscriber, lost },
        `durable events lost: the transport closed while they waited for module "${subscriber}"'s database to answer`,
      );
    }
    for (const [key, groups] of this.#groups) {
      for (const group of groups.values()) {
        if (group.backlog.length + group.dropped === 0) continue;
        this.logger.warn(
          { event: key, subscriber: group.subscriber, lost: group.backlog.length + group.dropped },
          `durable events lost: module "${group.subscriber}" did not run again before the transport closed`,
        );
        group.backlog = [];
        group.dropped = 0;
      }
    }
  }

  /** Keeps a durable event for a group that has no running member; drops the oldest when full. */
  #keep(group: Group, event: PublishedEvent, attempt: number): void {
    group.backlog.push({ event, attempt });
    if (group.backlog.length <= this.durableBacklogLimit) return;
    group.backlog.shift();
    group.dropped += 1;
    // Once per outage, so that a long one does not log once per event; the total is logged on delivery.
    if (group.dropped === 1) this.#reportDropped(group, event);
  }

  #reportDropped(group: Group, event: PublishedEvent): void {
    this.logger.error(
      { event: `${event.contract}.${event.event}`, subscriber: group.subscriber, dropped: group.dropped, limit: this.durableBacklogLimit },
      `durable events dropped: module "${group.subscriber}" is not running and its backlog of ${this.durableBacklogLimit} ` +
        'events in this process is full; the oldest are dropped first',
    );
  }

  /** Hands a group's backlog, in publishing order, to the members it has again. */
  #deliverBacklog(key: string, group: Group): void {
    if (group.dropped > 0) {
      this.logger.error(
        { event: key, subscriber: group.subscriber, dropped: group.dropped, delivered: group.backlog.length },
        `module "${group.subscriber}" runs again; ${group.dropped} durable events were dropped while it was not running`,
      );
      group.dropped = 0;
    }
    const backlog = group.backlog;
    group.backlog = [];
    for (const { event, attempt } of backlog) {
      this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, attempt);
    }
  }

  #schedule(member: Subscriber, event: PublishedEvent, attempt: number, holds = 0): void {
    member.begin();
    this.#outstanding.begin();
    setImmediate(() => {
      void this.#deliver(member, event, attempt, holds);
    });
  }

  async #deliver(member: Subscriber, event: PublishedEvent, attempt: number, holds: number): Promise<void> {
    const subscription = member.subscription;
    const metadata: EventMetadata = { ...event.metadata, attempt };
    try {
      await subscription.handle(event.payload, metadata);
    } catch (error) {
      if (event.delivery === 'durable') this.#redeliver(subscription, event, attempt, error, holds);
    } finally {
      member.end();
      // After #redeliver counted its retry: the count does not touch zero in between.
      this.#outstanding.end();
    }
  }

  #redeliver(subscription: EventSubscription, event: PublishedEvent, attempt: number, error: unknown, holds: number): void {
    const metadata: EventMetadata = { ...event.metadata, attempt };
    if (isDatabaseUnreachable(error) && this.#hold(subscription, event, attempt, holds)) return;
    if (isGivenBack(error)) {
      if (this.#closed) {
        this.logger.warn(
          { event: `${event.contract}.${event.event}`, subscriber: subscription.subscriber, attempt },
          'durable event lost: its module gave it back after the transport closed, so it is not delivered again',
        );
        return;
      }
      // Its module stopped while the handler ran: the same attempt goes to another instance, or
      // waits in the backlog for one (the stopped instance left its group before its drain).
      this.#handOn(subscription, event, attempt);
      return;
    }
    if (isKeelError(error, KeelErrorCode.INVALID_EVENT) || attempt >= subscription.maxAttempts) {
      subscription.deadLetter(event.payload, metadata, error);
      return;
    }
    if (this.#closed) {
      this.logger.warn(
        { event: `${event.contract}.${event.event}`, subscriber: subscription.subscriber, attempt },
        'durable event lost: its handler failed after the transport closed, so it is not retried',
      );
      return;
    }
    // The retry runs long after the failed delivery: it carries none of its context.
    this.#outstanding.begin();
    const timer: NodeJS.Timeout = detached(() => setTimeout(() => {
      this.#retries.delete(timer);
      this.#handOn(subscription, event, attempt + 1);
      this.#outstanding.end();
    }, this.redeliveryDelayMs * attempt));
    this.#retries.set(timer, () => this.#outstanding.end());
  }

  /**
   * A durable event not from an outbox (an outbox's waits there: {@link ConfirmedDeliveries}) whose
   * subscriber could not reach its database: no fault of the event's, so not an attempt. The same
   * attempt runs again after a pause growing with each try (`redeliveryDelayMs` × n, up to
   * {@link HELD_RETRY_MAX_MS}), as over NATS. False, and the failure counts, once the transport is
   * closing or the group holds `durableBacklogLimit` events already (memory stays bounded).
   */
  #hold(subscription: EventSubscription, event: PublishedEvent, attempt: number, holds: number): boolean {
    const group = this.#groups.get(`${event.contract}.${event.event}`)?.get(subscription.subscriber);
    if (this.#closed || group === undefined || group.held >= this.durableBacklogLimit) return false;
    group.held += 1;
    this.#outstanding.begin();
    const release = (): void => {
      group.held -= 1;
      this.#outstanding.end();
    };
    const timer: NodeJS.Timeout = detached(() => setTimeout(() => {
      this.#retries.delete(timer);
      this.#handOn(subscription, event, attempt, holds + 1);
      release();
    }, Math.min(Math.max(this.redeliveryDelayMs, HELD_RETRY_MIN_MS) * (holds + 1), HELD_RETRY_MAX_MS)));
    // The close says how many were lost, in one line per group (see close()), not one per event.
    this.#retries.set(timer, release);
    return true;
  }

  /** A retry's timer fired, or a stopping instance gave the event back: `attempt` goes to a running instance, or waits in the backlog. */
  #handOn(subscription: EventSubscription, event: PublishedEvent, attempt: number, holds = 0): void {
    const group = this.#groups.get(`${event.contract}.${event.event}`)?.get(subscription.subscriber) as Group;
    if (group.members.length === 0) {
      this.#keep(group, event, attempt);
      this.logger.debug(
        { event: `${event.contract}.${event.event}`, subscriber: subscription.subscriber, attempt },
        'durable event kept for its next delivery: no instance of the subscribing module runs',
      );
      return;
    }
    this.#schedule(group.members[group.next++ % group.members.length] as Subscriber, event, attempt, holds);
  }
}
