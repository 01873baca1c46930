/**
 * The calls waiting on one caller's `AbortSignal`, behind one `abort` listener on it rather than
 * one per call. Node's `addEventListener` and `removeEventListener` cost more than a fast
 * in-process call (an options object checked, a listener record, a map entry made and deleted),
 * and a closure per call kept on the call object made V8 promote calls by the thousand
 * (docs/performance.md, "Sixteenth round"). A signal shared by many calls (the gateway's, one
 * per HTTP connection; an application's, one per job) is listened to once; a call joins and
 * leaves a set.
 */

/** A call that gives up when the signal it waits on aborts. */
export interface AbortableCall {
  /** The signal aborted while the call waited: settle it as cancelled. Called once at most. */
  abort(): void;
}

/** Where a signal keeps its watch: a property of its own that no one else reads. */
const WATCH = Symbol('keel.signalWatch');

/** The watches of signals that take no new property (frozen or sealed ones), once there is one. */
let sealedWatches: WeakMap<AbortSignal, SignalWatch> | undefined;

/**
 * The calls watching one signal: the first inline, the others in a set made when a second one
 * joins (a signal made for one call, as a hedged call's is, never makes a set).
 */
class SignalWatch {
  first: AbortableCall | undefined;
  others: Set<AbortableCall> | undefined;
  /** The signal aborted: a call that joins now gives up at once. */
  done = false;

  constructor(signal: AbortSignal) {
    signal.addEventListener('abort', () => this.#abortAll(), { once: true });
  }

  add(call: AbortableCall): void {
    if (this.done) call.abort();
    else if (this.first === undefined) this.first = call;
    else (this.others ??= new Set()).add(call);
  }

  delete(call: AbortableCall): void {
    if (this.first === call) this.first = undefined;
    else this.others?.delete(call);
  }

  #abortAll(): void {
    this.done = true;
    // One at a time, each taken out first: a call that leaves while another's abort runs (settled
    // by it) is not reached; one that joins meanwhile is aborted as it joins.
    for (let call = this.#take(); call !== undefined; call = this.#take()) call.abort();
  }

  #take(): AbortableCall | undefined {
    const first = this.first;
    if (first !== undefined) {
      this.first = undefined;
      return first;
    }
    const others = this.others;
    if (others !== undefined) {
      for (const call of others) {
        others.delete(call);
        return call;
      }
    }
    return undefined;
  }
}

type Watched = AbortSignal & { [WATCH]?: SignalWatch };

function watchOf(signal: AbortSignal): SignalWatch | undefined {
  return (signal as Watched)[WATCH] ?? sealedWatches?.get(signal);
}

/**
 * Has `call.abort()` called when `signal` aborts, until {@link unwatchSignal}. The signal must
 * not have aborted yet (an `abort` listener added after that never runs): check `signal.aborted`
 * first.
 *
 * @example
 * ```ts
 * if (signal.aborted) return cancelled();
 * watchSignal(signal, call);
 * // ... once the call settled, however:
 * unwatchSignal(signal, call);
 * ```
 */
export function watchSignal(signal: AbortSignal, call: AbortableCall): void {
  let watch = watchOf(signal);
  if (watch === undefined) {
    watch = new SignalWatch(signal);
    if (Object.isExtensible(signal)) (signal as Watched)[WATCH] = watch;
    else (sealedWatches ??= new WeakMap()).set(signal, watch);
  }
  watch.add(call);
}

/** Stops what {@link watchSignal} started for `call` (nothing if it was not watched). */
export function unwatchSignal(signal: AbortSignal, call: AbortableCall): void {
  watchOf(signal)?.delete(call);
}
