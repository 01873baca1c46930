/**
 * The fields of a log line written while a handler runs: the trace, span and correlation id of
 * the call being handled, through the logger the module was given.
 */
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation } from 'keel';
import { createLogger, newTraceparent } from 'keel/transport';
import { createHttpGateway } from 'keel/http';

const ledger = defineContract({
  name: 'ledger',
  version: '1.0.0',
  operations: {
    record: operation({ input: z.object({ entry: z.string() }), output: z.object({}) }),
    /** Logs a line, then throws an undeclared error: at once, or after an await. */
    fail: operation({ input: z.object({ later: z.boolean() }), output: z.object({}) }),
  },
});

const ledgerModule = defineModule({
  contract: ledger,
  create: ({ logger }) => ({
    handlers: {
      record: ({ entry }) => {
        logger.info({ entry }, 'recorded');
        return {};
      },
      fail: async ({ later }) => {
        logger.info({}, 'failing');
        if (later) await new Promise((resolve) => setTimeout(resolve, 5));
        throw new Error('the ledger is on fire');
      },
    },
  }),
});

/** A kernel whose logger writes JSON lines into `lines`. */
async function kernelLoggingTo(lines: string[]) {
  const logger = createLogger({ level: 'info', format: 'json', destination: { write: (text) => void lines.push(text) } });
  const kernel = createKernel({ modules: [ledgerModule], logger });
  await kernel.start();
  return { kernel, logger };
}

const records = (lines: readonly string[]) => lines.map((line) => JSON.parse(line) as Record<string, unknown>);

describe('kernel - log fields', () => {
  it('kernel - a line a handler logs carries the trace id of the traceparent, a span id, the correlation id and the operation of the call, and its module once', async () => {
    const lines: string[] = [];
    const { kernel } = await kernelLoggingTo(lines);
    try {
      const traceparent = newTraceparent();
      await kernel.client(ledger).record({ entry: 'one' }, { correlationId: 'order-7-checkout', traceparent });
      const recorded = records(lines).find((record) => record['msg'] === 'recorded');
      expect(recorded).toMatchObject({
        entry: 'one',
        module: 'ledger',
        correlation_id: 'order-7-checkout',
        trace_id: traceparent.slice(3, 35),
        span_id: expect.stringMatching(/^[0-9a-f]{16}$/),
        operation: 'record',
      });
      const line = lines.find((text) => text.includes('"msg":"recorded"')) as string;
      expect(line.match(/"module":/g)).toHaveLength(1);
    } finally {
      await kernel.stop();
    }
  });

  it("kernel - the line behind an INTERNAL answer carries the failing handler's trace id, span id and correlation id, and its module once, thrown at once or after an await", async () => {
    const lines: string[] = [];
    const { kernel } = await kernelLoggingTo(lines);
    try {
      for (const later of [false, true]) {
        lines.length = 0;
        const traceparent = newTraceparent();
        await expect(kernel.client(ledger).fail({ later }, { correlationId: `burning-${later}`, traceparent })).rejects.toThrow(/internal error/);
        const own = records(lines).find((record) => record['msg'] === 'failing') as Record<string, unknown>;
        const internal = records(lines).find((record) => String(record['msg']).includes('failed with an undeclared error')) as Record<string, unknown>;
        expect(internal, String(later)).toMatchObject({
          module: 'ledger',
          operation: 'fail',
          correlation_id: `burning-${later}`,
          trace_id: traceparent.slice(3, 35),
          span_id: own['span_id'],
          err: expect.objectContaining({ message: 'the ledger is on fire' }),
        });
        const line = lines.find((text) => text.includes('failed with an undeclared error')) as string;
        expect(line.match(/"module":/g)).toHaveLength(1);
        expect(line).not.toContain('"correlationId"');
      }
    } finally {
      await kernel.stop();
    }
  });

  it('kernel - two calls log two correlation ids, each on its own line', async () => {
    const lines: string[] = [];
    const { kernel } = await kernelLoggingTo(lines);
    try {
      await kernel.client(ledger).record({ entry: 'a' }, { correlationId: 'first-call' });
      await kernel.client(ledger).record({ entry: 'b' }, { correlationId: 'second-call' });
      const recorded = records(lines).filter((record) => record['msg'] === 'recorded');
      expect(recorded.map((record) => [record['entry'], record['correlation_id']])).toEqual([
        ['a', 'first-call'],
        ['b', 'second-call'],
      ]);
    } finally {
      await kernel.stop();
    }
  });

  it('kernel - a line logged outside any handler carries no trace_id, span_id nor correlation_id', async () => {
    const lines: string[] = [];
    const { kernel, logger } = await kernelLoggingTo(lines);
    try {
      logger.info({ step: 'between calls' }, 'outside');
      const outside = records(lines).find((record) => record['msg'] === 'outside');
      expect(outside).toMatchObject({ step: 'between calls' });
      expect(Object.keys(outside ?? {})).not.toEqual(expect.arrayContaining(['trace_id']));
      expect(outside).not.toHaveProperty('span_id');
      expect(outside).not.toHaveProperty('correlation_id');
    } finally {
      await kernel.stop();
    }
  });

  it("kernel - tracing off, the gateway's 'request failed' line carries the request's trace_id, as the failing handler's lines do", async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'info', format: 'json', destination: { write: (text) => void lines.push(text) } });
    const kernel = createKernel({ modules: [ledgerModule], logger });
    const gateway = await createHttpGateway({ kernel, port: 0, logger, metrics: false });
    await kernel.start();
    try {
      const url = await gateway.listen();
      const traceparent = newTraceparent();
      const answer = await fetch(`${url}/ledger/fail`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent, 'x-correlation-id': 'checkout-9' },
        body: JSON.stringify({ later: false }),
      });
      expect(answer.status).toBe(500);
      const failing = records(lines).find((record) => record['msg'] === 'failing');
      expect(failing).toMatchObject({ trace_id: traceparent.slice(3, 35), correlation_id: 'checkout-9' });
      const failed = records(lines).find((record) => record['msg'] === 'request failed');
      expect(failed, JSON.stringify(lines)).toMatchObject({ trace_id: traceparent.slice(3, 35), span_id: traceparent.slice(36, 52), correlation_id: 'checkout-9' });
    } finally {
      await gateway.close();
    }
  });
});
