/**
 * The serving side of the NATS transport: one NATS service per module (discoverable with
 * `$SRV.PING/INFO/STATS`), one endpoint per operation, one queue group per module. A request is
 * read here, settled by the kernel's answer pipeline, and its answer or error envelope encoded
 * within the server's payload limit and counted in the endpoint's statistics.
 */
import { KeelError, KeelErrorCode, type CallContext } from 'keel';
import {
  InFlight,
  RemoteFailure,
  within,
  type ErrorEnvelope,
  type OperationAddress,
  type Registration,
  type ServedModule,
} from 'keel/transport';
import { ErrorCode, type NatsError, type Service, type ServiceMsg } from 'nats';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { natsCode, reason, type Connection } from './connection.js';
import { EndpointCounters } from './endpoint-stats.js';
import { readRequestHeaders } from './headers.js';
import { decodeJson, encodeJson, headerValue, serviceErrorCode } from './wire.js';

/** A module served on NATS. */
interface Served {
  readonly module: ServedModule;
  readonly label: string;
  readonly inFlight: InFlight;
  service: Service | undefined;
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

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  async serve(module: ServedModule): Promise<Registration> {
    const connection = this.#connection;
    const { nc, subjects, options, logger } = connection;
    const contract = module.contract;
    if (connection.closing) throw connection.unavailable(`Cannot serve module "${contract.name}"`);
    const served: Served = { module, label: contract.name, inFlight: new InFlight(), service: undefined };
    // The client's own counters miss asynchronous answers: each endpoint's `data` carries keel's (endpoint-stats.ts).
    const countersBySubject = new Map<string, EndpointCounters>();
    const service = await nc.services.add({
      name: contract.name,
      version: contract.version,
      description: contract.description ?? `keel module ${contract.name}`,
      queue: contract.name,
      metadata: { 'keel.prefix': options.prefix, 'keel.protocol': '1' },
      statsHandler: (endpoint) => Promise.resolve(countersBySubject.get(endpoint.subject)?.report() ?? null),
    });
    served.service = service;
    const group = service.addGroup(subjects.module(contract.name), contract.name);
    for (const [operation, definition] of Object.entries(contract.operations)) {
      const metadata: Record<string, string> = {
        input_schema: jsonSchemaOf(definition.input, 'input'),
        output_schema: jsonSchemaOf(definition.output, 'output'),
        errors: definition.errors.map((error) => error.code).join(','),
        idempotent: String(definition.idempotent),
      };
      if (definition.timeoutMs !== undefined) metadata['timeout_ms'] = String(definition.timeoutMs);
      if (definition.description !== undefined) metadata['description'] = definition.description;
      const counters = new EndpointCounters();
      countersBySubject.set(subjects.operation(contract.name, operation), counters);
      group.addEndpoint(operation, {
        handler: (error, msg) => this.#onRequest(served, operation, counters, error, msg),
        metadata,
        queue: contract.name,
      });
    }
    await nc.flush();
    logger.debug({ module: contract.name, subject: `${subjects.module(contract.name)}.*` }, 'serving module on NATS');
    return connection.register(async () => {
      await this.#stopService(service, contract.name);
      if (!(await within(served.inFlight.idle(), options.drainTimeoutMs))) {
        logger.warn(
          { module: contract.name, inFlight: served.inFlight.count },
          `requests still running after ${options.drainTimeoutMs} ms; stopped waiting for them`,
        );
      }
    });
  }

  async #stopService(service: Service, module: string): Promise<void> {
    const connection = this.#connection;
    // A service stop drains its subscriptions: the server stops routing new requests here and
    // the requests already routed are delivered. While disconnected a drain cannot complete,
    // so do not wait for it then.
    const stopped = service.stop();
    if (!connection.connected || connection.nc.isClosed()) return;
    if (!(await within(stopped, connection.options.drainTimeoutMs))) {
      connection.logger.warn({ module }, 'NATS service did not finish draining in time');
    }
  }

  #onRequest(served: Served, operation: string, counters: EndpointCounters, error: NatsError | null, msg: ServiceMsg): void {
    const startedAt = performance.now();
    const contract = served.module.contract;
    const target = `${contract.name}.${operation}`;
    const logger = this.#connection.logger;
    if (error !== null) {
      logger.warn({ err: error, operation: target }, 'request subscription error');
      return;
    }
    if (msg.reply === '') {
      logger.warn({ operation: target, subject: msg.subject }, 'dropped a request without a reply subject');
      return;
    }
    served.inFlight.begin();
    let request: ReturnType<typeof readRequestHeaders>;
    let input: unknown;
    try {
      request = readRequestHeaders(msg.headers, target, this.#connection.options.defaultTimeoutMs);
      try {
        input = decodeJson(msg.data);
      } catch {
        throw new KeelError(
          KeelErrorCode.INVALID_INPUT,
          `Request to ${target}: the body is not valid UTF-8 JSON. Send the operation's input as a JSON document (see docs/wire-protocol.md).`,
          { correlationId: request.context.correlationId },
        );
      }
    } catch (failure) {
      const keel = failure as KeelError;
      this.#respondError(msg, served, operation, counters, {
        type: 'keel',
        code: keel.code,
        message: keel.message,
        ...(keel.correlationId === undefined ? {} : { correlationId: keel.correlationId }),
      });
      counters.answered(startedAt);
      served.inFlight.end();
      return;
    }
    const { context } = request;
    const address: OperationAddress = { contract: contract.name, version: request.version, operation };
    // The kernel's answer pipeline settles the call: a synchronous handler in this same turn, with
    // no promise (each one is taxed by AsyncLocalStorage's hooks on Node 20), an asynchronous one
    // when it settles.
    served.module.handle(address, input, context, false, {
      ok: (output) => this.#answer(msg, served, operation, counters, output, context, startedAt),
      fail: (failure) => this.#answerFailure(msg, served, operation, counters, failure, target, context, startedAt),
    });
  }

  #answer(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, output: unknown, context: CallContext, startedAt: number): void {
    this.#respond(msg, served, operation, counters, output, context);
    counters.answered(startedAt);
    served.inFlight.end();
  }

  #answerFailure(
    msg: ServiceMsg,
    served: Served,
    operation: string,
    counters: EndpointCounters,
    failure: unknown,
    target: string,
    context: CallContext,
    startedAt: number,
  ): void {
    this.#respondError(msg, served, operation, counters, this.#envelopeOf(failure, target, context));
    counters.answered(startedAt);
    served.inFlight.end();
  }

  #envelopeOf(failure: unknown, target: string, context: CallContext): ErrorEnvelope {
    if (failure instanceof RemoteFailure) return failure.envelope;
    this.#connection.logger.error(
      { err: failure, operation: target, correlationId: context.correlationId },
      'the answer pipeline failed a call with something other than a RemoteFailure',
    );
    return {
      type: 'keel',
      code: KeelErrorCode.INTERNAL,
      message: `${target} failed with an internal error (correlation id ${context.correlationId}).`,
      correlationId: context.correlationId,
    };
  }

  #respond(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, output: unknown, context: CallContext): void {
    const { logger } = this.#connection;
    const data = encodeJson(output);
    const limit = this.#connection.maxPayload;
    if (data.length > limit) {
      const error = this.#connection.tooLarge(`The output of ${served.label}.${operation}`, data.length, limit, context.correlationId);
      logger.error({ operation: `${served.label}.${operation}`, size: data.length, limit, correlationId: context.correlationId }, error.message);
      this.#respondError(msg, served, operation, counters, {
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
      counters.failed(headerValue(`reply not sent: ${reason(error)}`));
      logger.warn({ err: error, operation: `${served.label}.${operation}`, correlationId: context.correlationId }, 'could not send a reply');
    }
  }

  #respondError(msg: ServiceMsg, served: Served, operation: string, counters: EndpointCounters, envelope: ErrorEnvelope): void {
    const code = serviceErrorCode(envelope, served.module.contract, operation);
    const description = headerValue(`${envelope.code}: ${envelope.message}`);
    counters.failed(description);
    try {
      try {
        msg.respondError(code, description, encodeJson(envelope));
      } catch (error) {
        if (natsCode(error) !== ErrorCode.MaxPayloadExceeded) throw error;
        // Details (zod issues of a huge input) or data made the envelope too large: send its core.
        const { type, message, correlationId } = envelope;
        msg.respondError(code, description, encodeJson({ type, code: envelope.code, message: headerValue(message, 2048), correlationId }));
      }
    } catch (error) {
      this.#connection.logger.warn(
        { err: error, operation: `${served.label}.${operation}`, correlationId: envelope.correlationId },
        'could not send an error reply',
      );
    }
  }
}
