/**
 * Naks sent after a durable subscription stopped consuming, held back until the server can no
 * longer hand them to that subscription's last pull request.
 *
 * `consume()` keeps one pull request waiting at the server; closing it unsubscribes the request's
 * inbox, but JetStream has no way to withdraw the request itself, and a server may still hold it
 * until it expires (nats-server 2.9 drops it at its first idle heartbeat, half its `expires`).
 * A message nak'ed meanwhile is redelivered at once into that request: to an inbox nobody reads.
 * JetStream counts the delivery, and the message comes back only after `ack_wait`, on its next
 * attempt (so an event given back at a stop could be dead-lettered one attempt early); on 2.9 the
 * lost redelivery also hands another message out a second time, as a first delivery. Measured on
 * 2.9.10: every plain nak within half of `expires` after the close lost one redelivery, none after
 * it. Naks with a short delay (1 ms to 1 s) came back right in those runs, but ones delayed to the
 * end of the window came back out of order and once more; so every nak in the window is held.
 *
 * So a nak within {@link PULL_EXPIRES_MS} of the close is sent once the request must have expired
 * (it was sent before the close, and lives `expires` at most), with what remains of its own delay;
 * meanwhile `working()` keeps the message from coming back by `ack_wait`. The transport's close
 * waits for these naks ({@link LateNaks.settled}), at most {@link PULL_EXPIRES_MS} past the last
 * close of a subscription. A stop rarely needs it: the kernel gives events back only once the
 * module's share of its `drainTimeoutMs` (30 s by default, shared by the process's modules) is
 * over; a short drain (a short `drainTimeoutMs`, or a module stopped after others used most of
 * it), a handler that fails during it, or a database that cannot be reached at the stop, does.
 */
import type { JsMsg } from '@nats-io/jetstream';

/**
 * The `expires` of each pull request `consume()` sends (durable-events.ts): how long a closed
 * subscription's last one may live. The client expects a heartbeat every half of it and pulls
 * again after two are missed: when a NATS node dies with the consumer's leader, delivery resumes
 * about this long after a new leader is elected, instead of the client's default of 30 s
 * (docs/nats-cluster.md).
 */
export const PULL_EXPIRES_MS = 5_000;

/** Past the request's expiry, for the server's own timer. */
const MARGIN_MS = 100;

/** Naks of messages whose subscription's consume closed at `closedAt`, sent once they are safe. */
export class LateNaks {
  readonly #pending = new Set<Promise<void>>();

  /**
   * Naks `msg` (redelivered after `delayMs`, or at once) now, or, within {@link PULL_EXPIRES_MS} of
   * `closedAt` (a `performance.now()`; `undefined` while consuming), once that has passed. Until
   * then `working()` every half `ackWaitMs`; `open()` false (the connection closed) drops the nak:
   * the message comes back by `ack_wait`, as from a process that stopped.
   */
  nak(msg: JsMsg, closedAt: number | undefined, delayMs: number, ackWaitMs: number, open: () => boolean): void {
    const due = closedAt === undefined ? 0 : closedAt + PULL_EXPIRES_MS + MARGIN_MS;
    if (performance.now() >= due) {
      msg.nak(delayMs > 0 ? delayMs : undefined);
      return;
    }
    const asked = performance.now();
    const sent = new Promise<void>((resolve) => {
      const step = (): void => {
        if (!open()) return resolve();
        const now = performance.now();
        if (now >= due) {
          const left = delayMs - (now - asked);
          msg.nak(left > 0 ? left : undefined);
          return resolve();
        }
        msg.working();
        setTimeout(step, Math.min(due - now, Math.max(100, ackWaitMs / 2)));
      };
      step();
    });
    this.#pending.add(sent);
    void sent.then(() => this.#pending.delete(sent));
  }

  /** Resolves once every nak held back so far is sent (or dropped with its connection). */
  async settled(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
  }
}
