/**
 * Durable events on JetStream: publishing them, and making (once, idempotently) what they need:
 * one stream per publishing module, one durable consumer per subscribing module and event, and
 * the dead-letter stream. Consuming them is durable-events.ts.
 */
import { KeelError, KeelErrorCode, isKeelError } from 'keel';
import type { EventSubscription, PublishedEvent } from 'keel/transport';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  ErrorCode,
  RetentionPolicy,
  StorageType,
  nanos,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type NatsError,
  type StreamConfig,
  type StreamInfo,
} from 'nats';
import { natsCode, reason, type Connection } from './connection.js';
import { eventPayload } from './events.js';
import { eventHeaders } from './headers.js';

/** The durable consumer of one subscribing module for one event. */
export interface DurableConsumer {
  readonly subscription: EventSubscription;
  readonly stream: string;
  readonly consumer: string;
  /** `contract.event`, for messages and logs. */
  readonly label: string;
}

function jsErrorCode(error: unknown): number | undefined {
  return typeof error === 'object' && error !== null ? (error as NatsError).api_error?.err_code : undefined;
}

/** JetStream API error codes keel handles. */
const JS_STREAM_NOT_FOUND = 10059;
const JS_CONSUMER_NOT_FOUND = 10014;
const JS_STREAM_NAME_IN_USE = 10058;
const JS_CONSUMER_EXISTS = 10013;
const JS_CONSUMER_NAME_EXISTS = 10148;

/** How long JetStream remembers a `Nats-Msg-Id` to drop a republished event (docs/wire-protocol.md). */
const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/** The transport's JetStream: its client, and the streams and consumers made so far. */
export class JetStream {
  readonly #connection: Connection;
  readonly #streams = new Map<string, Promise<void>>();
  #jsm: Promise<JetStreamManager> | undefined;
  #js: JetStreamClient | undefined;

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  async publish(event: PublishedEvent): Promise<void> {
    const label = `${event.contract}.${event.event}`;
    const data = eventPayload(this.#connection, event, label);
    const { subjects, options } = this.#connection;
    const correlationId = event.metadata.correlationId;
    const eventHeaderValues = eventHeaders(event);
    await this.ensureEventStream(event.contract, true);
    const js = await this.client();
    try {
      await js.publish(subjects.durable(event.contract, event.event), data, {
        msgID: event.metadata.id,
        headers: eventHeaderValues,
        timeout: options.jetStreamTimeoutMs,
      });
    } catch (error) {
      const code = natsCode(error);
      if (code === ErrorCode.MaxPayloadExceeded) throw this.#connection.publishError(error, `The payload of event ${label}`, data.length, correlationId);
      if (code === ErrorCode.Timeout) {
        throw new KeelError(
          KeelErrorCode.TIMEOUT,
          `Durable event ${label} was sent, but JetStream did not confirm storing it within ${options.jetStreamTimeoutMs} ms; ` +
            'it may or may not have been stored. Check the NATS connection and the JetStream server.',
          { correlationId, cause: error },
        );
      }
      throw new KeelError(
        KeelErrorCode.INTERRUPTED,
        `Durable event ${label} was not confirmed by JetStream (${reason(error)}); it may or may not have been stored. ` +
          'Check that nats-server runs with JetStream enabled (-js) and is reachable.',
        { correlationId, cause: error },
      );
    }
  }

  async #jetstreamManager(): Promise<JetStreamManager> {
    this.#jsm ??= this.#connection.nc.jetstreamManager({ timeout: this.#connection.options.jetStreamTimeoutMs }).catch((error: unknown) => {
      this.#jsm = undefined;
      throw new KeelError(
        KeelErrorCode.UNAVAILABLE,
        `JetStream is not available on the NATS server (${reason(error)}); durable events need it. Start nats-server with -js.`,
        { cause: error },
      );
    });
    return this.#jsm;
  }

  async client(): Promise<JetStreamClient> {
    await this.#jetstreamManager();
    this.#js ??= this.#connection.nc.jetstream({ timeout: this.#connection.options.jetStreamTimeoutMs });
    return this.#js;
  }

  /**
   * Creates (once per process, idempotently) the stream of a module's durable events.
   *
   * Limits retention, kept for `eventMaxAgeMs`: each consumer's acknowledgements track what it
   * handled, and the stream keeps its messages whatever they acknowledge. With interest
   * retention, nats-server 2.9 drops the last messages it had confirmed storing when it stops
   * while consumers remove acknowledged ones (2 in 5 of 6 runs of a restart test), and the relay
   * marked them sent; see docs/design-notes.md.
   *
   * `owner`: this process hosts the publishing module, and brings the stream's limits up to
   * date; a subscriber makes a missing stream so that it can attach its consumer, but never
   * changes one (its NATS user may not: docs/security.md).
   */
  ensureEventStream(module: string, owner: boolean): Promise<void> {
    const { subjects, options } = this.#connection;
    const name = subjects.stream(module);
    const subject = subjects.durableWildcard(module);
    return this.#ensureStream(name, {
      name,
      subjects: [subject],
      description: `keel durable events of module ${module}`,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(options.eventMaxAgeMs),
      // JetStream refuses a duplicate window longer than the stream's max age.
      duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, options.eventMaxAgeMs)),
    }, owner);
  }

  /**
   * Creates (once per process, idempotently) the stream of the durable events given up on. No
   * module owns it: a process makes it when it is missing and warns when its limits differ from
   * this process's options, for the operator to change (`nats stream edit`).
   */
  ensureDeadLetterStream(): Promise<void> {
    const { subjects, options } = this.#connection;
    const name = subjects.deadLetterStream();
    return this.#ensureStream(name, {
      name,
      subjects: [subjects.deadLetterWildcard()],
      description: 'keel durable events given up on after their last attempt',
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(options.deadLetterMaxAgeMs),
      // Bounded: every subscriber of a forged invalid event stores a letter, so without these a
      // flood of them grows the stream for deadLetterMaxAgeMs.
      max_msgs: options.deadLetterMaxMessages,
      max_bytes: options.deadLetterMaxBytes,
    }, false);
  }

  /** A stream made by an earlier keel with another retention: nats-server 2.9 cannot change it. */
  #retentionDiffers(name: string, actual: RetentionPolicy, wanted: RetentionPolicy): void {
    this.#connection.logger.warn(
      { stream: name, retention: actual, expected: wanted },
      `JetStream stream ${name} has ${actual} retention, made by an earlier keel; keel now makes ${wanted} retention streams, ` +
        'because nats-server can lose the last confirmed events of an interest stream when it restarts. ' +
        `Once its consumers have caught up, delete it (nats stream rm ${name}) and keel makes it again at its next start.`,
    );
  }

  /** Forgets that stream `name` was made, so that the next use makes it again (it vanished). */
  forgetStream(name: string): void {
    this.#streams.delete(`${name} owned`);
    this.#streams.delete(`${name} used`);
  }

  #ensureStream(name: string, config: Partial<StreamConfig> & { subjects: string[] }, owner: boolean): Promise<void> {
    const key = `${name} ${owner ? 'owned' : 'used'}`;
    let ensured = this.#streams.get(key);
    if (ensured === undefined) {
      ensured = this.#createStream(name, config, owner).catch((error: unknown) => {
        this.#streams.delete(key);
        throw error;
      });
      this.#streams.set(key, ensured);
    }
    return ensured;
  }

  async #createStream(name: string, config: Partial<StreamConfig> & { subjects: string[] }, owner: boolean): Promise<void> {
    const jsm = await this.#jetstreamManager();
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(name);
    } catch (error) {
      if (jsErrorCode(error) !== JS_STREAM_NOT_FOUND) throw jetStreamFailure(`inspect stream ${name}`, error);
      try {
        await jsm.streams.add(config);
        this.#connection.logger.info({ stream: name, subjects: config.subjects }, 'created JetStream stream');
      } catch (addError) {
        if (jsErrorCode(addError) !== JS_STREAM_NAME_IN_USE) throw jetStreamFailure(`create stream ${name}`, addError);
      }
      return;
    }
    const current = info.config;
    const missing = config.subjects.filter((subject) => !current.subjects.includes(subject));
    const limits = (['max_age', 'duplicate_window', 'max_msgs', 'max_bytes'] as const).filter((key) => config[key] !== undefined && current[key] !== config[key]);
    if ((missing.length > 0 || limits.length > 0) && !owner) {
      const differences = [...(missing.length > 0 ? [`subjects lack ${missing.join(', ')}`] : []), ...limits.map((key) => `${key} ${current[key]}, not ${config[key]}`)];
      this.#connection.logger.warn(
        { stream: name, differences },
        `JetStream stream ${name} differs from this process's options (${differences.join('; ')}); keel changes a stream only in a process ` +
          'that hosts its publishing module (and no process changes the dead-letter stream). Align the options, or change it yourself: nats stream edit ' +
          name,
      );
    } else if (missing.length > 0 || limits.length > 0) {
      const update: StreamConfig = { ...current, subjects: [...current.subjects, ...missing] };
      for (const key of limits) update[key] = config[key] as number;
      try {
        await jsm.streams.update(name, update);
      } catch (error) {
        throw jetStreamFailure(`update stream ${name} (${[...(missing.length > 0 ? ['subjects'] : []), ...limits].join(', ')})`, error);
      }
    }
    if (config.retention !== undefined && current.retention !== config.retention) this.#retentionDiffers(name, current.retention, config.retention);
  }

  /** Creates the durable consumer, or brings its ack wait and limit up to date. */
  async ensureConsumer(durable: DurableConsumer): Promise<void> {
    const { subscription, stream, consumer } = durable;
    const { subjects, options } = this.#connection;
    const jsm = await this.#jetstreamManager();
    const config: Partial<ConsumerConfig> = {
      durable_name: consumer,
      description: `keel: module ${subscription.subscriber} handles ${durable.label}`,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      filter_subject: subjects.durable(subscription.contract, subscription.event),
      ack_wait: nanos(options.ackWaitMs),
      max_deliver: -1,
      max_ack_pending: options.maxAckPending,
    };
    try {
      const info = await jsm.consumers.info(stream, consumer);
      if (info.config.ack_wait !== config.ack_wait || info.config.max_ack_pending !== config.max_ack_pending) {
        await jsm.consumers.update(stream, consumer, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending });
      }
      return;
    } catch (error) {
      if (jsErrorCode(error) !== JS_CONSUMER_NOT_FOUND) throw jetStreamFailure(`inspect consumer ${consumer} of ${stream}`, error);
    }
    try {
      await jsm.consumers.add(stream, config);
      this.#connection.logger.info({ stream, consumer }, 'created JetStream consumer');
    } catch (error) {
      const code = jsErrorCode(error);
      if (code !== JS_CONSUMER_EXISTS && code !== JS_CONSUMER_NAME_EXISTS) {
        throw jetStreamFailure(`create consumer ${consumer} of ${stream}`, error);
      }
    }
  }
}

function jetStreamFailure(what: string, error: unknown): KeelError {
  if (isKeelError(error)) return error;
  const text = reason(error);
  const advice = /permission/i.test(text)
    ? "This process's NATS user may not: its permissions come from the module graph when keel deploy or keel up made them. " +
      'If the modules or the topology changed since, run keel deploy --force again and reload nats-server with the new configuration (docs/security.md).'
    : 'Check that nats-server runs with JetStream enabled (-js).';
  return new KeelError(KeelErrorCode.UNAVAILABLE, `Could not ${what} on JetStream: ${text}. ${advice}`, { cause: error });
}
