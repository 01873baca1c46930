// bench/fixture.ts's `ticker` (publishes `ticked`) and a counting subscriber module, in plain
// JavaScript, so the event profiling scripts (events.mjs) run on the built code (dist/) without tsx.
import { z } from 'zod';
import { defineContract, defineModule, event } from 'keel';

export const TICK_PAYLOAD = { sku: 'KB-1', quantity: 2 };

const Line = z.object({ sku: z.string(), quantity: z.number().int().positive() });

export const ticker = defineContract({ name: 'ticker', version: '1.0.0', operations: {}, events: { ticked: event({ payload: Line }) } });
const tally = defineContract({ name: 'tally', version: '1.0.0', operations: {} });

/** The ticker module; `emit()` is its emit once the kernel started. */
export function tickerModule() {
  const holder = { emit: undefined };
  const module = defineModule({
    contract: ticker,
    create: ({ emit }) => {
      holder.emit = emit;
      return { handlers: {} };
    },
  });
  return { module, holder };
}

/** A module subscribing to `ticker.ticked` whose (sync) handler calls `onEvent`. */
export function tallyModule(onEvent) {
  return defineModule({
    contract: tally,
    subscribesTo: [ticker],
    create: () => ({ handlers: {}, events: { ticker: { ticked: () => onEvent() } } }),
  });
}
