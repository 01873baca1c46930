/**
 * The durable events an outbox relay publishes in one process (`publishConfirmed`): each resolves
 * only once every subscribing module handled it or dead-lettered it after its last attempt, so
 * that until then it stays in the outbox, which outlives the process. A group that handled an
 * event the relay sends again is not handed it again. The rest of the in-process events (their
 * groups, backlog and retries) is {@link LocalEvents}, which delegates these to
 * {@link ConfirmedDeliveries}.
 */
import { KeelError, KeelErrorCode, isKeelError } from './errors.js';
import type { InFlight } from './in-flight.js';
import { isDatabaseUnreachable, isGivenBack } from './transport-failures.js';
import { Fanout, type EventMetadata, type PublishedEvent } from './transport.js';
import type { Group, LocalEvents, Subscriber } from './local-events.js';

/** What {@link ConfirmedDeliveries} shares of its {@link LocalEvents}. */
export interface EventGroups {
  /** The groups of subscribing modules, by `contract.event` and subscriber. */
  readonly groups: Map<string, Map<string, Group>>;
  /** Deliveries scheduled or running, and retries waiting for their timer: what `settled()` waits for. */
  readonly outstanding: InFlight;
  /** Each retry's timer and what stops it when the transport closes. */
  readonly retries: Map<NodeJS.Timeout, () => void>;
  /** Whether the transport closed: a delivery that fails from now on is retried no more. */
  readonly closed: () => boolean;
  readonly redeliveryDelayMs: number;
}

/** An outbox's confirmed publish whose retry the transport's close cut off. */
function closedBeforeRetry(event: PublishedEvent): KeelError {
  return new KeelError(
    KeelErrorCode.UNAVAILABLE,
    `${event.contract}.${event.event} ${event.metadata.id} waits in the outbox: the transport closed before its retry.`,
  );
}

/** The confirmed publishes of {@link LocalEvents}: an outbox relay's durable events. */
export class ConfirmedDeliveries {
  /**
   * The outbox events the relay is to send again (a group's delivery failed without a dead
   * letter: its database unreachable, its module stopping), by id: the groups that handled them
   * already, which are not handed them again. An entry goes once its event is confirmed; one whose
   * event this process never sends again stays until it ends (as many as its outboxes hold back).
   */
  readonly #handledBefore = new Map<string, Set<string>>();
  /** The next turn of the event loop, while confirmed deliveries wait for it (see {@link #nextTurn}). */
  #turn: Promise<void> | undefined;

  constructor(readonly events: EventGroups) {}

  /**
   * Publishes a durable event from an outbox and resolves only once every subscribing module
   * handled it (or dead-lettered it after its last attempt): until then the event stays unsent
   * in the outbox, which outlives this process, where the in-memory backlog would not. Rejects
   * with UNAVAILABLE, before delivering anything, when a subscribing module has no running
   * instance here: the relay publishes it again later.
   */
  async publish(event: PublishedEvent): Promise<void> {
    const groups = [...(this.events.groups.get(`${event.contract}.${event.event}`)?.values() ?? [])];
    const idle = groups.filter((group) => group.members.length === 0).map((group) => group.subscriber);
    if (idle.length > 0) {
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `${event.contract}.${event.event} ${event.metadata.id} waits in the outbox: no instance of ${idle.join(', ')} runs in this process now.`,
      );
    }
    // A group that handled the event when the relay sent it before (another group's database was
    // unreachable, or its module gave the event back) is not handed it again.
    const id = event.metadata.id;
    const handledBefore = this.#handledBefore.get(id);
    const pending = handledBefore === undefined ? groups : groups.filter((group) => !handledBefore.has(group.subscriber));
    const outcomes = await Promise.allSettled(
      pending.map((group) => {
        const first = group.members[0] as Subscriber;
        const targets = first.subscription.fanout === Fanout.EVERY_INSTANCE ? group.members : [group.members[group.next++ % group.members.length] as Subscriber];
        return Promise.all(targets.map((member) => this.#deliver(group, member, event)));
      }),
    );
    const failure = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    if (failure === undefined) {
      this.#handledBefore.delete(id);
      return;
    }
    const handled = handledBefore ?? new Set<string>();
    outcomes.forEach((outcome, index) => {
      if (outcome.status === 'fulfilled') handled.add((pending[index] as Group).subscriber);
    });
    if (handled.size > 0) this.#handledBefore.set(id, handled);
    throw failure.reason;
  }

  /** One group's delivery of a confirmed event: its attempts, then its dead letter. */
  async #deliver(group: Group, first: Subscriber, event: PublishedEvent): Promise<void> {
    this.events.outstanding.begin();
    try {
      await this.#attempt(group, first, event);
    } finally {
      this.events.outstanding.end();
    }
  }

  /**
   * Resolves in the next turn of the event loop, one `setImmediate` for every confirmed delivery
   * that waits for it. They then all reach their subscribers one after another before any goes
   * further: an outbox relay's round of events reaches a module's inbox together, and shares its
   * transactions, even on an engine that answers within microtasks (PGlite). Each delivery goes on
   * in its own async context, as an `await` does.
   */
  #nextTurn(): Promise<void> {
    return (this.#turn ??= new Promise<void>((resolve) => {
      setImmediate(() => {
        this.#turn = undefined;
        resolve();
      });
    }));
  }

  async #attempt(group: Group, first: Subscriber, event: PublishedEvent): Promise<void> {
    let member = first;
    for (let attempt = 1; ; attempt += 1) {
      const subscription = member.subscription;
      const metadata: EventMetadata = { ...event.metadata, attempt };
      member.begin();
      try {
        await this.#nextTurn();
        await subscription.handle(event.payload, metadata);
        return;
      } catch (error) {
        // Its module stopped while the handler ran: not a failure. The event stays in the outbox,
        // and the relay's next publish (this start's, or the next one's) begins its attempts anew.
        if (isGivenBack(error)) {
          throw new KeelError(
            KeelErrorCode.UNAVAILABLE,
            `${event.contract}.${event.event} ${event.metadata.id} waits in the outbox: ${group.subscriber} stopped while its handler ran, and gave it back.`,
            { cause: error },
          );
        }
        // The subscriber's database could not be reached: no fault of the event's, and the five
        // attempts take half a second, less than a database takes to restart. The event stays in the
        // outbox, which the relay sends again with its own backoff, holding back the events after it.
        if (isDatabaseUnreachable(error)) {
          throw new KeelError(
            KeelErrorCode.UNAVAILABLE,
            `${event.contract}.${event.event} ${event.metadata.id} waits in the outbox: ${error.message}`,
            { cause: error },
          );
        }
        if (isKeelError(error, KeelErrorCode.INVALID_EVENT) || attempt >= subscription.maxAttempts) {
          subscription.deadLetter(event.payload, metadata, error);
          return;
        }
      } finally {
        member.end();
      }
      // Closed before the retry (now, or while it waits): the event stays in the outbox, unhandled.
      if (this.events.closed()) throw closedBeforeRetry(event);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.events.retries.delete(timer);
          resolve();
        }, this.events.redeliveryDelayMs * attempt);
        this.events.retries.set(timer, () => reject(closedBeforeRetry(event)));
      });
      const next = member.stopped ? group.members[group.next++ % Math.max(group.members.length, 1)] : member;
      if (next === undefined) {
        throw new KeelError(
          KeelErrorCode.UNAVAILABLE,
          `${event.contract}.${event.event} ${event.metadata.id} waits in the outbox: ${group.subscriber} stopped before it was handled.`,
        );
      }
      member = next;
    }
  }
}
