// The pricing module of bench/fixture.ts (same contract, same sync `quote` handler) in plain
// JavaScript, so the profiling scripts run on the built code (dist/) without tsx.
import { z } from 'zod';
import { defineContract, defineModule, operation } from 'keel';

export const QUOTE_INPUT = { customerId: 'c-1', lines: [{ sku: 'KB-1', quantity: 2 }] };

const Line = z.object({ sku: z.string(), quantity: z.number().int().positive() });
const QuoteInput = z.object({ customerId: z.string(), lines: z.array(Line) });

export function quote(input) {
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

export const pricingModule = defineModule({
  contract: pricing,
  create: () => ({ handlers: { quote: (input) => quote(input) } }),
});
