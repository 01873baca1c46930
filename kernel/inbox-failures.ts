/**
 * The failures an {@link Inbox} rejects events with, besides their handlers' own, and the
 * SQLSTATEs it reads.
 */
import { KeelError, KeelErrorCode } from './errors.js';
import type { Inbox } from './inbox.js';
import type { HandlerTimeout } from './inbox-options.js';
import { givenBackError } from './transport-failures.js';

/** What the failures name of an event: its id, `source.event`, and the time its handler had. */
export interface InboxEventName {
  readonly id: string;
  readonly label: string;
  readonly timeout: HandlerTimeout;
}

/** SQLSTATE of a unique violation: the inbox already holds the event's id. */
export const UNIQUE_VIOLATION = '23505';
/** SQLSTATE of a statement sent in a transaction a failed statement aborted. */
export const IN_FAILED_TRANSACTION = '25P02';

export function sqlState(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** SQLSTATEs of a server that went away or will not take the connection: admin, crash or fast shutdown, starting up, too many connections. */
const SERVER_GONE: ReadonlySet<string> = new Set(['57P01', '57P02', '57P03', '53300']);
/** What Node's sockets say when the database's address cannot be reached or the connection broke. */
const SOCKET_FAILURES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);
/** node-postgres's own errors for a connection that broke or never came, which carry no code. */
const DRIVER_FAILURES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

/**
 * Whether `error` says the database could not be reached, or the connection to it broke (SQLSTATE
 * class 08, a server shutting down or refusing connections, a socket error, node-postgres's
 * connection errors): a failure of the database, not of the event or its handler, whose work
 * was not kept.
 */
export function databaseUnreachable(error: unknown): boolean {
  const code = sqlState(error);
  if (typeof code === 'string' && (code.startsWith('08') || SERVER_GONE.has(code) || SOCKET_FAILURES.has(code))) return true;
  return error instanceof Error && DRIVER_FAILURES.test(error.message);
}

/** The error of an engine that says it runs a transaction's `first` script but handed no result: the record may or may not be there. */
export function resultMissing(engine: string): KeelError {
  return new KeelError(
    KeelErrorCode.INTERNAL,
    `The database engine "${engine}" says it runs a transaction's first statement (firstStatement) but handed its work no result, ` +
      "so the inbox cannot tell whether the event's record was made; nothing of the transaction was kept. Fix the engine: hand work the result of first's last statement.",
  );
}

/** The error of a handler still running when its time ran out: its work is undone, and its later use of the database fails with it. */
export function outranItsTime(module: string, event: InboxEventName): KeelError {
  return new KeelError(
    KeelErrorCode.TIMEOUT,
    `The handler of durable event ${event.label} (${event.id}) in module "${module}" was still running ${event.timeout.ms} ms after it started ` +
      `(${event.timeout.own ? 'its timeoutMs' : "the kernel's eventTimeoutMs"}), so its work was rolled back and the event failed: ` +
      'it is delivered again unless this was its last attempt. ' +
      'Its signal is aborted, and what it does with the database from now on fails. ' +
      'Make it end in time (pass callSignal() to its calls, give its slow work a timeout), or give it longer: ' +
      (event.timeout.own ? "raise the handler's timeoutMs." : "the handler's own timeoutMs ({ handle, timeoutMs }), or the kernel's eventTimeoutMs."),
  );
}

/** The error of an event given back at its module's stop: `ran`, its handler was running (else it was waiting for a transaction). */
export function givenBackAtStop(module: string, event: InboxEventName, ran: boolean): KeelError {
  return givenBackError(
    ran
      ? `The handler of durable event ${event.label} (${event.id}) in module "${module}" was still running when the module's stop had waited drainTimeoutMs, ` +
          'so its work was rolled back and the event given back, not failed: it is delivered again later (to another instance, or at the next start). ' +
          'Its signal is aborted, and what it does with the database from now on fails. ' +
          "Make the handler end on its signal (pass callSignal() to its calls), or raise the kernel's drainTimeoutMs."
      : `Durable event ${event.label} (${event.id}) was waiting for a transaction of module "${module}"'s inbox when the module's stop had waited drainTimeoutMs, ` +
          'so it was given back without running: it is delivered again later (to another instance, or at the next start).',
  );
}

/** The error of a handler that resolved after one of its statements failed (its error caught): its work is undone. */
export function swallowedFailure(module: string): KeelError {
  return new KeelError(
    KeelErrorCode.INTERNAL,
    `A durable event handler of module "${module}" resolved, but a statement in its transaction had failed and its error was caught, ` +
      'so its work was rolled back. Let the error end the handler, or check before the statement (a select, or insert ... on conflict) instead of catching its failure.',
  );
}

/** The error of an event whose id holds a NUL: PostgreSQL stores no NUL in text, so no record of it can be made. */
export function nulInId(source: string, event: string, module: string): KeelError {
  return new KeelError(
    KeelErrorCode.INVALID_EVENT,
    `Event ${source}.${event} has an id with a NUL character, which module "${module}"'s inbox cannot record. keel gives each event a UUID: check what published it.`,
  );
}
