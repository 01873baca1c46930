/**
 * The outbox relay's window: items published one after another in their order, each without
 * waiting for the one before it to be confirmed, never more than `window` past the oldest one
 * not yet settled, and nothing more after the first failure (docs/design-notes.md, "A window of
 * publishes, sent in order; at a failure, nothing more").
 */

/** An item whose publish failed, with why. */
export interface WindowFailure<T> {
  readonly item: T;
  readonly error: unknown;
}

/** What {@link publishInWindow} did with the items. */
export interface WindowOutcome<T> {
  /** Published and confirmed, in the order they settled. */
  readonly sent: T[];
  /** Refused for good (`refusedForGood`): they do not stop the others. */
  readonly setAside: WindowFailure<T>[];
  /** The earliest item whose publish failed otherwise; nothing after it was sent once it had failed. */
  readonly failed: WindowFailure<T> | undefined;
  /** How many items were sent (the first `started` of them). */
  readonly started: number;
}

/**
 * Publishes `items` in their order: item j is sent once item j - `window` has settled, so at
 * most `window` await confirmation, and at most `window - 1` were sent behind one that fails.
 * At the first failure that `refusedForGood` does not claim, no further item is sent; the ones in
 * flight settle, then the promise resolves (it never rejects).
 *
 * Items are started from each settlement's own continuation, not from a loop that awaits: the
 * confirmations that arrive together start the next items together, and the NATS client writes
 * what they send in one go (docs/performance.md, "Seventeenth round").
 *
 * @example
 * ```ts
 * const { sent, failed } = await publishInWindow(rows, 32, (row) => transport.publish(eventOf(row)), () => false);
 * ```
 */
export function publishInWindow<T>(
  items: readonly T[],
  window: number,
  publish: (item: T) => Promise<void>,
  refusedForGood: (error: unknown) => boolean,
): Promise<WindowOutcome<T>> {
  const sent: T[] = [];
  const setAside: WindowFailure<T>[] = [];
  let failed: (WindowFailure<T> & { index: number }) | undefined;
  const settled = new Uint8Array(items.length);
  let started = 0;
  let inFlight = 0;
  return new Promise((resolve) => {
    const one = async (index: number): Promise<void> => {
      const item = items[index] as T;
      try {
        await publish(item);
        sent.push(item);
      } catch (error) {
        if (refusedForGood(error)) setAside.push({ item, error });
        else if (failed === undefined || index < failed.index) failed = { item, error, index };
      }
      settled[index] = 1;
      inFlight -= 1;
      pump();
    };
    const pump = (): void => {
      while (started < items.length && failed === undefined) {
        const gate = started - window;
        if (gate >= 0 && settled[gate] === 0) break;
        inFlight += 1;
        void one(started++);
      }
      if (inFlight === 0) resolve({ sent, setAside, failed: failed === undefined ? undefined : { item: failed.item, error: failed.error }, started });
    };
    pump();
  });
}
