/**
 * What the gateway's log line about a refused or failed request adds to it, which the HTTP client
 * is not told: kept beside the error in a WeakMap, not in its `details`, which a 4xx shows to the
 * client. The authenticate hook notes its refusals (a short `reason`, jose's code, a key set's URL)
 * and failures; the gateway notes the 401s it makes itself.
 */

/** Fields for the line (a short `reason`...), and for a failure (5xx) its message and throttle key. */
export interface OperatorNote {
  readonly fields: Readonly<Record<string, unknown>>;
  /** The error line's message, saying what to do (a 5xx). */
  readonly message?: string;
  /** What the failure's line is throttled by (default: its code and message): one line per 10 s for each. */
  readonly logKey?: string;
}

const operatorNotes = new WeakMap<object, OperatorNote>();

/** The {@link OperatorNote} of `error`, if any. */
export function operatorNoteOf(error: unknown): OperatorNote | undefined {
  return typeof error === 'object' && error !== null ? operatorNotes.get(error) : undefined;
}

/** True when `error` carries an {@link OperatorNote}. */
export function hasOperatorNote(error: unknown): boolean {
  return typeof error === 'object' && error !== null && operatorNotes.has(error);
}

/** `error`, noted with `note` for the gateway's log line. */
export function noted<E extends object>(error: E, note: OperatorNote): E {
  operatorNotes.set(error, note);
  return error;
}

/**
 * `error`, given the `reason` of its 401 line unless it has a note already (the hook's own
 * reason is the more precise); a thrown value that is not an object is left as it is.
 */
export function withReason<E>(error: E, reason: string): E {
  if (typeof error === 'object' && error !== null && !operatorNotes.has(error)) operatorNotes.set(error, { fields: { reason } });
  return error;
}
