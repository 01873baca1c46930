/**
 * Bounded HTTP load for the chaos scenarios: shoppers, each on a loopback address of its own
 * (127.0.<block>.<n>, all of 127/8 is loopback on Linux) so that the gateway's per-client rate
 * limit counts each of them as the different client it stands for, each sending one request
 * after the other until told to stop or until its budget of calls is spent. Every answer is
 * recorded with when it was sent and how long it took.
 */
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

/** One call as the client saw it. */
export interface CallRecord {
  /** What was called, such as `GET catalog.getProduct`. */
  readonly what: string;
  /** When it was sent, `Date.now()` ms. */
  readonly sentAt: number;
  readonly durationMs: number;
  /** HTTP status, 0 when no answer came (network error, client-side timeout). */
  readonly status: number;
  /** The error body's `code`, when it failed. */
  readonly code: string | undefined;
  /** The parsed answer body. */
  readonly body: unknown;
  /** The request body sent, if any. */
  readonly request: unknown;
}

/** What one HTTP request to the gateway sends. */
export interface HttpCall {
  readonly what: string;
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly body?: unknown;
  /** The call's deadline (`x-keel-timeout-ms`). */
  readonly deadlineMs: number;
  /** More headers, such as an admin's `authorization`. */
  readonly headers?: Readonly<Record<string, string>>;
}

/** Sends one request from `localAddress` and records it. */
export function send(base: string, call: HttpCall, agent: Agent, localAddress: string): Promise<CallRecord> {
  const url = new URL(call.path, base);
  const payload = call.body === undefined ? undefined : JSON.stringify(call.body);
  const sentAt = Date.now();
  const started = performance.now();
  return new Promise<CallRecord>((resolve) => {
    const done = (status: number, text: string): void => {
      let body: unknown;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        body = text;
      }
      const code = status >= 400 ? (body as { code?: string } | undefined)?.code : undefined;
      resolve({ what: call.what, sentAt, durationMs: performance.now() - started, status, code, body, request: call.body });
    };
    const req = request(
      url,
      {
        method: call.method,
        agent,
        localAddress,
        headers: {
          ...call.headers,
          'x-keel-timeout-ms': String(call.deadlineMs),
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
        },
        // Past the deadline and the gateway's own answer to it: something is stuck.
        timeout: call.deadlineMs + 5_000,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () => done(response.statusCode ?? 0, text));
        response.on('error', () => done(0, ''));
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer')));
    req.on('error', () => done(0, ''));
    req.end(payload);
  });
}

/** What {@link runShoppers} takes. */
export interface ShoppersOptions {
  readonly base: string;
  /** Shoppers at once. */
  readonly shoppers: number;
  /** Third byte of their loopback addresses: give each scenario its own, so rate-limit windows do not carry over. */
  readonly addressBlock: number;
  /** The call shopper `shopper` makes as its `index`-th. */
  readonly next: (shopper: number, index: number) => HttpCall;
  /** Pause between one shopper's calls (default 40 ms). */
  readonly pauseMs?: number;
  /** Most calls in all (the bound when nobody stops them). */
  readonly maxCalls: number;
}

/** A running load: its records so far, and how to stop it. */
export interface Shoppers {
  readonly records: CallRecord[];
  /** Stops sending and resolves once every call in flight was answered. */
  stop(): Promise<CallRecord[]>;
  /** Resolves once every shopper ended (stopped or out of budget). */
  readonly done: Promise<CallRecord[]>;
}

/**
 * Starts `shoppers` loops; each keeps its connection alive between calls (as a browser would).
 *
 * @example
 * ```ts
 * const load = runShoppers({ base, shoppers: 8, addressBlock: 1, maxCalls: 5_000, next: () => getProduct('KB-001') });
 * await sleep(5_000);
 * const records = await load.stop();
 * ```
 */
export function runShoppers(options: ShoppersOptions): Shoppers {
  const records: CallRecord[] = [];
  let stopped = false;
  let sent = 0;
  const agents: Agent[] = [];
  const shopper = async (number: number): Promise<void> => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    const localAddress = `127.0.${options.addressBlock}.${number + 1}`;
    for (let index = 0; !stopped && sent < options.maxCalls; index++) {
      sent++;
      records.push(await send(options.base, options.next(number, index), agent, localAddress));
      await sleep(options.pauseMs ?? 40);
    }
  };
  const done = Promise.all(Array.from({ length: options.shoppers }, (_, number) => shopper(number))).then(() => {
    for (const agent of agents) agent.destroy();
    return records;
  });
  return {
    records,
    done,
    stop: () => {
      stopped = true;
      return done;
    },
  };
}

/** A GET of a pure read, as the gateway offers it (`?input=<json>`). */
export function getCall(operation: string, input: unknown, deadlineMs: number): HttpCall {
  return { what: `GET ${operation}`, method: 'GET', path: `/${operation.replace('.', '/')}?input=${encodeURIComponent(JSON.stringify(input))}`, deadlineMs };
}

/** A POST of an operation, with `headers` (an admin's `authorization` for an operation only admins may call). */
export function postCall(operation: string, body: unknown, deadlineMs: number, headers?: Readonly<Record<string, string>>): HttpCall {
  return { what: `POST ${operation}`, method: 'POST', path: `/${operation.replace('.', '/')}`, body, deadlineMs, ...(headers === undefined ? {} : { headers }) };
}

/** The `p`-th percentile (0 to 100) of `values`, nearest rank; NaN when there are none. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] as number;
}

/** Counts of records by `status code` label (`200`, `504 TIMEOUT`, `0 no answer`). */
export function byStatus(records: readonly CallRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const record of records) {
    const label = record.status === 200 ? '200' : record.status === 0 ? 'no answer' : `${record.status} ${record.code ?? ''}`.trim();
    counts[label] = (counts[label] ?? 0) + 1;
  }
  return counts;
}
