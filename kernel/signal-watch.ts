/**
 * The calls waiting on one caller's `AbortSignal`, behind one `abort` listener on it rather than
 * one per call. Node's `addEventListener` and `removeEventListener` cost more than a fast
 * in-process call (an options object checked, a listener record, a map entry made and deleted),
 * and a closure per call kept on the call object made V8 promote calls by the thousand
 * (docs/performance.md, "Sixteenth round"). A signal shared by many calls (the gateway's, one
 * per HTTP connection; an application's, one per job) is listened to once; a call joins and
 * leaves its watch.
 *
 * A plain signal (an `AbortController`'s) keeps its listener once its calls are gone: Node lets it
 * be collected with the listener on. A timeout signal (`AbortSignal.timeout`) or a composite one
 * (`AbortSignal.any`) Node keeps alive while it has an `abort` listener, so its watch listens only
 * while a call waits, as each call's own listener did.
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

/** Node's own keys on the signals it makes, found once (on two it makes); null on a runtime without them. */
let nodeSignalKeys: { readonly composite: symbol; readonly timeout: symbol } | null | undefined;

function findNodeSignalKeys(): { readonly composite: symbol; readonly timeout: symbol } | null {
  const keyNamed = (signal: AbortSignal, name: string): symbol | undefined =>
    Object.getOwnPropertySymbols(signal).find((key) => key.description === name);
  try {
    // A timeout signal's timer does not keep the process alive; this one fires at once, unheard.
    const composite = keyNamed(new AbortController().signal, 'kComposite');
    const timeout = keyNamed(AbortSignal.timeout(0), 'kTimeout');
    return composite !== undefined && timeout !== undefined ? { composite, timeout } : null;
  } catch {
    // A runtime whose AbortSignal lacks timeout() (a test environment's replacement): every signal is taken as kept alive.
    return null;
  }
}

/**
 * Whether Node lets `signal` be collected while it has an `abort` listener: a plain signal, made
 * by an `AbortController`. Node keeps a timeout signal and a composite one with sources alive
 * while listened to (its `gcPersistentSignals`). Read from the fields Node sets on every signal it
 * makes (`kComposite`, and `kTimeout` on a timeout signal: the same on Node 20 to 26), whose keys
 * are found once; on a runtime without them every signal is taken as kept alive.
 */
function collectedWhileListened(signal: AbortSignal): boolean {
  if (nodeSignalKeys === undefined) nodeSignalKeys = findNodeSignalKeys();
  if (nodeSignalKeys === null) return false;
  const fields = signal as unknown as Readonly<Record<symbol, unknown>>;
  return fields[nodeSignalKeys.composite] === false && fields[nodeSignalKeys.timeout] !== true;
}

/**
 * The calls watching one signal: the first inline, the others in a set made when a second one
 * joins (a signal made for one call, as a hedged call's is, never makes a set).
 */
class SignalWatch {
  first: AbortableCall | undefined;
  others: Set<AbortableCall> | undefined;
  /** The signal aborted: a call that joins now gives up at once. */
  done = false;
  /** The listener stays while no call waits (a plain signal), or comes and goes with the calls. */
  readonly #keepsListener: boolean;
  #listening = false;
  readonly #onAbort = (): void => this.#abortAll();

  constructor(readonly signal: AbortSignal) {
    this.#keepsListener = collectedWhileListened(signal);
  }

  add(call: AbortableCall): void {
    if (this.done) {
      call.abort();
      return;
    }
    if (!this.#listening) {
      // An abort listener added now would never run if the signal aborted already: before its
      // first call joined (between the caller's check and the watch), or while no call waited on
      // a signal listened to only then.
      if (this.signal.aborted) {
        this.done = true;
        call.abort();
        return;
      }
      this.#listening = true;
      this.signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    if (this.first === undefined) this.first = call;
    else (this.others ??= new Set()).add(call);
  }

  delete(call: AbortableCall): void {
    if (this.first === call) this.first = undefined;
    else if (this.others?.delete(call) !== true) return;
    if (!this.#keepsListener && this.#listening && this.first === undefined && (this.others === undefined || this.others.size === 0)) {
      this.#listening = false;
      this.signal.removeEventListener('abort', this.#onAbort);
    }
  }

  #abortAll(): void {
    this.done = true;
    this.#listening = false;
    // Each call is taken out before its abort runs: one that another's abort settled (and took
    // out) is not reached; one that joins meanwhile is aborted as it joins (done). A call whose
    // abort throws does not stop the others: the first error is thrown afterwards, as an
    // exception of the listener's own.
    let failure: { readonly error: unknown } | undefined;
    const first = this.first;
    this.first = undefined;
    if (first !== undefined) failure = abortOne(first, failure);
    const others = this.others;
    if (others !== undefined) {
      for (const call of others) {
        others.delete(call);
        failure = abortOne(call, failure);
      }
    }
    if (failure !== undefined) throw failure.error;
  }
}

function abortOne(call: AbortableCall, failure: { readonly error: unknown } | undefined): { readonly error: unknown } | undefined {
  try {
    call.abort();
  } catch (error) {
    return failure ?? { error };
  }
  return failure;
}

type Watched = AbortSignal & { [WATCH]?: SignalWatch };

function watchOf(signal: AbortSignal): SignalWatch | undefined {
  return (signal as Watched)[WATCH] ?? sealedWatches?.get(signal);
}

/**
 * Has `call.abort()` called when `signal` aborts, until {@link unwatchSignal}; at once when it has
 * aborted already.
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
