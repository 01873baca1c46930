/**
 * Notification events emitted in a batch (every `emit` started, then awaited together) over a
 * real nats-server, between two kernels: every event arrives, in the order one module emitted
 * them, and an `emit` that fails does so as a rejection, never a throw.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, event, isKeelError, KeelErrorCode, silentLogger, type Emit, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const ticker = defineContract({
  name: 'ticker',
  version: '1.0.0',
  operations: {},
  events: { ticked: event({ payload: z.object({ seq: z.number().int().nonnegative() }) }) },
});
const tally = defineContract({ name: 'tally', version: '1.0.0', operations: {} });

let server: NatsServer;
const transports: Transport[] = [];
const kernels: Kernel[] = [];
let emit: Emit<typeof ticker>;
const received: number[] = [];
let onReceived: (() => void) | undefined;

beforeAll(async () => {
  server = await startNatsServer();
  const tickerModule = defineModule({
    contract: ticker,
    create: ({ emit: captured }) => {
      emit = captured;
      return { handlers: {} };
    },
  });
  const tallyModule = defineModule({
    contract: tally,
    subscribesTo: [ticker],
    create: () => ({
      handlers: {},
      events: {
        ticker: {
          ticked: ({ seq }) => {
            received.push(seq);
            onReceived?.();
          },
        },
      },
    }),
  });
  for (const host of ['tally', 'ticker']) {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    transports.push(transport);
    const kernel = createKernel({ modules: [tickerModule, tallyModule], topology: { host: [host], transport }, logger: silentLogger });
    await kernel.start();
    kernels.push(kernel);
  }
});

afterAll(async () => {
  for (const kernel of kernels.reverse()) await kernel.stop();
  for (const transport of transports) await transport.close();
});

/** Resolves once `count` events were received in all. */
function receivedAll(count: number): Promise<void> {
  return new Promise((resolve) => {
    onReceived = () => {
      if (received.length >= count) resolve();
    };
    onReceived();
  });
}

describe('notification events emitted in a batch over NATS', () => {
  it('delivers every event, in the order one module emitted them', async () => {
    received.length = 0;
    const count = 2_000;
    const emitted: Promise<void>[] = [];
    for (let seq = 0; seq < count; seq += 1) emitted.push(emit('ticked', { seq }));
    await Promise.all(emitted);
    await receivedAll(count);
    expect(received).toEqual(Array.from({ length: count }, (_, seq) => seq));
  });

  it('rejects an emit whose payload breaks the contract, without throwing; the next emit goes through', async () => {
    received.length = 0;
    let emitted: Promise<void> | undefined;
    expect(() => {
      emitted = emit('ticked', { seq: -1 });
    }).not.toThrow();
    const failure = await emitted?.then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(isKeelError(failure, KeelErrorCode.INVALID_EVENT)).toBe(true);
    await emit('ticked', { seq: 7 });
    await receivedAll(1);
    expect(received).toEqual([7]);
  });
});
