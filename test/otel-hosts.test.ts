/**
 * `keel start`'s host (cli/host.ts) with tracing asked for: every way a start fails leaves the
 * SDK shut down, so that keel's spans are off and tracing can start again in the process.
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { KeelErrorCode, defineContract, defineModule, operation, silentLogger } from 'keel';
import { startTracing } from 'keel/otel';
import { keelTracer } from 'keel/transport';
import { startHost } from '../cli/host.js';
import { modules } from '../modules/index.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const echo = defineContract({
  name: 'echo',
  version: '1.0.0',
  operations: { say: operation({ input: z.object({ text: z.string() }), output: z.object({ text: z.string() }) }) },
});
const echoModule = defineModule({ contract: echo, create: () => ({ handlers: { say: ({ text }) => ({ text }) } }) });

let receiver: OtlpReceiver | undefined;
afterEach(async () => {
  await receiver?.close();
  receiver = undefined;
});

/** Tracing is off, and a new start in this process works (nothing was left running). */
async function expectTracingStartable(): Promise<void> {
  expect(keelTracer()).toBeUndefined();
  const again = startTracing({ env: { OTEL_TRACES_EXPORTER: 'none' } });
  expect(keelTracer()).toBeDefined();
  await again.shutdown();
}

describe('otel - a host whose start fails shuts tracing down', () => {
  it('otel - a DATABASE_URL the host refuses: INVALID_CONFIG, and no tracing left running', async () => {
    receiver = await startOtlpReceiver();
    await expect(
      startHost({
        modules,
        logger: silentLogger,
        env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, DATABASE_URL: 'mysql://shop@db/shop' },
      }),
    ).rejects.toMatchObject({ code: KeelErrorCode.INVALID_CONFIG, message: expect.stringMatching(/DATABASE_URL is not a PostgreSQL URL/) });
    await expectTracingStartable();
  });

  it('otel - an HTTP port that is taken: the start fails after the kernel started, and tracing is shut down', async () => {
    receiver = await startOtlpReceiver();
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      await expect(
        startHost({
          modules: [echoModule],
          logger: silentLogger,
          httpPort: (taken.address() as AddressInfo).port,
          env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url },
        }),
      ).rejects.toMatchObject({ code: 'E_HTTP_LISTEN' });
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
    await expectTracingStartable();
  });
});
