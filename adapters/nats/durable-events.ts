/**
 * Consuming durable events from JetStream for a subscribing module: messages kept alive while
 * their handler works, redelivery with a growing delay after a failure, and dead letters for
 * the events given up on. The streams and consumers themselves are jetstream.ts's.
 */
import { KeelError, KeelErrorCode, isKeelError } from 'keel';
import { setTimeout as sleep } from 'node:timers/promises';
import { InFlight, isDatabaseUnreachable, isGivenBack, within, type EventMetadata, type EventSubscription, type Registration } from 'keel/transport';
import type { ConsumerMessages, JsMsg } from '@nats-io/jetstream';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Connection } from './connection.js';
import { readEventHeadersFrom, sameMajor } from './headers.js';
import type { DurableConsumer, JetStream } from './jetstream.js';
import { LateNaks, PULL_EXPIRES_MS } from './late-naks.js';
import { LogThrottle } from 'keel/transport';
import { Header, decodeJson, headerValue } from './wire.js';

/** The prefix of the headers JetStream reads (lower case): none is copied onto a dead letter. */
const NATS_HEADER = 'nats-';

/** A durable subscription's running state. */
interface DurableState extends DurableConsumer {
  readonly inFlight: InFlight;
  readonly handling: Set<JsMsg>;
  messages: ConsumerMessages | undefined;
  stopped: boolean;
  /** Aborted when the subscription stops: ends the pauses of the messages held for an unreachable database. */
  readonly stopping: AbortController;
  /** Set once the stop's drain is over: from then on only last attempts are kept alive. */
  drained: boolean;
  /** When `consume()` was closed (a `performance.now()`): naks after it wait for its last pull request to expire (late-naks.ts). */
  closedAt: number | undefined;
  /** Sends `working()` for the messages being handled (see subscribe); cleared once stopped with none left. */
  keepAlive: NodeJS.Timeout | undefined;
}

/** Durable subscriptions: one JetStream consumer each, consumed until the registration stops. */
export class DurableEvents {
  readonly #connection: Connection;
  readonly #jetStream: JetStream;
  readonly #refusedLog = new LogThrottle();
  /** Naks held back past a stopped subscription's last pull request: the transport's close waits for them. */
  readonly lateNaks = new LateNaks();

  constructor(connection: Connection, jetStream: JetStream) {
    this.#connection = connection;
    this.#jetStream = jetStream;
  }

  async subscribe(subscription: EventSubscription): Promise<Registration> {
    const { subjects, options } = this.#connection;
    const stream = subjects.stream(subscription.contract);
    const consumer = subjects.consumer(subscription.subscriber, subscription.event);
    const state: DurableState = {
      subscription,
      stream,
      consumer,
      label: `${subscription.contract}.${subscription.event}`,
      inFlight: new InFlight(),
      handling: new Set(),
      messages: undefined,
      stopped: false,
      stopping: new AbortController(),
      drained: false,
      closedAt: undefined,
      keepAlive: undefined,
    };
    const jetStream = this.#jetStream;
    await jetStream.ensureEventStream(subscription.contract, false);
    await jetStream.ensureDeadLetterStream();
    await jetStream.ensureConsumer(state);
    const js = await jetStream.client();
    const source = await js.consumers.get(stream, consumer);
    const messages = await source.consume({
      max_messages: Math.min(options.maxAckPending, 64),
      expires: PULL_EXPIRES_MS,
      callback: (msg) => this.#onDurable(state, msg),
    });
    state.messages = messages;
    void this.#watchConsumer(state, messages);
    // Long handlers keep their message: tell JetStream they are still working before ack_wait ends.
    // Once the stop's drain is over, only for a last attempt: the kernel may wait for one past it
    // (it does not give those back), and another instance handed it would dead-letter it; any
    // other message is left to come back to a running instance after ack_wait.
    state.keepAlive = setInterval(() => {
      if (this.#connection.closed) {
        clearInterval(state.keepAlive);
        return;
      }
      for (const msg of state.handling) {
        if (!state.drained || msg.info.deliveryCount >= subscription.maxAttempts) msg.working();
      }
    }, Math.max(100, Math.floor(options.ackWaitMs / 2)));
    state.keepAlive.unref();
    return this.#connection.register(async () => {
      state.stopped = true;
      state.stopping.abort();
      state.closedAt = performance.now();
      await within(messages.close(), options.drainTimeoutMs);
      await within(state.inFlight.idle(), options.drainTimeoutMs);
      state.drained = true;
      if (state.handling.size === 0) clearInterval(state.keepAlive);
    });
  }

  /** Recreates stream and consumer if they vanish (a NATS server that lost its store). */
  async #watchConsumer(state: DurableState, messages: ConsumerMessages): Promise<void> {
    const logger = this.#connection.logger;
    let repairing = false;
    try {
      for await (const status of messages.status()) {
        if (state.stopped) break;
        if (status.type !== 'consumer_not_found' && status.type !== 'stream_not_found') continue;
        if (repairing) continue;
        repairing = true;
        this.#jetStream.forgetStream(state.stream);
        this.#jetStream
          .ensureEventStream(state.subscription.contract, false)
          .then(() => this.#jetStream.ensureConsumer(state))
          .then(
            () => logger.warn({ stream: state.stream, consumer: state.consumer }, 'recreated a missing JetStream stream or consumer'),
            (error: unknown) => logger.warn({ err: error, stream: state.stream }, 'could not recreate a JetStream consumer; will retry'),
          )
          .finally(() => {
            repairing = false;
          });
      }
    } catch (error) {
      if (!state.stopped) logger.warn({ err: error, consumer: state.consumer }, 'JetStream consumer status stream failed');
    }
  }

  #redeliveryDelay(attempt: number): number {
    const { options } = this.#connection;
    return Math.min(options.redeliveryDelayMs * attempt, options.maxRedeliveryDelayMs);
  }

  #onDurable(state: DurableState, msg: JsMsg): void {
    state.inFlight.begin();
    state.handling.add(msg);
    // A rejection here would be unhandled, and end the process: logged instead, the message left to
    // come back after its ack wait (the delivery count then decides, as for any failed attempt).
    void this.#handleDurable(state, msg)
      .catch((escaped: unknown) => this.#connection.escaped(escaped, { event: state.label, subscriber: state.subscription.subscriber }))
      .finally(() => {
        state.handling.delete(msg);
        state.inFlight.end();
        if (state.stopped && state.handling.size === 0) clearInterval(state.keepAlive);
      });
  }

  async #handleDurable(state: DurableState, msg: JsMsg): Promise<void> {
    const { subscription, label } = state;
    const attempt = msg.info.deliveryCount;
    const { version, metadata, refusal, refused } = readEventHeadersFrom(() => msg.headers, attempt, subscription.contract);
    if (refusal !== undefined) {
      // Not sent by keel: terminated without a dead letter, so that forged messages cannot fill
      // the dead-letter stream or reach the dead-letter hook.
      const suppressed = this.#refusedLog.take();
      if (suppressed >= 0) {
        this.#connection.logger.warn(
          { event: label, subscriber: subscription.subscriber, problem: refusal, suppressed },
          'terminated durable events without keel headers, without dead letters (at most one line per 10 s; suppressed: how many since the last line)',
        );
      }
      msg.term();
      return;
    }
    const invalid = (message: string): KeelError =>
      new KeelError(KeelErrorCode.INVALID_EVENT, `Event ${label}: ${message}`, { correlationId: metadata.correlationId });
    let payload: unknown;
    try {
      if (refused !== undefined) throw refused;
      if (!sameMajor(version, subscription.version)) {
        throw invalid(
          `published with contract version ${String(version)}, but module "${subscription.subscriber}" was built against ${subscription.version}; the major versions differ.`,
        );
      }
      try {
        payload = decodeJson(msg.data);
      } catch {
        throw invalid('the body is not valid UTF-8 JSON.');
      }
    } catch (error) {
      await this.#giveUp(state, msg, undefined, metadata, error);
      return;
    }
    if (attempt > subscription.maxAttempts) {
      // The previous holder died during the last attempt: do not run the handler again.
      await this.#giveUp(
        state,
        msg,
        payload,
        { ...metadata, attempt: subscription.maxAttempts },
        new KeelError(KeelErrorCode.INTERNAL, `Event ${label} was delivered ${attempt - 1} times without an acknowledgement.`),
      );
      return;
    }
    for (let held = 1; ; held += 1) {
      try {
        await subscription.handle(payload, metadata);
      } catch (error) {
        // Its module stopped while the handler ran, and rolled its work back: not a failure, so no
        // dead letter. JetStream counts the delivery, so the kernel never gives back a last attempt.
        if (isGivenBack(error)) {
          this.#nak(state, msg);
          return;
        }
        // The module could not reach its database: not an attempt, as in one process (where the
        // event waits in its outbox). A redelivery would count one, so the message is held here,
        // kept alive by the working() above, and handed to the handler again after a pause; a
        // stop gives it back.
        if (isDatabaseUnreachable(error)) {
          if (await this.#pause(state, this.#redeliveryDelay(held))) continue;
          this.#nak(state, msg);
          return;
        }
        if (isKeelError(error, KeelErrorCode.INVALID_EVENT) || attempt >= subscription.maxAttempts) {
          await this.#giveUp(state, msg, payload, metadata, error);
        } else {
          this.#nak(state, msg, this.#redeliveryDelay(attempt));
        }
        return;
      }
      msg.ack();
      return;
    }
  }

  /** Naks `msg` (redelivered after `delayMs`); after the subscription's consume closed, once its last pull request expired. */
  #nak(state: DurableState, msg: JsMsg, delayMs = 0): void {
    const { options, nc } = this.#connection;
    this.lateNaks.nak(msg, state.closedAt, delayMs, options.ackWaitMs, () => !nc.isClosed());
  }

  /** Waits `ms`, or less if the subscription stops or the connection closes: true when neither happened. */
  async #pause(state: DurableState, ms: number): Promise<boolean> {
    if (state.stopped || this.#connection.closed) return false;
    await sleep(ms, undefined, { signal: state.stopping.signal }).catch(() => undefined);
    return !state.stopped && !this.#connection.closed;
  }

  /** Dead-letters a durable event: tells the kernel, stores it on the dead-letter stream, terminates it. */
  async #giveUp(state: DurableState, msg: JsMsg, payload: unknown, metadata: EventMetadata, error: unknown): Promise<void> {
    const { subscription } = state;
    const { subjects, options, logger } = this.#connection;
    try {
      subscription.deadLetter(payload, metadata, error);
    } catch (failure) {
      logger.warn({ err: failure, event: state.label }, 'dead-letter hook failed');
    }
    const letterHeaders = natsHeaders();
    if (msg.headers !== undefined) {
      for (const [key, values] of msg.headers) {
        // JetStream's own headers stay behind: Nats-Msg-Id, and the publish conditions
        // (Nats-Expected-Stream, -Last-Sequence, …), which the original met on its own stream and
        // the letter would fail on the dead-letter stream, so that it would never be stored.
        if (key.length >= NATS_HEADER.length && key.slice(0, NATS_HEADER.length).toLowerCase() === NATS_HEADER) continue;
        for (const value of values) letterHeaders.append(key, value);
      }
    }
    letterHeaders.set(Header.SUBSCRIBER, subscription.subscriber);
    letterHeaders.set(Header.ATTEMPTS, String(metadata.attempt));
    const failure = isKeelError(error) ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
    letterHeaders.set(Header.FAILURE, headerValue(failure));
    try {
      await this.#jetStream.ensureDeadLetterStream();
      const js = await this.#jetStream.client();
      await js.publish(subjects.deadLetter(subscription.subscriber, subscription.contract, subscription.event), msg.data, {
        headers: letterHeaders,
        timeout: options.jetStreamTimeoutMs,
      });
    } catch (publishError) {
      logger.error(
        { err: publishError, event: state.label, eventId: metadata.id, subscriber: subscription.subscriber },
        'could not store a dead letter on JetStream; the event is only in the logs now',
      );
    }
    msg.term();
  }
}
