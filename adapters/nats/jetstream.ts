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
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
  type StreamInfo,
} from '@nats-io/jetstream';
import { millis, nanos } from '@nats-io/transport-node';
import { isPayloadTooLarge, reason, type Connection } from './connection.js';
import { eventPayload } from './events.js';
import { eventHeaders } from './headers.js';
import { isRefusal, publishWithRetry } from './jetstream-publish.js';
import { streamLimits } from './options.js';
import { Subjects } from './wire.js';

/** The durable consumer of one subscribing module for one event. */
export interface DurableConsumer {
  readonly subscription: EventSubscription;
  readonly stream: string;
  readonly consumer: string;
  /** `contract.event`, for messages and logs. */
  readonly label: string;
}

/**
 * True when the server has no JetStream for this connection. The client (v3) reports it as its
 * `JetStreamNotEnabled` error, which it exports only from its internal module; its name is set
 * by its constructor, so the class is told by `name`.
 */
export function isJetStreamNotEnabled(error: unknown): boolean {
  return error instanceof Error && (error.name === 'JetStreamNotEnabled' || jsErrorCode(error) === JS_NOT_ENABLED_FOR_ACCOUNT);
}

/** JetStream API error code: JetStream is not enabled for the account. */
const JS_NOT_ENABLED_FOR_ACCOUNT = 10039;

/** The JetStream API error code (`err_code`) of `error`, or of the JetStream API error it wraps. */
export function jsErrorCode(error: unknown): number | undefined {
  if (error instanceof JetStreamApiError) return error.code;
  if (error instanceof Error && error.cause instanceof JetStreamApiError) return error.cause.code;
  return undefined;
}

/** JetStream API error codes keel handles. */
const JS_STREAM_NOT_FOUND = 10059;
const JS_CONSUMER_NOT_FOUND = 10014;
const JS_STREAM_NAME_IN_USE = 10058;
const JS_CONSUMER_EXISTS = 10013;
const JS_CONSUMER_NAME_EXISTS = 10148;
/** "no suitable peers for placement": fewer servers than replicas (or some are down). */
const JS_NO_SUITABLE_PEERS = 10005;
const JS_INSUFFICIENT_RESOURCES = 10023;
/** "replicas > 1 not supported in non-clustered mode". */
const JS_REPLICAS_NOT_SUPPORTED = 10074;

/** How long JetStream remembers a `Nats-Msg-Id` to drop a republished event (docs/wire-protocol.md). */
const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;

/** The transport's JetStream: its client, and the streams and consumers made so far. */
export class JetStream {
  readonly #connection: Connection;
  /** Streams made or checked, by name and role: each one's duplicate window in milliseconds. */
  readonly #streams = new Map<string, Promise<number>>();
  #jsm: Promise<JetStreamManager> | undefined;
  #js: JetStreamClient | undefined;

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /**
   * Publishes a durable event, resolving once JetStream confirmed storing it. An attempt left
   * unconfirmed is sent again with the same `Nats-Msg-Id` (jetstream-publish.ts).
   */
  async publish(event: PublishedEvent): Promise<void> {
    const label = `${event.contract}.${event.event}`;
    const data = eventPayload(this.#connection, event, label);
    const correlationId = event.metadata.correlationId;
    const headers = eventHeaders(event);
    const duplicateWindowMs = await this.ensureEventStream(event.contract, true);
    const js = await this.client();
    try {
      await publishWithRetry(this.#connection, js, {
        subject: this.#connection.subjects.durable(event.contract, event.event),
        data,
        headers,
        msgId: event.metadata.id,
        label,
        correlationId,
        duplicateWindowMs,
      });
    } catch (error) {
      // No stream took it: check the stream again before the next publish (it may have vanished).
      if (isKeelError(error, KeelErrorCode.UNAVAILABLE)) this.forgetStream(this.#connection.subjects.stream(event.contract));
      if (isKeelError(error)) throw error;
      if (isPayloadTooLarge(error, this.#connection.nc)) throw this.#connection.publishError(error, `The payload of event ${label}`, data.length, correlationId);
      if (isRefusal(error)) {
        // UNAVAILABLE, as for the stream API's refusals (jetStreamFailure): the deployment is
        // misconfigured, not the caller refused (FORBIDDEN is a principal's refusal, a 403).
        throw new KeelError(
          KeelErrorCode.UNAVAILABLE,
          `Durable event ${label} was not stored: the NATS server refused its publish (${reason(error instanceof Error && error.cause !== undefined ? error.cause : error)}). ` +
            "This process's NATS user may not publish it: its permissions come from the module graph when keel deploy or keel up made them. " +
            'If the modules or the topology changed since, run keel deploy --force again and reload nats-server with the new configuration (docs/security.md).',
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
    this.#jsm ??= jetstreamManager(this.#connection.nc, { timeout: this.#connection.options.jetStreamTimeoutMs }).catch((error: unknown) => {
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
    this.#js ??= jetstream(this.#connection.nc, { timeout: this.#connection.options.jetStreamTimeoutMs });
    return this.#js;
  }

  /**
   * Creates (once per process, idempotently) the stream of a module's durable events, and
   * resolves with its duplicate window in milliseconds.
   *
   * Limits retention, kept for `eventMaxAgeMs` (or the module's `streams` entry): each
   * consumer's acknowledgements track what it handled, and the stream keeps its messages
   * whatever they acknowledge. With interest retention, nats-server 2.9 drops the last messages
   * it had confirmed storing when it stops while consumers remove acknowledged ones (2 in 5 of 6
   * runs of a restart test), and the relay marked them sent; see docs/design-notes.md.
   *
   * `owner`: this process hosts the publishing module, and brings the stream's limits and
   * replicas up to date; a subscriber makes a missing stream so that it can attach its
   * consumer, but never changes one (its NATS user may not: docs/security.md). Its durable
   * consumers keep as many replicas as the stream (JetStream's default, which keel keeps).
   */
  ensureEventStream(module: string, owner: boolean): Promise<number> {
    const { subjects, options } = this.#connection;
    const limits = streamLimits(options, module);
    const name = subjects.stream(module);
    const subject = subjects.durableWildcard(module);
    return this.#ensureStream(
      name,
      {
        name,
        subjects: [subject],
        description: `keel durable events of module ${module}`,
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: limits.replicas,
        max_age: nanos(limits.maxAgeMs),
        max_msgs: limits.maxMessages,
        max_bytes: limits.maxBytes,
        // JetStream refuses a duplicate window longer than the stream's max age.
        duplicate_window: nanos(Math.min(DUPLICATE_WINDOW_MS, limits.maxAgeMs)),
      },
      owner,
      limits.replicasOption,
    );
  }

  /**
   * Creates (once per process, idempotently) the stream of the durable events given up on. No
   * module owns it: a process makes it when it is missing and warns when its limits differ from
   * this process's options, for the operator to change (`nats stream edit`).
   */
  async ensureDeadLetterStream(): Promise<void> {
    const { subjects, options } = this.#connection;
    const name = subjects.deadLetterStream();
    await this.#ensureStream(
      name,
      {
        name,
        subjects: [subjects.deadLetterWildcard()],
        description: 'keel durable events given up on after their last attempt',
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: options.streamReplicas,
        max_age: nanos(options.deadLetterMaxAgeMs),
        // Bounded: every subscriber of a forged invalid event stores a letter, so without these a
        // flood of them grows the stream for deadLetterMaxAgeMs.
        max_msgs: options.deadLetterMaxMessages,
        max_bytes: options.deadLetterMaxBytes,
      },
      false,
      'streamReplicas (KEEL_NATS_STREAM_REPLICAS)',
    );
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

  #ensureStream(name: string, config: WantedStream, owner: boolean, replicasOption: string): Promise<number> {
    const key = `${name} ${owner ? 'owned' : 'used'}`;
    let ensured = this.#streams.get(key);
    if (ensured === undefined) {
      ensured = this.#createStream(name, config, owner, replicasOption).catch((error: unknown) => {
        this.#streams.delete(key);
        throw error;
      });
      this.#streams.set(key, ensured);
    }
    return ensured;
  }

  /** Makes or checks stream `name`; resolves with its duplicate window in milliseconds. */
  async #createStream(name: string, config: WantedStream, owner: boolean, replicasOption: string): Promise<number> {
    const jsm = await this.#jetstreamManager();
    let info: StreamInfo;
    try {
      info = await jsm.streams.info(name);
    } catch (error) {
      if (jsErrorCode(error) !== JS_STREAM_NOT_FOUND) throw jetStreamFailure(`inspect stream ${name}`, error);
      try {
        const made = await jsm.streams.add(config);
        this.#connection.logger.info({ stream: name, subjects: config.subjects, replicas: made.config.num_replicas }, 'created JetStream stream');
        return windowMs(made.config);
      } catch (addError) {
        if (jsErrorCode(addError) !== JS_STREAM_NAME_IN_USE) throw streamFailure(`create stream ${name}`, addError, config, replicasOption);
        info = await jsm.streams.info(name).catch((again: unknown) => {
          throw jetStreamFailure(`inspect stream ${name}`, again);
        });
      }
    }
    const current = info.config;
    const prefix = this.#connection.subjects.prefix;
    const other = otherPrefix(prefix, name, current.subjects);
    if (other !== undefined) {
      const shared = config.subjects.some((subject) => current.subjects.includes(subject));
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `JetStream stream ${name} holds the events of prefix "${other}"${shared ? ' as well as' : ', not'} this process's "${prefix}": ` +
          "stream names write a prefix's dots as underscores, so the two prefixes name the same streams, and their events and dead letters would mix. " +
          "Give one of the two applications a prefix that differs in more than dots and underscores (the NATS transport's prefix, KEEL_NATS_PREFIX)" +
          (shared
            ? `; an earlier keel let them share the stream, so once one has moved, take the other's subject out of it (nats stream edit ${name} --subjects) or delete it (nats stream rm ${name}) once its consumers have caught up.`
            : `. If "${other}" is this application's earlier prefix, let its consumers catch up, then delete the stream (nats stream rm ${name}); keel makes it again.`),
      );
    }
    const missing = config.subjects.filter((subject) => !current.subjects.includes(subject));
    const limits = LIMIT_KEYS.filter((key) => config[key] !== undefined && current[key] !== config[key]);
    if (config.retention !== undefined && current.retention !== config.retention) this.#retentionDiffers(name, current.retention, config.retention);
    if (missing.length === 0 && limits.length === 0) return windowMs(current);
    const differences = [...(missing.length > 0 ? [`subjects lack ${missing.join(', ')}`] : []), ...limits.map((key) => `${key} ${current[key]}, not ${config[key]}`)];
    if (!owner) {
      this.#connection.logger.warn(
        { stream: name, differences },
        `JetStream stream ${name} differs from this process's options (${differences.join('; ')}); keel changes a stream only in a process ` +
          'that hosts its publishing module (and no process changes the dead-letter stream). Align the options, or change it yourself: nats stream edit ' +
          name,
      );
      return windowMs(current);
    }
    const update: StreamConfig = { ...current, subjects: [...current.subjects, ...missing] };
    for (const key of limits) update[key] = config[key] as number;
    try {
      const updated = await jsm.streams.update(name, update);
      this.#connection.logger.info({ stream: name, differences }, 'brought a JetStream stream up to date with this process\'s options');
      return windowMs(updated.config);
    } catch (error) {
      throw streamFailure(`update stream ${name} (${[...(missing.length > 0 ? ['subjects'] : []), ...limits].join(', ')})`, error, config, replicasOption);
    }
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

/** The stream keel wants: what it sets, with the subjects it needs. */
type WantedStream = Partial<StreamConfig> & { name: string; subjects: string[] };

/** The limits a process that owns a stream brings up to date. */
const LIMIT_KEYS = ['max_age', 'duplicate_window', 'max_msgs', 'max_bytes', 'num_replicas'] as const;

/** A stream's duplicate window in milliseconds (JetStream's default, 2 minutes, when unset). */
function windowMs(config: Pick<StreamConfig, 'duplicate_window'>): number {
  return config.duplicate_window > 0 ? millis(config.duplicate_window) : DUPLICATE_WINDOW_MS;
}

/**
 * A failure to make or update a stream: `INVALID_CONFIG` naming the option when JetStream
 * cannot place its replicas (more than the cluster has, or a single server), else
 * {@link jetStreamFailure}.
 */
function streamFailure(what: string, error: unknown, config: WantedStream, replicasOption: string): KeelError {
  const replicas = config.num_replicas ?? 1;
  const code = jsErrorCode(error);
  if (replicas > 1 && (code === JS_REPLICAS_NOT_SUPPORTED || code === JS_NO_SUITABLE_PEERS || code === JS_INSUFFICIENT_RESOURCES)) {
    return new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `Could not ${what}: JetStream cannot keep ${replicas} replicas of it (${reason(error)}). ${replicasOption} asks for ${replicas}; ` +
        'a stream needs that many nats-servers with JetStream in one cluster, known to it when the stream is made (a single server keeps 1). ' +
        'Lower the option, or add servers to the cluster (docs/nats-cluster.md).',
      { cause: error, details: { replicas, option: replicasOption } },
    );
  }
  return jetStreamFailure(what, error);
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

/**
 * The prefix of another application whose subjects stream `name` holds: keel names a stream by its
 * prefix with dots written as underscores, so two prefixes that differ only there (`acme.shop`,
 * `acme_shop`), or a dead-letter stream and a module's (`zz__dead-letters` is prefix `zz`'s
 * dead letters and module `dead-letters`'s stream under `zz_`), name the same stream.
 */
function otherPrefix(prefix: string, name: string, current: readonly string[] = []): string | undefined {
  for (const held of current) {
    const keel = keelStreamOf(held);
    if (keel !== undefined && keel.prefix !== prefix && keel.stream === name) return keel.prefix;
  }
  return undefined;
}

/** The prefix and the stream name keel gives a subject it puts in a stream (a module's durable events, or the dead letters). */
function keelStreamOf(subject: string): { readonly prefix: string; readonly stream: string } | undefined {
  if (subject.endsWith(DEAD_LETTER_SUFFIX)) {
    const prefix = subject.slice(0, -DEAD_LETTER_SUFFIX.length);
    return { prefix, stream: new Subjects(prefix).deadLetterStream() };
  }
  const durable = DURABLE_SUBJECT.exec(subject);
  if (durable === null) return undefined;
  const [, prefix = '', module = ''] = durable;
  return { prefix, stream: new Subjects(prefix).stream(module) };
}

const DEAD_LETTER_SUFFIX = '._dead-letter.>';
const DURABLE_SUBJECT = /^(.+)\.([a-z][a-z0-9-]*)\.durable\.>$/;
