/**
 * Notification events on core NATS: published without waiting for anyone, delivered at most once
 * to one instance of each subscribing module (a queue group per module) or to every instance.
 * Durable events are JetStream's (jetstream.ts).
 */
import { InFlight, callLogFields, within, type EventMetadata, type EventSubscription, type PublishedEvent, type Registration } from 'keel/transport';
import type { Msg, Subscription } from '@nats-io/transport-node';
import type { Connection } from './connection.js';
import { readEventBlock } from './event-block.js';
import { messageBody } from './header-bytes.js';
import { eventHeaders, readEventHeadersFrom, sameMajor } from './headers.js';
import { LogThrottle } from 'keel/transport';
import { messageHeaders } from './raw-headers.js';
import { encodeJson } from './wire.js';

/**
 * An event's payload as JSON, refused (with `UNAVAILABLE` or `PAYLOAD_TOO_LARGE`) when the
 * transport is closed or the payload exceeds what the server accepts; either delivery starts so.
 * `label` names the event in those errors (`contract.event` when not given: built only then).
 */
export function eventPayload(connection: Connection, event: PublishedEvent, label?: string): Uint8Array {
  if (connection.closed) throw connection.unavailable(`Cannot publish ${label ?? eventLabel(event)}`);
  const data = encodeJson(event.payload);
  const limit = connection.maxPayload;
  if (data.length > limit) {
    throw connection.tooLarge(`The payload of event ${label ?? eventLabel(event)}`, data.length, limit, event.metadata.correlationId);
  }
  return data;
}

/** An event's name in messages: `contract.event`. */
function eventLabel(event: PublishedEvent): string {
  return `${event.contract}.${event.event}`;
}

const RESOLVED: Promise<void> = Promise.resolve();

/** Why an event with keel's headers was dropped: a principal that is not JSON, another major, a body that is not JSON. */
type DropKind = 'principal' | 'major' | 'body';

/** Said on each throttled drop line: what `suppressed` counts. */
const THROTTLED = '(at most one line per 10 s for each kind; suppressed: how many since the last line)';

/** Notification events: publishing them and subscribing modules to them. */
export class Notifications {
  readonly #connection: Connection;
  readonly #refusedLog = new LogThrottle();
  /** The other drops, each kind bounded too: anyone who may publish on the subject can cause them. */
  readonly #droppedLogs: Record<DropKind, LogThrottle> = { principal: new LogThrottle(), major: new LogThrottle(), body: new LogThrottle() };
  readonly #subjects = new Map<string, Map<string, string>>();

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /**
   * Hands the event to the connection (nats copies it into its outbound buffer; it is written
   * with what else is pending) and resolves; never waits for a flush or a subscriber. Not
   * `async`: one promise per event, the settled one returned (docs/performance.md, "Event profile").
   */
  publish(event: PublishedEvent): Promise<void> {
    let data: Uint8Array | undefined;
    try {
      // No label string per event: it names the event in errors only, and is built then.
      data = eventPayload(this.#connection, event);
      this.#connection.nc.publish(this.#subject(event.contract, event.event), data, { headers: eventHeaders(event) });
      return RESOLVED;
    } catch (error) {
      if (data === undefined) return Promise.reject(error);
      return Promise.reject(
        this.#connection.publishError(error, `The payload of event ${eventLabel(event)}`, data.length, event.metadata.correlationId),
      );
    }
  }

  /** The subject of a contract's event, built once. */
  #subject(contract: string, event: string): string {
    let events = this.#subjects.get(contract);
    if (events === undefined) {
      events = new Map();
      this.#subjects.set(contract, events);
    }
    let subject = events.get(event);
    if (subject === undefined) {
      subject = this.#connection.subjects.notification(contract, event);
      events.set(event, subject);
    }
    return subject;
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const { nc, subjects, logger, options } = this.#connection;
    const inFlight = new InFlight();
    const ended = (): void => inFlight.end(); // one closure per subscription, not two per event
    const label = `${subscription.contract}.${subscription.event}`;
    const subject = subjects.notification(subscription.contract, subscription.event);
    const sub = nc.subscribe(subject, {
      ...(subscription.fanout === 'every-instance' ? {} : { queue: subscription.subscriber }),
      callback: (error, msg) => {
        try {
          if (error !== null) {
            logger.warn({ err: error, event: label, subscriber: subscription.subscriber }, 'event subscription error');
            return;
          }
          this.#onNotification(subscription, label, inFlight, ended, msg);
        } catch (escaped) {
          this.#connection.escaped(escaped, { event: label, subscriber: subscription.subscriber });
        }
      },
    });
    await nc.flush();
    return this.#connection.register(async () => {
      await this.#drainSubscription(sub);
      await within(inFlight.idle(), options.drainTimeoutMs);
    });
  }

  async #drainSubscription(sub: Subscription): Promise<void> {
    if (sub.isClosed()) return;
    if (!this.#connection.connected) {
      sub.unsubscribe();
      return;
    }
    const drained = sub.drain().catch(() => sub.unsubscribe());
    await within(drained, this.#connection.options.drainTimeoutMs);
  }

  #onNotification(subscription: EventSubscription, label: string, inFlight: InFlight, ended: () => void, msg: Msg): void {
    const logger = this.#connection.logger;
    // keel's own blocks in one pass (event-block.ts); any other block the general way.
    const { version, metadata, refusal, refused } =
      readEventBlock(msg, 1, subscription.contract) ?? readEventHeadersFrom(() => messageHeaders(msg), 1, subscription.contract);
    if (refusal !== undefined) {
      const suppressed = this.#refusedLog.take();
      if (suppressed >= 0) {
        logger.warn(
          { event: label, subscriber: subscription.subscriber, problem: refusal, suppressed },
          'dropped events without keel headers (at most one line per 10 s; suppressed: how many since the last line)',
        );
      }
      return;
    }
    if (refused !== undefined) {
      this.#dropped('principal', 'dropped an event whose principal header is not JSON', metadata, label, subscription.subscriber, { err: refused });
      return;
    }
    if (!sameMajor(version, subscription.version)) {
      this.#dropped('major', 'dropped an event published with another major contract version', metadata, label, subscription.subscriber, {
        sent: version,
        expected: subscription.version,
      });
      return;
    }
    let payload: unknown;
    try {
      payload = messageBody(msg);
    } catch {
      this.#dropped('body', 'dropped an event whose body is not JSON', metadata, label, subscription.subscriber, {});
      return;
    }
    inFlight.begin();
    subscription.handle(payload, metadata).then(
      ended,
      ended, // the subscription logged it; a notification is not retried
    );
  }

  /** An event with keel's headers dropped for `kind`: one error line per 10 s per kind at most. */
  #dropped(kind: DropKind, message: string, metadata: EventMetadata, label: string, subscriber: string, fields: Record<string, unknown>): void {
    const suppressed = this.#droppedLogs[kind].take();
    if (suppressed < 0) return;
    this.#connection.logger.error({ ...callLogFields(metadata, { event: label, eventId: metadata.id, subscriber, suppressed }), ...fields }, `${message} ${THROTTLED}`);
  }
}
