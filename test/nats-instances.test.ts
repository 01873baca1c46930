import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createKernel, defineContract, defineModule, operation, silentLogger, type AnyModule, type Kernel, type Transport } from 'keel';
import { createNatsTransport } from 'keel/nats';
import { startNatsServer, type NatsServer } from './support/nats-server.js';

const counter = defineContract({
  name: 'counter',
  version: '1.0.0',
  operations: {
    whoami: operation({ input: z.object({ ms: z.number().int() }), output: z.object({ instance: z.string() }) }),
  },
});

function manifest(instance: string): AnyModule[] {
  return [
    defineModule({
      contract: counter,
      create: () => ({
        handlers: {
          whoami: async ({ ms }) => {
            if (ms > 0) await sleep(ms);
            return { instance };
          },
        },
      }),
    }),
  ];
}

describe('nats - several instances of one module', () => {
  let server: NatsServer;
  const transports: Transport[] = [];
  const kernels = new Map<string, Kernel>();
  let client: Kernel;

  const boot = async (name: string, host: string[]): Promise<Kernel> => {
    const transport = await createNatsTransport({ servers: server.url, logger: silentLogger });
    transports.push(transport);
    const kernel = createKernel({ modules: manifest(name), topology: { host, transport }, logger: silentLogger });
    await kernel.start();
    kernels.set(name, kernel);
    return kernel;
  };

  beforeAll(async () => {
    server = await startNatsServer();
    await boot('counter-a', ['counter']);
    await boot('counter-b', ['counter']);
    client = await boot('client', []);
  });

  afterAll(async () => {
    for (const kernel of [...kernels.values()].reverse()) await kernel.stop();
    for (const transport of transports) await transport.close();
  });

  it('nats - spreads calls across both instances (one queue group per module)', async () => {
    const answers = await Promise.all(Array.from({ length: 60 }, () => client.client(counter).whoami({ ms: 0 })));
    const instances = new Set(answers.map((answer) => answer.instance));
    expect(instances).toEqual(new Set(['counter-a', 'counter-b']));
  });

  it('nats - stopping one instance loses no call: accepted calls finish, later calls go to the other', async () => {
    const calls: Promise<{ instance: string }>[] = [];
    let stopped: Promise<void> | undefined;
    for (let round = 0; round < 20; round += 1) {
      for (let index = 0; index < 5; index += 1) calls.push(client.client(counter).whoami({ ms: 20 }, { timeoutMs: 10_000 }));
      if (round === 5) stopped = (kernels.get('counter-a') as Kernel).stop();
      await sleep(10);
    }
    const outcomes = await Promise.allSettled(calls);
    await stopped;
    const failures = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(failures).toEqual([]);
    const late = await Promise.all(Array.from({ length: 10 }, () => client.client(counter).whoami({ ms: 0 })));
    expect(new Set(late.map((answer) => answer.instance))).toEqual(new Set(['counter-b']));
  });
});
