/**
 * The modules and payloads the remote benchmarks run (NATS and HTTP): a `pricing` module with one
 * small JSON operation (the same work the raw baselines do), a `ticker` module that publishes a
 * notification event, and a `tally` module in another process that counts those events.
 */
import { z } from 'zod';
import { defineContract, defineModule, event, operation, type Emit } from 'keel';

/** Subjects of the raw nats baselines (not keel's wire protocol). */
export const RAW_SUBJECTS = {
  quote: 'bench.raw.quote',
  event: 'bench.raw.ticked',
  expect: 'bench.raw.expect',
  waitFor: 'bench.raw.wait-for',
} as const;

/** The subjects the peer of client `version` serves (each client on its own, so no queue group mixes them: bench/nats-client.ts). */
export function clientSubjects(version: 'v2' | 'v3') {
  const base = `bench.client.${version}`;
  return {
    quote: `${base}.quote`,
    serviceGroup: `${base}.svc`,
    service: `${base}.svc.quote`,
    event: `${base}.ticked`,
    expect: `${base}.expect`,
    waitFor: `${base}.wait-for`,
  };
}

/** The small JSON input every call case sends. */
export const QUOTE_INPUT = { customerId: 'c-1', lines: [{ sku: 'KB-1', quantity: 2 }] };

/** The small JSON payload every event case publishes. */
export const TICK_PAYLOAD = { sku: 'KB-1', quantity: 2 };

const Line = z.object({ sku: z.string(), quantity: z.number().int().positive() });
const QuoteInput = z.object({ customerId: z.string(), lines: z.array(Line) });
type QuoteInput = z.output<typeof QuoteInput>;

/** The work both the keel handler and the raw responder do. */
export function quote(input: QuoteInput): { totalCents: number; currency: string } {
  let totalCents = 0;
  for (const line of input.lines) totalCents += line.quantity * 250;
  return { totalCents, currency: 'EUR' };
}

export const pricing = defineContract({
  name: 'pricing',
  version: '1.0.0',
  operations: {
    quote: operation({
      input: QuoteInput,
      output: z.object({ totalCents: z.number().int(), currency: z.string() }),
      idempotent: true,
    }),
  },
});

export const ticker = defineContract({
  name: 'ticker',
  version: '1.0.0',
  operations: {},
  events: { ticked: event({ payload: Line }) },
});

export const tally = defineContract({
  name: 'tally',
  version: '1.0.0',
  operations: {
    /** Forgets the count and waits for `count` more events. */
    expect: operation({ input: z.object({ count: z.number().int().nonnegative() }), output: z.object({}) }),
    /** Resolves once the expected events arrived, or after `waitMs`, with how many arrived. */
    waitFor: operation({ input: z.object({ waitMs: z.number().int().positive() }), output: z.object({ received: z.number().int() }) }),
  },
});

export const pricingModule = defineModule({
  contract: pricing,
  create: () => ({ handlers: { quote: (input) => quote(input) } }),
});

/** Counts received events; `waitFor` resolves once the expected count arrived. */
export class Counter {
  received = 0;
  expected = Number.POSITIVE_INFINITY;
  #waiters: (() => void)[] = [];

  expect(count: number): void {
    this.received = 0;
    this.expected = count;
  }

  add(): void {
    this.received += 1;
    if (this.received === this.expected) {
      for (const waiter of this.#waiters.splice(0)) waiter();
    }
  }

  async waitFor(waitMs: number): Promise<number> {
    if (this.received < this.expected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitMs);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.received;
  }
}

export const tallyModule = defineModule({
  contract: tally,
  subscribesTo: [ticker],
  create: () => {
    const counter = new Counter();
    return {
      handlers: {
        expect: ({ count }) => {
          counter.expect(count);
          return {};
        },
        waitFor: async ({ waitMs }) => ({ received: await counter.waitFor(waitMs) }),
      },
      events: { ticker: { ticked: () => counter.add() } },
    };
  },
});

/** The ticker module; `emitTick` publishes one event through the kernel once it has started. */
export function tickerModule() {
  let captured: Emit<typeof ticker> | undefined;
  const module = defineModule({
    contract: ticker,
    create: ({ emit }) => {
      captured = emit;
      return { handlers: {} };
    },
  });
  return {
    module,
    emit: () => {
      if (captured === undefined) throw new Error('the ticker module has not started');
      return captured;
    },
  };
}
