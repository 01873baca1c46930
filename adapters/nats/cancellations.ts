/**
 * A served module's side of cancelling a call over NATS: the handlers running in this instance
 * that asked for their signal (`callSignal()`), by their request's reply subject, and what to do
 * when a caller says on `{prefix}._cancel.{module}` that it gave up on one (docs/wire-protocol.md,
 * "Cancelling a call"). A handler that never asks costs nothing here.
 */
import type { CallContext } from 'keel';
import { callAbandoned, type OperationAddress } from 'keel/transport';

/** How long a cancel that found no handler watching is kept, for one that asks for its signal later. */
export const EARLY_CANCEL_KEEP_MS = 30_000;
/** At most this many such cancels are kept (the oldest go first). */
export const EARLY_CANCEL_LIMIT = 10_000;

interface Watch {
  readonly controller: AbortController;
  readonly address: OperationAddress;
  readonly context: CallContext;
}

/** One served module's watched handlers and early cancels (see the file's comment). */
export class Cancellations {
  readonly #watching = new Map<string, Watch>();
  /**
   * Cancels that came before their handler asked for its signal (it was queued, or had not asked
   * yet; also one that aborted the watch of a queued call since started), or for requests another instance serves (every instance hears every cancel): kept
   * {@link EARLY_CANCEL_KEEP_MS}, at most {@link EARLY_CANCEL_LIMIT}, by reply subject.
   */
  readonly #early = new Map<string, number>();

  /** The handler of the request answered on `reply` asked for its signal. */
  watch(reply: string, controller: AbortController, address: OperationAddress, context: CallContext): void {
    const early = this.#early.get(reply);
    if (early !== undefined) {
      this.#early.delete(reply);
      if (early >= Date.now()) {
        controller.abort(callAbandoned(address, context, 'its caller cancelled the call'));
        return;
      }
    }
    this.#watching.set(reply, { controller, address, context });
  }

  /** The request answered on `reply` was answered: nothing to cancel any more. */
  forget(reply: string): void {
    this.#watching.delete(reply);
    this.#early.delete(reply);
  }

  /** A caller gave up on the request it sent with reply subject `reply`. */
  cancel(reply: string): void {
    const watch = this.#watching.get(reply);
    if (watch !== undefined) {
      this.#watching.delete(reply);
      watch.controller.abort(callAbandoned(watch.address, watch.context, 'its caller cancelled the call'));
    }
    // Kept also when a watch took it: that of a queued call that has started since, whose handler
    // may ask for its signal later (the in-process transport remembers it on the call, too).
    const now = Date.now();
    this.#early.set(reply, now + EARLY_CANCEL_KEEP_MS);
    // Oldest first (a Map keeps insertion order): the expired ones, then any over the limit.
    for (const [key, expiresAt] of this.#early) {
      if (expiresAt >= now && this.#early.size <= EARLY_CANCEL_LIMIT) break;
      this.#early.delete(key);
    }
  }

  /** How many handlers are watched and early cancels kept (for tests). */
  get sizes(): { readonly watching: number; readonly early: number } {
    return { watching: this.#watching.size, early: this.#early.size };
  }
}
