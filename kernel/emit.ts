/**
 * A module's `emit`: the payload checked against its contract, then the event written to the
 * module's outbox when a transaction is open, or handed to the transport at once; inside a
 * producer span when tracing is on.
 */
import type { AnyContract, AnyEvent } from './contract.js';
import { compiledSchema } from './compiled-schema.js';
import { currentContext, newCorrelationId, type CallContext } from './context.js';
import { KeelError, KeelErrorCode, validationError } from './errors.js';
import type { ModuleDatabase } from './module-data.js';
import type { HostServices } from './host-services.js';
import type { OutboxRelay } from './outbox-relay.js';
import { endSpan, keelTracer, startProducerSpan } from './tracing.js';
import { traceparentOf } from './traceparent.js';

/** What a module's `emit` needs from its host. */
export interface EmitSource {
  readonly contract: AnyContract;
  readonly services: Pick<HostServices, 'local' | 'remote' | 'stopped'>;
  /** The module's database, once opened (`undefined`: the module declares no data). */
  database(): ModuleDatabase | undefined;
  /** The module's outbox relay, once its database is opened. */
  relay(): OutboxRelay | undefined;
}

/** The `emit` a module's `create` gets. */
export function createEmit(source: EmitSource): (event: string, payload: unknown) => Promise<void> {
  return (event, payload) => emitEvent(source, event, payload);
}

/**
 * A module's `emit`. Not `async`: on the common path (no transaction, tracing off) the promise
 * returned is the transport's own, with no extra promise per event around it (docs/performance.md,
 * "Event profile"); every failure still comes back as a rejection, never a throw.
 */
function emitEvent(source: EmitSource, event: string, payload: unknown): Promise<void> {
  const contract = source.contract;
  try {
    const definition = contract.events[event];
    const context = currentContext();
    if (definition === undefined) {
      throw new KeelError(
        KeelErrorCode.INVALID_EVENT,
        `Module "${contract.name}" emitted "${event}", which its contract does not declare (it declares: ${
          Object.keys(contract.events).join(', ') || 'no events'
        }).`,
      );
    }
    // Compiled on the first emit of the event, as a call's schemas are (compiled-schema.ts).
    const parsed = compiledSchema(definition.payload).safeParse(payload);
    if (!parsed.success) {
      throw validationError(KeelErrorCode.INVALID_EVENT, 'payload', contract.name, event, parsed.error.issues, context?.correlationId);
    }
    if (source.services.stopped()) {
      throw new KeelError(
        KeelErrorCode.INVALID_STATE,
        `Module "${contract.name}" emitted ${event} after the kernel stopped; emit only while the module runs.`,
      );
    }
    const transaction = source.database()?.current();
    const tracer = keelTracer();
    // An event emitted outside any call starts a chain of its own, named after it: its id is the
    // chain's correlation id (one id made, not two; docs/design-notes.md, "An event emitted outside any call").
    const id = newCorrelationId();
    const correlationId = context?.correlationId ?? id;
    if (tracer !== undefined) return emitTraced(source, tracer, contract, event, definition.delivery, parsed.data, context, transaction, id, correlationId);
    if (transaction !== undefined) return toOutbox(source, transaction, event, parsed.data, context, context?.traceparent, id, correlationId);
    return publish(source, contract, event, definition.delivery, parsed.data, context, context?.traceparent, id, correlationId);
  } catch (error) {
    return Promise.reject(error);
  }
}

/** An event emitted with tracing on: sent inside its producer span. */
async function emitTraced(
  source: EmitSource,
  tracer: NonNullable<ReturnType<typeof keelTracer>>,
  contract: AnyContract,
  event: string,
  delivery: AnyEvent['delivery'],
  payload: unknown,
  context: CallContext | undefined,
  transaction: ReturnType<ModuleDatabase['current']>,
  id: string,
  correlationId: string,
): Promise<void> {
  const span = startProducerSpan(tracer, contract.name, event, transaction === undefined ? 'send' : 'create', correlationId);
  try {
    const traceparent = traceparentOf(span.spanContext());
    await (transaction !== undefined
      ? toOutbox(source, transaction, event, payload, context, traceparent, id, correlationId)
      : publish(source, contract, event, delivery, payload, context, traceparent, id, correlationId));
  } catch (error) {
    endSpan(span, error);
    throw error;
  }
  endSpan(span);
}

/**
 * In a transaction: the event is written to the outbox with the rest, and the relay publishes
 * it once (and only if) the transaction commits.
 */
async function toOutbox(
  source: EmitSource,
  transaction: NonNullable<ReturnType<ModuleDatabase['current']>>,
  event: string,
  payload: unknown,
  context: CallContext | undefined,
  traceparent: string | undefined,
  id: string,
  correlationId: string,
): Promise<void> {
  await transaction.tx.query(
    'insert into keel_outbox (id, event, payload, correlation_id, traceparent, principal) values ($1, $2, $3, $4, $5, $6)',
    [
      id,
      event,
      JSON.stringify(payload),
      correlationId,
      traceparent ?? null,
      context?.principal === undefined ? null : JSON.stringify(context.principal),
    ],
  );
  const relay = source.relay();
  if (relay !== undefined && !transaction.afterCommit.includes(relay.kicker)) transaction.afterCommit.push(relay.kicker);
}

/** Publishes an event at once (no transaction); the promise is the transport's. */
function publish(
  source: EmitSource,
  contract: AnyContract,
  event: string,
  delivery: AnyEvent['delivery'],
  payload: unknown,
  context: CallContext | undefined,
  traceparent: string | undefined,
  id: string,
  correlationId: string,
): Promise<void> {
  return (source.services.remote ?? source.services.local).publish({
    contract: contract.name,
    version: contract.version,
    event,
    delivery,
    payload,
    metadata: {
      id,
      correlationId,
      traceparent,
      publisher: contract.name,
      publishedAt: Date.now(),
      principal: context?.principal,
    },
  });
}

