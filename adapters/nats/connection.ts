/**
 * The NATS transport's connection: connecting, following its status (disconnects, reconnects,
 * lame duck mode, refused credentials), what is registered on it, and closing it, drained when
 * it can be. The caller, the responder and the event parts share one {@link Connection}.
 */
import { KeelError, KeelErrorCode, type Logger } from 'keel';
import { KeyedLogThrottle, LogThrottle, within, type Registration, type TransportStatus } from 'keel/transport';
import { connect, errors, type NatsConnection } from '@nats-io/transport-node';
import { connectionOptions } from './connection-options.js';
import { redactUrl } from './option-checks.js';
import type { ResolvedNatsOptions } from './options.js';
import { Subjects } from './wire.js';

const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

/**
 * Why a first connection failed, in the `nats` detail of its `UNAVAILABLE` error: the servers
 * refused this connection's credentials (connecting again with the same ones meets the same
 * refusal), or none could be reached or spoken to.
 *
 * @example
 * ```ts
 * const transport = await createNatsTransport(options).catch((error: unknown) => {
 *   if (isKeelError(error, 'UNAVAILABLE') && error.details?.['nats'] === NatsConnectFailure.CREDENTIALS_REFUSED) {
 *     console.error('NATS refused our credentials: retrying will not help.');
 *   }
 *   throw error;
 * });
 * ```
 */
export const NatsConnectFailure = {
  CREDENTIALS_REFUSED: 'credentials-refused',
  UNREACHABLE: 'unreachable',
} as const;

/** A {@link NatsConnectFailure} value. */
export type NatsConnectFailure = (typeof NatsConnectFailure)[keyof typeof NatsConnectFailure];

/**
 * Connects to the NATS servers of `options`; rejects with `UNAVAILABLE`, saying what to check,
 * when none answers, its details naming the servers and why ({@link NatsConnectFailure}).
 */
export async function openConnection(options: ResolvedNatsOptions, logger: Logger): Promise<Connection> {
  let nc: NatsConnection;
  try {
    nc = await connect(connectionOptions(options));
  } catch (error) {
    const servers = options.servers.map(redactUrl);
    const refused = error instanceof errors.AuthorizationError || error instanceof errors.UserAuthenticationExpiredError;
    throw new KeelError(KeelErrorCode.UNAVAILABLE, `Could not connect to NATS at ${servers.join(', ')}: ${reason(error)}. ${connectAdvice(error, options, refused)}`, {
      cause: error,
      details: { nats: refused ? NatsConnectFailure.CREDENTIALS_REFUSED : NatsConnectFailure.UNREACHABLE, servers },
    });
  }
  return new Connection(nc, options, logger);
}

/** What to do about a failed connection: refused credentials and a TLS problem have their own remedies. */
function connectAdvice(error: unknown, options: ResolvedNatsOptions, refused: boolean): string {
  if (refused) {
    return 'The server refused its credentials: check the token, user and password or credentials file (KEEL_NATS_TOKEN, KEEL_NATS_USER/KEEL_NATS_PASSWORD, KEEL_NATS_CREDS) against the server\'s configuration.';
  }
  const text = reason(error);
  if (/certificate|self[- ]signed|CERT_|SSL|TLS/i.test(text)) {
    return options.tls?.caFile === undefined
      ? "The server's TLS certificate is not trusted: set KEEL_NATS_TLS_CA (tls.caFile) to the CA certificate that signed it."
      : 'Check that KEEL_NATS_TLS_CA (tls.caFile) signed the server\'s certificate, that it names this host, and, if the server verifies clients, KEEL_NATS_TLS_CERT and KEEL_NATS_TLS_KEY.';
  }
  return 'Start nats-server there, or fix the server URL (the servers option: KEEL_NATS_URL, or keel start --nats) and the NATS credentials.';
}

/** A NATS client error as text: its message, and its class when that says more (`TimeoutError`). */
export function reason(error: unknown): string {
  if (error instanceof Error) return error.name !== 'Error' && !error.message.includes(error.name) ? `${error.message} (${error.name})` : error.message;
  return String(error);
}

/**
 * True when a publish on `nc` was refused for exceeding the server's `max_payload`. The client
 * (v3) throws an `InvalidArgumentError` for it, and the same class when the message has headers
 * and the server does not support them (`'headers' are not available on this server`); on a
 * publish to a valid subject (a reply subject and keel's own are) those are the only two. A
 * server that supports headers leaves only the size check; on one that does not, only the error
 * naming `max_payload` is the size check.
 */
export function isPayloadTooLarge(error: unknown, nc: Pick<NatsConnection, 'info'>): boolean {
  if (!(error instanceof errors.InvalidArgumentError)) return false;
  if (nc.info?.headers === true) return true;
  return error.message.includes('max_payload');
}

/** True when the NATS client refused because the connection is closed or draining. */
export function isConnectionClosing(error: unknown): boolean {
  return error instanceof errors.ClosedConnectionError || error instanceof errors.DrainingConnectionError;
}

/** How a wait for a lost connection ended ({@link Connection.waitForConnection}). */
export type ConnectionWait = 'connected' | 'closed' | 'gave-up' | 'cancelled';

/** One NATS connection with the state every part of the transport reads. */
export class Connection {
  readonly nc: NatsConnection;
  readonly options: ResolvedNatsOptions;
  readonly logger: Logger;
  readonly subjects: Subjects;
  /**
   * False while the client is disconnected (it reconnects by itself), and once closed. Set from
   * the client's status events, a few microtasks after the client itself knows.
   */
  connected = true;
  readonly #registrations = new Set<Registration>();
  #closing: Promise<void> | undefined;
  /** Permission refusals, by operation and subject: one line per 10 s for each. */
  readonly #refusals = new KeyedLogThrottle();
  /** Told of each publish the server refused (a permission violation), with its subject: the caller fails the calls waiting on it. */
  onRefusedPublish: (subject: string, error: Error) => void = () => {};
  /** The calls waiting for the connection to come back ({@link Connection.waitForConnection}). */
  readonly #waiters = new Set<() => void>();
  /** Errors that escaped the handling of a message: one line per 10 s. */
  readonly #escapedLog = new LogThrottle();

  constructor(nc: NatsConnection, options: ResolvedNatsOptions, logger: Logger) {
    this.nc = nc;
    this.options = options;
    this.logger = logger;
    this.subjects = new Subjects(options.prefix);
  }

  /**
   * The last line of defence of every subscription callback: nats.js runs them inside its socket
   * reader, so an error thrown from one ends the reader, and the connection hears nothing more
   * (calls, replies, events) until the client finds it stale, minutes later. keel handles what a
   * sender can get wrong where it reads it; an error that still escapes is a bug, logged here (at
   * most one line per 10 s), never let through to the reader.
   *
   * @example
   * ```ts
   * callback: (error, msg) => {
   *   try { handle(msg); } catch (escaped) { connection.escaped(escaped, { subject: msg.subject }); }
   * },
   * ```
   */
  escaped(error: unknown, fields: Record<string, unknown>): void {
    const suppressed = this.#escapedLog.take();
    if (suppressed < 0) return;
    try {
      this.logger.error(
        { ...fields, err: error, suppressed },
        'an error escaped the handling of a NATS message; the message is dropped and the connection keeps reading (a bug in keel: please report it; at most one line per 10 s, suppressed: how many since the last)',
      );
    } catch {
      // A logger that throws must not end the reader either.
    }
  }

  /**
   * Follows the connection's status until it ends; `onClosed` runs when the connection closes,
   * whatever closed it, and `onDisconnected` each time it drops (the client then reconnects). Resolves once the server has seen every subscription made so far.
   */
  async start(onClosed: (error: Error | undefined) => void, onDisconnected: () => void = () => {}): Promise<void> {
    void this.#watchStatus(onDisconnected);
    void this.nc.closed().then((error) => {
      this.connected = false;
      this.#wakeWaiters();
      if (this.#closing === undefined) {
        this.logger.error({ err: error }, 'NATS connection closed unexpectedly; this process can no longer reach other modules');
      }
      onClosed(error ?? undefined);
    });
    await this.nc.flush();
    this.logger.info({ server: this.nc.getServer(), prefix: this.options.prefix }, 'connected to NATS');
  }

  async #watchStatus(onDisconnected: () => void): Promise<void> {
    try {
      for await (const status of this.nc.status()) {
        switch (status.type) {
          case 'disconnect':
            if (this.connected) this.logger.warn({ server: status.server }, 'disconnected from NATS; reconnecting');
            this.connected = false;
            onDisconnected();
            break;
          case 'reconnect':
            this.connected = true;
            this.#wakeWaiters();
            this.logger.info({ server: status.server }, 'reconnected to NATS');
            break;
          case 'ldm':
            this.logger.warn({ server: this.nc.getServer() }, 'NATS server entering lame duck mode; will move to another server');
            break;
          case 'error':
            if (status.error instanceof errors.AuthorizationError || status.error instanceof errors.UserAuthenticationExpiredError) {
              // The client keeps retrying (credentials may be rotated server-side); say why it is not back.
              this.logger.error(
                { error: String(status.error), server: this.nc.getServer() },
                'NATS refused this connection\'s credentials; retrying — check the token, user and password or credentials file (KEEL_NATS_TOKEN, KEEL_NATS_USER/KEEL_NATS_PASSWORD, KEEL_NATS_CREDS)',
              );
            } else if (status.error instanceof errors.PermissionViolationError) {
              if (status.error.operation === 'publish') this.onRefusedPublish(status.error.subject, status.error);
              // A caller refused fast may try again at once: one line per 10 s for each subject refused, with how many were left out.
              const { operation, subject } = status.error;
              const suppressed = this.#refusals.take(`${operation} ${subject}`);
              if (suppressed >= 0) {
                this.logger.warn(
                  { error: String(status.error), operation, subject, suppressed },
                  `NATS refused this connection's user permission to ${operation === 'publish' ? 'publish to' : 'subscribe to'} ${subject} (at most one line per 10 s for each subject; suppressed: how many since the last line)`,
                );
              }
            } else {
              this.logger.warn({ error: String(status.error) }, 'NATS reported an error');
            }
            break;
          default:
            break;
        }
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'NATS status stream failed');
    }
  }

  /**
   * Waits, at most `maxMs`, for a lost connection to come back: `connected` when it is up (at
   * once if it is), `closed` when the transport closes meanwhile, `gave-up` after `maxMs`,
   * `cancelled` when `signal` aborts. One timer per waiting call: only outages pay for it.
   * (Not a promise shared by the waiters: a wait that ended must not stay attached for the rest
   * of a long outage.)
   */
  waitForConnection(maxMs: number, signal: AbortSignal | undefined): Promise<ConnectionWait> {
    if (this.closed) return Promise.resolve('closed');
    if (this.connected) return Promise.resolve('connected');
    if (signal?.aborted) return Promise.resolve('cancelled');
    if (maxMs <= 0) return Promise.resolve('gave-up');
    return new Promise<ConnectionWait>((resolve) => {
      const finish = (outcome: ConnectionWait): void => {
        this.#waiters.delete(onWake);
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(outcome);
      };
      const onWake = (): void => finish(this.closed ? 'closed' : 'connected');
      const onAbort = (): void => finish('cancelled');
      const timer = setTimeout(finish, maxMs, 'gave-up');
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.add(onWake);
    });
  }

  /** Ends the waits of {@link Connection.waitForConnection}: the connection is back, or closing. */
  #wakeWaiters(): void {
    for (const wake of [...this.#waiters]) wake();
  }

  /** The servers the client is reconnecting to, safe to log. */
  get reconnectingTo(): string {
    return this.options.servers.map(redactUrl).join(', ');
  }

  /** True once the transport's `close` was called. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /** True once the transport's `close` was called or the connection closed by itself. */
  get closed(): boolean {
    return this.#closing !== undefined || this.nc.isClosed();
  }

  status(name: string): TransportStatus {
    const closed = this.closed;
    const ready = this.connected && !closed;
    let detail: string;
    if (ready) detail = `connected to ${this.nc.getServer()} (prefix ${this.options.prefix})`;
    else if (closed) detail = 'closed';
    else detail = `disconnected from NATS; reconnecting to ${this.reconnectingTo}`;
    return { name, ready, detail };
  }

  get maxPayload(): number {
    return this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  unavailable(what: string): KeelError {
    return new KeelError(
      KeelErrorCode.UNAVAILABLE,
      `${what}: the NATS transport is closed. Create a new transport (and kernel) to reach other modules again.`,
    );
  }

  tooLarge(what: string, size: number, limit: number, correlationId: string | undefined): KeelError {
    return new KeelError(
      KeelErrorCode.PAYLOAD_TOO_LARGE,
      `${what} is ${size} bytes as JSON, more than the ${limit} bytes the NATS server accepts (max_payload). ` +
        'Nothing was sent. Send less data per message (page it, or pass a reference), or raise max_payload on the server.',
      { correlationId, details: { size, limit } },
    );
  }

  /** What a failed `publish` of `size` bytes becomes for the caller. */
  publishError(error: unknown, what: string, size: number, correlationId: string | undefined): KeelError {
    if (isPayloadTooLarge(error, this.nc)) return this.tooLarge(`${what} (with its headers)`, size, this.maxPayload, correlationId);
    if (isConnectionClosing(error)) {
      return new KeelError(KeelErrorCode.UNAVAILABLE, `${what} was not sent: the NATS connection is closing.`, {
        correlationId,
        cause: error,
      });
    }
    return new KeelError(KeelErrorCode.UNAVAILABLE, `${what} was not sent: ${reason(error)}.`, { correlationId, cause: error });
  }

  /**
   * A registration (a served module, a subscription) that `stop` once, however often it is
   * called, and that the transport stops when it closes until then.
   */
  register(stop: () => Promise<void>): Registration {
    let stopping: Promise<void> | undefined;
    const registration: Registration = {
      stop: () => {
        stopping ??= stop().then(() => {
          this.#registrations.delete(registration);
        });
        return stopping;
      },
    };
    this.#registrations.add(registration);
    return registration;
  }

  /**
   * Closes once, however often it is called: the first call runs `shutdown` (which stops what
   * runs on the connection, then drains or ends it), and `closing` is true from then on.
   */
  closeOnce(shutdown: () => Promise<void>): Promise<void> {
    this.#closing ??= shutdown();
    this.#wakeWaiters();
    return this.#closing;
  }

  /** Stops every registration still running. */
  async stopRegistrations(): Promise<void> {
    await Promise.allSettled([...this.#registrations].map((registration) => registration.stop()));
  }

  /**
   * Drains the connection (the server stops sending, what was sent is delivered) within the
   * drain timeout and closes it. False when it could not: the caller then closes it with
   * {@link Connection.end}.
   */
  async drain(): Promise<boolean> {
    if (this.nc.isClosed()) return true;
    if (this.connected && !this.nc.isDraining()) {
      const drained = this.nc.drain().catch(() => undefined);
      if (await within(drained, this.options.drainTimeoutMs)) {
        this.logger.info({}, 'NATS connection drained and closed');
        return true;
      }
    }
    return false;
  }

  /** Closes the connection without draining it. */
  async end(): Promise<void> {
    await this.nc.close().catch(() => undefined);
    this.logger.info({}, 'NATS connection closed');
  }
}
