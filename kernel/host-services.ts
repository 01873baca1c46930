/**
 * What the kernel gives each module it hosts (kernel/module-host.ts): its transports, logger,
 * observers, options, and the ways to reach the kernel's clients, circuits and databases.
 */
import type { Container } from 'inversify';
import type { CircuitStatus } from './circuit-breaker.js';
import type { Client } from './client.js';
import type { AnyContract } from './contract.js';
import type { DatabaseEngine } from './database.js';
import type { Logger } from './logger.js';
import type { KernelObserver } from './observer.js';
import type { PrincipalSchema } from './principal.js';
import type { BulkheadLimits } from './bulkhead.js';
import type { DeadLetter } from './subscription.js';
import type { Transport } from './transport.js';

/** What the kernel gives each module it hosts. */
export interface HostServices {
  /** The kernel's container, parent of every module's own. */
  readonly root: Container;
  readonly local: Transport;
  /** The transport to other processes; events travel through it when there is one. */
  readonly remote: Transport | undefined;
  readonly logger: Logger;
  readonly observers: readonly KernelObserver[];
  readonly maxDeliveryAttempts: number;
  /** The kernel's `outboxWindow`: durable events an outbox relay sends before the first is confirmed. */
  readonly outboxWindow: number;
  /** The kernel's `inboxBatch` and `inboxBatchMs`: how many events an inbox transaction takes, and for how long. */
  readonly inboxBatch: number;
  readonly inboxBatchMs: number;
  readonly eventTimeoutMs: number;
  readonly drainTimeoutMs: number;
  /** The kernel's `databaseCheckMs`: how often a module's database is checked (database-health.ts). */
  readonly databaseCheckMs: number;
  readonly onDeadLetter: ((deadLetter: DeadLetter) => void) | undefined;
  /** The application's principal schema (the kernel's `principal` option). */
  readonly principal: PrincipalSchema | undefined;
  /** The limits of a module's bulkhead (the kernel's `bulkhead` options), undefined for none. */
  bulkheadOf(module: string): BulkheadLimits | undefined;
  /** The kernel's circuit breakers, as `kernel.status()` reports them. */
  circuits(): readonly CircuitStatus[];
  /** The client a module gets for a contract it depends on. */
  clientFor(contract: AnyContract, caller: string): Client<AnyContract>;
  /** True once the kernel stopped: a module may no longer emit. */
  stopped(): boolean;
  /** The database engine of a module that declares data, if the kernel was given one. */
  databaseFor(module: string): DatabaseEngine | undefined;
}
