/**
 * The NATS caller's one reply subscription, and what happens when the server refuses it: its
 * user may not subscribe to the inbox prefix (at start, or after a permission reload or a
 * restart). Refused, it says so once, keeps the reason for the calls it refuses, and asks the
 * server again every {@link REPLIES_RETRY_MS} until it is granted; the caller (caller.ts) ends
 * the calls waiting and refuses new ones unsent meanwhile.
 */
import { KeelError, KeelErrorCode } from 'keel';
import { errors, type Msg, type Subscription } from '@nats-io/transport-node';
import type { Connection } from './connection.js';

/** While the server refuses the reply subscription, how often to ask for it again (a permission reload or restart may grant it). */
export const REPLIES_RETRY_MS = 5_000;

/** One subscription to `subject` whose messages go to `onMessage`; `onRefused` is told when the server refuses it, once per refused spell. */
export class ReplySubscription {
  readonly #connection: Connection;
  readonly #subject: string;
  readonly #onMessage: (msg: Msg) => void;
  readonly #onRefused: (refused: KeelError) => void;
  #subscription: Subscription | undefined;
  /** Set while the server refuses it: no call could get its answer, so none is sent. */
  #refused: KeelError | undefined;
  /** The next request for it while it is refused. */
  #retry: ReturnType<typeof setTimeout> | undefined;

  constructor(connection: Connection, subject: string, onMessage: (msg: Msg) => void, onRefused: (refused: KeelError) => void) {
    this.#connection = connection;
    this.#subject = subject;
    this.#onMessage = onMessage;
    this.#onRefused = onRefused;
  }

  /** Subscribes. */
  listen(): Subscription {
    const onMessage = this.#onMessage;
    const subscription = this.#connection.nc.subscribe(this.#subject, {
      callback: (error, msg) => {
        try {
          if (error === null) onMessage(msg);
          else this.#onError(error);
        } catch (escaped) {
          this.#connection.escaped(escaped, { subject: msg?.subject });
        }
      },
    });
    this.#subscription = subscription;
    return subscription;
  }

  /**
   * Why this process's NATS user may not receive replies while the server refuses the
   * subscription (its permissions do not cover the inbox prefix); `undefined` otherwise. The
   * server's refusal arrives before the transport's first flush returns, so the transport is
   * refused at its start (transport.ts).
   */
  get refused(): KeelError | undefined {
    return this.#refused;
  }

  /** Stops asking again (the transport is closing). */
  close(): void {
    clearTimeout(this.#retry);
    this.#retry = undefined;
  }

  /** Stops listening (when the connection is closed without draining). */
  unsubscribe(): void {
    this.#subscription?.unsubscribe();
  }

  #onError(error: Error): void {
    if (error instanceof errors.PermissionViolationError && error.operation === 'subscription') {
      this.#onRefusal(error);
      return;
    }
    this.#connection.logger.warn({ err: error }, 'reply subscription error');
  }

  /**
   * The server refused the subscription (nats.js has closed it). Logged once per refused spell,
   * not per retry (each of those draws a throttled warn line from the connection).
   */
  #onRefusal(error: InstanceType<typeof errors.PermissionViolationError>): void {
    const first = this.#refused === undefined;
    this.#refused = new KeelError(
      KeelErrorCode.INVALID_CONFIG,
      `NATS refused this process's user permission to subscribe to its reply subject ${error.subject}, so no call it makes could get an answer. ` +
        'Set KEEL_NATS_INBOX_PREFIX (the inboxPrefix option) to the prefix its user may subscribe under: keel deploy and keel up write it beside ' +
        "the user's password. Or give the user that permission.",
      { cause: error },
    );
    if (first) {
      this.#connection.logger.error({ err: this.#refused }, this.#refused.message);
      this.#onRefused(this.#refused);
    }
    this.#askLater();
  }

  #askLater(): void {
    if (this.#retry !== undefined || this.#connection.closing) return;
    this.#retry = setTimeout(() => {
      this.#ask().catch((error: unknown) => this.#connection.logger.warn({ err: error }, 'could not ask NATS for the reply subscription again'));
    }, REPLIES_RETRY_MS);
    this.#retry.unref();
  }

  /**
   * Subscribes again and flushes: the server answers a refused subscription before the flush's
   * PONG, so a subscription still open after the flush was granted.
   */
  async #ask(): Promise<void> {
    this.#retry = undefined;
    if (this.#connection.closing || this.#connection.closed) return;
    const subscription = this.listen();
    let flushed = true;
    try {
      await this.#connection.nc.flush();
    } catch {
      flushed = false; // disconnected or closing: ask again later (a closing connection asks nothing)
    }
    if (!flushed || subscription.isClosed() || this.#connection.closed) {
      if (!subscription.isClosed()) subscription.unsubscribe();
      this.#askLater();
      return;
    }
    const refused = this.#refused;
    this.#refused = undefined;
    this.#connection.logger.info(
      { subject: this.#subject },
      `NATS granted the reply subscription again; calls resume (it was refused: ${refused?.message ?? ''})`,
    );
  }
}
