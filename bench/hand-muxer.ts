/**
 * What the NATS benchmarks share: the hand-muxed request (the baseline keel's client is held to:
 * one reply subscription, a map of pending requests, no timer per request), over any client
 * with nats.js's `subscribe` and `publish`; and the meter of CPU per operation at both ends.
 */
import type { Peer } from './peer.js';
import { medianOf } from './support.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the hand-muxed request needs of a connection: nats v2's and the v3 client's alike. */
export interface MuxedConnection {
  subscribe(subject: string, options: { callback: (error: Error | null, msg: { subject: string; data: Uint8Array }) => void }): unknown;
  publish(subject: string, data: Uint8Array, options?: { reply: string }): void;
}

/** Pending hand-muxed request: settled by the shared reply subscription. */
class MuxedRequest {
  resolve: (value: unknown) => void = () => undefined;
  reject: (error: unknown) => void = () => undefined;
}

/** The hand-written baseline: one reply subscription under `inbox`, a map of pending requests, no timers. */
export class HandMuxer {
  readonly #nc: MuxedConnection;
  readonly #inbox: string;
  readonly #prefixLength: number;
  readonly #pending = new Map<string, MuxedRequest>();
  #next = 0;

  constructor(nc: MuxedConnection, inbox: string) {
    this.#nc = nc;
    this.#inbox = inbox;
    this.#prefixLength = inbox.length + 1;
    nc.subscribe(`${inbox}.*`, { callback: (error, msg) => this.#onReply(error, msg) });
  }

  #onReply(error: Error | null, msg: { subject: string; data: Uint8Array }): void {
    if (error !== null) return;
    const token = msg.subject.slice(this.#prefixLength);
    const request = this.#pending.get(token);
    if (request === undefined) return;
    this.#pending.delete(token);
    request.resolve(JSON.parse(decoder.decode(msg.data)));
  }

  request(subject: string, value: unknown): Promise<unknown> {
    const token = (this.#next++).toString(36);
    const request = new MuxedRequest();
    const answer = new Promise<unknown>((resolve, reject) => {
      request.resolve = resolve;
      request.reject = reject;
    });
    this.#pending.set(token, request);
    this.#nc.publish(subject, encoder.encode(JSON.stringify(value)), { reply: `${this.#inbox}.${token}` });
    return answer;
  }
}

/**
 * CPU time per operation (µs, user + system) in this process and in the peer on the other side, per
 * case. Each case's first run is the warm-up round of `interleavedSamples` (support.ts), through
 * which every measured case runs: it is not counted, as that round's rates are not.
 */
export class CpuMeter {
  readonly #samples = new Map<string, { here: number[]; peer: number[] }>();

  /** Runs `run` (which performs `count` operations) and records the CPU both processes spent. */
  async measure(name: string, peer: Peer, count: number, run: () => Promise<number>): Promise<number> {
    const peerBefore = Number(await peer.ask('cpu'));
    const hereBefore = process.cpuUsage();
    const result = await run();
    const here = process.cpuUsage(hereBefore);
    const peerAfter = Number(await peer.ask('cpu'));
    const samples = this.#samples.get(name);
    if (samples === undefined) {
      this.#samples.set(name, { here: [], peer: [] }); // the warm-up run: not counted
      return result;
    }
    samples.here.push((here.user + here.system) / count);
    samples.peer.push((peerAfter - peerBefore) / count);
    return result;
  }

  /** Median µs per operation here and in the peer. */
  perOperation(name: string): { here: number; peer: number } {
    const samples = this.#samples.get(name);
    return samples === undefined || samples.here.length === 0 ? { here: 0, peer: 0 } : { here: medianOf(samples.here), peer: medianOf(samples.peer) };
  }

  /** `here + peer µs`, medians over rounds, or `—` for a case not measured. */
  describe(name: string): string {
    if (!this.#samples.has(name)) return '—';
    const { here, peer } = this.perOperation(name);
    return `${here.toFixed(1)} + ${peer.toFixed(1)} µs`;
  }
}
