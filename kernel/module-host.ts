/**
 * One module hosted in this process: its own inversify container (its providers and the clients
 * of its dependsOn contracts, nothing else), its instance and hooks, its answer pipeline served
 * on each transport, its event subscriptions, and its drain on stop (whose bounded waits, the
 * inbox's drain and the stop hook, are in module-stop.ts).
 */
import { Container, type ServiceIdentifier } from 'inversify';
import { isContract, type AnyContract, type AnyEvent, type AnyOperation } from './contract.js';
import { KeelError, KeelErrorCode } from './errors.js';
import { within } from './in-flight.js';
import { schemaOf, type ModuleData, type SchemaConnection } from './database.js';
import { DatabaseHealth } from './database-health.js';
import { migrate, readMigrations } from './migrations.js';
import { Inbox, runsAlone } from './inbox.js';
import { checkInstance } from './module-checks.js';
import { ModuleDatabase, missingDatabase, outsideTransactions } from './module-data.js';
import { DEFAULT_OUTBOX_RELAY_OPTIONS, OutboxRelay, crashPoint } from './outbox-relay.js';
import { outboxHold, outboxPublisher } from './local.js';
import { MemoryIdempotencyStore, SqlIdempotencyStore, type IdempotencyStore } from './idempotency.js';
import { recordsSettled } from './served-keyed.js';
import { LifecycleState } from './lifecycle.js';
import type { Logger } from './logger.js';
import type { AnyModule, ModuleInstance } from './module.js';
import type { EventHandler, EventHandlerFunction, EventHandlerOptions, OperationHandler } from './module-handlers.js';
import { Bulkhead } from './bulkhead.js';
import { createServedModule } from './served.js';
import { createEventSubscription } from './subscription.js';
import { createEmit } from './emit.js';
import { Fanout, type Registration, type Transport } from './transport.js';
import { LATE_DRAIN_FLOOR_MS, kernelStopBoundMs, leftOf } from './stop-bounds.js';
import type { HostServices } from './host-services.js';
import { drainInbox, runStopHook } from './module-stop.js';

export class ModuleHost {
  state: LifecycleState = LifecycleState.CREATED;
  #container: Container | undefined;
  #instance: ModuleInstance<AnyContract, readonly AnyContract[]> | undefined;
  #registrations: Registration[] = [];
  /** True once the start hook (if any) completed: only then does the stop hook run. */
  #startHookRan = false;
  #stopHookRan = false;
  #stopping: Promise<void> | undefined;
  /** The module's database connection, from the moment it is opened (before its migrations) until it is closed. */
  #connection: SchemaConnection | undefined;
  /** The module's database and its outbox relay, when it declares data. */
  #db: ModuleDatabase | undefined;
  #relay: OutboxRelay | undefined;
  #inbox: Inbox | undefined;
  #idempotency: IdempotencyStore | undefined;
  /** The checks of the module's database, once it is open (when it declares data). */
  database: DatabaseHealth | undefined;
  /** The module's bulkhead, shared by its served modules on every transport; undefined when off. */
  readonly bulkhead: Bulkhead | undefined;

  constructor(
    readonly module: AnyModule,
    readonly services: HostServices,
  ) {
    const limits = services.bulkheadOf(module.name);
    this.bulkhead = limits === undefined ? undefined : new Bulkhead(module.name, limits.maxConcurrent, limits.maxQueued);
  }

  /**
   * Creates the module in its own container, runs its start hook, serves it and subscribes it.
   * Once `signal` is aborted (the kernel stopped during its start), a wait for the migration lock
   * is given up and the start goes no further than the step it is in: it rejects with the
   * signal's reason. A step that ends after the module was stopped (a start hook the stop did not
   * wait for) has what it made undone at once: registrations stopped, stop hook run, connection closed.
   */
  async start(signal?: AbortSignal): Promise<void> {
    try {
      await this.#start(signal);
    } catch (error) {
      // A step that ended once the module's stop had begun: what it made is undone once the stop is over.
      if (this.#stopping !== undefined) await this.#stopping.then(() => this.#undoLate());
      throw error;
    }
  }

  async #start(signal: AbortSignal | undefined): Promise<void> {
    const go = () => signal?.throwIfAborted();
    const { module, services } = this;
    const contract = module.contract as AnyContract;
    const logger = services.logger.child({ module: module.name });
    this.state = LifecycleState.STARTING;
    const container = new Container({ parent: services.root });
    this.#container = container;
    module.providers?.(container.bind.bind(container));
    const declared = new Set<string>();
    for (const dependency of module.dependsOn as readonly AnyContract[]) {
      declared.add(dependency.name);
      container.bind(dependency.token).toConstantValue(services.clientFor(dependency, module.name));
    }
    const get = (identifier: unknown): unknown => {
      if (isContract(identifier)) {
        if (!declared.has(identifier.name)) {
          throw new KeelError(
            KeelErrorCode.UNDECLARED_DEPENDENCY,
            `Module "${module.name}" asked for the client of "${identifier.name}" but does not declare it. ` +
              `Add it to dependsOn in ${module.name}'s defineModule().`,
          );
        }
        return container.get(identifier.token);
      }
      if (!container.isBound(identifier as ServiceIdentifier)) {
        throw new KeelError(
          KeelErrorCode.INVALID_MODULE,
          `Module "${module.name}" asked for ${describeIdentifier(identifier)}, which nothing in its container provides. ` +
            `A module sees its own providers and the clients of its dependsOn contracts, nothing of other modules: ` +
            `bind it in ${module.name}'s providers, or call the module that owns it through its contract.`,
        );
      }
      return container.get(identifier as ServiceIdentifier);
    };
    const emit = createEmit({ contract, services: this.services, database: () => this.#db, relay: () => this.#relay });
    const db = module.data === undefined ? missingDatabase(module.name) : await this.#openDatabase(module.data, logger, signal);
    go();
    const instance = await module.create({ name: module.name, get: get as never, emit: emit as never, logger, db });
    this.#instance = instance;
    go();
    checkInstance(module, instance);
    await instance.start?.();
    this.#startHookRan = true;
    go();
    const handlers = instance.handlers as Readonly<Record<string, OperationHandler<AnyOperation>>>;
    const idempotency = this.#db === undefined ? new MemoryIdempotencyStore() : new SqlIdempotencyStore(this.#db);
    this.#idempotency = idempotency;
    const serveOn = (transport: Transport) =>
      transport.serve(
        createServedModule({
          contract,
          handlers,
          logger,
          transport: transport.name,
          observers: services.observers,
          idempotency,
          principal: services.principal,
          bulkhead: this.bulkhead,
          circuits: services.circuits,
          database: () => this.database?.status().state,
        }),
      );
    this.#registrations.push(await serveOn(services.local));
    go();
    if (services.remote) this.#registrations.push(await serveOn(services.remote));
    go();
    await this.#subscribe(instance, logger);
    go();
    this.state = LifecycleState.STARTED;
  }

  /**
   * Starts the module's outbox relay: by the kernel, once every module it hosts has started. In
   * one process a durable event is confirmed once the subscribers here handled it, and one with no
   * subscriber subscribed yet counts as delivered: a relay started with its module sent the rows a
   * crash had left unsent before the modules started after it had subscribed, and they were lost.
   */
  startRelay(): void {
    this.#relay?.start();
  }

  /**
   * A durable event's handler in a module that owns data runs in a transaction with the record of
   * the event's id in the module's inbox (kernel/inbox.ts; shared by the events that wait together,
   * a savepoint each): a redelivery of an event already handled has no second effect, and a handler
   * that fails leaves no record, so the retry runs it.
   */
  #withInbox(
    source: string,
    event: string,
    definition: AnyEvent,
    handler: EventHandlerFunction<AnyEvent>,
    { maxAttempts, ownTransaction, timeoutMs, ownTimeout }: { maxAttempts: number; ownTransaction: boolean; timeoutMs: number; ownTimeout: boolean },
  ): EventHandlerFunction<AnyEvent> {
    if (this.#db === undefined) return handler;
    // A handler runs in the context its event was published from: never in a transaction that was open there.
    if (definition.delivery !== 'durable') return (payload, context) => outsideTransactions(() => handler(payload, context));
    const inbox = this.#inbox as Inbox;
    const log = this.services.logger;
    const timeout = { ms: timeoutMs, own: ownTimeout };
    // Where the transport counts every delivery (JetStream), an event given back on its last
    // attempt would come back past maxAttempts: a stop waits for that handler instead.
    const lastAttemptKept = (this.services.remote ?? this.services.local).givesBackUncounted !== true;
    return (payload, context) =>
      outsideTransactions(() =>
        inbox.handle(
          context.id,
          source,
          event,
          runsAlone(context.attempt, maxAttempts, ownTransaction),
          () => handler(payload, context),
          timeout,
          lastAttemptKept && context.attempt >= maxAttempts,
        ),
      ).then((outcome) => {
        if (outcome === 'duplicate') log.debug({ module: this.module.name, event: `${source}.${event}`, eventId: context.id }, 'event already handled; skipped');
        else crashPoint('inbox:after-commit');
      });
  }

  /** Connects the module's schema, applies its migrations, and prepares its outbox relay. */
  async #openDatabase(data: ModuleData, logger: Logger, signal: AbortSignal | undefined): Promise<ModuleDatabase> {
    const { module, services } = this;
    const engine = services.databaseFor(module.name);
    if (engine === undefined) {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `Module "${module.name}" declares data, but the kernel has no database. Give createKernel a database: ` +
          "createPGliteDatabase() from 'keel/pglite' (embedded, no server) or createPostgresDatabase({ url }) from 'keel/postgres'.",
      );
    }
    const connections = engine.connections ?? (engine.oneTransactionAtATime ? 1 : 5);
    if (!Number.isInteger(connections) || connections < 1) {
      throw new KeelError(
        KeelErrorCode.INVALID_CONFIG,
        `The database engine "${engine.name}" says it holds ${String(engine.connections)} connections at once; connections must be a whole number, 1 or more. ` +
          'Fix the engine, or leave connections out.',
      );
    }
    const schema = schemaOf(module.name);
    const connection = await engine.connect(schema);
    // Known at once: a stop during the start closes it (module.stop, or #undoLate when it comes after the stop).
    this.#connection = connection;
    signal?.throwIfAborted();
    try {
      const applied = await migrate(connection, module.name, schema, readMigrations(module.name, data.migrations), {
        onLockWait: (message) => logger.warn({ schema, database: engine.location }, message),
        ...(signal === undefined ? {} : { signal }),
      });
      if (applied.length > 0) logger.info({ schema, database: engine.location, applied }, 'migrations applied');
    } catch (error) {
      await this.#closeConnection();
      throw error;
    }
    this.#db = new ModuleDatabase(module.name, schema, engine, connection);
    this.database = new DatabaseHealth(module.name, engine, connection, logger, services.databaseCheckMs);
    this.database.start();
    // One connection fewer than the engine's pool, so that the module's calls keep one (at least one).
    this.#inbox = new Inbox(this.#db, {
      transactions: Math.max(1, connections - 1),
      events: services.inboxBatch,
      ms: services.inboxBatchMs,
      handlerMs: services.eventTimeoutMs,
    });
    const transport = services.remote ?? services.local;
    this.#relay = new OutboxRelay(module.contract as AnyContract, connection, outboxPublisher(transport), logger, outboxHold(transport), {
      ...DEFAULT_OUTBOX_RELAY_OPTIONS,
      window: services.outboxWindow,
    });
    return this.#db;
  }

  /** Subscribes each of the instance's event handlers on the event transport. */
  async #subscribe(instance: ModuleInstance<AnyContract, readonly AnyContract[]>, logger: Logger): Promise<void> {
    const { module, services } = this;
    for (const source of module.subscribesTo as readonly AnyContract[]) {
      const handlers = (instance.events as Record<string, Record<string, EventHandler<AnyEvent>>> | undefined)?.[source.name];
      if (handlers === undefined) continue;
      for (const [event, handler] of Object.entries(handlers)) {
        const definition = source.events[event] as AnyEvent;
        // Checked by checkInstance, before the start hook.
        const options: Partial<EventHandlerOptions<AnyEvent>> = typeof handler === 'function' ? {} : handler;
        const fanout = options.fanout ?? Fanout.BALANCED;
        const maxAttempts = options.maxAttempts ?? services.maxDeliveryAttempts;
        const timeoutMs = options.timeoutMs ?? services.eventTimeoutMs;
        const subscription = createEventSubscription({
          subscriber: module.name,
          source,
          event,
          definition,
          // An object's `handle` is called on it: a class's method may use `this`.
          handler: this.#withInbox(source.name, event, definition, (typeof handler === 'function' ? handler : (payload, context) => handler.handle(payload, context)) as EventHandlerFunction<AnyEvent>, {
            maxAttempts,
            ownTransaction: options.ownTransaction === true,
            timeoutMs,
            ownTimeout: options.timeoutMs !== undefined,
          }),
          fanout,
          maxAttempts,
          timeoutMs,
          logger,
          onDeadLetter: services.onDeadLetter,
          observers: services.observers,
          principal: services.principal,
        });
        this.#registrations.push(await (services.remote ?? services.local).subscribe(subscription));
      }
    }
  }

  /**
   * Stops serving, lets work in flight finish (within what is left of `drainTimeoutMs` since the
   * process's stop `began`, shared by every module it hosts; once it is used up, at most
   * {@link LATE_DRAIN_FLOOR_MS} of what is left for the hooks), runs the stop hook and stops the
   * outbox relay (both by {@link kernelStopBoundMs} after `began`). Idempotent.
   */
  stop(began: number = performance.now()): Promise<void> {
    if (this.state === LifecycleState.CREATED) return Promise.resolve();
    // One stop, whoever asks: a start that failed and the kernel's stop may both.
    this.#stopping ??= this.#stop(began);
    return this.#stopping;
  }

  async #stop(began: number): Promise<void> {
    this.state = LifecycleState.STOPPING;
    const registrations = this.#registrations;
    this.#registrations = [];
    const { drainTimeoutMs } = this.services;
    const drainMs = Math.max(
      leftOf(drainTimeoutMs, began),
      Math.min(LATE_DRAIN_FLOOR_MS, drainTimeoutMs, leftOf(kernelStopBoundMs(drainTimeoutMs), began)),
    );
    const drainEnds = performance.now() + drainMs;
    const drained = Promise.allSettled(registrations.map((registration) => registration.stop()));
    const drainedInTime = await within(drained, drainMs);
    if (!drainedInTime) {
      this.services.logger.error(
        { module: this.module.name, drainTimeoutMs, waitedMs: Math.round(drainMs) },
        'work in flight did not finish within drainTimeoutMs (what was left of it: the modules of a process share it); stopping the module anyway',
      );
    }
    await drainInbox(this, this.#inbox, drainEnds);
    // Outcome writes still being tried (the database away for a moment) get what is left of the
    // drain: closed before, a key would stay running, and a retry run it again once it lapsed.
    if (this.#idempotency !== undefined) await within(recordsSettled(this.#idempotency), Math.max(0, drainEnds - performance.now()));
    // A keyed run still going now is given up on: its key lapses as a dead process's does, for a retry to take over.
    this.#idempotency?.close();
    if (drainedInTime) {
      for (const result of await drained) {
        if (result.status === 'rejected') {
          this.services.logger.warn({ err: result.reason, module: this.module.name }, 'stopping a registration failed');
        }
      }
    }
    // Calls still queued now (the drain timed out) never start: they are answered UNAVAILABLE
    // (nothing ran, safe to retry) rather than run against a module whose stop hook runs next.
    this.bulkhead?.close();
    if (this.#startHookRan) await this.#runStopHook(began);
    if (this.#relay !== undefined) await within(this.#relay.stop(), leftOf(kernelStopBoundMs(drainTimeoutMs), began));
    await this.#closeConnection();
    this.#container?.unbindAll();
    this.state = LifecycleState.STOPPED;
  }

  /** Runs the stop hook (module-stop.ts), marked as run first: a late start's undoing then leaves it alone. */
  #runStopHook(began: number): Promise<void> {
    this.#stopHookRan = true;
    return runStopHook(this, this.#instance, began);
  }

  /** Closes the module's database connection, once (a migration still running is rolled back). */
  async #closeConnection(): Promise<void> {
    // Its checks first: a check on a closed connection would report the database down.
    this.database?.stop();
    const connection = this.#connection;
    this.#connection = undefined;
    await connection?.close().catch((error: unknown) => {
      this.services.logger.warn({ err: error, module: this.module.name }, 'closing the database connection failed');
    });
  }

  /** Undoes what a start that outlived its module's stop made after the stop: nothing of it may serve or stay open. */
  async #undoLate(): Promise<void> {
    const registrations = this.#registrations;
    this.#registrations = [];
    await Promise.allSettled(registrations.map((registration) => registration.stop()));
    this.#idempotency?.close();
    if (this.#startHookRan && !this.#stopHookRan) await this.#runStopHook(performance.now());
    await this.#closeConnection();
    this.services.logger.warn({ module: this.module.name }, 'the start of a module stopped while it started ended late; what it made was undone');
  }
}

/** A DI token as a person reads it: a symbol's description, a class's name, a string as is. */
function describeIdentifier(identifier: unknown): string {
  if (typeof identifier === 'symbol') return identifier.toString();
  if (typeof identifier === 'function') return identifier.name === '' ? 'an anonymous class' : `class ${identifier.name}`;
  return `"${String(identifier)}"`;
}
