/**
 * The serving side of the NATS transport: one plain queue subscription per operation, in one
 * queue group per module, and the module's answers to the NATS service API
 * (`$SRV.PING/INFO/STATS`, service-api.ts), so no service framework wraps each request. A request is
 * read here and settled by the kernel's answer pipeline into a {@link NatsReply}, which encodes
 * the answer or the error envelope within the server's payload limit and counts it in the
 * endpoint's statistics.
 */
import { KeelError, KeelErrorCode, type CallContext } from 'keel';
import {
  InFlight,
  callLogFields,
  RemoteFailure,
  within,
  type Answer,
  type ErrorEnvelope,
  type OperationAddress,
  type Registration,
  type ServedModule,
} from 'keel/transport';
import { headers, type Msg, type Subscription } from '@nats-io/transport-node';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { isPayloadTooLarge, reason, type Connection } from './connection.js';
import { EndpointCounters } from './endpoint-stats.js';
import { readRequestHeaders } from './headers.js';
import { messageBody } from './header-bytes.js';
import { messageHeaders } from './raw-headers.js';
import { readKnownRequest } from './request-headers.js';
import { ServiceApi, type ServiceEndpoint } from './service-api.js';
import { LogThrottle } from 'keel/transport';
import { Cancellations } from './cancellations.js';

/** A cancel's body is a reply subject: one longer than this is not one keel's callers write, and is ignored. */
const MAX_REPLY_SUBJECT = 1_024;
import { Header, encodeJson, headerValue, serviceErrorCode } from './wire.js';

/** A module served on NATS. */
interface Served {
  readonly module: ServedModule;
  readonly label: string;
  readonly inFlight: InFlight;
  /** Its handlers that asked for their signal, and its callers' cancels (cancellations.ts). */
  readonly cancellations: Cancellations;
}

/** One operation served on NATS: what every request to it shares, made once by `serve`. */
class Endpoint {
  /** `module.operation`, for messages. */
  readonly target: string;
  /** `module` and `operation`, as the fields of a log line about one of its requests (a handler's lines carry the same). */
  readonly logFields: { readonly module: string; readonly operation: string };
  readonly counters = new EndpointCounters();
  /** The address of the last request's version: callers of one version share one (frozen) object. */
  #address: OperationAddress | undefined;

  constructor(
    readonly connection: Connection,
    readonly served: Served,
    readonly operation: string,
  ) {
    this.target = `${served.label}.${operation}`;
    this.logFields = { module: served.label, operation };
  }

  /** The address a request names: the operation at the contract version its caller sent. */
  addressOf(version: string): OperationAddress {
    const last = this.#address;
    if (last !== undefined && last.version === version) return last;
    const address: OperationAddress = Object.freeze({ contract: this.served.module.contract.name, version, operation: this.operation });
    this.#address = address;
    return address;
  }

  /** A request was answered, successfully or not. */
  answered(startedAt: number): void {
    this.counters.answered(startedAt);
    this.served.inFlight.end();
  }

  respondError(msg: Msg, envelope: ErrorEnvelope): void {
    const code = serviceErrorCode(envelope, this.served.module.contract, this.operation);
    const description = headerValue(`${envelope.code}: ${envelope.message}`);
    this.counters.failed(description);
    // The service API's error headers, in the order its clients' frameworks write them.
    const replyHeaders = headers();
    replyHeaders.set(Header.SERVICE_ERROR_CODE, String(code));
    replyHeaders.set(Header.SERVICE_ERROR, description);
    try {
      try {
        msg.respond(encodeJson(envelope), { headers: replyHeaders });
      } catch (error) {
        if (!isPayloadTooLarge(error, this.connection.nc)) throw error;
        // Details (zod issues of a huge input) or data made the envelope too large: send its core.
        const { type, message, correlationId } = envelope;
        msg.respond(encodeJson({ type, code: envelope.code, message: headerValue(message, 2048), correlationId }), { headers: replyHeaders });
      }
    } catch (error) {
      this.connection.logger.warn({ err: error, ...callLogFields(envelope, this.logFields) }, 'could not send an error reply');
    }
  }
}

/**
 * The answer to one request, handed to the kernel's answer pipeline, which calls exactly one of
 * `ok` and `fail`. A class rather than an object literal with two closures: a request allocates
 * one object and no function.
 */
class NatsReply implements Answer {
  /** The handler asked for its signal: its reply subject is watched for a cancel until answered. */
  watched = false;

  constructor(
    readonly endpoint: Endpoint,
    readonly msg: Msg,
    readonly context: CallContext,
    readonly startedAt: number,
    readonly address: OperationAddress,
  ) {}

  ok(output: unknown): void {
    if (this.watched) this.endpoint.served.cancellations.forget(this.msg.reply as string);
    this.#respond(output);
    this.endpoint.answered(this.startedAt);
  }

  fail(failure: RemoteFailure): void {
    if (this.watched) this.endpoint.served.cancellations.forget(this.msg.reply as string);
    this.endpoint.respondError(this.msg, this.#envelopeOf(failure));
    this.endpoint.answered(this.startedAt);
  }

  watch(controller: AbortController): void {
    this.watched = true;
    this.endpoint.served.cancellations.watch(this.msg.reply as string, controller, this.address, this.context);
  }

  #envelopeOf(failure: unknown): ErrorEnvelope {
    if (failure instanceof RemoteFailure) return failure.envelope;
    const { endpoint, context } = this;
    endpoint.connection.logger.error(
      { err: failure, ...callLogFields(context, endpoint.logFields) },
      'the answer pipeline failed a call with something other than a RemoteFailure',
    );
    return {
      type: 'keel',
      code: KeelErrorCode.INTERNAL,
      message: `${endpoint.target} failed with an internal error (correlation id ${context.correlationId}).`,
      correlationId: context.correlationId,
    };
  }

  #respond(output: unknown): void {
    const { endpoint, msg, context } = this;
    const { connection, target } = endpoint;
    const data = encodeJson(output);
    const limit = connection.maxPayload;
    if (data.length > limit) {
      const error = connection.tooLarge(`The output of ${target}`, data.length, limit, context.correlationId);
      connection.logger.error(callLogFields(context, { ...endpoint.logFields, size: data.length, limit }), error.message);
      endpoint.respondError(msg, {
        type: 'keel',
        code: error.code,
        message: error.message,
        correlationId: context.correlationId,
        details: { size: data.length, limit },
      });
      return;
    }
    try {
      msg.respond(data);
    } catch (error) {
      endpoint.counters.failed(headerValue(`reply not sent: ${reason(error)}`));
      connection.logger.warn({ err: error, ...callLogFields(context, endpoint.logFields) }, 'could not send a reply');
    }
  }
}

function jsonSchemaOf(schema: z.ZodType, io: 'input' | 'output'): string {
  try {
    return JSON.stringify(z.toJSONSchema(schema, { io, unrepresentable: 'any' }));
  } catch {
    return '{}';
  }
}

/** Serves modules on NATS. */
export class Responder {
  readonly #connection: Connection;
  readonly #noReplyLog = new LogThrottle();
  readonly #reservedReplyLog = new LogThrottle();

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  async serve(module: ServedModule): Promise<Registration> {
    const connection = this.#connection;
    const { nc, subjects, options, logger } = connection;
    const contract = module.contract;
    if (connection.closing) throw connection.unavailable(`Cannot serve module "${contract.name}"`);
    const served: Served = { module, label: contract.name, inFlight: new InFlight(), cancellations: new Cancellations() };
    const subscriptions: Subscription[] = [];
    // Every instance hears its callers' cancels (no queue group): only the one running the request has its handler watched.
    subscriptions.push(
      nc.subscribe(subjects.cancel(contract.name), {
        callback: (error, msg) => {
          try {
            if (error === null && msg.data.length > 0 && msg.data.length <= MAX_REPLY_SUBJECT) served.cancellations.cancel(msg.string());
          } catch (escaped) {
            connection.escaped(escaped, { module: contract.name, subject: msg?.subject });
          }
        },
      }),
    );
    const endpoints: ServiceEndpoint[] = [];
    for (const [operation, definition] of Object.entries(contract.operations)) {
      const metadata: Record<string, string> = {
        input_schema: jsonSchemaOf(definition.input, 'input'),
        output_schema: jsonSchemaOf(definition.output, 'output'),
        errors: definition.errors.map((error) => error.code).join(','),
        idempotent: String(definition.idempotent),
      };
      if (definition.timeoutMs !== undefined) metadata['timeout_ms'] = String(definition.timeoutMs);
      if (definition.description !== undefined) metadata['description'] = definition.description;
      const endpoint = new Endpoint(connection, served, operation);
      const subject = subjects.operation(contract.name, operation);
      endpoints.push({ name: operation, subject, queue_group: contract.name, metadata, counters: endpoint.counters });
      subscriptions.push(
        nc.subscribe(subject, {
          queue: contract.name,
          callback: (error, msg) => {
            try {
              this.#onRequest(endpoint, error, msg);
            } catch (escaped) {
              connection.escaped(escaped, endpoint.logFields);
            }
          },
        }),
      );
    }
    const serviceApi = new ServiceApi(
      nc,
      {
        name: contract.name,
        version: contract.version,
        description: contract.description ?? `keel module ${contract.name}`,
        metadata: { 'keel.prefix': options.prefix, 'keel.protocol': '1' },
        endpoints,
        circuits: () => openCircuits(module),
        database: () => (module.database?.() === 'down' ? 'down' : undefined),
      },
      (error, subject) => logger.warn({ err: error, module: contract.name, subject }, 'NATS service API subscription error'),
      (reply) => connection.subjects.isNoInbox(reply),
    );
    await nc.flush();
    logger.debug({ module: contract.name, subject: `${subjects.module(contract.name)}.*` }, 'serving module on NATS');
    return connection.register(async () => {
      await this.#stopServing(subscriptions, serviceApi, contract.name);
      if (!(await within(served.inFlight.idle(), options.drainTimeoutMs))) {
        logger.warn(
          { module: contract.name, inFlight: served.inFlight.count },
          `requests still running after ${options.drainTimeoutMs} ms; stopped waiting for them`,
        );
      }
    });
  }

  async #stopServing(subscriptions: readonly Subscription[], serviceApi: ServiceApi, module: string): Promise<void> {
    const connection = this.#connection;
    if (connection.nc.isClosed()) return;
    // Draining the subscriptions: the server stops routing new requests (and service API
    // questions) here, and the requests already routed are delivered. While disconnected a
    // drain cannot complete, so do not wait for it then.
    const stopped = Promise.allSettled([...subscriptions.map((subscription) => subscription.drain()), serviceApi.drain()]);
    if (!connection.connected) return;
    if (!(await within(stopped, connection.options.drainTimeoutMs))) {
      connection.logger.warn({ module }, 'NATS subscriptions did not finish draining in time');
    }
  }

  #reservedReply(endpoint: Endpoint, reply: string): void {
    const suppressed = this.#reservedReplyLog.take();
    if (suppressed >= 0) {
      this.#connection.logger.warn(
        { ...endpoint.logFields, reply: headerValue(reply, 128), suppressed },
        'dropped requests whose reply subject is a reserved NATS subject ($…) or one of keel\'s own, never an inbox (at most one line per 10 s; suppressed: how many since the last line)',
      );
    }
  }

  #onRequest(endpoint: Endpoint, error: Error | null, msg: Msg): void {
    const startedAt = performance.now();
    const { served, operation, target } = endpoint;
    const logger = this.#connection.logger;
    if (error !== null) {
      logger.warn({ err: error, ...endpoint.logFields }, 'request subscription error');
      return;
    }
    if (msg.reply === undefined || msg.reply === '') {
      // Counted per endpoint ($SRV.STATS data num_no_reply); logged at a bounded rate, since any
      // client allowed to publish on the subject can send as many as it likes.
      endpoint.counters.noReply += 1;
      served.module.dropped(operation, 'no-reply');
      const suppressed = this.#noReplyLog.take();
      if (suppressed >= 0) {
        logger.warn(
          { ...endpoint.logFields, subject: msg.subject, suppressed },
          'dropped requests without a reply subject (at most one line per 10 s; suppressed: how many since the last line)',
        );
      }
      return;
    }
    if (this.#connection.subjects.isNoInbox(msg.reply)) {
      // A reply subject among NATS's reserved ones (`$JS.API.…`, `$SRV.…`, `$SYS.…`) or in keel's
      // own subject space is no caller's inbox. Answering there would publish with this process's
      // right to answer the requests it receives (allow_responses), which NATS grants whatever its
      // allow lists say: a caller refused `$JS.API.STREAM.PURGE.keel_orders` could have any module
      // it may call purge that stream, or store a forged dead letter or durable event. Dropped
      // unhandled, as without a reply subject.
      this.#reservedReply(endpoint, msg.reply);
      return;
    }
    served.inFlight.begin();
    let request: ReturnType<typeof readRequestHeaders>;
    let input: unknown;
    try {
      // The block keel's callers write is matched in one pass (request-headers.ts); any other is
      // read from its bytes where raw-headers.ts can, else by nats' own decoding.
      request = readKnownRequest(msg) ?? readRequestHeaders(messageHeaders(msg), target, this.#connection.options.defaultTimeoutMs);
      try {
        input = messageBody(msg);
      } catch {
        throw new KeelError(
          KeelErrorCode.INVALID_INPUT,
          `Request to ${target}: the body is not valid UTF-8 JSON. Send the operation's input as a JSON document (see docs/wire-protocol.md).`,
          { correlationId: request.context.correlationId },
        );
      }
    } catch (failure) {
      // nats' own decoding throws on a header block it refuses (a key with a space, a bare LF).
      const keel =
        failure instanceof KeelError
          ? failure
          : new KeelError(
              KeelErrorCode.INVALID_INPUT,
              `Request to ${target}: the header block is malformed (${reason(failure)}). Send NATS headers as \`Key: value\` lines (see docs/wire-protocol.md).`,
            );
      endpoint.respondError(msg, {
        type: 'keel',
        code: keel.code,
        message: keel.message,
        ...(keel.correlationId === undefined ? {} : { correlationId: keel.correlationId }),
      });
      endpoint.answered(startedAt);
      return;
    }
    const { context } = request;
    const address = endpoint.addressOf(request.version);
    // The kernel's answer pipeline settles the call: a synchronous handler in this same turn, with
    // no promise (each one is taxed by AsyncLocalStorage's hooks on Node 20), an asynchronous one
    // when it settles.
    served.module.handle(address, input, context, false, new NatsReply(endpoint, msg, context, startedAt, address));
  }
}

/** The serving process's breakers that are not closed, for `$SRV.STATS` (undefined when all are closed). */
function openCircuits(module: ServedModule): Record<string, 'open' | 'half-open'> | undefined {
  let found: Record<string, 'open' | 'half-open'> | undefined;
  for (const circuit of module.circuits?.() ?? []) {
    if (circuit.state === 'closed') continue;
    found ??= {};
    found[circuit.dependency] = circuit.state;
  }
  return found;
}
