/**
 * Idempotent commands: a caller's idempotency key (CallOptions.idempotencyKey, the HTTP
 * `Idempotency-Key` header) makes a non-idempotent operation run once per key. The callee keeps
 * each key's outcome: a retry with the same key and input gets the first outcome without
 * running again; the same key with another input or from another principal is
 * IDEMPOTENCY_KEY_REUSED; a retry while the first request still runs is IDEMPOTENCY_KEY_IN_USE.
 * A module that owns data keeps the keys in its own database (`keel_idempotency`), so they
 * survive restarts and are shared by its instances; a module without data keeps them in memory,
 * per instance.
 */
import { createHash } from 'node:crypto';
import type { SqlRunner } from './database.js';
import type { ErrorEnvelope } from './transport.js';

/** What a finished request answered: its output, or a declared failure. */
export type StoredOutcome = { readonly output: unknown } | { readonly failure: ErrorEnvelope };

/** What a request with a key may do. */
export type Claim =
  /** Run it: `token` names this claim, so that only its holder records or forgets the outcome. */
  | { readonly kind: 'run'; readonly token: string }
  | { readonly kind: 'replay'; readonly outcome: StoredOutcome }
  | { readonly kind: 'reused' }
  | { readonly kind: 'in-use' };

/** Where a module keeps its idempotency keys. */
export interface IdempotencyStore {
  /** Claims `key` for `operation` until `expiresAt` (epoch ms), or says what the request gets instead. */
  claim(operation: string, key: string, inputHash: string, expiresAt: number): Promise<Claim>;
  /** Records the outcome of a claimed request, if `token`'s claim still holds the key (a retry may have taken it over). */
  complete(operation: string, key: string, token: string, outcome: StoredOutcome): Promise<void>;
  /** Forgets a claimed request that failed without a final outcome (a retry runs it again), if `token`'s claim still holds the key. */
  abandon(operation: string, key: string, token: string): Promise<void>;
  /**
   * Holds `token`'s claim, still running, until `expiresAt` (epoch ms): its run outlasted its
   * deadline and goes on (served-keyed.ts). False when the claim is no longer this run's to hold
   * (recorded, let go or taken over), or the store closed with its module: the run's lease ends.
   */
  extend(operation: string, key: string, token: string, expiresAt: number): Promise<boolean>;
  /**
   * The module stopped: no claim is renewed from now on, so that a run still going after its
   * module's stop (a handler that never ends) lets its key lapse, as a process that died does.
   */
  close(): void;
  /** True once {@link IdempotencyStore.close} was called: an outcome write still being tried again gives up. */
  readonly closed: boolean;
}

/** A key is kept this long after its request finished. */
export const IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;

/** The same digest for the same input, whatever the order of its keys. */
export function inputHash(input: unknown): string {
  return createHash('sha256').update(canonicalJson(input)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, item]) => item !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, item]) => `${JSON.stringify(key)}:${canonicalJson(item)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

interface KeyRow {
  readonly input_hash: string;
  readonly state: string;
  readonly outcome: StoredOutcome | string | null;
  readonly expired: boolean;
  [column: string]: unknown;
}

/** Keys in the module's own schema, shared by its instances and kept across restarts. */
export class SqlIdempotencyStore implements IdempotencyStore {
  #claims = 0;
  #closed = false;

  constructor(readonly sql: SqlRunner) {}

  /**
   * Deletes the keys past retention: finished requests' ({@link IDEMPOTENCY_RETENTION_MS} after
   * they finished), and claims that never finished (their process died, so neither complete nor
   * abandon ran) as long after their deadline. Those would be taken over by a retry anyway; kept,
   * they would grow the table forever. Runs every thousandth claim.
   */
  async sweep(): Promise<void> {
    await this.sql.query(
      "delete from keel_idempotency where (state = 'completed' and completed_at < now() - make_interval(secs => $1)) or (state = 'running' and expires_at < now() - make_interval(secs => $1))",
      [IDEMPOTENCY_RETENTION_MS / 1000],
    );
  }

  async claim(operation: string, key: string, hash: string, expiresAt: number): Promise<Claim> {
    if (++this.#claims % 1_000 === 0) await this.sweep();
    for (let attempt = 0; attempt < 3; attempt += 1) {
      // A claim's token is the moment it was made (clock_timestamp(), microseconds): a takeover makes a new one.
      const inserted = await this.sql.query<{ token: string }>(
        "insert into keel_idempotency (key, operation, input_hash, state, started_at, expires_at) values ($1, $2, $3, 'running', clock_timestamp(), to_timestamp($4::double precision / 1000)) on conflict (operation, key) do nothing returning started_at::text as token",
        [key, operation, hash, expiresAt],
      );
      const claimed = inserted.rows[0];
      if (claimed !== undefined) return { kind: 'run', token: claimed.token };
      const { rows } = await this.sql.query<KeyRow>(
        'select input_hash, state, outcome, expires_at < now() as expired from keel_idempotency where operation = $1 and key = $2',
        [operation, key],
      );
      const row = rows[0];
      if (row === undefined) continue; // abandoned meanwhile: claim again
      if (row.input_hash !== hash) return { kind: 'reused' };
      if (row.state === 'completed') {
        return { kind: 'replay', outcome: (typeof row.outcome === 'string' ? JSON.parse(row.outcome) : row.outcome) as StoredOutcome };
      }
      if (!row.expired) return { kind: 'in-use' };
      // The first request's deadline passed long ago (its process died, or its caller gave up): take it over.
      const taken = await this.sql.query<{ token: string }>(
        "update keel_idempotency set started_at = clock_timestamp(), expires_at = to_timestamp($3::double precision / 1000) where operation = $1 and key = $2 and state = 'running' and expires_at < now() returning started_at::text as token",
        [operation, key, expiresAt],
      );
      const takenOver = taken.rows[0];
      if (takenOver !== undefined) return { kind: 'run', token: takenOver.token };
    }
    return { kind: 'in-use' };
  }

  async complete(operation: string, key: string, token: string, outcome: StoredOutcome): Promise<void> {
    await this.sql.query(
      "update keel_idempotency set state = 'completed', outcome = $4, completed_at = now() where operation = $1 and key = $2 and state = 'running' and started_at = $3::timestamptz",
      [operation, key, token, JSON.stringify(outcome)],
    );
  }

  async extend(operation: string, key: string, token: string, expiresAt: number): Promise<boolean> {
    if (this.#closed) return false;
    const { rowCount } = await this.sql.query(
      "update keel_idempotency set expires_at = to_timestamp($4::double precision / 1000) where operation = $1 and key = $2 and state = 'running' and started_at = $3::timestamptz",
      [operation, key, token, expiresAt],
    );
    return rowCount > 0;
  }

  close(): void {
    this.#closed = true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async abandon(operation: string, key: string, token: string): Promise<void> {
    await this.sql.query("delete from keel_idempotency where operation = $1 and key = $2 and state = 'running' and started_at = $3::timestamptz", [
      operation,
      key,
      token,
    ]);
  }
}

interface MemoryEntry {
  readonly hash: string;
  readonly token: string;
  outcome: StoredOutcome | undefined;
  expiresAt: number;
}

/** Keys of a module without data: in this instance's memory, bounded, gone on restart. */
export class MemoryIdempotencyStore implements IdempotencyStore {
  #closed = false;
  readonly #entries = new Map<string, MemoryEntry>();
  #claims = 0;

  constructor(readonly limit = 10_000) {}

  async claim(operation: string, key: string, hash: string, expiresAt: number): Promise<Claim> {
    const id = `${operation}\u0000${key}`;
    const entry = this.#entries.get(id);
    const now = Date.now();
    if (entry !== undefined && entry.expiresAt >= now) {
      if (entry.hash !== hash) return { kind: 'reused' };
      return entry.outcome === undefined ? { kind: 'in-use' } : { kind: 'replay', outcome: entry.outcome };
    }
    this.#entries.delete(id);
    const token = String(++this.#claims);
    this.#entries.set(id, { hash, token, outcome: undefined, expiresAt });
    if (this.#entries.size > this.limit) this.#evict(now);
    return { kind: 'run', token };
  }

  /**
   * Drops the oldest key whose request finished (or whose claim expired): never one whose request
   * still runs, which a retry would then run a second time beside it. Running requests are few
   * (a module's bulkhead bounds them), so the walk past them to a finished one is short.
   */
  #evict(now: number): void {
    for (const [id, entry] of this.#entries) {
      if (entry.outcome !== undefined || entry.expiresAt < now) {
        this.#entries.delete(id);
        return;
      }
    }
  }

  async complete(operation: string, key: string, token: string, outcome: StoredOutcome): Promise<void> {
    const entry = this.#entries.get(`${operation}\u0000${key}`);
    if (entry === undefined || entry.token !== token || entry.outcome !== undefined) return;
    entry.outcome = outcome;
    entry.expiresAt = Date.now() + IDEMPOTENCY_RETENTION_MS;
  }

  async extend(operation: string, key: string, token: string, expiresAt: number): Promise<boolean> {
    const entry = this.#entries.get(`${operation}\u0000${key}`);
    if (this.#closed || entry === undefined || entry.token !== token || entry.outcome !== undefined) return false;
    entry.expiresAt = expiresAt;
    return true;
  }

  close(): void {
    this.#closed = true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  async abandon(operation: string, key: string, token: string): Promise<void> {
    const id = `${operation}\u0000${key}`;
    const entry = this.#entries.get(id);
    if (entry !== undefined && entry.token === token && entry.outcome === undefined) this.#entries.delete(id);
  }
}
